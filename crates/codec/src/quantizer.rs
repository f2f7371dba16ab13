//! Residual vector quantizer: `quantization/vq.py` (`ResidualVectorQuantizer`) and
//! `quantization/core_vq_lsx_version.py` (`ResidualVectorQuantization`, `VectorQuantization`,
//! `EuclideanCodebook`), inference paths only (`encode`, `decode`).

use crate::checkpoint::Weights;
use crate::error::{CodecError, Result};
use crate::layers::linear;
use candle_core::{DType, Module, Tensor, D};

/// One `VectorQuantization` layer: optional projections around a Euclidean codebook.
#[derive(Debug, Clone)]
struct VqLayer {
    /// `None` when `codebook_dim == dim` (the reference then uses `nn.Identity`).
    project_in: Option<candle_nn::Linear>,
    project_out: Option<candle_nn::Linear>,
    /// `[bins, codebook_dim]`.
    embed: Tensor,
    /// `|e|^2` per entry, `[1, bins]`.
    embed_sq: Tensor,
}

impl VqLayer {
    fn load(w: &Weights, prefix: &str, dim: Option<usize>, bins: usize) -> Result<Self> {
        let embed = w.get(&format!("{prefix}._codebook.embed"), &[Some(bins), None])?;
        let (_, cd) = embed.dims2()?;
        let (project_in, project_out) = if w.has(&format!("{prefix}.project_in.weight")) {
            (
                Some(linear(w, &format!("{prefix}.project_in"), Some(cd), dim)?),
                Some(linear(w, &format!("{prefix}.project_out"), dim, Some(cd))?),
            )
        } else {
            (None, None)
        };
        let embed_sq = embed.sqr()?.sum_keepdim(1)?.t()?;
        Ok(Self {
            project_in,
            project_out,
            embed,
            embed_sq,
        })
    }

    fn dim(&self) -> Result<usize> {
        Ok(match &self.project_out {
            Some(p) => p.weight().dim(0)?,
            None => self.embed.dim(1)?,
        })
    }

    /// `[N, dim]` → nearest-entry indices `[N]` (u32).
    fn encode(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let z = match &self.project_in {
            Some(p) => p.forward(x)?,
            None => x.clone(),
        };
        // Same expression and order as EuclideanCodebook.quantize:
        // -(|x|^2 - 2 x.e + |e|^2), max over entries; ties keep the first index.
        let z_sq = z.sqr()?.sum_keepdim(1)?;
        let ze = z.matmul(&self.embed.t()?)?;
        let dist = z_sq
            .broadcast_sub(&(ze * 2.0)?)?
            .broadcast_add(&self.embed_sq)?
            .neg()?;
        dist.argmax(D::Minus1)
    }

    /// Indices `[N]` → `project_out(embed[idx])` `[N, dim]`.
    fn decode(&self, idx: &Tensor) -> candle_core::Result<Tensor> {
        let q = self.embed.index_select(idx, 0)?;
        match &self.project_out {
            Some(p) => p.forward(&q),
            None => Ok(q),
        }
    }
}

/// Per-layer intermediates of [`ResidualVectorQuantizer::encode_traced`] (channels-last).
#[derive(Debug, Clone)]
pub struct RvqTrace {
    /// Residual fed to each layer, `[n_q][B, T, dim]`.
    pub residual_inputs: Vec<Tensor>,
    /// `project_out(embed[code])` of each layer, `[n_q][B, T, dim]`.
    pub quantized: Vec<Tensor>,
}

/// `ResidualVectorQuantizer` with `n_q` layers over a `dim`-wide latent.
#[derive(Debug, Clone)]
pub struct ResidualVectorQuantizer {
    layers: Vec<VqLayer>,
    dim: usize,
    codebook_size: usize,
    codebook_dim: usize,
}

