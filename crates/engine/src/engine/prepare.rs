//! Request preparation off the engine thread: voices and clips resolved to codes (library lookups,
//! cached reference encodes, uploads encoded), the text pipeline run into a chunk plan.

use super::*;

/// What preparation made of a request's prompting: the chunk plan and its audio clips as codes.
pub(super) struct Prepared {
    pub(super) plan: Plan,
    pub(super) clips: Vec<Codes>,
}

/// Work for the preparation pool (voice lookup, reference encodes, text pipeline), which runs off
/// the engine thread so a cache miss or a long upload never stalls the running streams.
pub(super) struct PrepJob {
    pub(super) id: u64,
    pub(super) prompting: Prompting,
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
            .in_scope(|| prepare_request(parts, codec, job.prompting))
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
            let prepared = prepare_generation(&text_req, &resolved, profiles.as_ref()).map_err(
                |e| match e {
                    higgs_text::TextError::UnknownVoice { ref name, .. } => {
                        GenerationError::UnknownVoice {
                            name: name.clone(),
                            message: e.to_string(),
                        }
                    }
                    other => GenerationError::InvalidRequest(other.to_string()),
                },
            )?;
            Ok(Prepared {
                plan: Plan::Script {
                    planner: prepared.into_planner(chunk_buffer_size),
                },
                clips: resolved.clips,
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
