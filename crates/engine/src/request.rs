//! What a caller submits to the engine and what it gets back. Front doors (HTTP, RunPod, CLI)
//! translate their wire formats into [`GenerateRequest`] and consume [`Event`]s.

use std::time::Duration;

use higgs_text::{ChunkConfig, Message, VoiceSpec};

use crate::delay::Codes;
use crate::prompt::GenerationParams;
use crate::state::FinishReason;

/// An audio clip referenced by a prompt.
#[derive(Debug, Clone)]
pub enum ClipInput {
    /// Raw codes `[num_codebooks, T]`.
    Codes(Codes),
    /// Mono samples at the codec's sample rate (encoded by the engine).
    Samples(Vec<f32>),
    /// A voice of the library (its reference recording).
    Voice(String),
}

/// A reference voice supplied with the request instead of from the library.
#[derive(Debug, Clone)]
pub struct UploadedVoice {
    pub name: String,
    pub transcript: String,
    /// Mono samples at the codec's sample rate.
    pub samples: Vec<f32>,
}

/// How the prompt is built.
#[derive(Debug, Clone)]
pub enum Prompting {
    /// The reference CLI pipeline (`examples/generation.py`): speaker tags, normalisation, scene
    /// and voice context, chunking and the long-form chunk loop.
    Script {
        transcript: String,
        /// Voice names of the library or of `uploads`, or `profile:NAME`.
        voices: Vec<VoiceSpec>,
        uploads: Vec<UploadedVoice>,
        scene_prompt: Option<String>,
        ref_audio_in_system_message: bool,
        chunking: ChunkConfig,
        chunk_buffer_size: Option<usize>,
    },
    /// Explicit ChatML messages (serve-engine / OpenAI chat style): one generation. `AudioRef(i)`
    /// in the messages refers to `clips[i]`.
    Messages {
        messages: Vec<Message>,
        clips: Vec<ClipInput>,
    },
}

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompting: Prompting,
    pub params: GenerationParams,
    /// End the prompt with `<|audio_out_bos|>` (serve engine `force_audio_gen`).
    pub force_audio: bool,
    /// Give up (and free the slot) after this long, queue time included.
    pub timeout: Option<Duration>,
    /// The caller's request id (e.g. the HTTP `x-request-id`), carried in the engine's tracing
    /// span for this request; `None` logs the engine's own sequence number only.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Every chunk ended with a stop token.
    Stop,
    /// A chunk hit `max_new_tokens`.
    Length,
}

impl From<FinishReason> for StopReason {
    fn from(r: FinishReason) -> Self {
        match r {
            FinishReason::Stop => Self::Stop,
            FinishReason::Length => Self::Length,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Unexpanded prompt tokens over all chunks.
    pub prompt_tokens: usize,
    /// Forward steps (text tokens + audio frames) over all chunks.
    pub completion_tokens: usize,
    /// Final audio frames (25 per second).
    pub audio_frames: usize,
    pub chunks: usize,
    /// Words per chunk when the engine split the text itself: the request asked for no chunking
    /// and its prompt + `max_new_tokens` did not fit the sequence limit in one piece.
    pub auto_chunk_words: Option<usize>,
    /// Earlier generated chunks dropped from a later chunk's context so that it fit the sequence
    /// limit (oldest first; the reference voice is always kept).
    pub context_chunks_dropped: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub queue: Duration,
    /// From submission to the first audio chunk.
    pub time_to_first_audio: Option<Duration>,
    pub total: Duration,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `name` is the voice asked for (for suggestions), `message` says why it cannot be used.
    #[error("unknown voice: {message}")]
    UnknownVoice { name: String, message: String },
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("the model produced no audio: {0}")]
    NoAudio(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GenerationError {
    /// What a client is told: the message itself, except for internal errors, whose detail
    /// (device or tensor errors) is for the server log only (the engine logs it with the
    /// request id).
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(_) => {
                "the server failed while generating this request; it was logged, retry it".into()
            }
            other => other.to_string(),
        }
    }

    /// Stable identifier for logs, metrics and JSON errors.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownVoice { .. } => "unknown_voice",
            Self::Timeout(_) => "timeout",
            Self::NoAudio(_) => "no_audio",
            Self::Internal(_) => "internal",
        }
    }
}

/// Per-request stream of events; the last one is `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The request left the queue and started (after `queue` time).
    Started {
        queue: Duration,
    },
    /// Chunk `index` (0-based) of `chunks` starts generating (sent for every request; long-form
    /// and automatically split texts have more than one). Progress displays use it.
    Chunk {
        index: usize,
        chunks: usize,
    },
    /// Generated text tokens and their text (special tokens shown).
    Text {
        ids: Vec<u32>,
        text: String,
    },
    /// Decoded audio at the codec sample rate; chunks concatenate to the whole output.
    Audio {
        samples: Vec<f32>,
        start_frame: usize,
        frames: usize,
    },
    Finished {
        reason: StopReason,
        usage: Usage,
        timings: Timings,
    },
    Failed(GenerationError),
}

/// Refusals at submission time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("overloaded: {queued} requests are already waiting (limit {limit}); retry later")]
    Overloaded { queued: usize, limit: usize },
    #[error("the engine has stopped")]
    Stopped,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}
