//! Request ids: the client's `x-request-id`, or a new UUID v4; returned in the response header of
//! every response (errors and streams too) and carried in the request's tracing span, so one grep
//! follows a request from the door into the engine.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Request;
use axum::Router;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn id_of<B>(req: &Request<B>) -> &str {
    req.extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("")
}

/// Wraps `router`: set the id (outermost), open the span with it, copy it to the response.
pub fn with_request_ids<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<axum::body::Body>| {
        // The path only: queries and bodies may carry user text.
        tracing::info_span!(
            "request",
            request_id = %id_of(req),
            method = %req.method(),
            path = %req.uri().path(),
        )
    });
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The request's id, for handlers to pass into the engine request (`None` only when the
/// request-id layers are missing, or the id is not text).
pub struct ReqId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ReqId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .extensions
            .get::<RequestId>()
            .map(RequestId::header_value)
            .or_else(|| parts.headers.get(REQUEST_ID_HEADER))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Self(id))
    }
}
