//! Device and dtype selection: the one place that knows about the `cuda` feature.

use anyhow::{bail, Result};
use candle_core::{DType, Device};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA if this binary was built with the `cuda` feature and a GPU is present, else CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DtypeArg {
    /// bf16 on GPU, f32 on CPU.
    Auto,
    F32,
    Bf16,
}

pub fn select(device: DeviceArg, ordinal: usize) -> Result<Device> {
    let dev = select_inner(device, ordinal)?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = &dev {
        // cudarc creates two CUDA events per allocation to order uses across streams. All our
        // GPU work is issued on candle's one stream per thread and cudarc never enters its
        // multi-stream mode, so the events are never waited on: pure per-tensor host cost.
        // SAFETY: no tensor is shared between streams that run concurrently.
        unsafe { d.disable_event_tracking() };
    }
    Ok(dev)
}

fn select_inner(device: DeviceArg, ordinal: usize) -> Result<Device> {
    match device {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda => {
            if !cfg!(feature = "cuda") {
                bail!("this binary was built without CUDA support; rebuild with `--features cuda` or use --device cpu");
            }
            Ok(Device::new_cuda(ordinal)?)
        }
        DeviceArg::Auto => {
            if cfg!(feature = "cuda") {
                if let Ok(d) = Device::new_cuda(ordinal) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
    }
}

pub fn dtype(arg: DtypeArg, device: &Device) -> DType {
    match arg {
        DtypeArg::F32 => DType::F32,
        DtypeArg::Bf16 => DType::BF16,
        DtypeArg::Auto if device.is_cuda() => DType::BF16,
        DtypeArg::Auto => DType::F32,
    }
}

/// Process-wide numerics that follow from the model dtype. With a bf16 model on CUDA the f32
/// GEMMs (the codec's convolutions) may use TF32 tensor cores: the model's own bf16 rounding is
/// ~100x coarser than TF32's, and the codec's im2col GEMMs are the engine's biggest cost at high
/// concurrency. `HIGGS_CODEC_TF32=0` keeps them in full f32; f32 models always do.
pub fn configure_numerics(device: &Device, model_dtype: DType) {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        let tf32 = model_dtype == DType::BF16
            && std::env::var("HIGGS_CODEC_TF32").map_or(true, |v| v != "0");
        candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
        tracing::debug!(tf32, "f32 GEMMs on CUDA");
    }
    #[cfg(not(feature = "cuda"))]
    let _ = (device, model_dtype);
}

/// The device the codec is loaded on. On CUDA: the same GPU through a second candle device with
/// its own stream and cuBLAS handle, so the engine's audio worker decodes concurrently with the
/// model's steps (a candle device's cuBLAS handle must not be used from two threads at once).
/// `HIGGS_CODEC_STREAM=0` shares the model's device (the engine then decodes inline).
pub fn codec_device(model_device: &Device) -> Result<Device> {
    #[cfg(feature = "cuda")]
    if let candle_core::DeviceLocation::Cuda { gpu_id } = model_device.location() {
        if std::env::var("HIGGS_CODEC_STREAM").map_or(true, |v| v != "0") {
            let dev = Device::new_cuda_with_stream(gpu_id)?;
            if let Device::Cuda(d) = &dev {
                // SAFETY: as in `select`; the codec's tensors never meet the model's.
                unsafe { d.disable_event_tracking() };
            }
            return Ok(dev);
        }
    }
    Ok(model_device.clone())
}

/// Waits for queued GPU work so timings measure it (no-op on CPU).
pub fn sync(device: &Device) -> Result<()> {
    device.synchronize()?;
    Ok(())
}
