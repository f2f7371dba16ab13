//! The Higgs text tokenizer (`tokenizer.json`, Llama-3 byte-level BPE with Higgs special-token
//! names) and its special tokens, looked up by their strings.
//!
//! Mirrors how every piece of the reference calls the Hugging Face tokenizer:
//! `tokenizer.encode(text, add_special_tokens=False)` (special-token strings inside the text are
//! parsed as special tokens) and `tokenizer.decode(ids)` (special tokens shown, and
//! `clean_up_tokenization_spaces=True` from `tokenizer_config.json`).

use crate::error::{Result, TextError};
use std::path::{Path, PathBuf};

/// Ids of the special tokens the text side and the model need, read from the tokenizer by their
/// strings (never hard-coded: the ids are a property of the checkpoint's tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|begin_of_text|>`
    pub begin_of_text: u32,
    /// `<|end_of_text|>` (also pad and a stop token)
    pub end_of_text: u32,
    /// `<|start_header_id|>`
    pub start_header: u32,
    /// `<|end_header_id|>`
    pub end_header: u32,
    /// `<|eot_id|>` (end of turn, stop token)
    pub eot: u32,
    /// `<|eom_id|>` (between consecutive assistant messages)
    pub eom: u32,
    /// `<|audio_bos|>` (opens an input audio clip)
    pub audio_bos: u32,
    /// `<|audio_eos|>` (closes any audio clip, input or output)
    pub audio_eos: u32,
    /// `<|audio_out_bos|>` (opens an output / reference audio clip)
    pub audio_out_bos: u32,
    /// `<|AUDIO|>` (placeholder of an input audio clip)
    pub audio: u32,
    /// `<|AUDIO_OUT|>` (placeholder of an output audio clip)
    pub audio_out: u32,
    /// `<|recipient|>`
    pub recipient: u32,
    /// `<|scene_desc_start|>`
    pub scene_desc_start: u32,
    /// `<|scene_desc_end|>`
    pub scene_desc_end: u32,
    /// `<|generation_instruction_start|>`
    pub generation_instruction_start: u32,
    /// `<|generation_instruction_end|>`
    pub generation_instruction_end: u32,
}

impl SpecialTokens {
    pub const BEGIN_OF_TEXT: &'static str = "<|begin_of_text|>";
    pub const END_OF_TEXT: &'static str = "<|end_of_text|>";
    pub const START_HEADER: &'static str = "<|start_header_id|>";
    pub const END_HEADER: &'static str = "<|end_header_id|>";
    pub const EOT: &'static str = "<|eot_id|>";
    pub const EOM: &'static str = "<|eom_id|>";
    pub const AUDIO_BOS: &'static str = "<|audio_bos|>";
    pub const AUDIO_EOS: &'static str = "<|audio_eos|>";
    pub const AUDIO_OUT_BOS: &'static str = "<|audio_out_bos|>";
    pub const AUDIO: &'static str = "<|AUDIO|>";
    pub const AUDIO_OUT: &'static str = "<|AUDIO_OUT|>";
    pub const RECIPIENT: &'static str = "<|recipient|>";
    pub const SCENE_DESC_START: &'static str = "<|scene_desc_start|>";
    pub const SCENE_DESC_END: &'static str = "<|scene_desc_end|>";
    pub const GENERATION_INSTRUCTION_START: &'static str = "<|generation_instruction_start|>";
    pub const GENERATION_INSTRUCTION_END: &'static str = "<|generation_instruction_end|>";

