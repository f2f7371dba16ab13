//! Codes file format: round trip, validation, and no panics on arbitrary bytes (proptest).
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use higgs_codec::codes_file::{CodesFile, HEADER_LEN};
use higgs_codec::{read_codes, write_codes};
use proptest::prelude::*;

fn sample(n_q: usize, t: usize, size: u32) -> CodesFile {
    CodesFile {
        n_codebooks: n_q,
        n_frames: t,
        sample_rate: 24000,
        hop_length: 960,
        codebook_size: size,
        codes: (0..n_q * t)
            .map(|i| (i as u32 * 37 % size) as u16)
            .collect(),
    }
}

#[test]
fn round_trip_through_a_file_and_a_tensor() {
    let f = sample(8, 25, 1024);
    let path = std::env::temp_dir().join(format!("higgs-codes-{}.hcodes", std::process::id()));
    write_codes(&path, &f).unwrap();
    let g = read_codes(&path).unwrap();
    assert_eq!(f, g);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        HEADER_LEN + 2 * 8 * 25
    );
    let t = g.to_tensor(&Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[8, 25]);
    let back = CodesFile::from_tensor(&t, 24000, 960, 1024).unwrap();
    assert_eq!(back, f);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn invalid_content_is_rejected() {
    let good = sample(2, 3, 16).to_bytes().unwrap();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(CodesFile::from_bytes(&bad_magic).is_err());
    let mut bad_version = good.clone();
    bad_version[8] = 9;
    assert!(CodesFile::from_bytes(&bad_version).is_err());
    let mut out_of_range = good.clone();
    out_of_range[HEADER_LEN] = 16; // code 16 with codebook_size 16
    assert!(CodesFile::from_bytes(&out_of_range).is_err());
    assert!(CodesFile::from_bytes(&good[..good.len() - 1]).is_err());
    let mut longer = good.clone();
    longer.push(0);
    assert!(CodesFile::from_bytes(&longer).is_err());
    assert!(read_codes(std::path::Path::new("/nonexistent/codes.bin")).is_err());
    let too_big = Tensor::new(&[[5u32, 1024]], &Device::Cpu).unwrap();
    assert!(CodesFile::from_tensor(&too_big, 24000, 960, 1024).is_err());
}

proptest! {
    #[test]
    fn any_valid_file_round_trips(n_q in 1usize..10, t in 0usize..40, size in 1u32..=65536, seed in any::<u64>()) {
        let mut s = seed | 1;
        let codes = (0..n_q * t).map(|_| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s % u64::from(size)) as u16 }).collect();
        let f = CodesFile { n_codebooks: n_q, n_frames: t, sample_rate: 24000, hop_length: 960, codebook_size: size, codes };
        let b = f.to_bytes().unwrap();
        prop_assert_eq!(CodesFile::from_bytes(&b).unwrap(), f);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = CodesFile::from_bytes(&bytes);
    }

    #[test]
    fn truncated_or_corrupted_valid_files_never_panic(cut in 0usize..100, flip in 0usize..100, val in any::<u8>()) {
        let mut b = sample(3, 10, 1024).to_bytes().unwrap();
        let i = flip % b.len();
        b[i] = val;
        b.truncate(b.len().saturating_sub(cut));
        let _ = CodesFile::from_bytes(&b);
    }
}
