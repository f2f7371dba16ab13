//! Semantic encoder: `audio_processing/semantic_module.py` (`Encoder`, `EncoderBlock`,
//! `ResidualUnit`) with the reference defaults (strides (1,1), dilations (1,1), kernel 3, ELU).

use crate::checkpoint::Weights;
use crate::error::Result;
use crate::layers::{Conv1d, Conv1dConfig};
use candle_core::{Module, Tensor};

const P: &str = "encoder_semantic";

/// `y = conv2(ELU(conv1(ELU(x))))`, returns `x + y`; both convs without bias.
#[derive(Debug, Clone)]
struct ResidualUnit {
    conv1: Conv1d,
    conv2: Conv1d,
}

impl Module for ResidualUnit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.conv1.forward(&x.elu(1.0)?)?;
        let y = self.conv2.forward(&y.elu(1.0)?)?;
        x + y
    }
}

#[derive(Debug, Clone)]
struct EncoderBlock {
    units: Vec<ResidualUnit>,
    conv: Conv1d,
}

/// `semantic_module.Encoder`: conv k3 (no bias), then blocks of residual units + conv k3 (bias).
#[derive(Debug, Clone)]
pub struct SemanticEncoder {
    conv: Conv1d,
    blocks: Vec<EncoderBlock>,
}

impl SemanticEncoder {
    pub(crate) fn load(w: &Weights, in_ch: usize) -> Result<Self> {
        let conv = Conv1d::load(
            w,
            &format!("{P}.conv.conv"),
            Conv1dConfig {
                in_ch: Some(in_ch),
                bias: false,
                ..Default::default()
            },
        )?;
        let mut ch = conv.out_channels();
        let bp = |b: usize| format!("{P}.conv_blocks.{b}");
        let n_blocks = (0..)
            .take_while(|b| w.has_weight(&format!("{}.conv.conv", bp(*b))))
            .count();
        let mut blocks = Vec::with_capacity(n_blocks);
        for b in 0..n_blocks {
            let up = |r: usize| format!("{}.res_units.{r}", bp(b));
            let n_units = (0..)
                .take_while(|r| w.has_weight(&format!("{}.conv1.conv", up(*r))))
                .count();
            let mut units = Vec::with_capacity(n_units);
            for r in 0..n_units {
                let c = Some(ch);
                units.push(ResidualUnit {
                    conv1: Conv1d::load(
                        w,
                        &format!("{}.conv1.conv", up(r)),
                        Conv1dConfig {
                            out_ch: c,
                            in_ch: c,
                            bias: false,
                            ..Default::default()
                        },
                    )?,
                    conv2: Conv1d::load(
                        w,
                        &format!("{}.conv2", up(r)),
                        Conv1dConfig {
                            out_ch: c,
                            in_ch: c,
                            kernel: Some(1),
                            bias: false,
                            ..Default::default()
                        },
                    )?,
                });
            }
            let conv = Conv1d::load(
                w,
                &format!("{}.conv.conv", bp(b)),
                Conv1dConfig {
                    in_ch: Some(ch),
                    ..Default::default()
                },
            )?;
            ch = conv.out_channels();
            blocks.push(EncoderBlock { units, conv });
        }
        Ok(Self { conv, blocks })
    }

    pub fn out_channels(&self) -> usize {
        self.blocks
            .last()
            .map_or(self.conv.out_channels(), |b| b.conv.out_channels())
    }
}

impl Module for SemanticEncoder {
    /// `[B, S, T]` → `[B, S', T]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.conv.forward(x)?;
        for b in &self.blocks {
            for u in &b.units {
                x = u.forward(&x)?;
            }
            x = b.conv.forward(&x)?;
        }
        Ok(x)
    }
}
