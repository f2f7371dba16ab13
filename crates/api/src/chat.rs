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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// A last chunk with `usage` (and empty `choices`) before `[DONE]`.
    pub include_usage: Option<bool>,
    /// Accepted, ignored: chunks carry no obfuscation padding.
    pub include_obfuscation: Option<bool>,
}

/// OpenAI `POST /v1/chat/completions` (`CreateChatCompletionRequest`, openai-python 2.x): every
/// field of OpenAI's schema is accepted; what a speech model can honour is honoured, what it
/// cannot is refused when it would change the result (penalties, logprobs, tools, JSON output,
/// `n` > 1) and ignored when it cannot (`user`, `metadata`, `store`, ...); see `docs/server.md`.
/// Fields in no OpenAI schema (and not a Higgs extra) are refused.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    /// OpenAI chat messages: `content` a string or parts (`text`, `input_audio`).
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<serde_json::Value>,
    /// Must include `"audio"` (this server generates speech); `"text"` is optional.
    pub modalities: Option<Vec<String>>,
    pub audio: Option<ChatAudioParam>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Alias of `max_new_tokens` (forward steps: text tokens + audio frames, 25 per second).
    pub max_completion_tokens: Option<usize>,
    /// Deprecated alias of `max_completion_tokens`.
    pub max_tokens: Option<usize>,
    /// A string or up to 4 strings. Accepted; generation ends at the model's own end tokens
    /// (`<|eot_id|>`, `<|end_of_text|>`, `<|audio_eos|>`), custom stop strings are not applied.
    #[schema(value_type = Option<Object>)]
    pub stop: Option<serde_json::Value>,
    /// Must be 1 (one audio per request).
    pub n: Option<usize>,
    /// -2..2; only 0 is served (audio sampling uses repetition-aware sampling instead:
    /// `ras_win_len`, `ras_win_max_num_repeat`).
    pub frequency_penalty: Option<f32>,
    /// -2..2; only 0 is served (see `frequency_penalty`).
    pub presence_penalty: Option<f32>,
    /// Only an empty map is served (token biases are not applied).
    pub logit_bias: Option<std::collections::BTreeMap<String, f32>>,
    /// Only `false` is served (no log probabilities are returned).
    pub logprobs: Option<bool>,
    /// 0..20; only 0 is served (needs `logprobs`).
    pub top_logprobs: Option<u32>,
    /// The text format: `{"type": "text"}` only (JSON output is not produced).
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    /// Only none (empty) is served: a speech model calls no tools.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<serde_json::Value>>,
    /// `none` or `auto` (no tools are called); `required` or a named tool is refused.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    /// Accepted, ignored (no tools).
    pub parallel_tool_calls: Option<bool>,
    /// Deprecated form of `tools`: only none (empty) is served.
    #[schema(value_type = Option<Vec<Object>>)]
    pub functions: Option<Vec<serde_json::Value>>,
    /// Deprecated form of `tool_choice`: `none` or `auto`.
    #[schema(value_type = Option<Object>)]
    pub function_call: Option<serde_json::Value>,
    /// Accepted, ignored: nothing is stored.
    pub store: Option<bool>,
    /// Accepted, ignored: nothing is stored (up to 16 string pairs in OpenAI's schema).
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Accepted, ignored (end-user id; not logged).
    pub user: Option<String>,
    /// Accepted, ignored (end-user id; not logged).
    pub safety_identifier: Option<String>,
    /// Accepted, ignored (this server has no prompt cache across requests; library voices'
    /// reference codes are cached anyway).
    pub prompt_cache_key: Option<String>,
    /// Accepted, ignored (see `prompt_cache_key`).
    pub prompt_cache_retention: Option<String>,
    /// Accepted, ignored: one processing tier.
    pub service_tier: Option<String>,
    /// Accepted, ignored: a latency hint that never changes the output.
    #[schema(value_type = Option<Object>)]
    pub prediction: Option<serde_json::Value>,
    /// Accepted, ignored: not a reasoning model.
    pub reasoning_effort: Option<String>,
    /// Accepted, ignored: the text is what the model generates with the audio.
    pub verbosity: Option<String>,
    /// Accepted, ignored: no web search is done (this server fetches no URL for a client).
    #[schema(value_type = Option<Object>)]
    pub web_search_options: Option<serde_json::Value>,
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

