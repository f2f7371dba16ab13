//! DAC acoustic encoder and decoder: `descriptaudiocodec/dac/model/dac.py` (`ResidualUnit`,
//! `EncoderBlock`, `Encoder`, `DecoderBlock`, `Decoder`), as instantiated by `HiggsAudioTokenizer`
//! (`dac2.Encoder(64, ratios, D)`, `dac2.Decoder(D, 1024, ratios)`). Widths come from the weights.

use crate::checkpoint::Weights;
use crate::error::{CodecError, Result};
use crate::layers::{Conv1d, Conv1dConfig, ConvTranspose1d, Pad, Snake1d};
use crate::options::CodecOptions;
use candle_core::{DType, Device, Module, Tensor};

/// Dilations of the three residual units of every DAC block (fixed by the architecture).
pub(crate) const RESIDUAL_DILATIONS: [usize; 3] = [1, 3, 9];

/// Snake → dilated conv k7 → Snake → conv k1, added to the (centre-cropped) input.
#[derive(Debug, Clone)]
struct ResidualUnit {
    snake1: Snake1d,
    conv1: Conv1d,
    snake2: Snake1d,
    conv2: Conv1d,
    dilation: usize,
}

impl ResidualUnit {
    fn load(
        w: &Weights,
        prefix: &str,
        ch: usize,
        dilation: usize,
        opts: &CodecOptions,
    ) -> Result<Self> {
        let p = |i: usize| format!("{prefix}.block.{i}");
        Ok(Self {
            snake1: Snake1d::load(w, &p(0), ch, opts)?,
            conv1: Conv1d::load(
                w,
                &p(1),
                Conv1dConfig {
                    out_ch: Some(ch),
                    in_ch: Some(ch),
                    dilation,
                    ..Default::default()
                },
            )?
            .with_fused(opts.fused_conv)?,
            snake2: Snake1d::load(w, &p(2), ch, opts)?,
            conv2: Conv1d::load(
                w,
                &p(3),
                Conv1dConfig {
                    out_ch: Some(ch),
                    in_ch: Some(ch),
                    ..Default::default()
                },
            )?
            .with_direct_pointwise(opts.direct_pointwise)?
            .with_fused(opts.fused_conv)?,
            dilation,
        })
    }

    fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            snake1: self.snake1.to_dtype(dtype)?,
            conv1: self.conv1.to_dtype(dtype)?,
            snake2: self.snake2.to_dtype(dtype)?,
            conv2: self.conv2.to_dtype(dtype)?,
            dilation: self.dilation,
        })
    }

    /// One-sided reach of this unit, in samples at its own rate.
    fn radius(&self) -> usize {
        (self.conv1.kernel_size() - 1) / 2 * self.dilation + (self.conv2.kernel_size() - 1) / 2
    }

    fn forward_marked(&self, x: &Tensor, mark: &mut Mark<'_>) -> candle_core::Result<Tensor> {
        let y = snake_then_conv(&self.snake1, &self.conv1, x, mark)?;
        mark(DecoderOp::DilatedConv)?;
        let y = snake_then_conv(&self.snake2, &self.conv2, &y, mark)?;
        mark(DecoderOp::PointwiseConv)?;
        let (_, _, lx) = x.dims3()?;
        let (_, _, ly) = y.dims3()?;
        // dac.py crops the skip when the branch is shorter (never with "same" padding).
        let pad = (lx - ly) / 2;
        let x = if pad > 0 {
            x.narrow(2, pad, ly)?
        } else {
            x.clone()
        };
        let out = (x + y)?;
        mark(DecoderOp::ResidualAdd)?;
        Ok(out)
    }
}

impl ResidualUnit {
    /// Input samples a streaming step keeps: both convs' reach, each side.
    fn history(&self) -> usize {
        2 * (self.conv1.padding() + self.conv2.padding())
    }

    /// One streaming step: `buf` = [`Self::history`] previous inputs + `n` new ones → the `n`
    /// outputs `history / 2` samples behind the newest input (no padding: the history is it).
    fn step(&self, buf: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.conv1.conv(buf, Some(&self.snake1), 0)?;
        let y = self.conv2.conv(&y, Some(&self.snake2), 0)?;
        let (_, _, n) = y.dims3()?;
        buf.narrow(2, self.history() / 2, n)? + y
    }
}

