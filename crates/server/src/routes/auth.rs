//! Optional API key: `Authorization: Bearer KEY` on every route but health, ping and metrics.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use higgs_api::{ApiError, ErrorKind};

use crate::{AppState, HttpError};

pub async fn require_key(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, HttpError> {
    if let Some(key) = &state.config.api_key {
        let given = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        // Constant-time comparison: do not leak the key length-prefix through timing.
        let ok = given.is_some_and(|g| {
            g.len() == key.len()
                && g.bytes()
                    .zip(key.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            return Err(HttpError(ApiError::new(
                ErrorKind::Unauthorized,
                "missing or wrong API key: send `Authorization: Bearer <key>`",
            )));
        }
    }
    Ok(next.run(req).await)
}
