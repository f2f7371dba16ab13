//! [`Uploader`]: `PutObject` with retries, then a presigned GET URL.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::{Host, Url};

use crate::config::S3Config;
use crate::error::UploadError;
use crate::validate::{extension_for_content_type, BucketName, KeyPrefix, ObjectKey};

/// Lifetime of the signature on the PUT request itself (not the returned GET URL).
const PUT_SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);
/// How much of an error response body is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// When and how often a failed upload is retried. Retried: connection errors, timeouts, HTTP 5xx,
/// 429, 408 and S3's `RequestTimeout`. Never retried: other 4xx (they would fail again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled after each failure, with jitter (half to full).
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Limit on one attempt, from connecting to the end of the response.
    pub attempt_timeout: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 250 ms doubling to at most 8 s, 120 s per attempt, 10 s to connect.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based), jittered between half and all of
    /// `initial_backoff * 2^(attempt-1)` (capped at `max_backoff`).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub bucket: String,
    pub key: String,
    /// `s3://bucket/key`.
    pub s3_uri: String,
    /// Presigned HTTPS (or HTTP, for an http:// endpoint) GET URL, valid for `url_expires_in`.
    pub url: String,
    pub url_expires_in: Duration,
    /// Size of the uploaded object.
    pub bytes: u64,
    /// The store's ETag, quotes removed, when it sent one.
    pub etag: Option<String>,
}

/// Uploads objects to one S3-compatible service. Cheap to clone-configure per request with
/// [`Uploader::for_config`], which shares the HTTP connection pool.
#[derive(Debug, Clone)]
pub struct Uploader {
    config: S3Config,
    endpoint: Url,
    prefix: Option<KeyPrefix>,
    credentials: Credentials,
    client: reqwest::Client,
    retry: RetryPolicy,
}

impl Uploader {
    /// Validates `config` and sets up the HTTP client with the default [`RetryPolicy`].
    pub fn new(config: S3Config) -> Result<Self, UploadError> {
        Self::with_retry_policy(config, RetryPolicy::default())
    }

    /// Like [`Uploader::new`] with another retry policy.
    pub fn with_retry_policy(config: S3Config, retry: RetryPolicy) -> Result<Self, UploadError> {
        let client = reqwest::Client::builder()
            .connect_timeout(retry.connect_timeout)
            // A signed request is only valid for its own URL; and never follow a store elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("higgs-storage/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UploadError::Client(describe_reqwest(&e)))?;
        Self::build(config, retry, client)
    }

    /// An uploader for an endpoint that came from a request (a RunPod job's `s3Config`): the
    /// endpoint must pass `policy` (public http(s) only, unless allowed), and the client resolves
    /// names through the policy's guarded resolver, connecting only to checked addresses, never
    /// following redirects. See [`crate::egress`].
    pub fn for_request(
        config: S3Config,
        retry: RetryPolicy,
        policy: &std::sync::Arc<crate::EgressPolicy>,
    ) -> Result<Self, UploadError> {
        config.validate()?;
        let endpoint = config.service_endpoint()?;
        policy
            .check_url(&endpoint)
            .map_err(|e| UploadError::Client(format!("endpointUrl refused: {e}")))?;
        let builder = reqwest::Client::builder()
            .connect_timeout(retry.connect_timeout)
            .user_agent(concat!("higgs-storage/", env!("CARGO_PKG_VERSION")));
        let client = policy
            .client(builder)
            .map_err(|e| UploadError::Client(describe_reqwest(&e)))?;
        Self::build(config, retry, client)
    }

    /// An uploader for another configuration sharing this one's HTTP client and retry policy
    /// (operator-configured endpoints only: a request's endpoint goes through
    /// [`Uploader::for_request`]).
    pub fn for_config(&self, config: S3Config) -> Result<Self, UploadError> {
        Self::build(config, self.retry.clone(), self.client.clone())
    }

