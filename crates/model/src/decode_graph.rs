//! CUDA-graph replay of the steady audio decode step.
//!
//! Why: one decode step of the full model is ~600 small kernels. Enqueued one by one through
//! candle, the host needs ~7 ms per step while the GPU needs ~2 ms, so single-stream decoding is
//! host-bound. A CUDA graph replays the whole step with one launch.
//!
//! What is captured: the decode step body (`decode_step.rs`) for slots `0..rows` (`rows` a power
//! of two covering the highest slot in the step) attending over `keys` cache positions (a multiple
//! of [`KEY_BUCKET`]): one graph per `(rows, keys)` bucket, captured the first time the bucket is
//! met. Slots of the range that are not in the step are padding rows: they write nothing (write
//! position `u32::MAX`) and their logits are dropped. Steps that are not "one audio position per
//! sequence, audio logits only" (prefill, text, mixed) run eagerly as before.
//!
//! How capture is made possible with candle 0.11.1: every per-step host value goes into one
//! persistent u32 device buffer per graph, uploaded before the launch; candle's
//! `enable_cuda_graph_htod_cache` serves the layout parameters of strided kernels from a cache
//! filled by an eager warm-up run of the same body; the new graph then runs the step in which the
//! bucket is first met (launching at once also backs its memory nodes); intermediates are stream-ordered allocations, i.e. graph memory nodes, and
//! the logits tensor of the capture stays allocated at a fixed address that every replay rewrites
//! (`AUTO_FREE_ON_LAUNCH`). The KV cache tensors are persistent, so the graph writes them in place.
//! Any failure to capture turns graphs off for the cache (with a warning) and the step runs eagerly.
//!
//! [`crate::ModelOptions::cuda_graphs`] turns graphs off for a model's caches;
//! [`crate::KvCache::set_decode_graphs`] does it per cache.
//! On other devices the path is off by default; turned on (tests), it runs the same fixed-shape
//! step body eagerly, so the CPU test suite checks what the graphs replay.

/// Cache positions are attended in buckets of this many keys (the rest of a bucket is masked).
pub const KEY_BUCKET: usize = 256;

use candle_core::Tensor;

use crate::error::ForwardError;
use crate::{HiggsAudioModel, KvCache};

/// Captured graphs kept per cache; steps of further buckets run eagerly.
pub const MAX_GRAPHS: usize = 96;

/// Counters of graph use (all zero on CPU builds or devices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// Graphs captured (one per `(rows, keys)` bucket met).
    pub captured: u64,
    /// Decode steps served by replaying a graph.
    pub replayed: u64,
    /// Decode steps that were eligible but ran eagerly (the graph limit reached, or a device
    /// without graphs). The step that captures a bucket's graph runs it, so it counts as replayed.
    pub eager: u64,
}

/// Per-cache graph state (the graphs bake in the addresses of this cache's K/V tensors).
#[derive(Default)]
pub(crate) struct DecodeGraphs {
    pub(crate) enabled: bool,
    pub(crate) stats: GraphStats,
    #[cfg(feature = "cuda")]
    cuda: cuda::Graphs,
}

impl DecodeGraphs {
    pub(crate) fn new(device: &candle_core::Device) -> Self {
        Self {
            enabled: device.is_cuda(),
            ..Default::default()
        }
    }
}

/// The host side of one eligible decode step, sequence by sequence.
pub(crate) struct DecodeStep<'a> {
    pub slots: &'a [usize],
    /// Cached positions before the step (= the new position's index) per sequence.
    pub pasts: &'a [usize],
    /// `num_codebooks` codes per sequence, codebook offsets added (embedding rows).
    pub codes: &'a [u32],
}

