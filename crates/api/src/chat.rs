//! OpenAI `POST /v1/chat/completions` with `modalities: ["text","audio"]`: messages (system / user /
//! assistant, text and `input_audio` parts as voice references) → one serve-engine style generation.

use higgs_audio_io::AudioFormat;
use higgs_engine::{ClipInput, GenerateRequest, Prompting};
use higgs_text::wire::{messages_from_wire, AudioSource, WireMessage};
use higgs_text::{
    prepare_generation_context, AudioRef, ContextOptions, ReferenceVoice, Role, VoiceProfiles,
    VoiceSpec,
};
use serde::Deserialize;

use crate::speech::{voice_specs, VoiceParam};
use crate::{decode_base64, ApiError, ErrorKind, Limits, PendingAudio, SamplingExtras};

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ChatAudioParam {
    /// The voice, exactly as `voice` of `/v1/audio/speech`: a library voice (its reference
    /// recording and transcript become a user/assistant turn pair after the system message), a
    /// comma list for `[SPEAKERn]` dialogue, `profile:NAME`, or an OpenAI built-in name (= no
    /// reference unless the library has a voice of that name). `input_audio` parts in the
    /// messages are references too.
    pub voice: Option<VoiceParam>,
    /// wav (default) | mp3 | flac | opus | pcm16 | pcm.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    /// OpenAI chat messages: `content` a string or parts (`text`, `input_audio`).
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<serde_json::Value>,
    pub modalities: Option<Vec<String>>,
    pub audio: Option<ChatAudioParam>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Alias of `max_new_tokens`.
    pub max_completion_tokens: Option<usize>,
    pub max_tokens: Option<usize>,
    /// Accepted; generation stops at `<|eot_id|>` / `<|end_of_text|>` as the reference.
    #[schema(value_type = Option<Object>)]
    pub stop: Option<serde_json::Value>,
    pub n: Option<usize>,
    #[serde(flatten)]
    pub sampling: SamplingExtras,
    #[serde(flatten, skip_serializing)]
    #[schema(ignore)]
    pub unknown: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct ChatJob {
    pub request: GenerateRequest,
    /// Container of `message.audio.data` (non-streaming); streaming deltas are raw PCM16.
    pub format: AudioFormat,
    pub stream: bool,
    pub include_usage: bool,
    /// The `input_audio` parts, counted and size-checked but not decoded: decode them off the
    /// async runtime and hand the samples to [`ChatJob::attach_audio`] before submitting.
    pub audio: PendingAudio,
    /// `audio.voice` as reference specs (the same parsing as `/v1/audio/speech`); empty: no
    /// library voice. Resolve them with [`ChatJob::attach_voices`].
    pub voices: Vec<VoiceSpec>,
    /// A library voice is used (`audio.voice` names one).
    pub voice_clone: bool,
}

impl ChatJob {
    /// Puts the decoded `input_audio` parts (in the order of [`Self::audio`]) into the request.
    /// Call it before [`Self::attach_voices`].
    pub fn attach_audio(&mut self, decoded: Vec<Vec<f32>>) {
        if let Prompting::Messages { clips, .. } = &mut self.request.prompting {
            *clips = decoded.into_iter().map(ClipInput::Samples).collect();
        }
    }

    /// The library voices `audio.voice` names, each once, in order.
    pub fn reference_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for v in &self.voices {
            if let VoiceSpec::Reference(n) = v {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        names
    }

    /// Puts the `audio.voice` context into the messages, built exactly as `/v1/audio/speech`
    /// builds it (`prepare_generation_context` without a scene): per reference voice a user turn
    /// with its transcript and an assistant turn with its recording (the library clip, encoded
    /// and cached by the engine), inserted after the caller's leading system messages; profile
    /// voices give the system message that describes them. `transcripts` holds the transcript
    /// of every [`Self::reference_names`] entry; `profiles` the library's profiles.
    pub fn attach_voices(
        &mut self,
        transcripts: &std::collections::BTreeMap<String, String>,
        profiles: Option<&VoiceProfiles>,
    ) -> Result<(), ApiError> {
        if self.voices.is_empty() {
            return Ok(());
        }
        let names = self.reference_names();
        let Prompting::Messages { messages, clips } = &mut self.request.prompting else {
            return Ok(());
        };
        let mut lookup = std::collections::BTreeMap::new();
        for name in names {
            let transcript = transcripts.get(&name).cloned().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("voice {name:?} has no transcript"),
                )
            })?;
            lookup.insert(
                name.clone(),
                ReferenceVoice {
                    transcript,
                    audio: AudioRef(clips.len()),
                },
            );
            clips.push(ClipInput::Voice(name));
        }
        let options = ContextOptions {
            scene_prompt: None,
            voices: &self.voices,
            ref_audio_in_system_message: false,
            speaker_tags: &[],
        };
        let ctx = prepare_generation_context(&options, &lookup, profiles).map_err(|e| {
            ApiError::invalid("audio.voice", format!("cannot be used: {e}")).with_suggestions(
                profiles
                    .map(|p| p.names().map(|n| format!("profile:{n}")).collect())
                    .unwrap_or_default(),
            )
        })?;
        let mut context = ctx.messages;
        let leading_system = messages
            .iter()
            .take_while(|m| m.role == Role::System)
            .count();
        if leading_system > 0 && context.first().is_some_and(|m| m.role == Role::System) {
            return Err(ApiError::invalid(
                "audio.voice",
                "names a `profile:` voice, whose description is the system message; send no system message of your own with it (or describe the voice in your system message and leave `audio.voice` out)".into(),
            ));
        }
        let tail = messages.split_off(leading_system);
        messages.append(&mut context);
        messages.extend(tail);
        Ok(())
    }
}

