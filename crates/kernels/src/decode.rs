//! Kernels of the model's decode step (`cuda/decode.cu`): fewer, fatter graph nodes. Each node of
//! a CUDA graph costs a few microseconds even when its work is tiny, so the step body fuses RoPE +
//! KV-cache write (`decode_qkv`), scale + mask + softmax (`decode_softmax`) and residual add +
//! RMSNorm (`add_rmsnorm`); `kv_write_rows` writes every prefill piece of a step in one launch.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

use crate::op::{self, by_float_dtype, offsets, tensor_view, Ptx};

const PTX: Ptx = Ptx {
    name: "higgs_decode",
    source: include_str!("cuda/decode.ptx"),
};

/// `[rows, (nh + 2 nkv) hd]` q|k|v rows -> rotated q `[rows, nh hd]`; rotated k and v are written
/// into `k_cache` / `v_cache` (`[slots >= rows, nkv, max_len, hd]`) at `write_pos[r]` (u32,
/// `u32::MAX` = no write).
#[allow(clippy::too_many_arguments)]
pub fn decode_qkv(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    write_pos: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    nh: usize,
    nkv: usize,
    hd: usize,
) -> Result<Tensor> {
    let op = Qkv {
        write_pos: write_pos.clone(),
        k_cache: k_cache.clone(),
        v_cache: v_cache.clone(),
        nh,
        nkv,
        hd,
    };
    qkv.apply_op3_no_bwd(cos, sin, &op)
}

/// Softmax over the last dim of `scores` (`[rows, ..heads.., keys]`) of `scale * s`, keys at or
/// past `lens[r]` (u32 `[rows]`) of each row excluded (probability 0).
pub fn decode_softmax(scores: &Tensor, lens: &Tensor, scale: f32) -> Result<Tensor> {
    scores.apply_op2_no_bwd(lens, &Softmax { scale })
}

struct Qkv {
    write_pos: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    nh: usize,
    nkv: usize,
    hd: usize,
}

impl candle_core::CustomOp3 for Qkv {
    fn name(&self) -> &'static str {
        "higgs-decode-qkv"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        op::cuda_only("decode_qkv")
    }

    fn cuda_fwd(
        &self,
        qkv: &CudaStorage,
        ql: &Layout,
        cos: &CudaStorage,
        cl: &Layout,
        sin: &CudaStorage,
        sl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (nh, nkv, hd) = (self.nh, self.nkv, self.hd);
        let (rows, width) = ql.shape().dims2()?;
        if width != (nh + 2 * nkv) * hd {
            candle_core::bail!("decode_qkv: {width} columns for {nh}+2x{nkv} heads of {hd}")
        }
        let (_, kv_heads, max_len, khd) = self.k_cache.dims4()?;
        if kv_heads != nkv || khd != hd || self.k_cache.dim(0)? < rows {
            candle_core::bail!("decode_qkv: cache shape {:?}", self.k_cache.dims())
        }
        let (q0, q1) = offsets(ql, "qkv")?;
        let (c0, c1) = offsets(cl, "cos")?;
        let (s0, s1) = offsets(sl, "sin")?;
        let (wp_guard, wp_l) = self.write_pos.storage_and_layout();
        let wp = tensor_view!(wp_guard, wp_l, u32, "write_pos");
        let (k_guard, k_l) = self.k_cache.storage_and_layout();
        let (v_guard, v_l) = self.v_cache.storage_and_layout();
        let dev = qkv.device().clone();
        let n = rows * nh * hd;
        let total = (rows * (nh + 2 * nkv) * hd / 2) as u32;
        let cfg = LaunchConfig::for_num_elems(total);
        let args = [rows, nh, nkv, hd, max_len].map(|x| x as u32);
        let out = by_float_dtype!(qkv.dtype(), "decode_qkv", |T, kernel| {
            let kc = tensor_view!(k_guard, k_l, T, "k_cache");
            let vc = tensor_view!(v_guard, v_l, T, "v_cache");
            let src = qkv.as_cuda_slice::<T>()?.slice(q0..q1);
            let c = cos.as_cuda_slice::<T>()?.slice(c0..c1);
            let s = sin.as_cuda_slice::<T>()?.slice(s0..s1);
            let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
            // SAFETY: every element of `out` is written by the kernel.
            let out = unsafe { dev.alloc::<T>(n)? };
            let mut b = func.builder();
            b.arg(&src);
            b.arg(&c);
            b.arg(&s);
            b.arg(&wp);
            b.arg(&out);
            // The caches are written in place (as candle's own scatter does): the kernel only
            // touches positions `write_pos[r]` of slots `0..rows`, which no other tensor aliases.
            b.arg(&kc);
            b.arg(&vc);
            for a in &args {
                b.arg(a);
            }
            // SAFETY: argument types and order match `decode_qkv_*` in decode.cu.
            unsafe { b.launch(cfg) }.w()?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, (rows, nh * hd).into()))
    }
}

