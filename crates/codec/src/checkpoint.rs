//! Checkpoint reading for both layouts: `load_higgs_audio_tokenizer` (higgs_audio_tokenizer.py;
//! `torch.load(model.pth)`) and transformers' `convert_higgs_audio_v2_tokenizer_to_hf.py` renames.
//!
//! Model code always asks for tensors by their **legacy** names; for the transformers-native layout
//! [`legacy_to_hf`] maps each name to the file's own (the `VarBuilder::rename_f` idea). Weight norm
//! is folded on the fly, whichever of the three spellings the file uses.

use crate::config::CheckpointLayout;
use crate::error::{CodecError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// All tensors of one checkpoint file (on the CPU, float32) plus the rules to find them.
pub(crate) struct Weights {
    tensors: HashMap<String, Tensor>,
    path: PathBuf,
    layout: CheckpointLayout,
    /// Number of DAC blocks: the legacy indices of the last snake/conv depend on it.
    n_blocks: usize,
    device: Device,
}

impl Weights {
    /// Reads `dir/model.pth` or `dir/model.safetensors` (per `layout`).
    pub fn load(
        dir: &Path,
        layout: CheckpointLayout,
        n_blocks: usize,
        device: &Device,
    ) -> Result<Self> {
        let path = dir.join(layout.weights_file());
        if !path.is_file() {
            return Err(CodecError::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "weights file missing"),
            });
        }
        let ckpt_err = |e: candle_core::Error| CodecError::Checkpoint {
            path: path.clone(),
            msg: e.to_string(),
        };
        let raw: Vec<(String, Tensor)> = match layout {
            CheckpointLayout::Legacy => candle_core::pickle::read_all(&path).map_err(ckpt_err)?,
            CheckpointLayout::Hf => candle_core::safetensors::load(&path, &Device::Cpu)
                .map_err(ckpt_err)?
                .into_iter()
                .collect(),
        };
        if raw.is_empty() {
            return Err(CodecError::Checkpoint {
                path,
                msg: "no tensors found (not a state dict?)".into(),
            });
        }
        Self::from_tensors(raw, path, layout, n_blocks, device)
    }

    /// Wraps in-memory tensors (used by the random-checkpoint generator and tests).
    pub fn from_tensors(
        raw: impl IntoIterator<Item = (String, Tensor)>,
        path: PathBuf,
        layout: CheckpointLayout,
        n_blocks: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for (name, t) in raw {
            // The model runs in float32 (the reference never casts); integer buffers are unused.
            let t = match t.dtype() {
                DType::F32 => t,
                DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
                _ => continue,
            };
            tensors.insert(name, t);
        }
        Ok(Self {
            tensors,
            path,
            layout,
            n_blocks,
            device: device.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name `legacy` has in this file.
    pub fn file_name(&self, legacy: &str) -> String {
        match self.layout {
            CheckpointLayout::Legacy => legacy.to_string(),
            CheckpointLayout::Hf => legacy_to_hf(legacy, self.n_blocks),
        }
    }

    pub fn has(&self, legacy: &str) -> bool {
        self.tensors.contains_key(&self.file_name(legacy))
    }

    fn raw(&self, legacy: &str) -> Result<&Tensor> {
        let name = self.file_name(legacy);
        self.tensors.get(&name).ok_or(CodecError::MissingTensor {
            name,
            path: self.path.clone(),
        })
    }

    fn check(&self, legacy: &str, t: &Tensor, expected: &[Option<usize>]) -> Result<()> {
        let dims = t.dims();
        let ok = dims.len() == expected.len()
            && dims
                .iter()
                .zip(expected)
                .all(|(d, e)| e.is_none_or(|e| e == *d));
        if ok {
            Ok(())
        } else {
            Err(CodecError::TensorShape {
                name: self.file_name(legacy),
                path: self.path.clone(),
                expected: fmt_dims(expected),
                actual: dims.to_vec(),
            })
        }
    }

    /// A tensor whose shape matches `expected` (`None` = any size), on the model device.
    pub fn get(&self, legacy: &str, expected: &[Option<usize>]) -> Result<Tensor> {
        let t = self.raw(legacy)?;
        self.check(legacy, t, expected)?;
        Ok(t.to_device(&self.device)?)
    }

    /// The effective `weight` of a (possibly weight-normed) layer `prefix`, checked against
    /// `expected`. Accepts a plain `weight`, legacy `weight_g`/`weight_v`, or
    /// `parametrizations.weight.original0`/`original1`.
    pub fn weight(&self, prefix: &str, expected: &[Option<usize>]) -> Result<Tensor> {
        let plain = format!("{prefix}.weight");
        if self.has(&plain) {
            return self.get(&plain, expected);
        }
        let pairs = [
            (format!("{prefix}.weight_g"), format!("{prefix}.weight_v")),
            (
                format!("{prefix}.parametrizations.weight.original0"),
                format!("{prefix}.parametrizations.weight.original1"),
            ),
        ];
        for (g_name, v_name) in pairs {
            if self.has(&g_name) && self.has(&v_name) {
                let v = self.raw(&v_name)?;
                self.check(&v_name, v, expected)?;
                let g = self.raw(&g_name)?;
                // g keeps the size of the weight-norm dim and is 1 elsewhere (torch `norm_except_dim`).
                let g_ok = g.rank() == v.rank()
                    && g.dims()
                        .iter()
                        .zip(v.dims())
                        .all(|(gd, vd)| *gd == 1 || gd == vd);
                if !g_ok {
                    let exp: Vec<Option<usize>> = v.dims().iter().map(|d| Some(*d)).collect();
                    return Err(CodecError::TensorShape {
                        name: self.file_name(&g_name),
                        path: self.path.clone(),
                        expected: format!("{} with 1 on all but the norm dim", fmt_dims(&exp)),
                        actual: g.dims().to_vec(),
                    });
                }
                let w = fold_weight_norm(g, v)?;
                return Ok(w.to_device(&self.device)?);
            }
        }
        Err(CodecError::MissingTensor {
            name: format!("{} (or its weight_g/weight_v pair)", self.file_name(&plain)),
            path: self.path.clone(),
        })
    }

    /// Whether layer `prefix` has a weight in any spelling.
    pub fn has_weight(&self, prefix: &str) -> bool {
        self.has(&format!("{prefix}.weight"))
            || self.has(&format!("{prefix}.weight_v"))
            || self.has(&format!("{prefix}.parametrizations.weight.original1"))
    }
}

/// `w = g * v / ||v||`, the norm taken over every dim where `g` has size 1
/// (torch `_weight_norm(v, g, dim)`; dim 0 for convs and transposed convs, 2 for HuBERT's pos conv).
pub(crate) fn fold_weight_norm(g: &Tensor, v: &Tensor) -> Result<Tensor> {
    let mut sq = v.sqr()?;
    for (i, gd) in g.dims().iter().enumerate() {
        if *gd == 1 {
            sq = sq.sum_keepdim(i)?;
        }
    }
    let norm = sq.sqrt()?;
    Ok(v.broadcast_mul(&g.broadcast_div(&norm)?)?)
}

fn fmt_dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|x| x.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Legacy tensor name → transformers-native name (reference §1.5). `n_blocks` is the number of
/// DAC strides (5 for the real model): it fixes which top-level index is the final snake/conv.
pub fn legacy_to_hf(name: &str, n_blocks: usize) -> String {
    fn unit(j: &str) -> &str {
        match j {
            "0" => "snake1",
            "1" => "conv1",
            "2" => "snake2",
            "3" => "conv2",
            other => other,
        }
    }
    let parts: Vec<&str> = name.split('.').collect();
    let join = |head: String, tail: &[&str]| {
        if tail.is_empty() {
            head
        } else {
            format!("{head}.{}", tail.join("."))
        }
    };
    match parts.as_slice() {
        [top @ ("encoder" | "decoder_2"), kind @ ("block" | "model"), b, rest @ ..]
            if (*top == "encoder") == (*kind == "block") =>
        {
            let root = if *top == "encoder" {
                "acoustic_encoder"
            } else {
                "acoustic_decoder"
            };
            let Ok(b) = b.parse::<usize>() else {
                return name.to_string();
            };
            if b == 0 {
                return join(format!("{root}.conv1"), rest);
            }
            if b == n_blocks + 1 {
                return join(format!("{root}.snake1"), rest);
            }
            if b == n_blocks + 2 {
                return join(format!("{root}.conv2"), rest);
            }
            let blk = format!("{root}.block.{}", b - 1);
            let enc = *top == "encoder";
            match rest {
                ["block", r, "block", j, tail @ ..] => {
                    let Ok(r) = r.parse::<usize>() else {
                        return name.to_string();
                    };
                    // Encoder: residual units are block.0..2; decoder: block.2..4.
                    let idx = if enc { r + 1 } else { r.saturating_sub(1) };
                    join(format!("{blk}.res_unit{idx}.{}", unit(j)), tail)
                }
                ["block", "3", tail @ ..] if enc => join(format!("{blk}.snake1"), tail),
                ["block", "4", tail @ ..] if enc => join(format!("{blk}.conv1"), tail),
                ["block", "0", tail @ ..] if !enc => join(format!("{blk}.snake1"), tail),
                ["block", "1", tail @ ..] if !enc => join(format!("{blk}.conv_t1"), tail),
                _ => name.to_string(),
            }
        }
        ["encoder_semantic" | "decoder_semantic", ..] => name
            .replace(".conv.conv.", ".conv.")
            .replace(".conv1.conv.", ".conv1.")
            .replace(".conv2.conv.", ".conv2."),
        ["fc_prior", tail @ ..] => join("fc".into(), tail),
        ["fc_post1", tail @ ..] => join("fc1".into(), tail),
        ["fc_post2", tail @ ..] => join("fc2".into(), tail),
        ["quantizer", "vq", "layers", n, tail @ ..] => {
            let tail: Vec<&str> = tail
                .iter()
                .map(|t| if *t == "_codebook" { "codebook" } else { t })
                .collect();
            join(format!("quantizer.quantizers.{n}"), &tail)
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::legacy_to_hf;

    #[test]
    fn renames_follow_the_converter() {
        let cases = [
            ("encoder.block.0.weight", "acoustic_encoder.conv1.weight"),
            ("encoder.block.6.alpha", "acoustic_encoder.snake1.alpha"),
            ("encoder.block.7.bias", "acoustic_encoder.conv2.bias"),
            (
                "encoder.block.2.block.1.block.3.weight",
                "acoustic_encoder.block.1.res_unit2.conv2.weight",
            ),
            (
                "encoder.block.5.block.3.alpha",
                "acoustic_encoder.block.4.snake1.alpha",
            ),
            (
                "encoder.block.1.block.4.weight",
                "acoustic_encoder.block.0.conv1.weight",
            ),
            ("decoder_2.model.0.weight", "acoustic_decoder.conv1.weight"),
            ("decoder_2.model.6.alpha", "acoustic_decoder.snake1.alpha"),
            ("decoder_2.model.7.weight", "acoustic_decoder.conv2.weight"),
            (
                "decoder_2.model.3.block.0.alpha",
                "acoustic_decoder.block.2.snake1.alpha",
            ),
            (
                "decoder_2.model.3.block.1.bias",
                "acoustic_decoder.block.2.conv_t1.bias",
            ),
            (
                "decoder_2.model.1.block.4.block.0.alpha",
                "acoustic_decoder.block.0.res_unit3.snake1.alpha",
            ),
            (
                "encoder_semantic.conv.conv.weight",
                "encoder_semantic.conv.weight",
            ),
            (
                "encoder_semantic.conv_blocks.1.res_units.0.conv1.conv.weight",
                "encoder_semantic.conv_blocks.1.res_units.0.conv1.weight",
            ),
            (
                "encoder_semantic.conv_blocks.1.res_units.0.conv2.weight",
                "encoder_semantic.conv_blocks.1.res_units.0.conv2.weight",
            ),
            (
                "decoder_semantic.conv_blocks.0.conv.conv.bias",
                "decoder_semantic.conv_blocks.0.conv.bias",
            ),
            (
                "decoder_semantic.conv2.conv.weight",
                "decoder_semantic.conv2.weight",
            ),
            ("fc_post1.weight", "fc1.weight"),
            ("fc_prior.weight", "fc.weight"),
            ("fc_post2.bias", "fc2.bias"),
            (
                "quantizer.vq.layers.3._codebook.embed",
                "quantizer.quantizers.3.codebook.embed",
            ),
            (
                "quantizer.vq.layers.3.project_in.weight",
                "quantizer.quantizers.3.project_in.weight",
            ),
            (
                "semantic_model.encoder.layer_norm.weight",
                "semantic_model.encoder.layer_norm.weight",
            ),
        ];
        for (legacy, hf) in cases {
            assert_eq!(legacy_to_hf(legacy, 5), hf, "{legacy}");
        }
    }
}