impl ResidualVectorQuantizer {
    /// Loads `n_q` layers, or as many as the checkpoint holds when `n_q` is `None`.
    pub(crate) fn load(
        w: &Weights,
        n_q: Option<usize>,
        bins: usize,
        codebook_dim: Option<usize>,
    ) -> Result<Self> {
        let prefix = |i: usize| format!("quantizer.vq.layers.{i}");
        let n = match n_q {
            Some(n) => n,
            None => (0..)
                .take_while(|i| w.has(&format!("{}._codebook.embed", prefix(*i))))
                .count(),
        };
        if n == 0 {
            return Err(CodecError::MissingTensor {
                name: w.file_name("quantizer.vq.layers.0._codebook.embed"),
                path: w.path().to_path_buf(),
            });
        }
        let first = VqLayer::load(w, &prefix(0), None, bins)?;
        let dim = first.dim()?;
        let cd = first.embed.dim(1)?;
        if let Some(expected) = codebook_dim {
            if expected != cd {
                return Err(CodecError::TensorShape {
                    name: w.file_name(&format!("{}._codebook.embed", prefix(0))),
                    path: w.path().to_path_buf(),
                    expected: format!("[{bins}, {expected}] (config codebook_dim)"),
                    actual: first.embed.dims().to_vec(),
                });
            }
        }
        let mut layers = vec![first];
        for i in 1..n {
            let l = VqLayer::load(w, &prefix(i), Some(dim), bins)?;
            if l.embed.dim(1)? != cd || l.dim()? != dim {
                return Err(CodecError::TensorShape {
                    name: w.file_name(&format!("{}._codebook.embed", prefix(i))),
                    path: w.path().to_path_buf(),
                    expected: format!("[{bins}, {cd}] projecting to {dim}"),
                    actual: l.embed.dims().to_vec(),
                });
            }
            layers.push(l);
        }
        Ok(Self {
            layers,
            dim,
            codebook_size: bins,
            codebook_dim: cd,
        })
    }

    pub fn num_quantizers(&self) -> usize {
        self.layers.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn codebook_size(&self) -> usize {
        self.codebook_size
    }

    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim
    }

    /// `[B, T, dim]` latent → codes `[B, n_q, T]` (u32), plus per-layer intermediates if `trace`.
    pub fn encode_traced(&self, x: &Tensor, trace: bool) -> Result<(Tensor, Option<RvqTrace>)> {
        let (b, t, dim) = x.dims3()?;
        let mut residual = x.reshape((b * t, dim))?;
        let mut codes = Vec::with_capacity(self.layers.len());
        let mut tr = RvqTrace {
            residual_inputs: vec![],
            quantized: vec![],
        };
        for layer in &self.layers {
            let idx = layer.encode(&residual)?;
            let q = layer.decode(&idx)?;
            if trace {
                tr.residual_inputs.push(residual.reshape((b, t, dim))?);
                tr.quantized.push(q.reshape((b, t, dim))?);
            }
            residual = (residual - q)?;
            codes.push(idx.reshape((b, t))?);
        }
        let codes = Tensor::stack(&codes, 1)?;
        Ok((codes, trace.then_some(tr)))
    }

    /// Codes `[B, n_q, T]` (any integer dtype) → `sum_i project_out_i(embed_i[codes_i])`, `[B, T, dim]`.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let (b, n_q, t) = codes.dims3()?;
        if n_q != self.layers.len() {
            return Err(CodecError::Input(format!(
                "codes have {n_q} codebooks, the quantizer has {}",
                self.layers.len()
            )));
        }
        let codes = codes.to_dtype(DType::U32)?;
        let mut out: Option<Tensor> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let idx = codes.narrow(1, i, 1)?.flatten_all()?;
            let q = layer.decode(&idx)?;
            out = Some(match out {
                Some(acc) => (acc + q)?,
                None => q,
            });
        }
        let out = out.ok_or_else(|| CodecError::Input("quantizer has no layers".into()))?;
        Ok(out.reshape((b, t, self.dim))?)
    }
}
