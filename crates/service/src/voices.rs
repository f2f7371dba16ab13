//! Voice library access for the doors: list, add, delete, with library errors as [`ApiError`]s.

use std::sync::Arc;

use higgs_api::{ApiError, ErrorKind};
use higgs_engine::voices::{VoiceDetails, VoiceError, VoiceInfo, VoiceLibrary};

use crate::Service;

impl Service {
    /// The library, or a 404 saying how to configure one.
    pub fn library(&self) -> Result<&Arc<VoiceLibrary>, ApiError> {
        self.voices.as_ref().ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                "no voice directory is configured (start the server with --voices DIR)",
            )
        })
    }

    /// Every voice with its transcript (empty without a library).
    pub fn list_voices(&self) -> Vec<VoiceInfo> {
        self.voices.as_ref().map(|v| v.list()).unwrap_or_default()
    }

    /// Validates and stores a voice (blocking decode and file writes run off the async runtime).
    pub async fn add_voice(
        &self,
        name: String,
        audio: Vec<u8>,
        transcript: String,
    ) -> Result<(), ApiError> {
        let lib = self.library()?.clone();
        if audio.len() as u64 > self.config.limits.max_reference_bytes {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                "the recording is larger than the reference-audio limit",
            ));
        }
        let rate = self.sample_rate();
        // On the decode pool; the library error is mapped outside (it needs `self`), boxed: the
        // error carries the decoder's error and is large.
        let r = self
            .config
            .decode_pool
            .run(move || Ok(lib.add(&name, &audio, &transcript, rate).map_err(Box::new)))
            .await?;
        r.map_err(|e| self.voice_error(*e))
    }

    /// One voice's transcript, length, rate and code-cache state (file reads off the async
    /// runtime); an unknown name is a 404 with the most similar names.
    pub async fn voice_details(&self, name: &str) -> Result<VoiceDetails, ApiError> {
        let lib = self.library()?.clone();
        let name = name.to_string();
        let r = self
            .config
            .decode_pool
            .run(move || Ok(lib.details(&name).map_err(Box::new)))
            .await?;
        r.map_err(|e| self.voice_error(*e))
    }

    pub fn delete_voice(&self, name: &str) -> Result<(), ApiError> {
        self.library()?
            .delete(name)
            .map_err(|e| self.voice_error(e))
    }

    /// A library error as an [`ApiError`]; an unknown name carries the library's most similar
    /// names as suggestions.
    pub fn voice_error(&self, e: VoiceError) -> ApiError {
        let kind = match e {
            VoiceError::InvalidName { .. } => ErrorKind::BadRequest,
            VoiceError::Unknown { .. } => ErrorKind::NotFound,
            VoiceError::Exists { .. } | VoiceError::Busy { .. } => ErrorKind::Conflict,
            VoiceError::EmptyTranscript { .. } => ErrorKind::InvalidRequest,
            VoiceError::Audio { .. }
            | VoiceError::Codec { .. }
            | VoiceError::NoTranscript { .. } => ErrorKind::InvalidRequest,
            VoiceError::Dir { .. } | VoiceError::Io { .. } => ErrorKind::Internal,
        };
        let suggestions = match &e {
            VoiceError::Unknown { name, available } => {
                higgs_api::suggest::similar_names(name, available)
            }
            _ => Vec::new(),
        };
        ApiError::new(kind, e.to_string()).with_suggestions(suggestions)
    }
}