struct Softmax {
    scale: f32,
}

impl candle_core::CustomOp2 for Softmax {
    fn name(&self) -> &'static str {
        "higgs-decode-softmax"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        op::cuda_only("decode_softmax")
    }

    fn cuda_fwd(
        &self,
        scores: &CudaStorage,
        sl: &Layout,
        lens: &CudaStorage,
        ll: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dims = sl.shape().dims();
        let (Some(&rows), Some(&keys)) = (dims.first(), dims.last()) else {
            candle_core::bail!("decode_softmax: scores must have a row and a key dim")
        };
        let score_rows = sl.shape().elem_count() / keys.max(1);
        if rows == 0 || !score_rows.is_multiple_of(rows) || ll.shape().elem_count() != rows {
            candle_core::bail!(
                "decode_softmax: {dims:?} scores for {:?} lengths",
                ll.dims()
            )
        }
        let (s0, s1) = offsets(sl, "scores")?;
        let (l0, l1) = offsets(ll, "lens")?;
        let dev = scores.device().clone();
        let lens = lens.as_cuda_slice::<u32>()?.slice(l0..l1);
        let cfg = LaunchConfig {
            grid_dim: (score_rows as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let heads_per_row = (score_rows / rows) as u32;
        let keys32 = keys as u32;
        let out = by_float_dtype!(scores.dtype(), "decode_softmax", |T, kernel| {
            let src = scores.as_cuda_slice::<T>()?.slice(s0..s1);
            let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
            // SAFETY: every element of `out` is written by the kernel.
            let out = unsafe { dev.alloc::<T>(score_rows * keys)? };
            let mut b = func.builder();
            b.arg(&src);
            b.arg(&out);
            b.arg(&lens);
            b.arg(&self.scale);
            b.arg(&heads_per_row);
            b.arg(&keys32);
            // SAFETY: argument types and order match `decode_softmax_*` in decode.cu.
            unsafe { b.launch(cfg) }.w()?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, sl.shape().clone()))
    }
}

/// `(x + y, rmsnorm(x + y) * w)` for `[rows, hidden]` x and y in one kernel.
pub fn add_rmsnorm(x: &Tensor, y: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let out = x.apply_op3_no_bwd(y, w, &AddRmsNorm { eps })?;
    Ok((out.get(0)?, out.get(1)?))
}

struct AddRmsNorm {
    eps: f32,
}

impl candle_core::CustomOp3 for AddRmsNorm {
    fn name(&self) -> &'static str {
        "higgs-add-rmsnorm"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        op::cuda_only("add_rmsnorm")
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        y: &CudaStorage,
        yl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, cols) = xl.shape().dims2()?;
        if yl.shape().dims() != [rows, cols] || wl.shape().dims() != [cols] {
            candle_core::bail!(
                "add_rmsnorm: shapes {:?} + {:?}, weight {:?}",
                xl.dims(),
                yl.dims(),
                wl.dims()
            )
        }
        let (x0, x1) = offsets(xl, "x")?;
        let (y0, y1) = offsets(yl, "y")?;
        let (w0, w1) = offsets(wl, "w")?;
        let dev = x.device().clone();
        // One block per row: with one or a few rows the row's latency is the kernel's, so use
        // as many threads as the row has elements (up to 1024, whole warps).
        let threads = cols.div_ceil(32).clamp(1, 32) as u32 * 32;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let (rows32, cols32) = (rows as u32, cols as u32);
        let out = by_float_dtype!(x.dtype(), "add_rmsnorm", |T, kernel| {
            let xs = x.as_cuda_slice::<T>()?.slice(x0..x1);
            let ys = y.as_cuda_slice::<T>()?.slice(y0..y1);
            let ws = w.as_cuda_slice::<T>()?.slice(w0..w1);
            let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
            // SAFETY: every element of `out` is written by the kernel.
            let out = unsafe { dev.alloc::<T>(2 * rows * cols)? };
            let mut b = func.builder();
            b.arg(&xs);
            b.arg(&ys);
            b.arg(&ws);
            b.arg(&out);
            b.arg(&rows32);
            b.arg(&cols32);
            b.arg(&self.eps);
            // SAFETY: argument types and order match `add_rmsnorm_*` in decode.cu.
            unsafe { b.launch(cfg) }.w()?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, (2, rows, cols).into()))
    }
}