/// Runs the step through a graph of its bucket (capturing it first if needed). `None` when
/// the step is not for this path (graphs off, or a bucket that does not fit the cache).
pub(crate) fn decode(
    model: &HiggsAudioModel,
    step: &DecodeStep<'_>,
    cache: &mut KvCache,
) -> Result<Option<Tensor>, ForwardError> {
    if !cache.graphs.enabled || step.slots.is_empty() {
        return Ok(None);
    }
    let nc = model.config().num_codebooks;
    let max_slot = step.slots.iter().copied().max().unwrap_or(0);
    let rows = (max_slot + 1).next_power_of_two().min(cache.num_slots());
    let longest = step.pasts.iter().copied().max().unwrap_or(0) + 1;
    let keys = longest
        .div_ceil(KEY_BUCKET)
        .saturating_mul(KEY_BUCKET)
        .min(cache.max_len());
    if rows <= max_slot || keys < longest {
        return Ok(None);
    }

    let mut host = padding_input(rows, nc);
    for (i, (&slot, &past)) in step.slots.iter().zip(step.pasts).enumerate() {
        host[slot * nc..(slot + 1) * nc].copy_from_slice(&step.codes[i * nc..(i + 1) * nc]);
        host[rows * nc + slot] = past as u32;
        host[rows * nc + rows + slot] = past as u32;
        host[rows * nc + 2 * rows + slot] = past as u32 + 1;
    }

    let (logits, owned_by_graph) =
        with_graphs(cache, |g, c| run_bucket(model, g, c, &host, rows, keys))?;
    if owned_by_graph {
        cache.graphs.stats.replayed += 1;
    } else {
        cache.graphs.stats.eager += 1;
    }

    // Back to batch order; graph-owned logits are copied out (the next replay rewrites them).
    let identity = step.slots.len() == rows && step.slots.iter().enumerate().all(|(i, &s)| i == s);
    let logits = if identity {
        if owned_by_graph {
            logits.copy()?
        } else {
            logits
        }
    } else {
        let idx: Vec<u32> = step.slots.iter().map(|&s| s as u32).collect();
        let idx = Tensor::from_vec(idx, step.slots.len(), model.device())?;
        logits.index_select(&idx, 0)?
    };
    Ok(Some(logits))
}

/// Captures the graphs of the shortest key bucket for each of `rows` ahead of traffic (each
/// costs one eager step body plus the capture), so that no request pays for them. The runs write
/// nothing to the cache: every row is padding. Returns how many graphs exist afterwards.
pub(crate) fn prepare(
    model: &HiggsAudioModel,
    cache: &mut KvCache,
    rows: &[usize],
) -> Result<usize, ForwardError> {
    if !cache.graphs.enabled {
        return Ok(0);
    }
    let nc = model.config().num_codebooks;
    let keys = KEY_BUCKET.min(cache.max_len());
    for &r in rows {
        let r = r.clamp(1, cache.num_slots());
        let host = padding_input(r, nc);
        with_graphs(cache, |g, c| run_bucket(model, g, c, &host, r, keys))?;
    }
    #[cfg(feature = "cuda")]
    return Ok(cache.graphs.cuda.len());
    #[cfg(not(feature = "cuda"))]
    Ok(0)
}

/// The step input `[codes | positions | write positions | lengths]` with every row padding:
/// code 0, position 0, no write (`u32::MAX`), attending to key 0 only.
fn padding_input(rows: usize, nc: usize) -> Vec<u32> {
    let mut host = vec![0u32; rows * (nc + 3)];
    host[rows * nc + rows..rows * nc + 2 * rows].fill(u32::MAX);
    host[rows * nc + 2 * rows..].fill(1);
    host
}

/// Lends the graph state and the cache tensors at the same time.
fn with_graphs<T>(
    cache: &mut KvCache,
    f: impl FnOnce(&mut DecodeGraphs, &KvCache) -> Result<T, ForwardError>,
) -> Result<T, ForwardError> {
    let mut graphs = std::mem::take(&mut cache.graphs);
    let out = f(&mut graphs, cache);
    cache.graphs = graphs;
    out
}

