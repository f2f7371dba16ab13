//! Minimal writer of PyTorch `torch.save` checkpoints (zip + pickle) for a flat state dict of
//! float32 tensors: the inverse of `candle_core::pickle` for what `model.pth` needs. Used by the
//! random-checkpoint generator; files load with our reader and with `torch.load` (including
//! `weights_only=True`: only `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
//! `torch.FloatStorage` are referenced).
//!
//! Archive layout (as written by torch ≥ 1.6): `<name>/data.pkl` (the pickled OrderedDict),
//! `<name>/byteorder` (`little`), `<name>/data/<i>` (raw little-endian storage of tensor `i`),
//! `<name>/version` (`3`). Entries are stored uncompressed and 64-byte aligned, like torch does.

use crate::error::{CodecError, Result};
use candle_core::{DType, Tensor};
use std::io::Write;
use std::path::Path;

// Pickle protocol-2 opcodes used below.
const PROTO: u8 = 0x80;
const GLOBAL: u8 = b'c';
const EMPTY_TUPLE: u8 = b')';
const REDUCE: u8 = b'R';
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const BINPERSID: u8 = b'Q';
const NEWFALSE: u8 = 0x89;
const SETITEMS: u8 = b'u';
const STOP: u8 = b'.';

struct Pickler(Vec<u8>);

impl Pickler {
    fn op(&mut self, op: u8) {
        self.0.push(op);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.op(GLOBAL);
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn string(&mut self, s: &str) {
        self.op(BINUNICODE);
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        if let Ok(small) = i32::try_from(v) {
            self.op(BININT);
            self.0.extend_from_slice(&small.to_le_bytes());
        } else {
            // LONG1: length byte then little-endian two's complement (positive: 8 bytes + sign).
            self.op(LONG1);
            self.0.push(9);
            self.0.extend_from_slice(&(v as u64).to_le_bytes());
            self.0.push(0);
        }
    }

    fn int_tuple(&mut self, vals: &[usize]) {
        self.op(MARK);
        for v in vals {
            self.int(*v);
        }
        self.op(TUPLE);
    }

    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(EMPTY_TUPLE);
        self.op(REDUCE);
    }
}

/// The pickle of `OrderedDict(name -> _rebuild_tensor_v2(storage i, 0, shape, stride, False, {}))`.
fn state_dict_pickle(entries: &[(&str, &[usize])]) -> Vec<u8> {
    let mut p = Pickler(vec![PROTO, 2]);
    p.ordered_dict();
    p.op(MARK);
    for (i, (name, shape)) in entries.iter().enumerate() {
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(MARK);
        // Persistent id: ('storage', torch.FloatStorage, key, location, numel).
        p.op(MARK);
        p.string("storage");
        p.global("torch", "FloatStorage");
        p.string(&i.to_string());
        p.string("cpu");
        p.int(shape.iter().product());
        p.op(TUPLE);
        p.op(BINPERSID);
        p.int(0); // storage offset
        p.int_tuple(shape);
        let mut strides = vec![1usize; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        p.int_tuple(&strides);
        p.op(NEWFALSE); // requires_grad
        p.ordered_dict(); // backward_hooks
        p.op(TUPLE);
        p.op(REDUCE);
    }
    p.op(SETITEMS);
    p.op(STOP);
    p.0
}

/// Writes `tensors` (converted to float32, CPU) as a `torch.save`d state dict at `path`.
/// `archive` is the top-level folder name inside the zip (torch uses the file stem).
pub fn write_state_dict(path: &Path, archive: &str, tensors: &[(String, Tensor)]) -> Result<()> {
    let io = |e: std::io::Error| CodecError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let zerr = |e: zip::result::ZipError| CodecError::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("zip: {e}"),
    };
    let shapes: Vec<Vec<usize>> = tensors.iter().map(|(_, t)| t.dims().to_vec()).collect();
    let entries: Vec<(&str, &[usize])> = tensors
        .iter()
        .zip(&shapes)
        .map(|((n, _), s)| (n.as_str(), s.as_slice()))
        .collect();
    let file = std::fs::File::create(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(false);
    zip.start_file(format!("{archive}/data.pkl"), opts)
        .map_err(zerr)?;
    zip.write_all(&state_dict_pickle(&entries)).map_err(io)?;
    zip.start_file(format!("{archive}/byteorder"), opts)
        .map_err(zerr)?;
    zip.write_all(b"little").map_err(io)?;
    for (i, (_, t)) in tensors.iter().enumerate() {
        zip.start_file(format!("{archive}/data/{i}"), opts)
            .map_err(zerr)?;
        let data: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut bytes = Vec::with_capacity(4 * data.len());
        for v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        zip.write_all(&bytes).map_err(io)?;
    }
    zip.start_file(format!("{archive}/version"), opts)
        .map_err(zerr)?;
    zip.write_all(b"3\n").map_err(io)?;
    let mut inner = zip.finish().map_err(zerr)?;
    inner.flush().map_err(io)?;
    Ok(())
}
