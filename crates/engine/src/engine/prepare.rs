//! Request preparation off the engine thread: voices and clips resolved to codes (library lookups,
//! cached reference encodes, uploads encoded), the text pipeline run into a chunk plan.

use super::*;
use crate::prompt::ExpandedPrompt;
use higgs_text::{prepare_chunk_text, ChatPrompt, ChunkConfig, ChunkMethod, PreparedGeneration};

/// What preparation made of a request's prompting: the chunk plan and its audio clips as codes.
pub(super) struct Prepared {
    pub(super) plan: Plan,
    pub(super) clips: Vec<Codes>,
    /// Words per chunk when the text was split because it did not fit in one piece.
    pub(super) auto_chunk_words: Option<usize>,
}

/// What a request's prompts must fit: the sequence limit, less its `max_new_tokens`.
#[derive(Debug, Clone, Copy)]
pub(super) struct FitLimits {
    pub(super) max_seq_len: usize,
    pub(super) max_new_tokens: usize,
    pub(super) suffix: GenerationSuffix,
}

impl FitLimits {
    fn fits(&self, positions: usize) -> bool {
        positions + self.max_new_tokens <= self.max_seq_len
    }
}

/// How a request's prompt ends: straight into audio when it forces audio.
pub(super) fn prompt_suffix(force_audio: bool) -> GenerationSuffix {
    if force_audio {
        GenerationSuffix::AssistantAudio
    } else {
        GenerationSuffix::Assistant
    }
}