/// `(logits of all rows, whether they live in graph-owned memory)`: through a graph on CUDA,
/// else an eager run of the fixed-shape body (what a graph would replay).
fn run_bucket(
    model: &HiggsAudioModel,
    graphs: &mut DecodeGraphs,
    cache: &KvCache,
    host: &[u32],
    rows: usize,
    keys: usize,
) -> Result<(Tensor, bool), ForwardError> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = model.device() {
        return cuda::run_bucket(model, dev, graphs, cache, host, rows, keys);
    }
    let _ = graphs; // nothing to keep without CUDA
    let dev = model.device();
    let input = Tensor::from_vec(host.to_vec(), host.len(), dev)?;
    let key_pos = Tensor::arange(0u32, keys as u32, dev)?.to_dtype(candle_core::DType::F32)?;
    Ok((
        model.decode_step_body(&input, rows, keys, &key_pos, cache)?,
        false,
    ))
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::collections::HashMap;

    use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaGraph, DevicePtr};
    use candle_core::{DType, Storage, Tensor};

    use super::{DecodeGraphs, MAX_GRAPHS};
    use crate::error::ForwardError;
    use crate::{HiggsAudioModel, KvCache};

    #[derive(Default)]
    pub(super) struct Graphs {
        entries: HashMap<(usize, usize), Entry>,
        /// `[max_len]` f32 0, 1, 2, ..: key positions for the in-graph mask.
        key_pos: Option<Tensor>,
    }

    impl Graphs {
        pub(crate) fn len(&self) -> usize {
            self.entries.len()
        }
    }

    struct Entry {
        input: Tensor,
        logits: Tensor,
        graph: CudaGraph,
    }

    // SAFETY: a `CudaGraph` is a pair of driver handles that may be used from any thread as long
    // as calls on it are serialized; the entry is only reachable through `&mut KvCache`.
    unsafe impl Send for Entry {}

    fn cuda_err(what: &str, e: impl std::fmt::Display) -> ForwardError {
        ForwardError::Candle(candle_core::Error::Msg(format!("CUDA graph {what}: {e}")))
    }

    /// Copies `host` into the u32 device tensor `t` (stream-ordered, before the graph reads it).
    fn upload(t: &Tensor, host: &[u32]) -> Result<(), ForwardError> {
        let (storage, _) = t.storage_and_layout();
        let Storage::Cuda(cs) = &*storage else {
            return Err(cuda_err("input", "not a CUDA tensor"));
        };
        let slice = cs.as_cuda_slice::<u32>()?;
        if slice.len() < host.len() {
            return Err(cuda_err("input", "buffer too small"));
        }
        let stream = cs.device.cuda_stream();
        let (ptr, _sync) = slice.device_ptr(&stream);
        // SAFETY: `ptr` is a live u32 allocation of at least `host.len()` elements on `stream`;
        // the copy from pageable memory is staged before this call returns.
        unsafe { result::memcpy_htod_async(ptr, host, stream.cu_stream()) }
            .map_err(|e| cuda_err("upload", e))
    }

    pub(super) fn run_bucket(
        model: &HiggsAudioModel,
        dev: &candle_core::CudaDevice,
        graphs: &mut DecodeGraphs,
        cache: &KvCache,
        host: &[u32],
        rows: usize,
        keys: usize,
    ) -> Result<(Tensor, bool), ForwardError> {
        if let Some(e) = graphs.cuda.entries.get(&(rows, keys)) {
            upload(&e.input, host)?;
            e.graph.launch().map_err(|e| cuda_err("launch", e))?;
            return Ok((e.logits.clone(), true));
        }
        let key_pos = match &graphs.cuda.key_pos {
            Some(k) => k.clone(),
            None => {
                let k = Tensor::arange(0u32, cache.max_len() as u32, model.device())?
                    .to_dtype(DType::F32)?;
                graphs.cuda.key_pos = Some(k.clone());
                k
            }
        };
        let input = Tensor::zeros(host.len(), DType::U32, model.device())?;
        upload(&input, host)?;
        // The warm-up run computes this step and fills candle's layout-parameter cache.
        let _htod_cache = dev.enable_cuda_graph_htod_cache();
        let eager = model.decode_step_body(&input, rows, keys, &key_pos, cache)?;
        if graphs.cuda.entries.len() >= MAX_GRAPHS {
            return Ok((eager, false));
        }
        match capture(model, dev, &input, rows, keys, &key_pos, cache) {
            Ok((graph, logits)) => {
                graph.upload().map_err(|e| cuda_err("upload", e))?;
                // Launch it once at once: until a graph with memory nodes has run, the address
                // of its logits is not backed by memory, and freeing it (dropping the cache
                // before any replay) is an invalid free. Replaying the step writes the same
                // K/V values again, and its logits equal the eager ones.
                graph.launch().map_err(|e| cuda_err("launch", e))?;
                graphs.stats.captured += 1;
                tracing::debug!(rows, keys, "captured a decode-step CUDA graph");
                drop(eager);
                let out = logits.clone();
                graphs.cuda.entries.insert(
                    (rows, keys),
                    Entry {
                        input,
                        logits,
                        graph,
                    },
                );
                return Ok((out, true));
            }
            Err(e) => {
                tracing::warn!(
                    "CUDA graph capture failed ({e}); decode steps run without graphs from now on"
                );
                graphs.enabled = false;
            }
        }
        Ok((eager, false))
    }

    fn capture(
        model: &HiggsAudioModel,
        dev: &candle_core::CudaDevice,
        input: &Tensor,
        rows: usize,
        keys: usize,
        key_pos: &Tensor,
        cache: &KvCache,
    ) -> Result<(CudaGraph, Tensor), ForwardError> {
        let stream = dev.cuda_stream();
        // Relaxed: the capture must not fail because another thread touches CUDA meanwhile.
        stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(|e| cuda_err("begin capture", e))?;
        let body = model.decode_step_body(input, rows, keys, key_pos, cache);
        let graph = stream.end_capture(
            sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
        );
        match (body, graph) {
            (Ok(logits), Ok(Some(graph))) => Ok((graph, logits)),
            (Ok(logits), other) => {
                // Its memory belongs to a capture that did not become a graph: never free it.
                std::mem::forget(logits);
                Err(match other {
                    Err(e) => cuda_err("end capture", e),
                    _ => cuda_err("end capture", "no graph was produced"),
                })
            }
            (Err(e), _) => Err(e),
        }
    }
}
