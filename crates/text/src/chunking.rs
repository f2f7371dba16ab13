//! Long-form chunking, as the reference `prepare_chunk_text` (examples/generation.py).
//!
//! * `none`: the whole text is one chunk.
//! * `speaker`: a line (stripped) that starts with `[SPEAKER` or `<|speaker_id_start|>` opens a
//!   new chunk, other lines are appended to the current one with `\n`; then groups of
//!   `max_num_turns` chunks are re-joined with `\n`.
//! * `word`: the language is detected ONCE on the whole text; paragraphs are split on `"\n\n"`;
//!   Chinese paragraphs are segmented with jieba (precise mode, HMM on — python
//!   `jieba.cut(paragraph, cut_all=False)`) and groups of `max_word_num` words are concatenated
//!   without separator; other paragraphs are `split(" ")` (single spaces, so newlines stay inside
//!   words) and groups are joined with `" "`. The last chunk of every paragraph gets `"\n\n"`
//!   appended (it becomes part of the user message).
//!
//! Language detection: the reference uses python `langid.classify(text)`, and only "is it `zh`"
//! changes behaviour. Here [`whatlang`] decides: the text is Chinese when its most frequent
//! script is Han and it has few kana (less than 5 % of the Han + kana letters). This is a script
//! vote, not langid's byte n-gram model: it agrees on plain Chinese and plain non-Chinese text;
//! mixed texts (e.g. Chinese with a lot of Latin-script words, or kanji-only Japanese) can be
//! decided differently.

use crate::error::{Result, TextError};
use crate::normalize::py_strip;
use std::sync::OnceLock;

/// Chunking method (`--chunk_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkMethod {
    /// One chunk (the reference default, `None`).
    #[default]
    None,
    /// One chunk per speaker turn (grouped by `max_num_turns`).
    Speaker,
    /// Groups of `max_word_num` words (jieba words for Chinese).
    Word,
}

impl std::str::FromStr for ChunkMethod {
    type Err = TextError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "None" => Ok(Self::None),
            "speaker" => Ok(Self::Speaker),
            "word" => Ok(Self::Word),
            other => Err(TextError::UnknownChunkMethod(other.to_string())),
        }
    }
}

/// `--chunk_method`, `--chunk_max_word_num`, `--chunk_max_num_turns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    pub method: ChunkMethod,
    /// Words per chunk for [`ChunkMethod::Word`] (reference CLI default 200). Must be ≥ 1.
    pub max_word_num: usize,
    /// Speaker turns per chunk for [`ChunkMethod::Speaker`] (default 1; 0 behaves like 1, as
    /// `if chunk_max_num_turns > 1` in the reference).
    pub max_num_turns: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            method: ChunkMethod::None,
            max_word_num: 200,
            max_num_turns: 1,
        }
    }
}

/// The language decision that matters for chunking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkLanguage {
    /// `langid` would say `zh`: segment with jieba, join without spaces.
    Chinese,
    /// Anything else: split on single spaces.
    Other,
}

/// Decides Chinese vs other for the whole text (see the module docs for how this differs from
/// `langid`).
pub fn detect_chunk_language(text: &str) -> ChunkLanguage {
    match whatlang::detect_lang(text) {
        Some(whatlang::Lang::Cmn) => ChunkLanguage::Chinese,
        _ => ChunkLanguage::Other,
    }
}

/// The jieba segmenter with its default dictionary (the dict.txt of python jieba), built on first
/// use: loading the dictionary takes a noticeable fraction of a second and it never changes.
fn jieba() -> &'static jieba_rs::Jieba {
    static JIEBA: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    JIEBA.get_or_init(jieba_rs::Jieba::new)
}

/// `jieba.cut(text, cut_all=False)` (precise mode, HMM on).
pub fn jieba_cut(text: &str) -> Vec<&str> {
    jieba()
        .cut(text, true)
        .into_iter()
        .map(|t| t.word)
        .collect()
}

/// `prepare_chunk_text(text, chunk_method, chunk_max_word_num, chunk_max_num_turns)`.
///
/// Errors only on `max_word_num == 0` with [`ChunkMethod::Word`] (the reference raises
/// `ValueError` from `range(..., 0)`).
pub fn prepare_chunk_text(text: &str, config: &ChunkConfig) -> Result<Vec<String>> {
    match config.method {
        ChunkMethod::None => Ok(vec![text.to_string()]),
        ChunkMethod::Speaker => Ok(chunk_by_speaker(text, config.max_num_turns)),
        ChunkMethod::Word => {
            if config.max_word_num == 0 {
                return Err(TextError::InvalidChunkSize {
                    field: "chunk_max_word_num",
                    value: 0,
                });
            }
            Ok(chunk_by_word(
                text,
                config.max_word_num,
                detect_chunk_language(text),
            ))
        }
    }
}

/// The `speaker` branch of `prepare_chunk_text`.
pub fn chunk_by_speaker(text: &str, max_num_turns: usize) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    let mut utterance = String::new();
    for line in text.split('\n') {
        let line = py_strip(line);
        if line.starts_with("[SPEAKER") || line.starts_with("<|speaker_id_start|>") {
            if !utterance.is_empty() {
                chunks.push(py_strip(&utterance).to_string());
            }
            utterance = line.to_string();
        } else if !utterance.is_empty() {
            utterance.push('\n');
            utterance.push_str(line);
        } else {
            utterance = line.to_string();
        }
    }
    if !utterance.is_empty() {
        chunks.push(py_strip(&utterance).to_string());
    }
    if max_num_turns > 1 {
        chunks
            .chunks(max_num_turns)
            .map(|group| group.join("\n"))
            .collect()
    } else {
        chunks
    }
}

/// The `word` branch of `prepare_chunk_text` with the language already decided.
pub fn chunk_by_word(text: &str, max_word_num: usize, language: ChunkLanguage) -> Vec<String> {
    // `range(0, n, 0)` raises in Python; callers validate, this guard only avoids a panic.
    let max_word_num = max_word_num.max(1);
    let mut chunks: Vec<String> = Vec::new();
    for paragraph in text.split("\n\n") {
        match language {
            ChunkLanguage::Chinese => {
                let words = jieba_cut(paragraph);
                chunks.extend(words.chunks(max_word_num).map(|group| group.concat()));
            }
            ChunkLanguage::Other => {
                let words: Vec<&str> = paragraph.split(' ').collect();
                chunks.extend(words.chunks(max_word_num).map(|group| group.join(" ")));
            }
        }
        // `chunks[-1] += "\n\n"`: with an empty Chinese paragraph nothing was added, so this hits
        // the previous paragraph's last chunk again (or raises IndexError in the reference when
        // there is none yet; here it is skipped). Normalised transcripts never have empty
        // paragraphs.
        if let Some(last) = chunks.last_mut() {
            last.push_str("\n\n");
        }
    }
    chunks
}
