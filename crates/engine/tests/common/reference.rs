//! The reference generation loop, kept as the tests' oracle: one sequence, alone in its cache,
//! stepped to the end the way the official `generate` does, with one-shot codec decode. The
//! engine (the product's only request driver) must give the same codes and, streamed, the same
//! audio within the codec's streaming tolerance.
#![allow(dead_code, clippy::unwrap_used)]

use candle_core::Tensor;
use higgs_engine::delay::Codes;
use higgs_engine::prompt::{mask_eos, special_ids, ExpandedPrompt};
use higgs_engine::sampling::{sample_rows, SamplingParams, SeqRng};
use higgs_engine::state::{FinishReason, GenState, NextInput, StepEvent};
use higgs_engine::{EngineError, GenerationParams};
use higgs_model::{
    ForwardOptions, HiggsAudioModel, KvCache, LogitsRequest, PositionKind, SeqInput,
};

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct GenerationOutput {
    pub text_tokens: Vec<u32>,
    /// Delayed segments as generated (first column of each is all BOS).
    pub delayed_segments: Vec<Codes>,
    /// Final codes per segment (reverted, clipped, trimmed).
    pub segments: Vec<Codes>,
    pub finish: FinishReason,
    pub steps: usize,
    pub prompt_tokens: usize,
}

impl GenerationOutput {
    /// All segments concatenated in time (what `generation.py` decodes).
    pub fn codes(&self, num_codebooks: usize) -> Codes {
        Codes::concat(&self.segments, num_codebooks)
    }
}

/// Samples the ids of `rows` logits rows (`[R, V]`) for one sequence ([`sample_rows`]: on the
/// logits' device where its sort can take the rows, else on the host).
fn sample_logits(
    logits: &Tensor,
    p: &SamplingParams,
    rng: &mut SeqRng,
) -> Result<Vec<u32>, EngineError> {
    let (r, _) = logits.dims2()?;
    let us: Vec<f32> = (0..r).map(|_| rng.uniform()).collect();
    Ok(sample_rows(logits, &vec![*p; r], &us)?)
}

/// RAS re-draws for the flagged codebooks (raw distribution, no warping), on the logits' device.
fn ras_resample(
    audio: &Tensor,
    rows: &[usize],
    rng: &mut SeqRng,
    out: &mut [u32],
) -> Result<(), EngineError> {
    if rows.is_empty() {
        return Ok(());
    }
    let us: Vec<f32> = rows.iter().map(|_| rng.uniform()).collect();
    let idx = Tensor::from_vec(
        rows.iter().map(|&k| k as u32).collect::<Vec<_>>(),
        rows.len(),
        audio.device(),
    )?;
    let sel = audio.index_select(&idx, 0)?;
    // The raw distribution: temperature 1, no top-k / top-p (= `resample_raw`).
    let raw = SamplingParams {
        temperature: 1.0,
        top_k: None,
        top_p: 1.0,
    };
    let ids = sample_rows(&sel, &vec![raw; rows.len()], &us)?;
    for (&k, v) in rows.iter().zip(ids) {
        out[k] = v;
    }
    Ok(())
}

/// Runs one request to completion in cache slot `slot` (reset first). `on_event` sees every step's
/// events as they happen (streaming).
pub fn generate(
    model: &HiggsAudioModel,
    cache: &mut KvCache,
    slot: usize,
    prompt: &ExpandedPrompt,
    params: &GenerationParams,
    stop_ids: Vec<u32>,
    mut on_event: impl FnMut(&StepEvent),
) -> Result<GenerationOutput, EngineError> {
    let cfg = model.config();
    let mut state = GenState::new(
        special_ids(cfg, stop_ids),
        prompt.last_token,
        &prompt.audio_out_columns,
        params.max_new_tokens,
    );
    let mut rng = SeqRng::new(params.seed);
    cache.reset(slot);
    let mut input = prompt.seq.clone();
    input.slot = slot;
    while state.finished().is_none() {
        let (text, audio) = state.needs_logits();
        let out = model.forward(
            &[input.with_logits(LogitsRequest { text, audio })],
            cache,
            ForwardOptions::default(),
        )?;
        let (events, next) = if audio {
            let logits = out
                .audio_logits
                .ok_or_else(|| EngineError::Internal("audio logits missing".into()))?
                .squeeze(0)?;
            let mut col = sample_logits(&logits, &params.sampling, &mut rng)?;
            let rows = state.ras_rows(&col, &params.ras);
            ras_resample(&logits, &rows, &mut rng, &mut col)?;
            mask_eos(&mut col, params.ignore_eos, cfg.stream_eos_id);
            state.on_audio_step(&col)
        } else if text {
            let logits = out
                .text_logits
                .ok_or_else(|| EngineError::Internal("text logits missing".into()))?;
            let id = sample_logits(&logits, &params.sampling, &mut rng)?[0];
            state.on_text_step(id)
        } else {
            state.on_text_step(0)
        };
        for e in &events {
            on_event(e);
        }
        let mut s = SeqInput::new(slot);
        match next {
            NextInput::Text(id) => {
                s.push_text(id);
            }
            NextInput::Audio(col) => {
                s.push_audio(&col, PositionKind::AudioOut, cfg.audio_out_token_id);
            }
        }
        input = s;
    }
    Ok(GenerationOutput {
        text_tokens: state.text_tokens().to_vec(),
        delayed_segments: state.delayed_segments(),
        segments: state.final_segments(),
        finish: state.finished().unwrap_or(FinishReason::Length),
        steps: state.steps(),
        prompt_tokens: prompt.prompt_tokens,
    })
}
