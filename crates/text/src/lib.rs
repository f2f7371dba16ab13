//! Text side of Higgs Audio: tokenizer, special tokens, ChatML prompt building, normalisation,
//! chunking.
#![forbid(unsafe_code)]

pub mod chatml;
pub mod error;
pub mod tokenizer;
pub mod wire;

pub use chatml::{
    generation_prompt, prepare_chatml_sample, AudioKind, AudioRef, AudioSlot, ChatPrompt, Content,
    GenerationSuffix, Message, Role,
};
pub use error::{Result, TextError};
pub use tokenizer::{SpecialTokens, TextTokenizer};
