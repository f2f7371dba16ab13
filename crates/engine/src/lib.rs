//! Higgs Audio v2 generation and serving engine.
//!
//! - [`delay`]: the delay pattern (build, revert, finalize).
//! - [`sampling`]: temperature / top-k / top-p / RAS with HF semantics, host and device paths.
//! - [`state`]: the per-sequence TEXT / AUDIO_INIT / AUDIO_IN_PROGRESS state machine.
//! - [`prompt`]: prompt expansion, generation controls, special ids.
//! - [`engine`]: the request driver (continuous batching, streaming); every door and `synth`
//!   submit to it.
//! - [`pool`]: several engines (one per GPU) behind one admission front, for the doors.

pub mod audio_out;
pub mod audio_stream;
pub mod delay;
pub mod engine;
pub mod pool;
pub mod prompt;
pub mod request;
pub mod sampling;
pub mod state;
pub mod telemetry;
pub mod voices;

pub use delay::Codes;
pub use engine::{
    start, EngineConfig, EngineHandle, EngineParts, EngineStats, Load, RequestStream,
};
pub use pool::{EnginePool, EngineState, EngineStatus, PoolMember, PoolPolicy, PoolState};
pub use prompt::{
    check_tokenizer_matches, expand_prompt, ExpandedPrompt, GenerationParams, PromptSpec,
};
pub use request::{
    ClipInput, Event, GenerateRequest, GenerationError, Prompting, StopReason, SubmitError,
    Timings, UploadedVoice, Usage,
};
pub use sampling::{RasParams, SamplingParams};
pub use state::{FinishReason, GenState, Mode, StepEvent};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Forward(#[from] higgs_model::ForwardError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("chunk {chunk} produced no audio: {hint}")]
    NoAudio { chunk: usize, hint: String },
    #[error("internal error: {0}")]
    Internal(String),
}
