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

/// One engine's device in a `--devices` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineDevice {
    Cpu,
    Cuda(usize),
}

impl std::fmt::Display for EngineDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// `--devices`: where the engines run, one engine per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicesArg {
    /// `auto`: every visible GPU on a CUDA build that sees one, else one CPU engine.
    Auto,
    /// `cuda` / `all`: every visible GPU (an error without one).
    AllGpus,
    /// `cpu`, `cuda:0,cuda:1`, `0,1`, `cpu,cpu` (several CPU engines, for tests).
    List(Vec<EngineDevice>),
}

/// Parses a `--devices` value (clap's value parser).
pub fn parse_devices(s: &str) -> Result<DevicesArg, String> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "auto" => return Ok(DevicesArg::Auto),
        "cuda" | "all" | "gpu" => return Ok(DevicesArg::AllGpus),
        _ => {}
    }
    let mut list = Vec::new();
    for item in s.split(',').map(str::trim) {
        let lower = item.to_ascii_lowercase();
        let ordinal = lower.strip_prefix("cuda:").unwrap_or(&lower);
        let d = if lower == "cpu" {
            EngineDevice::Cpu
        } else if let Ok(n) = ordinal.parse::<usize>() {
            EngineDevice::Cuda(n)
        } else {
            return Err(format!(
                "{item:?} is not a device: use cpu, cuda:N (or N), a comma-separated list of them, cuda/all (every visible GPU) or auto"
            ));
        };
        if d != EngineDevice::Cpu && list.contains(&d) {
            return Err(format!("{d} is listed twice: one engine per GPU"));
        }
        list.push(d);
    }
    let cpus = list.iter().filter(|d| **d == EngineDevice::Cpu).count();
    if cpus > 0 && cpus < list.len() {
        // Requests are spread by load, not speed: a CPU engine would take its share and serve it
        // a hundred times slower.
        return Err("CPU and GPU engines cannot be mixed".into());
    }
    Ok(DevicesArg::List(list))
}

/// The engines' devices from `--devices` (wins when given) and `--device`: without `--devices`,
/// `--device cpu` is one CPU engine, `--device cuda` every visible GPU, `--device auto` every
/// visible GPU or else one CPU engine. `visible` GPUs are counted by [`visible_gpus`].
pub fn engine_devices(
    devices: Option<&DevicesArg>,
    device: DeviceArg,
    visible: usize,
) -> Result<Vec<EngineDevice>> {
    let all_gpus = |why: &str| {
        if visible == 0 {
            if cfg!(feature = "cuda") {
                bail!("{why}: no GPU is visible (CUDA_VISIBLE_DEVICES?)");
            }
            bail!("{why}: this binary was built without CUDA support; rebuild with `--features cuda` or use --devices cpu");
        }
        Ok((0..visible).map(EngineDevice::Cuda).collect())
    };
    let list = match (devices, device) {
        (None, DeviceArg::Cpu) => vec![EngineDevice::Cpu],
        (None, DeviceArg::Cuda) => all_gpus("--device cuda")?,
        (None | Some(DevicesArg::Auto), DeviceArg::Auto) if visible == 0 => {
            vec![EngineDevice::Cpu]
        }
        (None | Some(DevicesArg::Auto), DeviceArg::Auto) => all_gpus("auto")?,
        (Some(DevicesArg::Auto), d) => return engine_devices(None, d, visible),
        (Some(DevicesArg::AllGpus), _) => all_gpus("--devices cuda")?,
        (Some(DevicesArg::List(l)), _) => l.clone(),
    };
    let gpus = list.iter().any(|d| *d != EngineDevice::Cpu);
    match device {
        DeviceArg::Cpu if gpus => bail!("--device cpu contradicts --devices {}", join(&list)),
        DeviceArg::Cuda if !gpus => bail!("--device cuda contradicts --devices {}", join(&list)),
        _ => {}
    }
    for d in &list {
        if let EngineDevice::Cuda(n) = d {
            if *n >= visible {
                if visible == 0 && !cfg!(feature = "cuda") {
                    bail!("{d}: this binary was built without CUDA support; rebuild with `--features cuda` or use --devices cpu");
                }
                bail!("{d}: only {visible} GPU(s) are visible");
            }
        }
    }
    Ok(list)
}