/// A rendered prompt expanded into model positions, its audio placeholders filled from `clips`
/// (what the KV cache holds before the first generated token).
pub(super) fn expand_for(
    parts: &EngineParts,
    prompt: &ChatPrompt,
    clips: &[Codes],
) -> Result<ExpandedPrompt, GenerationError> {
    let cfg = parts.model.config();
    let clips = prompt
        .audio_refs()
        .iter()
        .map(|r| {
            clips.get(r.0).cloned().ok_or_else(|| {
                GenerationError::InvalidRequest(format!(
                    "the messages reference audio clip {} which was not supplied",
                    r.0
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = PromptSpec {
        ids: prompt.ids.clone(),
        clips,
        audio_in_as_codes: cfg.encode_audio_in_tokens,
    };
    expand_prompt(cfg, &spec).map_err(|e| GenerationError::InvalidRequest(e.to_string()))
}

/// The refusal of a prompt that cannot fit even after splitting: says which part is too big.
/// `split`: the text was already split as far as it goes (one word per chunk).
pub(super) fn too_long(
    prompt: usize,
    max_new: usize,
    limit: usize,
    split: bool,
) -> GenerationError {
    GenerationError::InvalidRequest(format!(
        "prompt ({prompt} positions, reference audio included) + max_new_tokens ({max_new}) = {} \
         exceeds the sequence limit ({limit}){}; shorten the reference audio, scene or messages, \
         lower max_new_tokens, or raise the server's --max-seq-len",
        prompt + max_new,
        if split {
            " even with one word per chunk"
        } else {
            ""
        }
    ))
}

/// Splits a text that does not fit in one piece into word chunks that each fit with the
/// request's context (scene, reference voices), as the reference's `--chunk_method word` would;
/// the chunk loop then carries earlier chunks' audio as context. Starts at the reference CLI's
/// 200 words and shrinks; `Ok(None)` when the text fits whole.
fn auto_split(
    parts: &EngineParts,
    prepared: &mut PreparedGeneration,
    clips: &[Codes],
    fit: FitLimits,
) -> Result<Option<usize>, GenerationError> {
    let positions = |p: &PreparedGeneration, chunk: &str| -> Result<usize, GenerationError> {
        let mut planner = LongFormPlanner::new(p.context.clone(), vec![chunk.to_string()], None);
        let step = planner
            .next_step()
            .map_err(|e| GenerationError::Internal(e.to_string()))?
            .ok_or_else(|| GenerationError::Internal("a one-chunk plan has no step".into()))?;
        let prompt = step
            .prompt(&parts.tokenizer, fit.suffix)
            .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?;
        Ok(expand_for(parts, &prompt, clips)?.seq.len())
    };
    let whole = prepared.normalized_transcript.clone();
    let first = positions(prepared, &whole)?;
    if fit.fits(first) {
        return Ok(None);
    }
    // One-word chunks count the words as the chunker sees them (jieba words for Chinese).
    let one = ChunkConfig {
        method: ChunkMethod::Word,
        max_word_num: 1,
        ..ChunkConfig::default()
    };
    let words = prepare_chunk_text(&whole, &one)
        .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?
        .len();
    let mut n = words.div_ceil(2).clamp(1, 200);
    loop {
        let cfg = ChunkConfig {
            method: ChunkMethod::Word,
            max_word_num: n,
            ..ChunkConfig::default()
        };
        let chunks = prepare_chunk_text(&whole, &cfg)
            .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?;
        let mut largest = 0;
        for c in &chunks {
            largest = largest.max(positions(prepared, c)?);
        }
        if fit.fits(largest) {
            tracing::info!(
                words_per_chunk = n,
                chunks = chunks.len(),
                "the text does not fit the sequence limit in one piece: split into word chunks"
            );
            prepared.chunks = chunks;
            return Ok(Some(n));
        }
        if n == 1 {
            return Err(too_long(largest, fit.max_new_tokens, fit.max_seq_len, true));
        }
        n = (n * 2 / 3).max(1);
    }
}

/// Work for the preparation pool (voice lookup, reference encodes, text pipeline), which runs off
/// the engine thread so a cache miss or a long upload never stalls the running streams.
pub(super) struct PrepJob {
    pub(super) id: u64,
    pub(super) prompting: Prompting,
    pub(super) fit: FitLimits,
    pub(super) span: tracing::Span,
}

/// Preparation threads: encodes are seconds on a CPU codec, so two let a cached voice pass a
/// long upload.
pub(super) const PREP_THREADS: usize = 2;

/// A preparation thread: takes jobs until the engine drops the queue.
pub(super) fn prep_worker(
    parts: &EngineParts,
    codec: &SharedCodec<'_>,
    jobs: &Mutex<Receiver<PrepJob>>,
    results: Sender<Cmd>,
) {
    loop {
        // The lock is held only while taking a job, never while preparing it.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let result = job
            .span
            .in_scope(|| prepare_request(parts, codec, job.prompting, job.fit))
            .map(Box::new);
        if results.send(Cmd::Prepared { id: job.id, result }).is_err() {
            return;
        }
    }
}

/// Resolves a request's voices and clips to codes (library lookups, cached reference encodes,
/// uploads encoded) and runs the text pipeline into its chunk plan.
pub(super) fn prepare_request(
    parts: &EngineParts,
    codec: &SharedCodec<'_>,
    prompting: Prompting,
    fit: FitLimits,
) -> Result<Prepared, GenerationError> {
    match prompting {
        Prompting::Script {
            transcript,
            voices,
            uploads,
            scene_prompt,
            ref_audio_in_system_message,
            chunking,
            chunk_buffer_size,
        } => {
            let mut resolved = ResolvedVoices::default();
            for u in &uploads {
                let codes = encode_clip(codec, &u.samples)?;
                resolved.insert(&u.name, u.transcript.trim().to_string(), codes);
            }
            for v in &voices {
                if let VoiceSpec::Reference(name) = v {
                    if !resolved.voices.contains_key(name) {
                        let (t, c) = library_voice(parts, codec, name)?;
                        resolved.insert(name, t, c);
                    }
                }
            }
            let profiles = match &parts.voices {
                Some(l) => l
                    .profiles()
                    .map_err(|e| GenerationError::InvalidRequest(e.to_string()))?,
                None => None,
            };
            let text_req = TextRequest {
                transcript,
                scene_prompt,
                voices,
                ref_audio_in_system_message,
                chunking,
            };
            let mut prepared = prepare_generation(&text_req, &resolved, profiles.as_ref())
                .map_err(|e| match e {
                    higgs_text::TextError::UnknownVoice { ref name, .. } => {
                        GenerationError::UnknownVoice {
                            name: name.clone(),
                            message: e.to_string(),
                        }
                    }
                    other => GenerationError::InvalidRequest(other.to_string()),
                })?;
            // Only a request that asked for no chunking is split: chosen chunks are the caller's.
            let auto_chunk_words = if chunking.method == ChunkMethod::None {
                auto_split(parts, &mut prepared, &resolved.clips, fit)?
            } else {
                None
            };
            Ok(Prepared {
                plan: Plan::Script {
                    planner: prepared.into_planner(chunk_buffer_size),
                },
                clips: resolved.clips,
                auto_chunk_words,
            })
        }
        Prompting::Messages { messages, clips } => {
            let mut out = Vec::with_capacity(clips.len());
            for c in clips {
                out.push(match c {
                    ClipInput::Codes(c) => c,
                    ClipInput::Samples(s) => encode_clip(codec, &s)?,
                    ClipInput::Voice(name) => library_voice(parts, codec, &name)?.1,
                });
            }
            Ok(Prepared {
                plan: Plan::Once {
                    messages,
                    done: false,
                },
                clips: out,
                auto_chunk_words: None,
            })
        }
    }
}

pub(super) fn encode_clip(
    codec: &SharedCodec<'_>,
    samples: &[f32],
) -> Result<Codes, GenerationError> {
    let t = codec.with(|c| c.encode(samples)).map_err(|e| {
        GenerationError::InvalidRequest(format!("cannot encode reference audio: {e}"))
    })?;
    let (n, frames) = t
        .dims2()
        .map_err(|e| GenerationError::Internal(e.to_string()))?;
    let rows: Vec<u32> = t
        .flatten_all()
        .and_then(|t| t.to_vec1::<u32>())
        .map_err(|e| GenerationError::Internal(e.to_string()))?;
    Codes::new(n, rows)
        .filter(|c| c.frames() == frames)
        .ok_or_else(|| GenerationError::Internal("bad code shape".into()))
}

/// A library voice's transcript and reference codes (encoded once, then cached beside it).
pub(super) fn library_voice(
    parts: &EngineParts,
    codec: &SharedCodec<'_>,
    name: &str,
) -> Result<(String, Codes), GenerationError> {
    let lib = parts
        .voices
        .as_ref()
        .ok_or_else(|| GenerationError::UnknownVoice {
            name: name.to_string(),
            message: format!("{name:?}: no voice library is configured"),
        })?;
    let map = |e: crate::voices::VoiceError| match e {
        crate::voices::VoiceError::Unknown { .. }
        | crate::voices::VoiceError::InvalidName { .. } => GenerationError::UnknownVoice {
            name: name.to_string(),
            message: e.to_string(),
        },
        other => GenerationError::InvalidRequest(other.to_string()),
    };
    let transcript = lib.transcript(name).map_err(map)?;
    let codes = lib
        .reference_codes_with(name, codec.codec, |s| codec.with(|c| c.encode(s)))
        .map_err(map)?;
    Ok((transcript, codes))
}
