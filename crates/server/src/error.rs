//! `ApiError` as an HTTP response, and a JSON extractor whose rejections use the same shape.
//! [`status_of`] is the server's one map from an error kind to an HTTP status.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use higgs_api::{ApiError, ErrorKind};

/// The HTTP status of an error kind (the codes themselves are `ErrorKind::status`, shared with
/// the RunPod door).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        let mut e = self.0;
        if e.kind == ErrorKind::Internal {
            // Internal details go to the log, not to the client.
            let id = uuid::Uuid::new_v4();
            tracing::error!(error_id = %id, "internal error: {}", e.message);
            e.message = format!("internal error (id {id}); see the server log");
        }
        let mut r = (status, axum::Json(e.body())).into_response();
        if e.kind == ErrorKind::Overloaded {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}

/// `Json<T>` whose rejections (bad JSON, wrong content type, too large) are our JSON errors.
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection as J;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => {
                let kind = match &rej {
                    J::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        ErrorKind::PayloadTooLarge
                    }
                    J::JsonDataError(_) => ErrorKind::BadRequest,
                    _ => ErrorKind::BadRequest,
                };
                let msg = match &rej {
                    J::MissingJsonContentType(_) => {
                        "send the body as JSON with `Content-Type: application/json`".to_string()
                    }
                    J::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        "the request body is too large (see --max-body-bytes)".to_string()
                    }
                    other => format!("invalid JSON body: {}", other.body_text()),
                };
                Err(HttpError(ApiError::new(kind, msg)))
            }
        }
    }
}
