//! One error type for every front door: a kind (→ HTTP status / RunPod error), a message that says
//! what was wrong and how to fix it, and suggestions (e.g. the available voices).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON or a field out of range (400).
    BadRequest,
    /// Well-formed but not acceptable (422).
    InvalidRequest,
    Unauthorized,
    NotFound,
    PayloadTooLarge,
    /// The request body did not arrive in time (408).
    RequestTimeout,
    /// The resource exists or is being created by another request (409).
    Conflict,
    /// The queue is full (429).
    Overloaded,
    /// Not ready / shutting down (503).
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::PayloadTooLarge => 413,
            Self::RequestTimeout => 408,
            Self::Conflict => 409,
            Self::InvalidRequest => 422,
            Self::Overloaded => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// Stable identifier for JSON bodies and metrics labels.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict => "conflict",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
    pub suggestions: Vec<String>,
}

/// JSON error body: `{"error": {"message", "type", "param", "code"}}` (the OpenAI shape), plus
/// `suggestions` when there are any.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub error_type: String,
    pub param: Option<String>,
    pub code: u16,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
            suggestions: Vec::new(),
        }
    }

    /// A field with a bad value: 400 naming the field.
    pub fn invalid(field: &str, what: String) -> Self {
        Self {
            kind: ErrorKind::BadRequest,
            message: format!("`{field}` {what}"),
            param: Some(field.to_string()),
            suggestions: Vec::new(),
        }
    }

    pub fn with_suggestions(mut self, s: Vec<String>) -> Self {
        self.suggestions = s;
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                error_type: self.kind.error_type().to_string(),
                param: self.param.clone(),
                code: self.kind.status(),
                suggestions: self.suggestions.clone(),
            },
        }
    }

    pub fn from_submit(e: higgs_engine::SubmitError) -> Self {
        match e {
            higgs_engine::SubmitError::Overloaded { .. } => {
                Self::new(ErrorKind::Overloaded, e.to_string())
            }
            higgs_engine::SubmitError::Stopped => Self::new(
                ErrorKind::Unavailable,
                "the server is shutting down; retry on another instance",
            ),
            higgs_engine::SubmitError::InvalidRequest(m) => Self::new(ErrorKind::InvalidRequest, m),
        }
    }

    /// Maps a generation failure; `voices` lists the library, whose names most similar to an
    /// unknown voice become its suggestions.
    pub fn from_generation(e: higgs_engine::GenerationError, voices: &[String]) -> Self {
        use higgs_engine::GenerationError as G;
        match e {
            G::UnknownVoice { name, message } => Self::new(ErrorKind::NotFound, message)
                .with_suggestions(crate::suggest::similar_names(&name, voices)),
            G::InvalidRequest(m) => Self::new(ErrorKind::InvalidRequest, m),
            G::NoAudio(m) => Self::new(
                ErrorKind::InvalidRequest,
                format!("the model produced no audio: {m}"),
            ),
            G::Timeout(d) => Self::new(
                ErrorKind::Unavailable,
                format!("generation timed out after {d:?}; retry with a shorter input"),
            ),
            G::Internal(m) => Self::new(ErrorKind::Internal, m),
        }
    }
}