    fn build(
        config: S3Config,
        retry: RetryPolicy,
        client: reqwest::Client,
    ) -> Result<Self, UploadError> {
        config.validate()?;
        let endpoint = config.service_endpoint()?;
        let prefix = config.prefix()?;
        let credentials = match &config.session_token {
            Some(token) => Credentials::new_with_token(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
                token.clone(),
            ),
            None => Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
            ),
        };
        Ok(Self {
            config,
            endpoint,
            prefix,
            credentials,
            client,
            retry,
        })
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Uploads `bytes` to `bucket` (default: the configured bucket) under `key` (default:
    /// `{prefix}/{yyyy-mm-dd}/{uuid}.{ext}`, `ext` from `content_type`; a given key is used as is,
    /// without the prefix) and returns where it went plus a presigned GET URL.
    pub async fn put(
        &self,
        bucket: Option<&str>,
        key: Option<&str>,
        bytes: impl Into<Bytes>,
        content_type: &str,
    ) -> Result<Uploaded, UploadError> {
        let bucket = match bucket.or(self.config.bucket.as_deref()) {
            Some(bucket) => BucketName::parse(bucket)?,
            None => return Err(UploadError::NoBucket),
        };
        let key = match key {
            Some(key) => ObjectKey::parse(key)?,
            None => ObjectKey::generate(
                self.prefix.as_ref(),
                extension_for_content_type(content_type),
            ),
        };
        let content_type_value = HeaderValue::from_str(content_type)
            .ok()
            .filter(|_| !content_type.is_empty())
            .ok_or_else(|| UploadError::ContentType(content_type.chars().take(100).collect()))?;
        let body: Bytes = bytes.into();
        let size = body.len() as u64;
        let s3_bucket = self.bucket(&bucket)?;

        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        let etag = loop {
            attempt += 1;
            let mut action = s3_bucket.put_object(Some(&self.credentials), key.as_str());
            action
                .headers_mut()
                .insert("content-type", content_type.to_owned());
            let url = action.sign(PUT_SIGNATURE_TTL);
            let sent = self
                .client
                .put(url)
                .header(CONTENT_TYPE, content_type_value.clone())
                .header(CONTENT_LENGTH, size)
                .body(body.clone())
                .timeout(self.retry.attempt_timeout)
                .send()
                .await;
            let reason = match sent {
                Ok(response) if response.status().is_success() => {
                    break response
                        .headers()
                        .get(ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim_matches('"').to_owned());
                }
                Ok(response) => match self.classify(response, &bucket).await {
                    Failure::Retry(reason) => reason,
                    Failure::Fatal(error) => return Err(error),
                },
                Err(error) if error.is_builder() => {
                    return Err(UploadError::Client(describe_reqwest(&error)))
                }
                Err(error) => describe_reqwest(&error),
            };
            if attempt >= max_attempts {
                return Err(UploadError::Unavailable {
                    attempts: attempt,
                    endpoint: self.endpoint.to_string(),
                    last: reason,
                });
            }
            let delay = self.retry.backoff(attempt);
            tracing::warn!(
                bucket = %bucket,
                attempt,
                max_attempts,
                delay_ms = delay.as_millis() as u64,
                reason = %reason,
                "S3 upload failed; retrying"
            );
            tokio::time::sleep(delay).await;
        };

        let url = self.presign_get_in(&s3_bucket, &key);
        Ok(Uploaded {
            s3_uri: format!("s3://{bucket}/{key}"),
            bucket: bucket.as_str().to_owned(),
            key: key.as_str().to_owned(),
            url: url.to_string(),
            url_expires_in: self.config.presign_expiry,
            bytes: size,
            etag,
        })
    }

    /// A presigned GET URL for an object, valid for the configured `presign_expiry`. No request
    /// is made: the object need not exist.
    pub fn presign_get(&self, bucket: &BucketName, key: &ObjectKey) -> Result<Url, UploadError> {
        Ok(self.presign_get_in(&self.bucket(bucket)?, key))
    }

    fn presign_get_in(&self, bucket: &Bucket, key: &ObjectKey) -> Url {
        bucket
            .get_object(Some(&self.credentials), key.as_str())
            .sign(self.config.presign_expiry)
    }

    /// The rusty-s3 bucket, path-style when configured, and also where virtual-hosted URLs cannot
    /// work: an IP or `localhost` endpoint, or a dotted bucket name over https (the certificate
    /// would not match).
    fn bucket(&self, bucket: &BucketName) -> Result<Bucket, UploadError> {
        let bare_host = match self.endpoint.host() {
            Some(Host::Domain(domain)) => domain == "localhost" || !domain.contains('.'),
            _ => true,
        };
        let dotted_tls = bucket.as_str().contains('.') && self.endpoint.scheme() == "https";
        let style = if self.config.path_style || bare_host || dotted_tls {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        Bucket::new(
            self.endpoint.clone(),
            style,
            bucket.as_str().to_owned(),
            self.config.region.clone(),
        )
        .map_err(|e| UploadError::Client(format!("cannot build the URL of bucket {bucket}: {e}")))
    }

    async fn classify(&self, response: reqwest::Response, bucket: &BucketName) -> Failure {
        let status = response.status().as_u16();
        let bucket_region = response
            .headers()
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(response).await;
        let s3 = S3ErrorBody::parse(&body);
        let code = s3
            .code
            .clone()
            .unwrap_or_else(|| "(no error code)".to_owned());
        let message = s3
            .message
            .clone()
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        let endpoint = self.endpoint.to_string();
        let retryable = status >= 500 || status == 429 || status == 408 || code == "RequestTimeout";
        if retryable {
            return Failure::Retry(format!("HTTP {status} {code}: {message}"));
        }
        let error = match (status, code.as_str()) {
            (_, "RequestTimeTooSkewed") => UploadError::ClockSkew { message },
            (404, "NoSuchBucket") => UploadError::NoSuchBucket {
                bucket: bucket.to_string(),
                endpoint,
            },
            (301, _)
            | (
                _,
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException",
            ) => UploadError::WrongRegion {
                bucket: bucket.to_string(),
                region: self.config.region.clone(),
                actual: bucket_region.or(s3.region),
            },
            (401 | 403, _)
            | (
                _,
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired",
            ) => UploadError::Credentials {
                status,
                code,
                message,
                bucket: bucket.to_string(),
                endpoint,
            },
            _ => UploadError::Rejected {
                status,
                code,
                message,
                bucket: bucket.to_string(),
            },
        };
        Failure::Fatal(error)
    }
}

enum Failure {
    Retry(String),
    Fatal(UploadError),
}

/// A reqwest error without its URL (a presigned URL carries a live signature) but with its causes.
fn describe_reqwest(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn read_capped(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    body
}

/// The fields of an S3 XML error body that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
struct S3ErrorBody {
    code: Option<String>,
    message: Option<String>,
    region: Option<String>,
}

impl S3ErrorBody {
    fn parse(body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        Self {
            code: xml_element(&text, "Code"),
            message: xml_element(&text, "Message"),
            region: xml_element(&text, "Region"),
        }
    }
}

fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&close)?;
    let value = text[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let value: String = value.trim().chars().take(300).collect();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn error_bodies() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist &amp; more</Message><BucketName>x</BucketName></Error>"#;
        let parsed = S3ErrorBody::parse(body);
        assert_eq!(parsed.code.as_deref(), Some("NoSuchBucket"));
        assert_eq!(
            parsed.message.as_deref(),
            Some("The specified bucket does not exist & more")
        );
        assert_eq!(
            S3ErrorBody::parse(b"<html>bad gateway</html>"),
            S3ErrorBody::default()
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.backoff(40) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn url_style() {
        let mut config = S3Config::new("id", "secret");
        config.endpoint_url = Some("https://nyc3.digitaloceanspaces.com".into());
        config.region = "nyc3".into();
        let up = Uploader::new(config.clone()).unwrap();
        let plain = BucketName::parse("audio").unwrap();
        let dotted = BucketName::parse("audio.example.com").unwrap();
        assert_eq!(
            up.bucket(&plain).unwrap().base_url().as_str(),
            "https://audio.nyc3.digitaloceanspaces.com/"
        );
        assert_eq!(
            up.bucket(&dotted).unwrap().base_url().as_str(),
            "https://nyc3.digitaloceanspaces.com/audio.example.com/"
        );
        config.endpoint_url = Some("http://127.0.0.1:9000".into());
        let up = Uploader::new(config).unwrap();
        assert_eq!(
            up.bucket(&plain).unwrap().base_url().as_str(),
            "http://127.0.0.1:9000/audio/"
        );
    }

    #[test]
    fn presigned_get_carries_the_expiry_and_token() {
        let mut config = S3Config::new("AKIDEXAMPLE", "secret");
        config.session_token = Some("tok/en".into());
        config.presign_expiry = Duration::from_secs(3600);
        let up = Uploader::new(config).unwrap();
        let url = up
            .presign_get(
                &BucketName::parse("audio").unwrap(),
                &ObjectKey::parse("a b/ü.wav").unwrap(),
            )
            .unwrap();
        let s = url.as_str();
        assert!(
            s.starts_with("https://audio.s3.us-east-1.amazonaws.com/a%20b/%C3%BC.wav?"),
            "{s}"
        );
        assert!(s.contains("X-Amz-Expires=3600"), "{s}");
        assert!(s.contains("X-Amz-Security-Token=tok%2Fen"), "{s}");
        assert!(!s.contains("secret"));
    }
}