impl Module for ResidualUnit {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_marked(x, &mut |_| Ok(()))
    }
}

/// `conv(snake(x))`, marking the Snake: after it, or before the conv when the conv computes it
/// inside its column kernel ([`Conv1d::fuses_snake`]; the conv's mark then includes it).
fn snake_then_conv(
    snake: &Snake1d,
    conv: &Conv1d,
    x: &Tensor,
    mark: &mut Mark<'_>,
) -> candle_core::Result<Tensor> {
    if conv.fuses_snake(snake, x) {
        mark(DecoderOp::Snake)?;
        return conv.forward_snake(snake, x);
    }
    let y = snake.forward(x)?;
    mark(DecoderOp::Snake)?;
    conv.forward(&y)
}

fn load_units(
    w: &Weights,
    prefix: &str,
    first: usize,
    ch: usize,
    opts: &CodecOptions,
) -> Result<Vec<ResidualUnit>> {
    RESIDUAL_DILATIONS
        .iter()
        .enumerate()
        .map(|(i, d)| ResidualUnit::load(w, &format!("{prefix}.block.{}", first + i), ch, *d, opts))
        .collect()
}

/// `EncoderBlock`: 3 residual units on `half` channels, Snake, strided conv (k 2s, pad ceil(s/2)).
#[derive(Debug, Clone)]
struct EncoderBlock {
    units: Vec<ResidualUnit>,
    snake: Snake1d,
    conv: Conv1d,
}

impl EncoderBlock {
    fn load(
        w: &Weights,
        prefix: &str,
        half: usize,
        stride: usize,
        opts: &CodecOptions,
    ) -> Result<Self> {
        let units = load_units(w, prefix, 0, half, opts)?;
        let n = units.len();
        let snake = Snake1d::load(w, &format!("{prefix}.block.{n}"), half, opts)?;
        let conv = Conv1d::load(
            w,
            &format!("{prefix}.block.{}", n + 1),
            Conv1dConfig {
                in_ch: Some(half),
                kernel: Some(2 * stride),
                stride,
                pad: Pad::Fixed(stride.div_ceil(2)),
                ..Default::default()
            },
        )?;
        Ok(Self { units, snake, conv })
    }
}

impl Module for EncoderBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for u in &self.units {
            x = u.forward(&x)?;
        }
        self.conv.forward(&self.snake.forward(&x)?)
    }
}

/// DAC `Encoder`: conv k7 → blocks → Snake → conv k3 to the latent size `D`.
#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: Conv1d,
    blocks: Vec<EncoderBlock>,
    snake: Snake1d,
    conv_out: Conv1d,
}

impl Encoder {
    pub(crate) fn load(w: &Weights, ratios: &[usize], opts: &CodecOptions) -> Result<Self> {
        let n = ratios.len();
        let conv_in = Conv1d::load(
            w,
            "encoder.block.0",
            Conv1dConfig {
                in_ch: Some(1),
                ..Default::default()
            },
        )?;
        let mut ch = conv_in.out_channels();
        let mut blocks = Vec::with_capacity(n);
        for (i, s) in ratios.iter().enumerate() {
            let b = EncoderBlock::load(w, &format!("encoder.block.{}", i + 1), ch, *s, opts)?;
            ch = b.conv.out_channels();
            blocks.push(b);
        }
        let snake = Snake1d::load(w, &format!("encoder.block.{}", n + 1), ch, opts)?;
        let conv_out = Conv1d::load(
            w,
            &format!("encoder.block.{}", n + 2),
            Conv1dConfig {
                in_ch: Some(ch),
                ..Default::default()
            },
        )?;
        Ok(Self {
            conv_in,
            blocks,
            snake,
            conv_out,
        })
    }

    /// Frames produced for `n` input samples (`None`/0 when too short).
    pub fn output_len(&self, n: usize) -> Option<usize> {
        let mut l = self.conv_in.output_len(n)?;
        for b in &self.blocks {
            l = b.conv.output_len(l)?;
        }
        self.conv_out.output_len(l)
    }

    /// Latent channels `D`.
    pub fn latent_dim(&self) -> usize {
        self.conv_out.out_channels()
    }
}

