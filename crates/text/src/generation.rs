//! The text pipeline of the reference CLI, examples/generation.py `main()`: speaker tags from the
//! raw transcript, normalisation, `prepare_generation_context`, `prepare_chunk_text`, then the
//! chunk loop ([`LongFormPlanner`]).

use crate::chunking::{prepare_chunk_text, ChunkConfig};
use crate::context::{
    prepare_generation_context, ContextOptions, GenerationContext, VoiceLookup, VoiceProfiles,
    VoiceSpec,
};
use crate::error::Result;
use crate::longform::LongFormPlanner;
use crate::normalize::{normalize_transcript, speaker_tags};

/// The text-side inputs of one reference-CLI style generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenerationRequest {
    /// The raw transcript (a transcript file's contents are stripped first, see
    /// [`crate::context::resolve_transcript_arg`]).
    pub transcript: String,
    /// The resolved scene text ([`crate::context::resolve_scene_prompt_arg`]); `None`: no scene.
    pub scene_prompt: Option<String>,
    /// `--ref_audio` ([`VoiceSpec::parse_list`]); empty: no reference voice.
    pub voices: Vec<VoiceSpec>,
    /// `--ref_audio_in_system_message`.
    pub ref_audio_in_system_message: bool,
    /// `--chunk_method`, `--chunk_max_word_num`, `--chunk_max_num_turns`.
    pub chunking: ChunkConfig,
}

/// Everything `main()` computes before the chunk loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedGeneration {
    /// Sorted distinct `[SPEAKERn]` tags of the raw transcript.
    pub speaker_tags: Vec<String>,
    /// The normalised transcript (the argument of `prepare_chunk_text`).
    pub normalized_transcript: String,
    /// The chunks, each one user message of the chunk loop.
    pub chunks: Vec<String>,
    /// Base messages and reference audio handles.
    pub context: GenerationContext,
}

impl PreparedGeneration {
    /// The chunk loop with `--generation_chunk_buffer_size`.
    pub fn into_planner(self, buffer_size: Option<usize>) -> LongFormPlanner {
        LongFormPlanner::new(self.context, self.chunks, buffer_size)
    }
}

/// Runs `main()`'s text processing in the reference order.
pub fn prepare_generation(
    request: &GenerationRequest,
    voices: &dyn VoiceLookup,
    profiles: Option<&VoiceProfiles>,
) -> Result<PreparedGeneration> {
    // Tags come from the RAW transcript, before any normalisation.
    let speaker_tags = speaker_tags(&request.transcript);
    let normalized_transcript = normalize_transcript(&request.transcript);
    let context = prepare_generation_context(
        &ContextOptions {
            scene_prompt: request.scene_prompt.as_deref(),
            voices: &request.voices,
            ref_audio_in_system_message: request.ref_audio_in_system_message,
            speaker_tags: &speaker_tags,
        },
        voices,
        profiles,
    )?;
    let chunks = prepare_chunk_text(&normalized_transcript, &request.chunking)?;
    Ok(PreparedGeneration {
        speaker_tags,
        normalized_transcript,
        chunks,
        context,
    })
}
