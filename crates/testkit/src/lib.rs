//! Test helpers shared by the parity tests of every crate.
//!
//! The golden fixtures live outside the repository. Their root comes from one environment
//! variable, `HIGGS_FIXTURES` (default `../shared/fixtures` next to the workspace), so the shared
//! set and any held-out set of the same format run through the same test code.
#![allow(clippy::unwrap_used)] // test-only crate: a broken fixture should fail the test loudly.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Root of this cargo workspace (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The fixture root: `$HIGGS_FIXTURES` (relative paths are taken from the workspace root, so
/// `HIGGS_FIXTURES=DIR cargo test parity` works from the repository root), else
/// `../shared/fixtures`.
pub fn fixtures_root() -> PathBuf {
    match std::env::var_os("HIGGS_FIXTURES") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        }
        _ => workspace_root().join("../shared/fixtures"),
    }
}

/// Path of a file below the fixture root; panics with a helpful message when it is missing.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_root().join(rel);
    assert!(
        p.exists(),
        "fixture {} not found (set HIGGS_FIXTURES to the fixture root; now {})",
        p.display(),
        fixtures_root().display()
    );
    p
}

/// The device the model/codec under test runs on: `HIGGS_TEST_DEVICE` = `cpu` (default) or
/// `cuda` / `cuda:N` (needs a binary built with the crates' `cuda` feature and a GPU). Golden
/// arrays stay on the CPU; comparisons copy results back.
pub fn test_device() -> Device {
    let spec = std::env::var("HIGGS_TEST_DEVICE").unwrap_or_default();
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "" | "cpu" => Device::Cpu,
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = s
                .strip_prefix("cuda:")
                .map(|n| {
                    n.parse::<usize>()
                        .unwrap_or_else(|_| panic!("HIGGS_TEST_DEVICE={s}: bad ordinal"))
                })
                .unwrap_or(0);
            Device::new_cuda(ordinal).unwrap_or_else(|e| {
                panic!("HIGGS_TEST_DEVICE={s}: no CUDA device ({e}); build with --features cuda")
            })
        }
        other => panic!("HIGGS_TEST_DEVICE={other}: expected cpu, cuda or cuda:N"),
    }
}

/// All arrays of a golden `.safetensors` file, on the CPU.
pub struct Golden {
    pub path: PathBuf,
    pub arrays: HashMap<String, Tensor>,
}

impl Golden {
    pub fn load(rel: &str) -> Self {
        let path = fixture(rel);
        let arrays = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
        Self { path, arrays }
    }

    pub fn has(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    pub fn get(&self, name: &str) -> &Tensor {
        self.arrays
            .get(name)
            .unwrap_or_else(|| panic!("golden array `{name}` missing in {}", self.path.display()))
    }

    pub fn f32(&self, name: &str) -> Tensor {
        self.get(name).to_dtype(DType::F32).unwrap()
    }

    /// Integer arrays (ids, codes, masks) as flat i64.
    pub fn i64s(&self, name: &str) -> Vec<i64> {
        self.get(name)
            .to_dtype(DType::I64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
    }

    /// Names of the arrays that start with `prefix`, sorted.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .arrays
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// Reads a golden `.json` file below the fixture root.
pub fn golden_json(rel: &str) -> serde_json::Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// Maximum absolute difference between two tensors of the same shape, and the flat index where
/// it occurs.
pub fn max_abs_diff(actual: &Tensor, expected: &Tensor) -> (f32, usize) {
    let a = actual
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let e = expected
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a.len(), e.len(), "element count differs");
    let mut worst = (0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(e.iter()).enumerate() {
        let d = (x - y).abs();
        if d.is_nan() || d > worst.0 {
            worst = (if d.is_nan() { f32::INFINITY } else { d }, i);
        }
    }
    worst
}

/// Asserts `|actual - expected| <= tol` element-wise and equal shapes; on failure names the
/// tensor, the first diverging index and both values.
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f32) {
    assert_eq!(
        actual.dims(),
        expected.dims(),
        "{what}: shape {:?} != expected {:?}",
        actual.dims(),
        expected.dims()
    );
    let (d, idx) = max_abs_diff(actual, expected);
    if d > tol {
        let a = actual.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
        let e = expected
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let av: Vec<f32> = a.to_vec1().unwrap();
        let ev: Vec<f32> = e.to_vec1().unwrap();
        let first = av
            .iter()
            .zip(ev.iter())
            .position(|(x, y)| (x - y).abs() > tol || x.is_nan() != y.is_nan())
            .unwrap_or(idx);
        panic!(
            "{what}: max |diff| {d:e} > tol {tol:e} (worst at flat index {idx}); first divergence at \
             flat index {first} of shape {:?}: actual {} expected {}",
            expected.dims(),
            av[first],
            ev[first]
        );
    }
}

/// Asserts two integer sequences are equal, naming the first index that differs.
pub fn assert_ids_eq(what: &str, actual: &[i64], expected: &[i64]) {
    if let Some(i) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: first mismatch at index {i}: actual {} expected {} (actual len {}, expected len {})",
            actual[i],
            expected[i],
            actual.len(),
            expected.len()
        );
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: length {} != expected {}",
        actual.len(),
        expected.len()
    );
}

/// A tensor list written by transformers (`scripts/transformers-keys.py`): `name [d0, d1, ...]`
/// per line, `#` lines the header, which must name the transformers version. Name -> shape.
pub fn transformers_keys(path: &Path) -> std::collections::BTreeMap<String, Vec<usize>> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        text.starts_with("# transformers "),
        "{}: the header names the transformers version",
        path.display()
    );
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, shape) = l.split_once(' ').unwrap();
            let dims = shape
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .map(|d| d.trim().parse().unwrap())
                .collect();
            (name.to_string(), dims)
        })
        .collect()
}

/// Asserts that `ours` holds exactly the tensors of `theirs` (a [`transformers_keys`] list): no
/// name missing, none unexpected, every shape equal.
pub fn assert_same_tensors(
    ours: &std::collections::BTreeMap<String, Vec<usize>>,
    theirs: &std::collections::BTreeMap<String, Vec<usize>>,
) {
    let missing: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let unexpected: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing {missing:?}, unexpected {unexpected:?}"
    );
    for (name, shape) in theirs {
        assert_eq!(&ours[name], shape, "{name}");
    }
}