impl Module for Encoder {
    /// `[B, 1, N]` audio → `[B, D, frames]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.conv_in.forward(x)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        self.conv_out.forward(&self.snake.forward(&x)?)
    }
}

/// `DecoderBlock`: Snake → ConvTranspose1d (k 2s, stride s, pad ceil(s/2), output_padding s%2)
/// → 3 residual units.
#[derive(Debug, Clone)]
struct DecoderBlock {
    snake: Snake1d,
    conv_t: ConvTranspose1d,
    units: Vec<ResidualUnit>,
    stride: usize,
}

impl DecoderBlock {
    fn load(
        w: &Weights,
        prefix: &str,
        in_ch: usize,
        stride: usize,
        opts: &CodecOptions,
    ) -> Result<Self> {
        let snake = Snake1d::load(w, &format!("{prefix}.block.0"), in_ch, opts)?;
        let conv_t = ConvTranspose1d::load(
            w,
            &format!("{prefix}.block.1"),
            in_ch,
            2 * stride,
            stride,
            stride.div_ceil(2),
            stride % 2,
            opts,
        )?;
        let units = load_units(w, prefix, 2, conv_t.out_channels(), opts)?;
        Ok(Self {
            snake,
            conv_t,
            units,
            stride,
        })
    }

    fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            snake: self.snake.to_dtype(dtype)?,
            conv_t: self.conv_t.to_dtype(dtype)?,
            units: self
                .units
                .iter()
                .map(|u| u.to_dtype(dtype))
                .collect::<Result<_>>()?,
            stride: self.stride,
        })
    }

    fn forward_marked(&self, x: &Tensor, mark: &mut Mark<'_>) -> candle_core::Result<Tensor> {
        let x = self.snake.forward(x)?;
        mark(DecoderOp::Snake)?;
        let mut x = self.conv_t.forward(&x)?;
        mark(DecoderOp::ConvTranspose)?;
        for u in &self.units {
            x = u.forward_marked(&x, mark)?;
        }
        Ok(x)
    }
}

/// The kinds of work in a decoder forward, for [`Decoder::forward_marked`] (a profiler syncs
/// the device at each mark and charges the time since the previous one to the op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecoderOp {
    /// Codes → latent: the quantizer's codebook lookups and `fc_post2` (before the decoder).
    Quantizer,
    /// dtype casts in and out of [`Decoder::dtype`].
    Cast,
    /// The first k7 conv (latent → widest channels).
    ConvIn,
    Snake,
    /// The up-sampling transposed convs.
    ConvTranspose,
    /// The dilated k7 convs of the residual units.
    DilatedConv,
    /// The k1 convs of the residual units.
    PointwiseConv,
    ResidualAdd,
    /// The last k7 conv to one channel.
    ConvOut,
}

impl DecoderOp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Quantizer => "quantizer_fc_post2",
            Self::Cast => "cast",
            Self::ConvIn => "conv_in",
            Self::Snake => "snake",
            Self::ConvTranspose => "conv_transpose",
            Self::DilatedConv => "dilated_conv_k7",
            Self::PointwiseConv => "pointwise_conv_k1",
            Self::ResidualAdd => "residual_add",
            Self::ConvOut => "conv_out",
        }
    }
}

/// Called after each op of a decoder forward, in order.
pub type Mark<'a> = dyn FnMut(DecoderOp) -> candle_core::Result<()> + 'a;

/// Where the rows of a [`Decoder::step`] lie in their streams: the decoder zero-pads every
/// layer's input before a stream's first sample and after its last, and a step must too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepSpan {
    /// Frame index (in the stream) of the step's first new frame.
    pub first_frame: usize,
    /// The stream's length in frames once it is known: frames from there on are padding, and
    /// the steps that carry them flush the stream's delayed tail.
    pub total_frames: Option<usize>,
}

/// What a batch of streams carries from one [`Decoder::step`] to the next: the last input
/// samples of every layer that looks back (`[B, C, history]` each, in layer order; zeros at a
/// stream's start, which is the decoder's own zero padding). Rows are streams.
#[derive(Debug, Clone)]
pub struct DecoderState {
    history: Vec<Tensor>,
}

