//! What the engine generates from: prompt expansion (the collator's placeholder → delayed code
//! columns), the generation controls of a request, and the special ids of the state machine.

use higgs_model::{HiggsConfig, PositionKind, SeqInput};
use higgs_text::TextTokenizer;

use crate::delay::{build_delayed_segment, Codes};
use crate::sampling::{RasParams, SamplingParams};
use crate::state::SpecialIds;
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
        text_head: cfg.text_head,
    }
}

/// `ignore_eos` support: replace sampled stream-EOS codes.
pub fn mask_eos(col: &mut [u32], ignore_eos: bool, eos: u32) {
    if ignore_eos {
        for c in col.iter_mut().filter(|c| **c == eos) {
            *c = 0;
        }
    }
}

/// Checks that the text tokenizer and the model agree on the audio special-token ids; a mismatch
/// (a tokenizer from another model, or one whose vocabulary does not reach id 128000) would make
/// every prompt wrong in silence.
pub fn check_tokenizer_matches(
    cfg: &higgs_model::HiggsConfig,
    tok: &TextTokenizer,
) -> Result<(), EngineError> {
    let s = tok.special();
    for (what, t, m) in [
        (
            "<|audio_out_bos|>",
            s.audio_out_bos,
            cfg.audio_out_bos_token_id,
        ),
        ("<|AUDIO_OUT|>", s.audio_out, cfg.audio_out_token_id),
        ("<|AUDIO|>", s.audio, cfg.audio_in_token_id),
        ("<|audio_eos|>", s.audio_eos, cfg.audio_eos_token_id),
    ] {
        if t != m {
            return Err(EngineError::InvalidRequest(format!(
                "the text tokenizer maps {what} to id {t} but the model config says {m}: use the tokenizer.json that belongs to this model"
            )));
        }
    }
    Ok(())
}