/// `cpu,cpu` / `cuda:0,cuda:1`.
pub fn join(list: &[EngineDevice]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// GPUs this process sees (0 on a build without CUDA, or when the driver does not answer).
pub fn visible_gpus() -> usize {
    #[cfg(feature = "cuda")]
    if let Ok(n) = candle_core::cuda_backend::cudarc::driver::CudaContext::device_count() {
        return usize::try_from(n).unwrap_or(0);
    }
    0
}

/// The candle device of one engine.
pub fn engine_device(d: EngineDevice) -> Result<Device> {
    match d {
        EngineDevice::Cpu => Ok(Device::Cpu),
        EngineDevice::Cuda(n) => select(DeviceArg::Cuda, n),
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should panic with its location
mod tests {
    use super::*;
    use EngineDevice::{Cpu, Cuda};

    #[test]
    fn devices_lists_parse_and_bad_ones_say_why() {
        assert_eq!(parse_devices("auto"), Ok(DevicesArg::Auto));
        assert_eq!(parse_devices("all"), Ok(DevicesArg::AllGpus));
        assert_eq!(parse_devices("CUDA"), Ok(DevicesArg::AllGpus));
        assert_eq!(parse_devices("cpu"), Ok(DevicesArg::List(vec![Cpu])));
        assert_eq!(
            parse_devices("cpu,cpu"),
            Ok(DevicesArg::List(vec![Cpu, Cpu]))
        );
        assert_eq!(
            parse_devices("cuda:0, cuda:3"),
            Ok(DevicesArg::List(vec![Cuda(0), Cuda(3)]))
        );
        assert_eq!(
            parse_devices("1,0"),
            Ok(DevicesArg::List(vec![Cuda(1), Cuda(0)]))
        );
        assert!(parse_devices("cuda:0,cuda:0")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_devices("cpu,cuda:0").unwrap_err().contains("mixed"));
        assert!(parse_devices("tpu").unwrap_err().contains("\"tpu\""));
        assert!(parse_devices("").is_err());
    }

    #[test]
    fn devices_win_over_device_and_the_default_takes_every_gpu() {
        let list = |s: &str| parse_devices(s).unwrap();
        // No --devices: --device decides; auto = every visible GPU, else one CPU engine.
        assert_eq!(engine_devices(None, DeviceArg::Auto, 0).unwrap(), [Cpu]);
        assert_eq!(
            engine_devices(None, DeviceArg::Auto, 2).unwrap(),
            [Cuda(0), Cuda(1)]
        );
        assert_eq!(engine_devices(None, DeviceArg::Cpu, 4).unwrap(), [Cpu]);
        assert_eq!(
            engine_devices(None, DeviceArg::Cuda, 3).unwrap(),
            [Cuda(0), Cuda(1), Cuda(2)]
        );
        assert!(engine_devices(None, DeviceArg::Cuda, 0).is_err());
        assert_eq!(
            engine_devices(Some(&list("cuda:1")), DeviceArg::Auto, 2).unwrap(),
            [Cuda(1)]
        );
        assert_eq!(
            engine_devices(Some(&list("cpu,cpu,cpu")), DeviceArg::Auto, 2).unwrap(),
            [Cpu, Cpu, Cpu]
        );
        assert_eq!(
            engine_devices(Some(&list("all")), DeviceArg::Cuda, 2).unwrap(),
            [Cuda(0), Cuda(1)]
        );
        assert_eq!(
            engine_devices(Some(&list("auto")), DeviceArg::Cpu, 2).unwrap(),
            [Cpu]
        );
        let e = engine_devices(Some(&list("cuda:2")), DeviceArg::Auto, 2).unwrap_err();
        assert!(e.to_string().contains("only 2 GPU"), "{e}");
        let e = engine_devices(Some(&list("cuda:0")), DeviceArg::Cpu, 2).unwrap_err();
        assert!(e.to_string().contains("contradicts"), "{e}");
        assert!(engine_devices(Some(&list("cpu")), DeviceArg::Cuda, 2).is_err());
        assert_eq!(join(&[Cuda(0), Cuda(1)]), "cuda:0,cuda:1");
    }
}
