//! Errors of the text side. Every message says what was wrong and how to fix it.

use std::path::PathBuf;

/// Everything that can go wrong in `higgs-text`.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(
        "cannot load the text tokenizer from {path}: {reason}. Point it at the model directory's \
         `tokenizer.json` (Hugging Face `tokenizers` format)"
    )]
    TokenizerLoad { path: PathBuf, reason: String },

    #[error(
        "the text tokenizer {path} has no special token `{token}`. Higgs Audio needs its own \
         tokenizer (Llama-3 with renamed reserved tokens, shipped with the Higgs checkpoint), not a \
         plain Llama-3 one"
    )]
    MissingSpecialToken { path: PathBuf, token: &'static str },

    #[error(
        "special token `{token}` (id {id}) of {path} does not encode to itself as one token \
         (got {got:?}); it must be an added special token in tokenizer.json"
    )]
    SpecialTokenNotAtomic {
        path: PathBuf,
        token: &'static str,
        id: u32,
        got: Vec<u32>,
    },

    #[error("the text tokenizer failed to encode {len} bytes of text: {reason}")]
    Encode { len: usize, reason: String },

    #[error("the text tokenizer failed to decode {len} ids: {reason}")]
    Decode { len: usize, reason: String },

    #[error(
        "text content of a {role} message contains the audio placeholder token `{token}`; audio \
         must be passed as an audio content item, not as text (the placeholder would have no audio)"
    )]
    PlaceholderInText { role: &'static str, token: String },

    #[error(
        "a recipient is only allowed on assistant messages (got one on a {role} message), as in \
         the reference `prepare_chatml_sample`"
    )]
    RecipientOnNonAssistant { role: &'static str },

    #[error("unknown message role `{0}`: expected `system`, `user` or `assistant`")]
    UnknownRole(String),

    #[error("invalid message: {0}")]
    InvalidMessage(String),

    #[error("unknown chunk method `{0}`: expected `none`, `speaker` or `word`")]
    UnknownChunkMethod(String),

    #[error("`{field}` must be at least 1 (got {value})")]
    InvalidChunkSize { field: &'static str, value: usize },

    #[error("unknown voice profile `{name}` (from `profile:{name}`); known profiles: {known}")]
    UnknownProfile { name: String, known: String },

    #[error(
        "voice `profile:{0}` was requested but no voice profiles were given; load a profile.yaml \
         (`VoiceProfiles::from_file`) or use `VoiceProfiles::official()`"
    )]
    NoProfiles(String),

    #[error(
        "cannot read voice profiles from {origin}: {reason}. Expected YAML of the form \
         `profiles: {{ NAME: description, ... }}` as in the reference examples/voice_prompts/profile.yaml"
    )]
    ProfileFile { origin: String, reason: String },

    #[error("reference voice `{name}` is not available: {reason}")]
    UnknownVoice { name: String, reason: String },

    #[error(
        "scene prompt file {0} does not exist; pass an existing file, `empty` to disable the \
         scene description, or nothing for the default (quiet room)"
    )]
    ScenePromptNotFound(PathBuf),

    #[error("cannot read {path}: {reason}")]
    ReadFile { path: PathBuf, reason: String },

    #[error("long-form planner: {0}")]
    Planner(&'static str),
}

/// Result alias of this crate.
pub type Result<T, E = TextError> = std::result::Result<T, E>;
