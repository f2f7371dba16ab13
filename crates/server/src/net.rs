//! Connection hardening: the accept loop (a connection cap, hyper's header-read timeout, HTTP/2
//! keep-alive pings) and the body guard (an over-limit `Content-Length` is refused with 413
//! before a byte of the body is read; a body must arrive whole within the body-read timeout).
//!
//! hyper measures the header-read timeout from the moment a connection waits for a request head:
//! when it opens, and after each response on a keep-alive connection. So it is also the idle
//! keep-alive timeout of HTTP/1.1: a connection that sends nothing for that long is closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;
use higgs_api::{ApiError, ErrorKind};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::HttpError;

/// Connection and body limits of an HTTP door (from the CLI; see `docs/security.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// A connection must deliver a complete request head within this long of opening, or of its
    /// previous response (so it is also the keep-alive idle timeout); else it is closed.
    pub header_read_timeout: Duration,
    /// A request body must arrive whole within this long of its head; else 408 and the
    /// connection is closed.
    pub body_read_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// HTTP/2: a ping is sent after this long without frames; a peer that does not answer
    /// within the same time is disconnected.
    pub http2_keep_alive: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            http2_keep_alive: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` with the limits of `net` until `shutdown` resolves, then stops
/// accepting and lets the open connections finish their requests.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    net: &NetConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(net.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(net.http2_keep_alive)
        .keep_alive_timeout(net.http2_keep_alive)
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(net.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // The cap: no accept until a slot is free (waiting clients queue in the backlog).
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let first_byte_timeout = net.header_read_timeout;
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|req: Request<hyper::body::Incoming>| req.map(Body::new)),
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The auto builder reads the first bytes to tell HTTP/1 from HTTP/2 before hyper's
            // header-read timer runs, so a connection that never sends a byte is timed here.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte_timeout, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Limits on request bodies for every route of `router`: a declared `Content-Length` over
/// `max_body_bytes` is a 413 before the body is read; a body that does not arrive whole within
/// `body_read_timeout` is a 408 (the connection is then closed).
pub fn guard_bodies<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
) -> Router<S> {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            guard(req, next, max_body_bytes, body_read_timeout)
        },
    ))
}

async fn guard(
    req: Request,
    next: axum::middleware::Next,
    max_body: usize,
    timeout: Duration,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        let mut r = HttpError(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the request body declares {} bytes; the limit is {max_body} (see --max-body-bytes)",
                declared.unwrap_or_default()
            ),
        ))
        .into_response();
        // The body was not read: the connection cannot be reused.
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    let bodyless = declared == Some(0)
        || (declared.is_none() && !req.headers().contains_key(header::TRANSFER_ENCODING));
    if bodyless {
        return next.run(req).await;
    }
    // The whole body (at most one byte over the limit, so the extractor still answers 413)
    // within the deadline; the handlers read it from memory.
    let (parts, body) = req.into_parts();
    let limit = max_body.saturating_add(1);
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit));
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            HttpError(ApiError::new(
                ErrorKind::PayloadTooLarge,
                "the request body is too large (see --max-body-bytes)",
            ))
            .into_response()
        }
        Ok(Err(e)) => {
            tracing::debug!("request body broke off: {e}");
            let mut r = HttpError(ApiError::new(
                ErrorKind::BadRequest,
                "the request body ended before it was complete; send it again",
            ))
            .into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
        Err(_) => {
            let mut r = HttpError(ApiError::new(
                ErrorKind::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s (see --body-read-timeout-secs); send it faster or in smaller requests",
                    timeout.as_secs_f64()
                ),
            ))
            .into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
    }
}
