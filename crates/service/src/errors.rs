//! What a client may be told about a failure. Internal errors (device, tensor, encoder, I/O
//! details such as "model forward failed: …") are logged with the request id and replaced by a
//! message that names the id, at every door and also mid-stream.

use higgs_api::{ApiError, ErrorKind};

/// The message of a scrubbed internal error.
pub fn internal_message(request_id: Option<&str>) -> String {
    format!(
        "internal error (request id {}); it was logged on the server, retry the request",
        request_id.unwrap_or("unknown")
    )
}

/// `e` as a client may see it: an internal error's detail goes to the log (with the request id)
/// and the message becomes [`internal_message`]; other kinds are unchanged (their messages say
/// what was wrong with the request).
pub fn for_client(e: ApiError, request_id: Option<&str>) -> ApiError {
    if e.kind != ErrorKind::Internal {
        return e;
    }
    tracing::error!(
        request_id = request_id.unwrap_or(""),
        "internal error: {}",
        e.message
    );
    ApiError {
        message: internal_message(request_id),
        ..e
    }
}

/// An internal failure met mid-stream (e.g. the encoder failed after audio was sent): logged with
/// the request id; returns what the client is told.
pub fn internal_mid_stream(request_id: Option<&str>, detail: &dyn std::fmt::Display) -> String {
    tracing::error!(
        request_id = request_id.unwrap_or(""),
        "internal error mid-stream: {detail}"
    );
    internal_message(request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_client() {
        let e = ApiError::new(
            ErrorKind::Internal,
            "model forward failed: CUDA_ERROR_ILLEGAL_ADDRESS",
        );
        let c = for_client(e, Some("req-1"));
        assert_eq!(c.kind, ErrorKind::Internal);
        assert!(!c.message.contains("forward"), "{}", c.message);
        assert!(c.message.contains("req-1"), "{}", c.message);
        let m = internal_mid_stream(Some("req-2"), &"encoding mp3: lame error -3");
        assert!(!m.contains("lame") && m.contains("req-2"), "{m}");
        // Errors about the request keep their message.
        let bad = ApiError::invalid("voice", "is unknown".into());
        assert_eq!(for_client(bad.clone(), None), bad);
    }
}