impl DecoderState {
    /// Streams in the batch.
    pub fn batch(&self) -> usize {
        self.history.first().map_or(0, |h| h.dims()[0])
    }

    /// The states of `parts`' streams as one batch, in order (streams at different points can
    /// step together: each row carries its own history).
    pub fn cat(parts: &[&DecoderState]) -> Result<DecoderState> {
        let Some(first) = parts.first() else {
            return Err(CodecError::Input("no decoder states to join".into()));
        };
        let history = (0..first.history.len())
            .map(|i| {
                let layer: Vec<&Tensor> = parts.iter().map(|p| &p.history[i]).collect();
                Tensor::cat(&layer, 0)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(DecoderState { history })
    }

    /// Writes `from`'s streams into rows `rows` of this batch (in place: a pool of stream
    /// states that steps gather from with [`Self::rows`] and write back to).
    pub fn set_rows(&self, rows: &[usize], from: &DecoderState) -> Result<()> {
        if from.history.len() != self.history.len() || from.batch() != rows.len() {
            return Err(CodecError::Input(format!(
                "{} rows from a state of {} streams",
                rows.len(),
                from.batch()
            )));
        }
        let Some(first) = self.history.first() else {
            return Ok(());
        };
        let idx: Vec<u32> = rows.iter().map(|r| *r as u32).collect();
        let idx = Tensor::from_vec(idx, (rows.len(), 1, 1), first.device())?;
        for (pool, src) in self.history.iter().zip(&from.history) {
            if src.elem_count() == 0 {
                continue;
            }
            let at = idx.broadcast_as(src.shape())?.contiguous()?;
            pool.scatter_set(&at, src, 0)?;
        }
        Ok(())
    }

    /// Streams `rows` of this batch, in that order.
    pub fn rows(&self, rows: &[usize]) -> Result<DecoderState> {
        let Some(first) = self.history.first() else {
            return Ok(self.clone());
        };
        let idx: Vec<u32> = rows.iter().map(|r| *r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), first.device())?;
        let history = self
            .history
            .iter()
            .map(|h| h.index_select(&idx, 0))
            .collect::<candle_core::Result<_>>()?;
        Ok(DecoderState { history })
    }
}

/// Zeroes, per row, the samples of `x` (`[B, C, L]`, sample `q` of row `b` at stream time
/// `first_frame * rate - delay + q`) that lie before the stream's start or past its end.
fn mask_outside(
    x: Tensor,
    spans: &[StepSpan],
    rate: usize,
    delay: usize,
) -> candle_core::Result<Tensor> {
    let (b, _, l) = x.dims3()?;
    if spans.len() != b {
        candle_core::bail!("{} spans for a batch of {b}", spans.len())
    }
    let (mut lo, mut hi) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for s in spans {
        let start = s.first_frame * rate;
        // Valid q: delay - start <= q < total * rate + delay - start.
        lo.push((delay.saturating_sub(start)).min(l));
        hi.push(
            s.total_frames
                .map_or(l, |t| (t * rate + delay).saturating_sub(start).min(l)),
        );
    }
    if lo.iter().all(|v| *v == 0) && hi.iter().all(|v| *v == l) {
        return Ok(x);
    }
    let dev = x.device();
    let as_col = |v: Vec<usize>| {
        Tensor::from_vec(
            v.into_iter().map(|v| v as f32).collect::<Vec<_>>(),
            (b, 1, 1),
            dev,
        )
    };
    let q = Tensor::arange(0f32, l as f32, dev)?.reshape((1, 1, l))?;
    let keep = (q.broadcast_ge(&as_col(lo)?)?.to_dtype(x.dtype())?
        * q.broadcast_lt(&as_col(hi)?)?.to_dtype(x.dtype())?)?;
    x.broadcast_mul(&keep)
}

/// Appends `x` to a layer's history: returns `[history | x]` and keeps its last `history`
/// samples for the next step.
fn with_history(h: &mut Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
    let keep = h.dims()[2];
    let buf = Tensor::cat(&[&*h, x], 2)?;
    let len = buf.dims()[2];
    // A copy, so the state does not pin the whole buffer.
    *h = buf.narrow(2, len - keep, keep)?.contiguous()?;
    Ok(buf)
}

/// DAC `Decoder`: conv k7 → up-blocks → Snake → conv k7 to one channel (no tanh).
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: Conv1d,
    blocks: Vec<DecoderBlock>,
    snake: Snake1d,
    conv_out: Conv1d,
    /// [`CodecOptions::decoder_dtype`]: weights and activations; input and output are f32.
    dtype: DType,
}

