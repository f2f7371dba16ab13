//! One request end to end on the model: prompt expansion (the collator's placeholder → delayed
//! code columns), prefill, and the decode loop driving [`GenState`] with sampling and RAS. The
//! serving engine batches the same per-sequence pieces across requests.

use candle_core::Tensor;
use higgs_model::{
    ForwardOptions, HiggsAudioModel, HiggsConfig, KvCache, LogitsRequest, PositionKind, SeqInput,
};

use crate::delay::{build_delayed_segment, Codes};
use crate::sampling::{sample_rows, RasParams, SamplingParams, SeqRng};
use crate::state::{FinishReason, GenState, NextInput, SpecialIds, StepEvent};
use crate::EngineError;

/// An unexpanded prompt: token ids with one placeholder per audio clip, and the clips' raw codes
/// (`[num_codebooks, T]`, values < codebook_size) in placeholder (document) order.
#[derive(Debug, Clone)]
pub struct PromptSpec {
    pub ids: Vec<u32>,
    pub clips: Vec<Codes>,
    /// Whether `<|AUDIO|>` placeholders are expanded into code columns (examples/generation.py,
    /// `encode_audio_in_tokens`) or stay one ordinary token (serve_engine).
    pub audio_in_as_codes: bool,
}

/// A prompt expanded into model positions (`HiggsAudioSampleCollator` + `merge_input_ids_with_audio_features`).
#[derive(Debug, Clone)]
pub struct ExpandedPrompt {
    pub seq: SeqInput,
    /// Last token of the unexpanded prompt: decides the first step's mode.
    pub last_token: u32,
    /// Delayed audio-out columns of the prompt, in order (RAS history).
    pub audio_out_columns: Vec<Vec<u32>>,
    pub prompt_tokens: usize,
}

pub fn expand_prompt(cfg: &HiggsConfig, p: &PromptSpec) -> Result<ExpandedPrompt, EngineError> {
    let n = cfg.num_codebooks;
    let mut seq = SeqInput::new(0);
    let mut clips = p.clips.iter();
    let mut audio_out_columns = Vec::new();
    for &id in &p.ids {
        let kind = if id == cfg.audio_out_token_id {
            Some(PositionKind::AudioOut)
        } else if id == cfg.audio_in_token_id {
            Some(PositionKind::AudioIn)
        } else {
            None
        };
        let Some(kind) = kind else {
            seq.push_text(id);
            continue;
        };
        let clip = clips.next().ok_or_else(|| {
            EngineError::InvalidRequest(format!(
                "the prompt has more audio placeholders than audio clips ({})",
                p.clips.len()
            ))
        })?;
        if kind == PositionKind::AudioIn && !p.audio_in_as_codes {
            seq.push_text(id);
            continue;
        }
        if clip.num_codebooks != n {
            return Err(EngineError::InvalidRequest(format!(
                "audio clip has {} codebooks, the model expects {n}",
                clip.num_codebooks
            )));
        }
        if let Some(bad) = clip.data.iter().find(|&&c| c >= cfg.codebook_size as u32) {
            return Err(EngineError::InvalidRequest(format!(
                "audio clip code {bad} is out of range (< {})",
                cfg.codebook_size
            )));
        }
        let delayed = build_delayed_segment(clip, cfg.stream_bos_id, cfg.stream_eos_id);
        for j in 0..delayed.frames() {
            let col = delayed.column(j);
            seq.push_audio(&col, kind, id);
            if kind == PositionKind::AudioOut {
                audio_out_columns.push(col);
            }
        }
    }
    if clips.next().is_some() {
        return Err(EngineError::InvalidRequest(format!(
            "{} audio clips for fewer audio placeholders in the prompt",
            p.clips.len()
        )));
    }
    let last_token = *p
        .ids
        .last()
        .ok_or_else(|| EngineError::InvalidRequest("empty prompt".into()))?;
    Ok(ExpandedPrompt {
        seq,
        last_token,
        audio_out_columns,
        prompt_tokens: p.ids.len(),
    })
}

/// Generation controls of one request.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub sampling: SamplingParams,
    pub ras: RasParams,
    pub max_new_tokens: usize,
    pub seed: Option<u64>,
    /// Benchmarking only (like vLLM's `ignore_eos`): a sampled stream-EOS code is replaced by
    /// code 0 so segments run to `max_new_tokens`. Never set it for real requests.
    pub ignore_eos: bool,
}

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

pub fn special_ids(cfg: &HiggsConfig, stop: Vec<u32>) -> SpecialIds {
    SpecialIds {
        audio_out_bos: cfg.audio_out_bos_token_id,
        audio_out: cfg.audio_out_token_id,
        audio_eos: cfg.audio_eos_token_id,
        stop,
        num_codebooks: cfg.num_codebooks,
        codebook_size: cfg.codebook_size as u32,
        stream_bos: cfg.stream_bos_id,
        stream_eos: cfg.stream_eos_id,
        use_delay_pattern: cfg.use_delay_pattern,
    }
}

/// Samples the ids of `rows` logits rows (`[R, V]`) for one sequence ([`sample_rows`]: on the
/// logits' device where its sort can take the rows, else on the host).
pub(crate) fn sample_logits(
    logits: &Tensor,
    p: &SamplingParams,
    rng: &mut SeqRng,
) -> Result<Vec<u32>, EngineError> {
    let (r, _) = logits.dims2()?;
    let us: Vec<f32> = (0..r).map(|_| rng.uniform()).collect();
    Ok(sample_rows(logits, &vec![*p; r], &us)?)
}

/// `ignore_eos` support: replace sampled stream-EOS codes.
pub(crate) fn mask_eos(col: &mut [u32], ignore_eos: bool, eos: u32) {
    if ignore_eos {
        for c in col.iter_mut().filter(|c| **c == eos) {
            *c = 0;
        }
    }
}

/// RAS re-draws for the flagged codebooks (raw distribution, no warping), on the logits' device.
pub(crate) fn ras_resample(
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