/// A field whose value this server cannot serve: 400 naming it, with what to send instead.
fn unserved(field: &str, why: &str) -> ApiError {
    ApiError::invalid(field, format!("is not supported by this server: {why}"))
}

/// `none`/`auto` (a string, or `{"type": ...}` forms naming no tool) ask for no tool call.
fn no_tool_call(choice: &serde_json::Value) -> bool {
    matches!(choice, serde_json::Value::Null) || matches!(choice.as_str(), Some("none" | "auto"))
}

impl ChatRequest {
    /// OpenAI's fields a speech model cannot honour: refused when they would change the
    /// result, checked for range where OpenAI has one.
    fn check_openai_fields(&self) -> Result<(), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(
                "n",
                "must be 1: one audio per request (send several requests for several takes)".into(),
            ));
        }
        for (field, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            let Some(v) = v else { continue };
            if !v.is_finite() || !(-2.0..=2.0).contains(&v) {
                return Err(ApiError::invalid(
                    field,
                    format!("must be in [-2, 2], got {v}"),
                ));
            }
            if v != 0.0 {
                return Err(unserved(field, &format!("= {v}: text-token penalties do not apply to audio; send 0 or omit it, and use `ras_win_len` / `ras_win_max_num_repeat` (repetition-aware sampling) against repeated audio")));
            }
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(unserved(
                "logit_bias",
                "token biases are not applied; send an empty object or omit it",
            ));
        }
        if self.logprobs == Some(true) {
            return Err(unserved(
                "logprobs",
                "log probabilities are not returned; send false or omit it",
            ));
        }
        if let Some(n) = self.top_logprobs {
            if n > 20 {
                return Err(ApiError::invalid(
                    "top_logprobs",
                    format!("must be in [0, 20], got {n}"),
                ));
            }
            if n > 0 {
                return Err(unserved(
                    "top_logprobs",
                    "log probabilities are not returned; send 0 or omit it",
                ));
            }
        }
        if let Some(f) = &self.response_format {
            match f.get("type").and_then(|t| t.as_str()) {
                Some("text") => {}
                Some(t @ ("json_object" | "json_schema")) => {
                    return Err(unserved(
                        "response_format",
                        &format!("`{t}`: this server returns speech and its plain text; send {{\"type\": \"text\"}} or omit it (the audio container is `audio.format`)"),
                    ))
                }
                _ => {
                    return Err(ApiError::invalid(
                        "response_format",
                        "must be an object {\"type\": \"text\" | \"json_object\" | \"json_schema\"} (the audio container is `audio.format`)".into(),
                    ))
                }
            }
        }
        for (field, list) in [("tools", &self.tools), ("functions", &self.functions)] {
            if list.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(unserved(
                    field,
                    "a speech model calls no tools; send an empty list or omit it",
                ));
            }
        }
        for (field, choice) in [
            ("tool_choice", &self.tool_choice),
            ("function_call", &self.function_call),
        ] {
            if choice.as_ref().is_some_and(|c| !no_tool_call(c)) {
                return Err(unserved(
                    field,
                    "a speech model calls no tools; send \"none\" or \"auto\", or omit it",
                ));
            }
        }
        if let Some(stop) = &self.stop {
            let ok = match stop {
                serde_json::Value::Null | serde_json::Value::String(_) => true,
                serde_json::Value::Array(a) => a.iter().all(|x| x.is_string()),
                _ => false,
            };
            if !ok {
                return Err(ApiError::invalid(
                    "stop",
                    "must be a string or a list of strings".into(),
                ));
            }
        }
        Ok(())
    }

    /// Validates everything but the audio itself (see [`ChatJob::audio`]).
    /// `library`: the voice library's names (for `audio.voice`, as `/v1/audio/speech`).
    pub fn validate(&self, limits: &Limits, library: &[String]) -> Result<ChatJob, ApiError> {
        crate::reject_unknown(&self.unknown)?;
        self.check_openai_fields()?;
        if let Some(m) = &self.modalities {
            if let Some(bad) = m.iter().find(|x| *x != "text" && *x != "audio") {
                return Err(ApiError::invalid(
                    "modalities",
                    format!("holds `{bad}`; the modalities are \"text\" and \"audio\""),
                ));
            }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use higgs_text::Content;

    fn req(extra: serde_json::Value) -> ChatRequest {
        let mut v = serde_json::json!({"model": "gpt-4o-audio-preview",
            "messages": [{"role": "system", "content": "Be calm."}, {"role": "user", "content": "Hello"}]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn validate(extra: serde_json::Value) -> Result<ChatJob, ApiError> {
        req(extra).validate(&Limits::default(), &["belinda".into()])
    }

    /// Every field of OpenAI's `CreateChatCompletionRequest`, as a client that sets them all
    /// at their neutral values sends them.
    #[test]
    fn every_openai_field_is_accepted() {
        let j = validate(serde_json::json!({
            "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
            "frequency_penalty": 0, "presence_penalty": 0.0, "logit_bias": {}, "logprobs": false,
            "top_logprobs": 0, "max_completion_tokens": 40, "max_tokens": 50, "metadata": {"a": "b"},
            "n": 1, "parallel_tool_calls": false, "prediction": {"type": "content", "content": "x"},
            "prompt_cache_key": "k", "prompt_cache_retention": "24h", "reasoning_effort": "low",
            "response_format": {"type": "text"}, "safety_identifier": "s", "seed": 7,
            "service_tier": "auto", "stop": ["<|eot_id|>"], "store": false, "stream": false,
            "stream_options": {"include_usage": true, "include_obfuscation": false},
            "temperature": 0.5, "tool_choice": "none", "tools": [], "functions": [],
            "function_call": "auto", "top_p": 0.9, "user": "u-1", "verbosity": "low",
            "web_search_options": {"search_context_size": "low"}}))
        .unwrap();
        // What applies is honoured.
        assert_eq!(
            j.request.params.max_new_tokens, 40,
            "max_completion_tokens wins"
        );
        assert_eq!(j.request.params.seed, Some(7));
        assert_eq!(j.request.params.sampling.temperature, 0.5);
        assert_eq!(j.request.params.sampling.top_p, 0.9);
        assert_eq!(j.format, AudioFormat::Wav);
        assert!(!j.stream);
        assert!(j.include_usage);
        assert!(j.voices.is_empty(), "a built-in voice is no reference");
        let j = validate(serde_json::json!({"max_tokens": 33, "stop": "x", "tool_choice": null}))
            .unwrap();
        assert_eq!(
            j.request.params.max_new_tokens, 33,
            "max_tokens alone counts"
        );
    }

    #[test]
    fn fields_that_would_change_the_result_are_refused_by_name() {
        for (extra, param) in [
            (serde_json::json!({"n": 2}), "n"),
            (
                serde_json::json!({"frequency_penalty": 0.5}),
                "frequency_penalty",
            ),
            (
                serde_json::json!({"presence_penalty": -3}),
                "presence_penalty",
            ),
            (
                serde_json::json!({"logit_bias": {"50256": -100}}),
                "logit_bias",
            ),
            (serde_json::json!({"logprobs": true}), "logprobs"),
            (serde_json::json!({"top_logprobs": 3}), "top_logprobs"),
            (serde_json::json!({"top_logprobs": 21}), "top_logprobs"),
            (
                serde_json::json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                serde_json::json!({"response_format": "wav"}),
                "response_format",
            ),
            (
                serde_json::json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
                "tools",
            ),
            (
                serde_json::json!({"tool_choice": "required"}),
                "tool_choice",
            ),
            (
                serde_json::json!({"function_call": {"name": "f"}}),
                "function_call",
            ),
            (serde_json::json!({"stop": 3}), "stop"),
            (serde_json::json!({"modalities": ["text"]}), "modalities"),
            (
                serde_json::json!({"modalities": ["audio", "image"]}),
                "modalities",
            ),
            // In no OpenAI schema: still refused (typo protection).
            (
                serde_json::json!({"max_complete_tokens": 3}),
                "max_complete_tokens",
            ),
        ] {
            let e = validate(extra.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{extra}");
            assert_eq!(e.param.as_deref(), Some(param), "{extra}: {}", e.message);
        }
        let e = validate(serde_json::json!({"n": 3})).unwrap_err();
        assert!(e.message.contains("must be 1"), "{}", e.message);
        let e = validate(serde_json::json!({"frequency_penalty": 1})).unwrap_err();
        assert!(
            e.message.contains("ras_win_len"),
            "says what to use instead: {}",
            e.message
        );
        // Nested objects of OpenAI's schema refuse unknown keys too.
        let bad: Result<ChatRequest, _> = serde_json::from_value(serde_json::json!({"model": "m",
            "messages": [], "stream_options": {"include_usage": true, "includ_usage": true}}));
        assert!(bad.is_err());
        let bad: Result<ChatRequest, _> = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [], "audio": {"voise": "alloy"}}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn audio_voice_is_parsed_as_speech_voice_and_put_after_the_system_message() {
        let mut j = validate(serde_json::json!({"audio": {"voice": "belinda"}})).unwrap();
        assert_eq!(j.voices, vec![VoiceSpec::Reference("belinda".into())]);
        assert!(j.voice_clone);
        assert_eq!(j.reference_names(), vec!["belinda".to_string()]);
        j.attach_audio(Vec::new());
        let t =
            std::collections::BTreeMap::from([("belinda".to_string(), "Ref words.".to_string())]);
        j.attach_voices(&t, None).unwrap();
        let Prompting::Messages { messages, clips } = &j.request.prompting else {
            panic!("messages prompting")
        };
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(
            messages[1].content,
            vec![Content::Text("Ref words.".into())]
        );
        assert_eq!(messages[2].content, vec![Content::Audio(AudioRef(0))]);
        assert!(matches!(&clips[..], [ClipInput::Voice(n)] if n == "belinda"));
        // `{"id": ...}` is the same voice; an OpenAI name the library lacks is none; an unknown
        // name is kept for the library to refuse (404).
        let j = validate(serde_json::json!({"audio": {"voice": {"id": "belinda"}}})).unwrap();
        assert!(j.voice_clone);
        let j = validate(serde_json::json!({"audio": {"voice": "nova"}})).unwrap();
        assert!(j.voices.is_empty());
        let j = validate(serde_json::json!({"audio": {"voice": "nobody"}})).unwrap();
        assert_eq!(j.reference_names(), vec!["nobody".to_string()]);
    }

    #[test]
    fn a_voice_comes_after_the_input_audio_clips() {
        use base64::Engine;
        let wav = higgs_audio_io::encode(AudioFormat::Wav, &[0.0; 2400], 24000).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(wav);
        let mut j = req(serde_json::json!({"audio": {"voice": "belinda,en_man"}, "messages": [
            {"role": "user", "content": "mine"},
            {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}]},
            {"role": "user", "content": "Hello"}]}))
        .validate(&Limits::default(), &["belinda".into(), "en_man".into()])
        .unwrap();
        assert_eq!(j.audio.len(), 1);
        j.attach_audio(vec![vec![0.0; 2400]]);
        let t = std::collections::BTreeMap::from([
            ("belinda".to_string(), "B.".to_string()),
            ("en_man".to_string(), "E.".to_string()),
        ]);
        j.attach_voices(&t, None).unwrap();
        let Prompting::Messages { messages, clips } = &j.request.prompting else {
            panic!("messages prompting")
        };
        // No system message: the library voices' turns (tagged, two speakers) come first.
        assert_eq!(
            messages[0].content,
            vec![Content::Text("[SPEAKER0] B.".into())]
        );
        assert_eq!(messages[1].content, vec![Content::Audio(AudioRef(1))]);
        assert_eq!(
            messages[2].content,
            vec![Content::Text("[SPEAKER1] E.".into())]
        );
        assert_eq!(messages[3].content, vec![Content::Audio(AudioRef(2))]);
        assert_eq!(messages[5].content, vec![Content::Audio(AudioRef(0))]);
        assert_eq!(clips.len(), 3);
        assert!(matches!(&clips[0], ClipInput::Samples(_)));
    }
}