impl Decoder {
    pub(crate) fn load(
        w: &Weights,
        ratios: &[usize],
        latent_dim: usize,
        opts: &CodecOptions,
    ) -> Result<Self> {
        let n = ratios.len();
        let conv_in = Conv1d::load(
            w,
            "decoder_2.model.0",
            Conv1dConfig {
                in_ch: Some(latent_dim),
                ..Default::default()
            },
        )?
        .with_fused(opts.fused_conv)?;
        let mut ch = conv_in.out_channels();
        let mut blocks = Vec::with_capacity(n);
        for (i, s) in ratios.iter().enumerate() {
            let b = DecoderBlock::load(w, &format!("decoder_2.model.{}", i + 1), ch, *s, opts)?;
            ch = b.conv_t.out_channels();
            blocks.push(b);
        }
        let snake = Snake1d::load(w, &format!("decoder_2.model.{}", n + 1), ch, opts)?;
        let conv_out = Conv1d::load(
            w,
            &format!("decoder_2.model.{}", n + 2),
            Conv1dConfig {
                out_ch: Some(1),
                in_ch: Some(ch),
                ..Default::default()
            },
        )?
        .with_fused(opts.fused_conv)?;
        if blocks.is_empty() {
            return Err(CodecError::Input(
                "decoder has no up-sampling blocks".into(),
            ));
        }
        let f32_decoder = Self {
            conv_in,
            blocks,
            snake,
            conv_out,
            dtype: DType::F32,
        };
        match opts.decoder_dtype {
            DType::F32 => Ok(f32_decoder),
            DType::BF16 => f32_decoder.to_dtype(DType::BF16),
            other => Err(CodecError::Input(format!(
                "the codec decoder cannot run in {other:?}; use f32 or bf16"
            ))),
        }
    }

    fn to_dtype(&self, dtype: DType) -> Result<Self> {
        Ok(Self {
            conv_in: self.conv_in.to_dtype(dtype)?,
            blocks: self
                .blocks
                .iter()
                .map(|b| b.to_dtype(dtype))
                .collect::<Result<_>>()?,
            snake: self.snake.to_dtype(dtype)?,
            conv_out: self.conv_out.to_dtype(dtype)?,
            dtype,
        })
    }

    /// dtype the decoder computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// One-sided receptive field in frames (an upper bound from the architecture): how many
    /// neighbouring frames on each side can influence one frame's samples.
    ///
    /// Each layer's reach is converted to frames at its own rate: `conv_in` at the frame rate; a
    /// transposed conv reaches `max(p, k-1-p)` output samples; residual units reach
    /// `(k1-1)/2 * dilation + (k2-1)/2` samples at the block's output rate. For the real and tiny
    /// decoders (strides 8,5,4,2,3) this gives 11 frames; the measured reach is 10.
    pub fn receptive_field_frames(&self) -> usize {
        // Work in units of 1/hop frames so every term is an integer.
        let hop: usize = self.blocks.iter().map(|b| b.stride).product();
        let mut rate = 1usize; // samples per frame at the current level
        let mut reach = (self.conv_in.kernel_size() - 1) / 2 * hop;
        for b in &self.blocks {
            rate *= b.stride;
            let unit_reach: usize = b.units.iter().map(|u| u.radius()).sum();
            reach += (b.conv_t.reach() + unit_reach) * (hop / rate);
        }
        reach += (self.conv_out.kernel_size() - 1) / 2;
        reach.div_ceil(hop)
    }

    /// Channels and history of every layer a streaming step carries state for, in step order.
    fn history_shapes(&self) -> Vec<(usize, usize)> {
        let mut shapes = vec![(self.conv_in.in_channels(), 2 * self.conv_in.padding())];
        for b in &self.blocks {
            shapes.push((b.conv_t.in_channels(), b.conv_t.history()));
            let ch = b.conv_t.out_channels();
            shapes.extend(b.units.iter().map(|u| (ch, u.history())));
        }
        shapes.push((self.conv_out.in_channels(), 2 * self.conv_out.padding()));
        shapes
    }