    /// Looks every token up by its string; `lookup` returns the id of a string that the tokenizer
    /// encodes as exactly one special token.
    fn resolve(mut lookup: impl FnMut(&'static str) -> Result<u32>) -> Result<Self> {
        Ok(Self {
            begin_of_text: lookup(Self::BEGIN_OF_TEXT)?,
            end_of_text: lookup(Self::END_OF_TEXT)?,
            start_header: lookup(Self::START_HEADER)?,
            end_header: lookup(Self::END_HEADER)?,
            eot: lookup(Self::EOT)?,
            eom: lookup(Self::EOM)?,
            audio_bos: lookup(Self::AUDIO_BOS)?,
            audio_eos: lookup(Self::AUDIO_EOS)?,
            audio_out_bos: lookup(Self::AUDIO_OUT_BOS)?,
            audio: lookup(Self::AUDIO)?,
            audio_out: lookup(Self::AUDIO_OUT)?,
            recipient: lookup(Self::RECIPIENT)?,
            scene_desc_start: lookup(Self::SCENE_DESC_START)?,
            scene_desc_end: lookup(Self::SCENE_DESC_END)?,
            generation_instruction_start: lookup(Self::GENERATION_INSTRUCTION_START)?,
            generation_instruction_end: lookup(Self::GENERATION_INSTRUCTION_END)?,
        })
    }

    /// Stop tokens of every reference generation path (`stop_strings=["<|end_of_text|>",
    /// "<|eot_id|>"]`).
    pub fn stop_tokens(&self) -> [u32; 2] {
        [self.end_of_text, self.eot]
    }
}

/// Token-id pieces that `prepare_chatml_sample` encodes again for every message; encoded once at
/// load time from the very same strings, so they are exactly what the reference gets.
#[derive(Debug, Clone)]
pub(crate) struct ChatPieces {
    /// `<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n`, per [`crate::Role`].
    pub first_prefix: [Vec<u32>; 3],
    /// `<|start_header_id|>{role}<|end_header_id|>\n\n`, per [`crate::Role`].
    pub prefix: [Vec<u32>; 3],
    /// `<|audio_bos|><|AUDIO|><|audio_eos|>`
    pub audio_in: Vec<u32>,
    /// `<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>`
    pub audio_out: Vec<u32>,
    /// Index of `<|AUDIO|>` inside `audio_in`.
    pub audio_in_placeholder: usize,
    /// Index of `<|AUDIO_OUT|>` inside `audio_out`.
    pub audio_out_placeholder: usize,
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`
    pub generation_suffix: Vec<u32>,
}

/// The Higgs text tokenizer.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    pub(crate) pieces: ChatPieces,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from a model directory (the file next to `config.json`).
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| TextError::TokenizerLoad {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::from_tokenizer(inner, path.to_path_buf())
    }

    /// Loads a tokenizer from the bytes of a `tokenizer.json`; `origin` only names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: impl Into<PathBuf>) -> Result<Self> {
        let origin = origin.into();
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TextError::TokenizerLoad {
                path: origin.clone(),
                reason: e.to_string(),
            })?;
        Self::from_tokenizer(inner, origin)
    }

    fn from_tokenizer(inner: tokenizers::Tokenizer, path: PathBuf) -> Result<Self> {
        let special = SpecialTokens::resolve(|token| {
            let id = inner
                .token_to_id(token)
                .ok_or_else(|| TextError::MissingSpecialToken {
                    path: path.clone(),
                    token,
                })?;
            // A token that is only in the BPE vocabulary would be split when it appears in text;
            // the reference relies on these strings being parsed as one special token.
            let got = encode_ids(&inner, token)?;
            if got != [id] {
                return Err(TextError::SpecialTokenNotAtomic {
                    path: path.clone(),
                    token,
                    id,
                    got,
                });
            }
            Ok(id)
        })?;
        let pieces = ChatPieces::encode(&inner, &special, &path)?;
        Ok(Self {
            inner,
            special,
            pieces,
        })
    }

    /// The special-token ids of this tokenizer.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// The id of one token string (a special token or a BPE vocabulary entry), if any.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of ids, added tokens included (128256 for Higgs).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// `tokenizer.encode(text, add_special_tokens=False)`: no `<|begin_of_text|>` is added, and
    /// special-token strings inside `text` become their special ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        encode_ids(&self.inner, text)
    }

    /// Ids back to text, special tokens shown, without any clean-up: the exact inverse of
    /// [`Self::encode`] for any valid UTF-8 result.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TextError::Decode {
                len: ids.len(),
                reason: e.to_string(),
            })
    }

    /// `tokenizer.decode(ids)` of the reference (transformers): special tokens shown, then
    /// `clean_up_tokenization_spaces=True` (as set in the Higgs `tokenizer_config.json`). This is
    /// what the reference logs; it is lossy (`"a ,"` becomes `"a,"`).
    pub fn decode_clean(&self, ids: &[u32]) -> Result<String> {
        Ok(clean_up_tokenization(&self.decode(ids)?))
    }
}

fn encode_ids(inner: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
    inner
        .encode(text, false)
        .map(|enc| enc.get_ids().to_vec())
        .map_err(|e| TextError::Encode {
            len: text.len(),
            reason: e.to_string(),
        })
}

impl ChatPieces {
    fn encode(inner: &tokenizers::Tokenizer, special: &SpecialTokens, path: &Path) -> Result<Self> {
        use crate::chatml::Role;
        let role_piece = |bos: &str, role: Role| {
            encode_ids(
                inner,
                &format!(
                    "{bos}<|start_header_id|>{}<|end_header_id|>\n\n",
                    role.as_str()
                ),
            )
        };
        let roles = [Role::System, Role::User, Role::Assistant];
        let mut first_prefix: [Vec<u32>; 3] = Default::default();
        let mut prefix: [Vec<u32>; 3] = Default::default();
        for role in roles {
            first_prefix[role.index()] = role_piece(SpecialTokens::BEGIN_OF_TEXT, role)?;
            prefix[role.index()] = role_piece("", role)?;
        }
        let audio_in = encode_ids(inner, "<|audio_bos|><|AUDIO|><|audio_eos|>")?;
        let audio_out = encode_ids(inner, "<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>")?;
        // Cannot fail once the tokens are known to be atomic; checked anyway so that a slot's
        // position can never point at the wrong token.
        let find = |piece: &[u32], id: u32, token: &'static str| {
            piece
                .iter()
                .position(|&x| x == id)
                .ok_or_else(|| TextError::SpecialTokenNotAtomic {
                    path: path.to_path_buf(),
                    token,
                    id,
                    got: piece.to_vec(),
                })
        };
        Ok(Self {
            first_prefix,
            prefix,
            audio_in_placeholder: find(&audio_in, special.audio, SpecialTokens::AUDIO)?,
            audio_out_placeholder: find(&audio_out, special.audio_out, SpecialTokens::AUDIO_OUT)?,
            audio_in,
            audio_out,
            generation_suffix: encode_ids(
                inner,
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
            )?,
        })
    }
}

/// transformers' `PreTrainedTokenizerBase.clean_up_tokenization` (4.46), applied by `decode`
/// when `clean_up_tokenization_spaces` is true.
pub fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}
