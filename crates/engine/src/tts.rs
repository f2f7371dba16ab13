//! Text in, speech out, for one request, the way `examples/generation.py` does it: voices resolved
//! from the library, the reference text pipeline (tags, normalisation, context, chunking), the
//! chunk loop with generated audio carried as context, then one decode of all chunk codes.

use candle_core::Tensor;
use higgs_codec::Codec;
use higgs_model::HiggsAudioModel;
use higgs_text::{
    prepare_generation, AudioRef, ChunkConfig, GenerationRequest, GenerationSuffix, TextTokenizer,
    VoiceSpec,
};

use crate::delay::Codes;
use crate::generate::{expand_prompt, generate, GenerationParams, PromptSpec};
use crate::state::FinishReason;
use crate::voices::{ResolvedVoices, VoiceLibrary};
use crate::EngineError;

/// One `synth` request.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    pub transcript: String,
    /// `--ref_audio` entries (voice names or `profile:NAME`).
    pub voices: Vec<VoiceSpec>,
    pub scene_prompt: Option<String>,
    pub ref_audio_in_system_message: bool,
    pub chunking: ChunkConfig,
    pub chunk_buffer_size: Option<usize>,
    /// End the prompt with `<|audio_out_bos|>` (serve engine `force_audio_gen`); needed for models
    /// that do not decide to speak by themselves, e.g. random checkpoints.
    pub force_audio: bool,
    /// Per chunk, as the reference.
    pub params: GenerationParams,
}

/// Progress of a synthesis, reported after every generation step.
#[derive(Debug, Clone, Copy)]
pub struct SynthProgress {
    pub chunk: usize,
    pub num_chunks: usize,
    pub steps: usize,
    pub max_new_tokens: usize,
}

#[derive(Debug, Clone)]
pub struct SynthOutput {
    pub codes: Codes,
    pub audio: Vec<f32>,
    pub sample_rate: usize,
    pub chunks: usize,
    /// Decoded generated text of every chunk (special tokens shown).
    pub text: String,
    pub finish: Vec<FinishReason>,
}

/// Resolves `voices` against the library into transcripts and reference codes.
pub fn resolve_voices(
    specs: &[VoiceSpec],
    library: &VoiceLibrary,
    codec: &Codec,
) -> Result<ResolvedVoices, EngineError> {
    let mut r = ResolvedVoices::default();
    for s in specs {
        if let VoiceSpec::Reference(name) = s {
            if r.voices.contains_key(name) {
                continue;
            }
            let transcript = library
                .transcript(name)
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
            let codes = library
                .reference_codes(name, codec)
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
            r.insert(name, transcript, codes);
        }
    }
    Ok(r)
}

pub struct Synthesizer<'a> {
    pub model: &'a HiggsAudioModel,
    pub codec: &'a Codec,
    pub tokenizer: &'a TextTokenizer,
    pub library: Option<&'a VoiceLibrary>,
}

impl Synthesizer<'_> {
    pub fn stop_ids(&self) -> Vec<u32> {
        let s = self.tokenizer.special();
        let mut v = s.stop_tokens().to_vec();
        v.push(self.model.config().pad_token_id);
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn synthesize(
        &self,
        req: &SynthRequest,
        mut progress: impl FnMut(SynthProgress),
    ) -> Result<SynthOutput, EngineError> {
        let cfg = self.model.config();
        check_tokenizer_matches(cfg, self.tokenizer)?;
        let mut resolved = match self.library {
            Some(lib) => resolve_voices(&req.voices, lib, self.codec)?,
            None if req
                .voices
                .iter()
                .any(|v| matches!(v, VoiceSpec::Reference(_))) =>
            {
                return Err(EngineError::InvalidRequest(
                    "voices were requested but no voice directory is configured (--voices DIR)"
                        .into(),
                ))
            }
            None => ResolvedVoices::default(),
        };
        let profiles = match self.library {
            Some(lib) => lib
                .profiles()
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?,
            None => None,
        };
        let text_req = GenerationRequest {
            transcript: req.transcript.clone(),
            scene_prompt: req.scene_prompt.clone(),
            voices: req.voices.clone(),
            ref_audio_in_system_message: req.ref_audio_in_system_message,
            chunking: req.chunking,
        };
        let prepared = prepare_generation(&text_req, &resolved, profiles.as_ref())
            .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let mut planner = prepared.into_planner(req.chunk_buffer_size);
        let num_chunks = planner.num_chunks();
        let suffix = if req.force_audio {
            GenerationSuffix::AssistantAudio
        } else {
            GenerationSuffix::Assistant
        };
        let stop = self.stop_ids();
        let mut chunk_codes = Vec::new();
        let mut text = String::new();
        let mut finish = Vec::new();
        while let Some(step) = planner
            .next_step()
            .map_err(|e| EngineError::Internal(e.to_string()))?
        {
            let prompt = step
                .prompt(self.tokenizer, suffix)
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
            let clips = prompt
                .audio_refs()
                .iter()
                .map(|r| {
                    resolved.clips.get(r.0).cloned().ok_or_else(|| {
                        EngineError::Internal(format!("audio handle {} unknown", r.0))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let spec = PromptSpec {
                ids: prompt.ids,
                clips,
                audio_in_as_codes: cfg.encode_audio_in_tokens,
            };
            let expanded = expand_prompt(cfg, &spec)?;
            let mut cache = self
                .model
                .new_cache(1, expanded.seq.len() + req.params.max_new_tokens + 1)?;
            let mut steps = 0;
            let out = generate(
                self.model,
                &mut cache,
                0,
                &expanded,
                &req.params,
                stop.clone(),
                |e| {
                    if matches!(e, crate::state::StepEvent::AudioColumn(_))
                        || matches!(e, crate::state::StepEvent::Text(_))
                    {
                        steps += 1;
                        progress(SynthProgress {
                            chunk: step.index,
                            num_chunks,
                            steps,
                            max_new_tokens: req.params.max_new_tokens,
                        });
                    }
                },
            )?;
            let codes = out.codes(cfg.num_codebooks);
            text.push_str(&self.tokenizer.decode(&out.text_tokens).unwrap_or_default());
            finish.push(out.finish);
            if codes.frames() == 0 {
                return Err(EngineError::NoAudio {
                    chunk: step.index,
                    hint: if req.force_audio {
                        "the audio segment ended before its first frame; raise max_new_tokens"
                            .into()
                    } else {
                        "the model answered without speaking; force audio generation (--force-audio) or check the prompt".into()
                    },
                });
            }
            let handle = AudioRef(resolved.clips.len());
            resolved.clips.push(codes.clone());
            planner
                .record_generated(handle)
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            chunk_codes.push(codes);
        }
        let codes = Codes::concat(&chunk_codes, cfg.num_codebooks);
        let audio = decode_codes(self.codec, &codes)?;
        Ok(SynthOutput {
            audio,
            sample_rate: self.codec.sample_rate(),
            chunks: num_chunks,
            codes,
            text,
            finish,
        })
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

/// Decodes `[n_q, T]` codes with the codec (one call, as `generation.py`).
pub fn decode_codes(codec: &Codec, codes: &Codes) -> Result<Vec<f32>, EngineError> {
    let t = Tensor::from_vec(
        codes.data.clone(),
        (codes.num_codebooks, codes.frames()),
        codec.device(),
    )?;
    codec
        .decode(&t)
        .map_err(|e| EngineError::Internal(format!("codec decode: {e}")))
}