    /// The state of `batch` streams that start now (zeros: the decoder's left padding).
    pub fn initial_state(&self, batch: usize, device: &Device) -> Result<DecoderState> {
        let history = self
            .history_shapes()
            .into_iter()
            .map(|(c, h)| Tensor::zeros((batch, c, h), self.dtype, device))
            .collect::<candle_core::Result<_>>()?;
        Ok(DecoderState { history })
    }

    /// How many output samples a [`Self::step`]'s audio lags its input frames: the outputs of a
    /// step whose first new frame is `f` start at stream sample `f * hop - delay`.
    pub fn step_delay(&self) -> usize {
        let mut delay = self.conv_in.padding();
        for b in &self.blocks {
            delay = delay * b.stride + b.conv_t.padding();
            delay += b.units.iter().map(|u| u.history() / 2).sum::<usize>();
        }
        delay + self.conv_out.padding()
    }

    /// One streaming step of a batch of streams: latent `[B, D, n]` (the next `n` frames of
    /// every stream, f32) → `[B, 1, n * hop]` f32 samples, [`Self::step_delay`] behind (samples
    /// before a stream's start or past its end are the caller's to drop). Every layer keeps its
    /// last inputs in `state` instead of re-decoding context frames, so a step costs its new
    /// frames only; the result equals the one-shot decode up to summation order.
    pub fn step(
        &self,
        x: &Tensor,
        state: &mut DecoderState,
        spans: &[StepSpan],
    ) -> candle_core::Result<Tensor> {
        if state.history.len() != self.blocks.len() * (1 + RESIDUAL_DILATIONS.len()) + 2 {
            candle_core::bail!("decoder state of another decoder")
        }
        let mut hist = state.history.iter_mut();
        let mut next = || {
            hist.next()
                .ok_or_else(|| candle_core::Error::Msg("decoder state too short".into()))
        };
        let (mut rate, mut delay) = (1, 0);
        let x = mask_outside(x.to_dtype(self.dtype)?, spans, rate, delay)?;
        let buf = with_history(next()?, &x)?;
        let mut x = self.conv_in.conv(&buf, None, 0)?;
        delay += self.conv_in.padding();
        x = mask_outside(x, spans, rate, delay)?;
        for b in &self.blocks {
            let buf = with_history(next()?, &x)?;
            x = b.conv_t.step(&b.snake.forward(&buf)?)?;
            rate *= b.stride;
            delay = delay * b.stride + b.conv_t.padding();
            x = mask_outside(x, spans, rate, delay)?;
            for u in &b.units {
                let buf = with_history(next()?, &x)?;
                x = u.step(&buf)?;
                delay += u.history() / 2;
                x = mask_outside(x, spans, rate, delay)?;
            }
        }
        let buf = with_history(next()?, &x)?;
        self.conv_out
            .conv(&buf, Some(&self.snake), 0)?
            .to_dtype(DType::F32)
    }

    /// [`Module::forward`] calling `mark` after each op (the one forward; `forward` passes a
    /// no-op). For profiling: `dev bench-codec --profile` syncs the device in `mark`.
    pub fn forward_marked(&self, x: &Tensor, mark: &mut Mark<'_>) -> candle_core::Result<Tensor> {
        let x = x.to_dtype(self.dtype)?;
        mark(DecoderOp::Cast)?;
        let mut x = self.conv_in.forward(&x)?;
        mark(DecoderOp::ConvIn)?;
        for b in &self.blocks {
            x = b.forward_marked(&x, mark)?;
        }
        let x = snake_then_conv(&self.snake, &self.conv_out, &x, mark)?;
        mark(DecoderOp::ConvOut)?;
        let x = x.to_dtype(DType::F32)?;
        mark(DecoderOp::Cast)?;
        Ok(x)
    }
}

impl Module for Decoder {
    /// `[B, D, frames]` → `[B, 1, frames * hop]` (f32 in and out, whatever [`Self::dtype`]).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_marked(x, &mut |_| Ok(()))
    }
}
