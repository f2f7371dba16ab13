//! What every custom op here needs: its PTX module, contiguous views of its operands, the
//! f32/bf16 kernel pick, and the CPU refusal.

use candle_core::cuda_backend::cudarc::driver::CudaView;
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{Layout, Result};

/// One embedded PTX file, loaded once per device under `name`
/// (`dev.get_or_load_custom_func(kernel, PTX.name, PTX.source)`).
pub(crate) struct Ptx {
    pub name: &'static str,
    pub source: &'static str,
}

/// `(start, end)` of a contiguous layout; kernels index their operands densely.
pub(crate) fn offsets(l: &Layout, what: &str) -> Result<(usize, usize)> {
    l.contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} must be contiguous")))
}

/// The elements of a contiguous operand.
pub(crate) fn view<'a, T: CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    let (o0, o1) = offsets(l, what)?;
    Ok(s.as_cuda_slice::<T>()?.slice(o0..o1))
}

/// The error of an op's `cpu_fwd`.
pub(crate) fn cuda_only<T>(op: &str) -> Result<T> {
    candle_core::bail!("{op} is CUDA-only")
}

/// The contiguous view of a tensor an op carries besides its operands (`$guard` keeps the
/// storage borrowed while the view lives).
macro_rules! tensor_view {
    ($guard:expr, $layout:expr, $ty:ty, $what:expr) => {{
        let candle_core::Storage::Cuda(cs) = &*$guard else {
            candle_core::bail!("{}: not a CUDA tensor", $what)
        };
        $crate::op::view::<$ty>(cs, $layout, $what)?
    }};
}
pub(crate) use tensor_view;

/// Runs `$body` with `$T` the element type of the f32 or bf16 `$dtype` and `$kernel` the name
/// `<$base>_f32` / `<$base>_bf16` (how every kernel here is instantiated); other dtypes fail.
macro_rules! by_float_dtype {
    ($dtype:expr, $base:literal, |$T:ident, $kernel:ident| $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                let $kernel = concat!($base, "_f32");
                $body
            }
            candle_core::DType::BF16 => {
                type $T = half::bf16;
                let $kernel = concat!($base, "_bf16");
                $body
            }
            other => candle_core::bail!("{}: unsupported dtype {other:?}", $base),
        }
    };
}
pub(crate) use by_float_dtype;
