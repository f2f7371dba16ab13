//! Any byte string must decode to Ok or a clean error. The library catches symphonia's panics
//! with catch_unwind; if this target is built with `-C panic=abort`, those abort instead, so the
//! fuzzer reports every decoder panic (worth reporting upstream), not only ones that escape.
#![no_main]

use higgs_audio_io::{decode_bytes, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_duration_secs: 30.0,
        ..Default::default()
    };
    if let Ok(d) = decode_bytes(data, &limits) {
        assert!(d.sample_rate > 0);
        assert!(d.samples.iter().all(|s| s.is_finite()));
    }
});
