//! Request limits, configurable at the edge.

#[derive(Debug, Clone)]
pub struct Limits {
    /// Characters of input text per request.
    pub max_input_chars: usize,
    pub default_max_new_tokens: usize,
    pub max_new_tokens: usize,
    /// Encoded bytes of one reference audio upload.
    pub max_reference_bytes: u64,
    pub max_reference_seconds: f64,
    /// Reference clips per request.
    pub max_reference_clips: usize,
    /// Seconds of reference audio per request, all clips together (checked from the headers
    /// before decoding, then bounding the decode itself).
    pub max_reference_total_seconds: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_chars: 10_000,
            default_max_new_tokens: 2048,
            max_new_tokens: 4096,
            max_reference_bytes: 25 * 1024 * 1024,
            max_reference_seconds: 120.0,
            max_reference_clips: 8,
            max_reference_total_seconds: 300.0,
        }
    }
}

impl Limits {
    pub fn check_text(&self, field: &str, text: &str) -> Result<(), crate::ApiError> {
        let n = text.chars().count();
        if n == 0 || text.trim().is_empty() {
            return Err(crate::ApiError::invalid(
                field,
                "is empty; give the text to speak".into(),
            ));
        }
        if n > self.max_input_chars {
            return Err(crate::ApiError::new(
                crate::ErrorKind::PayloadTooLarge,
                format!("`{field}` has {n} characters; the limit is {} (split the text or raise --max-input-chars)", self.max_input_chars),
            ));
        }
        Ok(())
    }
}
