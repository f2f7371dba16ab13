//! Fused SwiGLU (`cuda/swiglu.cu`) over the `[rows, 2I]` output of the gate|up GEMM.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

use crate::op::{self, by_float_dtype, Ptx};

const PTX: Ptx = Ptx {
    name: "higgs_swiglu",
    source: include_str!("cuda/swiglu.ptx"),
};

/// `silu(gu[:, ..I]) * gu[:, I..]` for `gu` `[rows, 2I]` (f32 or bf16) -> `[rows, I]`.
pub fn swiglu(gu: &Tensor, inter: usize) -> Result<Tensor> {
    gu.apply_op1_no_bwd(&FusedSwiglu { inter })
}

struct FusedSwiglu {
    inter: usize,
}

impl candle_core::CustomOp1 for FusedSwiglu {
    fn name(&self) -> &'static str {
        "higgs-swiglu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        op::cuda_only("the fused SwiGLU kernel")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (rows, two_i) = l.shape().dims2()?;
        let inter = self.inter;
        if two_i != 2 * inter {
            candle_core::bail!("swiglu: {two_i} columns for intermediate size {inter}")
        }
        let n = rows * inter;
        let dev = s.device().clone();
        let cfg = LaunchConfig::for_num_elems(n as u32);
        let (inter32, n64) = (inter as u32, n as u64);
        let out = by_float_dtype!(s.dtype(), "swiglu", |T, kernel| {
            let src = op::view::<T>(s, l, "swiglu input")?;
            let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
            // SAFETY: every element is written by the kernel.
            let out = unsafe { dev.alloc::<T>(n)? };
            let mut b = func.builder();
            b.arg(&src);
            b.arg(&out);
            b.arg(&inter32);
            b.arg(&n64);
            // SAFETY: argument types match `swiglu_*` in swiglu.cu.
            unsafe { b.launch(cfg) }.w()?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, (rows, inter).into()))
    }
}
