//! The chunk loop's context bookkeeping of the reference `HiggsAudioModelClient.generate`
//! (examples/generation.py).
//!
//! For chunk i the prompt is `base context + generation_messages + [user: chunk_i]` with the
//! assistant header appended; after the chunk is generated, the user chunk and an assistant
//! message holding ONE audio placeholder for the whole chunk audio are appended to
//! `generation_messages`, and the chunk's codes to `generated_audio_ids`. With
//! `generation_chunk_buffer_size = B`, once more than B chunks are held only the last B code
//! blocks and the last 2B generation messages are kept. The reference voices (base context) are
//! always kept. The clip order is reference audio then generated audio, which is also the order
//! of the placeholders.

use crate::chatml::{generation_prompt, AudioRef, ChatPrompt, GenerationSuffix, Message, Role};
use crate::context::GenerationContext;
use crate::error::{Result, TextError};
use crate::tokenizer::TextTokenizer;

/// What the caller generates next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkStep {
    /// Index of the chunk in the chunk list.
    pub index: usize,
    /// The chunk text (the user message of this step).
    pub text: String,
    /// `messages + generation_messages + [user: chunk]`.
    pub messages: Vec<Message>,
    /// `audio_ids + generated_audio_ids` of the reference: the clips to supply, in placeholder
    /// order (equal to the rendered prompt's [`ChatPrompt::audio_refs`]).
    pub context_audio: Vec<AudioRef>,
}

impl ChunkStep {
    /// The prompt ids of this step. examples/generation.py uses [`GenerationSuffix::Assistant`].
    pub fn prompt(
        &self,
        tokenizer: &TextTokenizer,
        suffix: GenerationSuffix,
    ) -> Result<ChatPrompt> {
        generation_prompt(tokenizer, &self.messages, suffix)
    }
}

/// Drives the chunk loop: hands out one [`ChunkStep`] at a time and records each chunk's
/// generated audio.
#[derive(Debug, Clone)]
pub struct LongFormPlanner {
    context: GenerationContext,
    chunks: Vec<String>,
    buffer_size: Option<usize>,
    generation_messages: Vec<Message>,
    generated_audio: Vec<AudioRef>,
    next: usize,
    /// The chunk handed out and not yet recorded.
    pending: Option<usize>,
}

impl LongFormPlanner {
    /// `buffer_size` is `--generation_chunk_buffer_size`. As in the reference, `Some(0)` keeps
    /// everything (Python's `xs[-0:]` is the whole list).
    pub fn new(
        context: GenerationContext,
        chunks: Vec<String>,
        buffer_size: Option<usize>,
    ) -> Self {
        Self {
            context,
            chunks,
            buffer_size,
            generation_messages: Vec::new(),
            generated_audio: Vec::new(),
            next: 0,
            pending: None,
        }
    }

    pub fn num_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// True once every chunk has been handed out and recorded.
    pub fn is_done(&self) -> bool {
        self.pending.is_none() && self.next >= self.chunks.len()
    }

    /// The messages added by earlier chunks that are still in the context.
    pub fn generation_messages(&self) -> &[Message] {
        &self.generation_messages
    }

    /// The generated-chunk handles still in the context (oldest first).
    pub fn generated_audio(&self) -> &[AudioRef] {
        &self.generated_audio
    }

    /// The next chunk to generate, or `None` when all are done. Errors if the previous chunk's
    /// audio has not been recorded with [`Self::record_generated`].
    pub fn next_step(&mut self) -> Result<Option<ChunkStep>> {
        if self.pending.is_some() {
            return Err(TextError::Planner(
                "the previous chunk's audio was not recorded; call record_generated before next_step",
            ));
        }
        let Some(text) = self.chunks.get(self.next).cloned() else {
            return Ok(None);
        };
        let index = self.next;
        self.next += 1;
        self.pending = Some(index);
        Ok(Some(self.step(index, text)))
    }

    /// The step of chunk `index`: base messages, the generated chunks still kept, then the chunk.
    fn step(&self, index: usize, text: String) -> ChunkStep {
        let mut messages = self.context.messages.clone();
        messages.extend(self.generation_messages.iter().cloned());
        messages.push(Message::text(Role::User, text.clone()));
        let mut context_audio = self.context.reference_audio.clone();
        context_audio.extend_from_slice(&self.generated_audio);
        ChunkStep {
            index,
            text,
            messages,
            context_audio,
        }
    }

    /// Drops the oldest generated chunk still in the context (its text and its audio) and returns
    /// the pending chunk's step without it; `Ok(None)` when no generated chunk is left. For a
    /// chunk whose prompt would not fit the sequence limit: the reference keeps every earlier
    /// chunk (or the last `buffer_size`), which only works while they fit, and a sliding window
    /// keeps the voice's continuity from the most recent chunks.
    pub fn evict_oldest(&mut self) -> Result<Option<ChunkStep>> {
        let index = self.pending.ok_or(TextError::Planner(
            "no chunk is pending; call next_step before evict_oldest",
        ))?;
        if self.generated_audio.is_empty() {
            return Ok(None);
        }
        self.generated_audio.remove(0);
        // Each kept chunk is two messages: its user text, then its assistant audio.
        let drop = self.generation_messages.len().min(2);
        self.generation_messages.drain(..drop);
        Ok(Some(self.step(index, self.chunks[index].clone())))
    }

    /// Records the audio generated for the pending chunk (one handle for the whole chunk, its
    /// segments concatenated in time) and applies the buffer limit.
    pub fn record_generated(&mut self, audio: AudioRef) -> Result<()> {
        let index = self.pending.take().ok_or(TextError::Planner(
            "no chunk is pending; call next_step before record_generated",
        ))?;
        self.generated_audio.push(audio);
        self.generation_messages
            .push(Message::text(Role::User, self.chunks[index].clone()));
        self.generation_messages
            .push(Message::audio(Role::Assistant, audio));
        if let Some(b) = self.buffer_size.filter(|&b| b > 0) {
            if self.generated_audio.len() > b {
                let drop_audio = self.generated_audio.len() - b;
                self.generated_audio.drain(..drop_audio);
                let keep = (2 * b).min(self.generation_messages.len());
                let drop_messages = self.generation_messages.len() - keep;
                self.generation_messages.drain(..drop_messages);
            }
        }
        Ok(())
    }
}