impl ChatRequest {
    /// Validates everything but the audio itself (see [`ChatJob::audio`]).
    /// `library`: the voice library's names (for `audio.voice`, as `/v1/audio/speech`).
    pub fn validate(&self, limits: &Limits, library: &[String]) -> Result<ChatJob, ApiError> {
        crate::reject_unknown(&self.unknown)?;
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "must be 1".into()));
        }
        if let Some(m) = &self.modalities {
            if !m.iter().any(|x| x == "audio") {
                return Err(ApiError::invalid(
                    "modalities",
                    "must include \"audio\": this server generates speech".into(),
                ));
            }
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "is empty".into()));
        }
        let wire: Vec<WireMessage> = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                serde_json::from_value(m.clone()).map_err(|e| {
                    ApiError::invalid(
                        &format!("messages[{i}]"),
                        format!("is not a chat message: {e}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let mut audio = PendingAudio::default();
        let mut err: Option<ApiError> = None;
        let mut chars = 0usize;
        let messages = messages_from_wire(&wire, |site, src| {
            let field = format!("messages[{}]", site.message);
            let r = match src {
                // Counted and size-checked here; decoded later, on the service's blocking pool.
                AudioSource::Base64 { data, .. } => {
                    if audio.len() >= limits.max_reference_clips {
                        Err(ApiError::new(
                            ErrorKind::PayloadTooLarge,
                            format!("more than {} audio parts; the limit is {} per request", limits.max_reference_clips, limits.max_reference_clips),
                        ))
                    } else {
                        decode_base64(&field, data).and_then(|b| audio.push(&field, b, limits))
                    }
                }
                AudioSource::Url(u) => Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("`{field}`: audio URLs ({u:.60}) are not fetched by this server (SSRF protection); send the audio as base64 `input_audio`"),
                )),
            };
            match r {
                Ok(index) => Ok(AudioRef(index)),
                Err(e) => {
                    err.get_or_insert(e);
                    Err(higgs_text::TextError::InvalidMessage("bad audio".into()))
                }
            }
        })
        .map_err(|e| err.take().unwrap_or_else(|| ApiError::new(ErrorKind::BadRequest, e.to_string())))?;
        for m in &messages {
            for c in &m.content {
                if let higgs_text::Content::Text(t) = c {
                    chars += t.chars().count();
                }
            }
        }
        if chars > limits.max_input_chars {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "messages hold {chars} characters; the limit is {}",
                    limits.max_input_chars
                ),
            ));
        }
        let mut sampling = self.sampling.clone();
        sampling.max_new_tokens = sampling
            .max_new_tokens
            .or(self.max_completion_tokens)
            .or(self.max_tokens);
        let params = sampling.to_params(limits)?;
        let fmt = self.audio.as_ref().and_then(|a| a.format.clone());
        let format = match fmt.as_deref() {
            Some("pcm16") => AudioFormat::Pcm,
            other => crate::speech::parse_format(other, AudioFormat::Wav)?,
        };
        let voices = self
            .audio
            .as_ref()
            .and_then(|a| a.voice.as_ref())
            .map(|v| voice_specs(v.name(), library))
            .unwrap_or_default();
        let voice_clone = voices.iter().any(|v| matches!(v, VoiceSpec::Reference(_)));
        Ok(ChatJob {
            voices,
            voice_clone,
            request: GenerateRequest {
                prompting: Prompting::Messages {
                    messages,
                    clips: Vec::new(),
                },
                params,
                force_audio: true,
                timeout: None,
                request_id: None,
            },
            format,
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            audio,
        })
    }
}
