//! Text side of Higgs Audio v2: tokenizer, special tokens, ChatML prompt building, transcript
//! normalisation, chunking and the long-form chunk loop. Pure logic, no tensors.
//!
//! Mirrors boson-ai/higgs-audio @ f04f5df:
//!
//! | module | reference |
//! |---|---|
//! | [`tokenizer`] | HF `tokenizer.json`, `encode(..., add_special_tokens=False)`, `decode` |
//! | [`chatml`] | `prepare_chatml_sample` (dataset/chatml_dataset.py) + the generation suffix of `serve_engine.py` / `generation.py` |
//! | [`wire`] | `boson_multimodal.data_types.Message` JSON and OpenAI chat messages |
//! | [`normalize`] | the transcript processing inline in examples/generation.py `main()` |
//! | [`chunking`] | `prepare_chunk_text` |
//! | [`context`] | `prepare_generation_context`, scene prompt / profile handling |
//! | [`longform`] | the chunk loop of `HiggsAudioModelClient.generate` |
//! | [`generation`] | `main()`'s text pipeline end to end |
//!
//! Audio never enters this crate: an audio item is an opaque [`AudioRef`] chosen by the caller,
//! and every rendered prompt lists its placeholders ([`ChatPrompt::audio`]) in document order,
//! which is the order in which the model's collator assigns audio clips to placeholders.
//!
//! ```no_run
//! use higgs_text::{generation_prompt, GenerationSuffix, Message, Role, TextTokenizer};
//! # fn main() -> higgs_text::Result<()> {
//! let tok = TextTokenizer::from_model_dir("path/to/higgs-audio-v2-generation-3B-base")?;
//! let messages = [
//!     Message::text(Role::System, "Generate audio following instruction."),
//!     Message::text(Role::User, "Hello there."),
//! ];
//! let prompt = generation_prompt(&tok, &messages, GenerationSuffix::Assistant)?;
//! assert!(prompt.audio.is_empty());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod chatml;
pub mod chunking;
pub mod context;
pub mod error;
pub mod generation;
pub mod longform;
pub mod normalize;
pub mod tokenizer;
pub mod wire;

pub use chatml::{
    generation_prompt, prepare_chatml_sample, AudioKind, AudioRef, AudioSlot, ChatPrompt, Content,
    GenerationSuffix, Message, Role,
};
pub use chunking::{prepare_chunk_text, ChunkConfig, ChunkLanguage, ChunkMethod};
pub use context::{
    prepare_generation_context, ContextOptions, GenerationContext, ReferenceVoice, VoiceLookup,
    VoiceProfiles, VoiceSpec,
};
pub use error::{Result, TextError};
pub use generation::{prepare_generation, GenerationRequest, PreparedGeneration};
pub use longform::{ChunkStep, LongFormPlanner};
pub use normalize::{normalize_transcript, speaker_tags};
pub use tokenizer::{SpecialTokens, TextTokenizer};
