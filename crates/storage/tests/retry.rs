//! Retries and error mapping against scripted HTTP servers, and a flaky proxy in front of the real
//! S3 server (s3s-fs).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use higgs_storage::{RetryPolicy, S3Config, UploadError, Uploader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        attempt_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
    }
}

fn config_for(endpoint: &str) -> S3Config {
    let mut config = S3Config::new(common::ACCESS_KEY, common::SECRET_KEY);
    config.endpoint_url = Some(endpoint.to_owned());
    config.bucket = Some("higgs-audio".into());
    config
}

/// Reads one HTTP/1.1 request (head and Content-Length body).
async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

fn s3_error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A server that answers every request with `response`; returns its URL and a request counter.
async fn scripted(response: Vec<u8>) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU32::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn persistent_5xx_is_retried_then_reported() {
    let (url, count) = scripted(s3_error(
        "503 Service Unavailable",
        "SlowDown",
        "Reduce your request rate.",
    ))
    .await;
    let uploader = Uploader::with_retry_policy(config_for(&url), fast_policy(3)).unwrap();
    let err = uploader
        .put(None, None, b"audio".to_vec(), "audio/wav")
        .await
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(
        matches!(err, UploadError::Unavailable { attempts: 3, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("after 3 attempt(s)") && message.contains("HTTP 503 SlowDown"),
        "{message}"
    );
    assert!(!message.contains("X-Amz-Signature"), "{message}");
    assert_eq!(err.error_type(), "s3_unavailable");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let cases = [
        (
            s3_error("403 Forbidden", "SignatureDoesNotMatch", "bad sig"),
            "s3_credentials",
        ),
        (
            s3_error("404 Not Found", "NoSuchBucket", "gone"),
            "s3_no_such_bucket",
        ),
        (
            s3_error(
                "400 Bad Request",
                "AuthorizationHeaderMalformed",
                "region eu-west-1",
            ),
            "s3_wrong_region",
        ),
        (
            s3_error("403 Forbidden", "RequestTimeTooSkewed", "skew"),
            "s3_clock_skew",
        ),
        (
            s3_error("400 Bad Request", "InvalidArgument", "nope"),
            "s3_rejected",
        ),
    ];
    for (response, error_type) in cases {
        let (url, count) = scripted(response).await;
        let uploader = Uploader::with_retry_policy(config_for(&url), fast_policy(4)).unwrap();
        let err = uploader
            .put(None, Some("a.wav"), b"x".to_vec(), "audio/wav")
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), error_type, "{err:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "{error_type} was retried");
    }
}

#[tokio::test]
async fn missing_bucket_is_a_clear_error() {
    // AWS's answer, verbatim but for the ids.
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>no-such-bucket</BucketName><RequestId>R</RequestId><HostId>H</HostId></Error>";
    let response = format!(
        "HTTP/1.1 404 Not Found\r\nx-amz-request-id: R\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (url, count) = scripted(response.into_bytes()).await;
    let uploader = Uploader::with_retry_policy(config_for(&url), fast_policy(4)).unwrap();
    let err = uploader
        .put(Some("no-such-bucket"), None, b"x".to_vec(), "audio/wav")
        .await
        .unwrap_err();
    assert!(matches!(err, UploadError::NoSuchBucket { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("bucket no-such-bucket does not exist"),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeouts_are_retried() {
    // Accepts and reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU32::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(stream);
            });
        }
    });
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(300),
        ..fast_policy(2)
    };
    let uploader = Uploader::with_retry_policy(config_for(&url), policy).unwrap();
    let err = uploader
        .put(None, None, b"x".to_vec(), "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(err, UploadError::Unavailable { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_errors_are_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uploader = Uploader::with_retry_policy(
        config_for(&format!("http://127.0.0.1:{port}")),
        fast_policy(2),
    )
    .unwrap();
    let err = uploader
        .put(None, None, b"x".to_vec(), "audio/wav")
        .await
        .unwrap_err();
    assert!(
        matches!(err, UploadError::Unavailable { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[tokio::test]
async fn injected_5xx_in_front_of_a_real_server_then_success() {
    let Some(server) = common::start() else {
        return;
    };
    server.create_bucket("higgs-audio").await;
    // Fails the first two requests with 500, then forwards connections to s3s-fs untouched.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let failures_left = Arc::new(AtomicU32::new(2));
    let seen = Arc::new(AtomicU32::new(0));
    let (failures, seen_in) = (failures_left.clone(), seen.clone());
    let upstream = server.addr;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (failures, seen) = (failures.clone(), seen_in.clone());
            tokio::spawn(async move {
                seen.fetch_add(1, Ordering::SeqCst);
                // Take one injected failure if any are left (a compare-exchange loop:
                // `fetch_update` is deprecated on newer toolchains, `try_update` is not on 1.85).
                let mut n = failures.load(Ordering::SeqCst);
                let fail = loop {
                    if n == 0 {
                        break false;
                    }
                    match failures.compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => break true,
                        Err(now) => n = now,
                    }
                };
                if fail {
                    if read_request(&mut client).await.is_some() {
                        let response =
                            s3_error("500 Internal Server Error", "InternalError", "injected");
                        let _ = client.write_all(&response).await;
                        let _ = client.shutdown().await;
                    }
                } else if let Ok(mut upstream) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    let mut config = server.config();
    config.endpoint_url = Some(proxy_url);
    config.bucket = Some("higgs-audio".into());
    let uploader = Uploader::with_retry_policy(config, fast_policy(4)).unwrap();
    let audio = common::audio(50_000);
    let up = uploader
        .put(None, None, audio.clone(), "audio/wav")
        .await
        .unwrap();
    assert_eq!(failures_left.load(Ordering::SeqCst), 0);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "two failed attempts, one forwarded"
    );
    let body = reqwest::get(&up.url).await.unwrap().bytes().await.unwrap();
    assert_eq!(body.as_ref(), audio.as_slice());
}
