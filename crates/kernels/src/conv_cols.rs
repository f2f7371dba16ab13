//! Column matrix of a stride-1 1-D convolution (`cuda/conv_cols.cu`), `[B, rows, L]`, for one
//! strided-batched GEMM with the weight `[C_out, rows]` that lands in `[B, C_out, L]`; optionally
//! with the preceding `Snake1d` computed on the fly, and a row of ones for the bias.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor};

use crate::op::{self, by_float_dtype, Ptx};

const PTX: Ptx = Ptx {
    name: "higgs_codec_conv_cols",
    source: include_str!("cuda/conv_cols.ptx"),
};

/// The geometry of the convolution whose columns are built (stride 1, one group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvCols {
    pub kernel: usize,
    pub dilation: usize,
    /// Zeros on each side.
    pub padding: usize,
    /// Rows of the result: at least `C * kernel` (+ 1 with `bias_row`); the rest are zeros.
    pub rows: usize,
    /// Row `C * kernel` is all ones (the GEMM then adds the weight's bias column).
    pub bias_row: bool,
}

impl ConvCols {
    /// Output length for `t` input samples; `None` when the input is shorter than the kernel.
    pub fn output_len(&self, t: usize) -> Option<usize> {
        (t + 2 * self.padding).checked_sub(self.dilation * (self.kernel - 1))
    }
}

/// `cols[b, c*K + tap, l] = f(x[b, c, l + tap*dilation - padding])` (0 outside the input) for
/// contiguous f32 or bf16 `x` `[B, C, T]`, in `x`'s dtype; `f` is the identity or, with `snake`
/// (`[C]` f32 alpha and 1/alpha as the fused Snake kernel takes them), Snake1d.
pub fn conv_cols(x: &Tensor, snake: Option<(&Tensor, &Tensor)>, spec: ConvCols) -> Result<Tensor> {
    match snake {
        None => x.apply_op1_no_bwd(&Cols { spec }),
        Some((alpha, inv_alpha)) => x.apply_op3_no_bwd(alpha, inv_alpha, &Cols { spec }),
    }
}

struct Cols {
    spec: ConvCols,
}

/// The launch shared by both ops: checks, output shape, grid and the scalar arguments.
struct Launch {
    shape: Shape,
    elems: usize,
    cfg: LaunchConfig,
    /// channels, t_in, l_out, kernel, dilation, padding, rows, bias_row
    args: [u32; 8],
}

impl Cols {
    fn launch(&self, lx: &Layout) -> Result<Launch> {
        let ConvCols {
            kernel,
            dilation,
            padding,
            rows,
            bias_row,
        } = self.spec;
        let (b, c, t) = lx.shape().dims3()?;
        let Some(l_out) = self.spec.output_len(t).filter(|l| *l > 0) else {
            candle_core::bail!(
                "conv_cols: {t} samples are shorter than kernel {kernel} × dilation {dilation}"
            )
        };
        if kernel == 0 || rows < c * kernel + usize::from(bias_row) {
            candle_core::bail!("conv_cols: {rows} rows cannot hold {c} channels × {kernel} taps")
        }
        let fits = |v: usize| u32::try_from(v).ok();
        let (Some(l32), Some(rows32), Some(b32)) = (fits(l_out), fits(rows), fits(b)) else {
            candle_core::bail!("conv_cols: [{b}, {rows}, {l_out}] is too large")
        };
        if rows32 > 65_535 || b32 > 65_535 {
            candle_core::bail!("conv_cols: {rows} rows × batch {b} exceed the launch grid")
        }
        let u = |v: usize, what: &str| {
            fits(v)
                .ok_or_else(|| candle_core::Error::Msg(format!("conv_cols: {what} {v} too large")))
        };
        Ok(Launch {
            shape: Shape::from((b, rows, l_out)),
            elems: b * rows * l_out,
            cfg: LaunchConfig {
                grid_dim: (l32.div_ceil(256), rows32, b32),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            },
            args: [
                u(c, "channels")?,
                u(t, "length")?,
                l32,
                u(kernel, "kernel")?,
                u(dilation, "dilation")?,
                u(padding, "padding")?,
                rows32,
                u32::from(bias_row),
            ],
        })
    }
}

impl Cols {
    /// Launches the plain or (with `alphas`) the Snake kernel for `x`'s dtype.
    fn run(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        alphas: Option<(CudaView<'_, f32>, CudaView<'_, f32>)>,
    ) -> Result<(CudaStorage, Shape)> {
        let l = self.launch(lx)?;
        if let Some((al, ia)) = &alphas {
            let c = l.args[0] as usize;
            if al.len() != c || ia.len() != c {
                candle_core::bail!("conv_cols: alpha has {} values for {c} channels", al.len())
            }
        }
        let alphas = alphas.as_ref();
        let out = match alphas {
            None => by_float_dtype!(x.dtype(), "conv_cols", |T, kernel| {
                launch_typed::<T>(kernel, x, lx, None, &l)?
            }),
            Some(a) => by_float_dtype!(x.dtype(), "snake_conv_cols", |T, kernel| {
                launch_typed::<T>(kernel, x, lx, Some(a), &l)?
            }),
        };
        Ok((out, l.shape))
    }
}

/// One launch of `kernel` (`[snake_]conv_cols_{f32,bf16}`): x, [alpha, inv_alpha,] cols, scalars.
fn launch_typed<T: CudaDType + DeviceRepr>(
    kernel: &str,
    x: &CudaStorage,
    lx: &Layout,
    alphas: Option<&(CudaView<'_, f32>, CudaView<'_, f32>)>,
    l: &Launch,
) -> Result<CudaStorage> {
    let dev = x.device().clone();
    let xs = op::view::<T>(x, lx, "conv_cols x")?;
    let func = dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)?;
    // SAFETY: the grid covers every element of [B, rows, L]; each is written once.
    let out = unsafe { dev.alloc::<T>(l.elems)? };
    let mut b = func.builder();
    b.arg(&xs);
    if let Some((al, ia)) = alphas {
        b.arg(al);
        b.arg(ia);
    }
    b.arg(&out);
    for a in &l.args {
        b.arg(a);
    }
    // SAFETY: argument types and order match the four entry points of conv_cols.cu.
    unsafe { b.launch(l.cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev))
}

impl candle_core::CustomOp1 for Cols {
    fn name(&self) -> &'static str {
        "higgs-conv-cols"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        op::cuda_only("the convolution column kernel")
    }

    fn cuda_fwd(&self, x: &CudaStorage, lx: &Layout) -> Result<(CudaStorage, Shape)> {
        self.run(x, lx, None)
    }
}

impl candle_core::CustomOp3 for Cols {
    fn name(&self) -> &'static str {
        "higgs-snake-conv-cols"
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
        op::cuda_only("the Snake + convolution column kernel")
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
        let al = op::view::<f32>(alpha, la, "snake alpha")?;
        let ia = op::view::<f32>(inv_alpha, li, "snake inv_alpha")?;
        self.run(x, lx, Some((al, ia)))
    }
}
