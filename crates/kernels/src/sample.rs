//! Fused sampling of logits rows (`cuda/sample.cu`): temperature, top-k, top-p and the
//! inverse-CDF draw (or argmax) of every row in one launch, the host sampler's maths and order.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor};

use crate::op::{self, Ptx};

const PTX: Ptx = Ptx {
    name: "higgs_sample",
    source: include_str!("cuda/sample.ptx"),
};

/// Widest row the kernel sorts in shared memory (`SORT_N` in sample.cu).
pub const SAMPLE_MAX_COLS: usize = 2048;

/// One id per row of `logits` (`[rows, cols]` f32, `cols <= SAMPLE_MAX_COLS`) with per-row
/// `params` (`[rows, 4]` f32: temperature (<= 0 greedy), top_k (0 off), top_p (>= 1 off), the
/// uniform draw) -> `[rows]` u32.
pub fn sample_rows(logits: &Tensor, params: &Tensor) -> Result<Tensor> {
    logits.apply_op2_no_bwd(params, &FusedSample)
}

struct FusedSample;

impl candle_core::CustomOp2 for FusedSample {
    fn name(&self) -> &'static str {
        "higgs-sample"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        op::cuda_only("the fused sampling kernel")
    }

    fn cuda_fwd(
        &self,
        s: &CudaStorage,
        l: &Layout,
        ps: &CudaStorage,
        pl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, cols) = l.shape().dims2()?;
        if cols > SAMPLE_MAX_COLS {
            candle_core::bail!("sample_rows: {cols} columns exceed {SAMPLE_MAX_COLS}")
        }
        if pl.shape().dims2()? != (rows, 4) {
            candle_core::bail!(
                "sample_rows: params must be [{rows}, 4], got {:?}",
                pl.shape()
            )
        }
        if s.dtype() != DType::F32 || ps.dtype() != DType::F32 {
            candle_core::bail!("sample_rows: logits and params must be f32")
        }
        let dev = s.device().clone();
        let x = op::view::<f32>(s, l, "sample_rows logits")?;
        let p = op::view::<f32>(ps, pl, "sample_rows params")?;
        let func = dev.get_or_load_custom_func("sample_rows_f32", PTX.name, PTX.source)?;
        // SAFETY: the kernel writes one id per row.
        let out = unsafe { dev.alloc::<u32>(rows)? };
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (1024, 1, 1),
            shared_mem_bytes: 0,
        };
        let (rows32, cols32) = (rows as i32, cols as i32);
        let mut b = func.builder();
        b.arg(&x);
        b.arg(&p);
        b.arg(&out);
        b.arg(&rows32);
        b.arg(&cols32);
        // SAFETY: argument types match `sample_rows_f32` in sample.cu.
        unsafe { b.launch(cfg) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), rows.into()))
    }
}