/// Writes rows `rows[r]` of `src` (`[N, kv_heads * head_dim]`) into `cache` (a layer's
/// `[slots, kv_heads, max_len, head_dim]` K or V cache, in place) at cache rows
/// `dst_rows[r * kv_heads + g]` of its `[slots * kv_heads * max_len, head_dim]` view: one launch
/// for every prefill piece of a step (candle's scatter walks the scattered rows serially).
pub fn kv_write_rows(cache: &Tensor, src: &Tensor, rows: &Tensor, dst_rows: &Tensor) -> Result<()> {
    cache.inplace_op3(src, dst_rows, &KvWriteRows { rows: rows.clone() })
}

struct KvWriteRows {
    rows: Tensor,
}

impl candle_core::InplaceOp3 for KvWriteRows {
    fn name(&self) -> &'static str {
        "higgs-kv-write-rows"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        op::cuda_only("kv_write_rows")
    }

    fn cuda_fwd(
        &self,
        cache: &mut CudaStorage,
        cl: &Layout,
        src: &CudaStorage,
        sl: &Layout,
        dst: &CudaStorage,
        dl: &Layout,
    ) -> Result<()> {
        let (_, nkv, _, hd) = cl.shape().dims4()?;
        let (_, kv_dim) = sl.shape().dims2()?;
        let m = self.rows.elem_count();
        if kv_dim != nkv * hd || dl.shape().elem_count() != m * nkv {
            candle_core::bail!(
                "kv_write_rows: src {:?}, {m} rows, {:?} destinations for cache {:?}",
                sl.dims(),
                dl.dims(),
                cl.dims()
            )
        }
        let (c0, c1) = offsets(cl, "cache")?;
        let (s0, s1) = offsets(sl, "src")?;
        let (d0, d1) = offsets(dl, "dst_rows")?;
        let (r_guard, r_l) = self.rows.storage_and_layout();
        let rows = tensor_view!(r_guard, r_l, u32, "rows");
        let dev = src.device().clone();
        let dst_rows = dst.as_cuda_slice::<u32>()?.slice(d0..d1);
        let cfg = LaunchConfig::for_num_elems((m * nkv * hd) as u32);
        let args = [m, nkv, hd].map(|x| x as u32);
        if src.dtype() != cache.dtype() {
            candle_core::bail!(
                "kv_write_rows: src {:?}, cache {:?}",
                src.dtype(),
                cache.dtype()
            )
        }
        by_float_dtype!(src.dtype(), "kv_write_rows", |T, kernel| {
            let s = src.as_cuda_slice::<T>()?.slice(s0..s1);
            let mut c = cache.as_cuda_slice_mut::<T>()?.slice_mut(c0..c1);
            let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
            let mut b = func.builder();
            b.arg(&s);
            b.arg(&rows);
            b.arg(&dst_rows);
            b.arg(&mut c);
            for a in &args {
                b.arg(a);
            }
            // SAFETY: argument types and order match `kv_write_rows_*` in decode.cu; every
            // destination row is < slots * kv_heads * max_len (checked when it was built).
            unsafe { b.launch(cfg) }.w()?;
        });
        Ok(())
    }
}
