//! Fused `Snake1d` (`cuda/snake.cu`): one pass over `[B, C, T]` (f32 or bf16, maths in f32)
//! instead of five elementwise kernels.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorage, WrapErr};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

use crate::op::{self, by_float_dtype, Ptx};

const PTX: Ptx = Ptx {
    name: "higgs_codec_snake",
    source: include_str!("cuda/snake.ptx"),
};

/// `x + inv_alpha[c] * sin(alpha[c] * x)^2` for contiguous f32 or bf16 `x` `[B, C, T]` and `[C]`
/// f32 alphas; the result has `x`'s dtype.
pub fn snake(x: &Tensor, alpha: &Tensor, inv_alpha: &Tensor) -> Result<Tensor> {
    x.apply_op3_no_bwd(alpha, inv_alpha, &FusedSnake)
}

struct FusedSnake;

impl candle_core::CustomOp3 for FusedSnake {
    fn name(&self) -> &'static str {
        "higgs-snake"
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
        op::cuda_only("the fused Snake kernel")
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        alpha: &CudaStorage,
        la: &Layout,
        inv_alpha: &CudaStorage,
        li: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (_, c, t) = lx.shape().dims3()?;
        let n = lx.shape().elem_count();
        let al = op::view::<f32>(alpha, la, "snake alpha")?;
        let ia = op::view::<f32>(inv_alpha, li, "snake inv_alpha")?;
        if al.len() != c || ia.len() != c {
            candle_core::bail!("snake: alpha has {} values for {c} channels", al.len())
        }
        let dev = x.device().clone();
        let (c, t, n64) = (c as u32, t as u32, n as u64);
        let out = by_float_dtype!(x.dtype(), "snake", |T, kernel| {
            let xs = op::view::<T>(x, lx, "snake x")?;
            let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
            // SAFETY: every element is written by the kernel below.
            let out = unsafe { dev.alloc::<T>(n)? };
            let mut b = func.builder();
            b.arg(&xs);
            b.arg(&al);
            b.arg(&ia);
            b.arg(&out);
            b.arg(&c);
            b.arg(&t);
            b.arg(&n64);
            // SAFETY: argument types match `snake_f32` / `snake_bf16` in snake.cu.
            unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        });
        Ok((out, lx.shape().clone()))
    }
}
