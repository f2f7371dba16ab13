//! Uploads generated audio to any S3-compatible object store (AWS S3, Cloudflare R2,
//! DigitalOcean Spaces, Backblaze B2, MinIO, …) and answers an `s3://bucket/key` URI plus a
//! presigned HTTPS GET URL, as RunPod workers do (`runpod-python`'s `rp_upload`: 7-day presigned
//! URLs, `BUCKET_*` variables, the request's `s3Config`).
//!
//! - [`S3Config`]: built from an environment map ([`S3Config::from_env_map`], AWS and RunPod
//!   conventions) or a request's `s3Config` ([`S3Config::from_request`]). Nothing here reads the
//!   process environment.
//! - [`Uploader::put`]: validates bucket and key, uploads with retries (exponential backoff with
//!   jitter on 5xx, 429, timeouts and connection errors), maps 4xx answers to errors that say what
//!   to fix, and presigns the GET URL. On failure the caller still has the audio and can return it
//!   inline: nothing is lost (see `docs/storage.md`).
//! - [`endpoint::parse_endpoint_url`]: splits bucket, region and key prefix out of endpoint URLs
//!   like `https://my-bucket.s3.us-east-1.amazonaws.com` or
//!   `https://my-bucket.nyc3.digitaloceanspaces.com`.
//!
//! # Why rusty-s3 + reqwest
//!
//! We need one operation (`PutObject`) and presigned GET URLs. [`rusty_s3`] is a small, maintained,
//! sans-IO SigV4 signer made for exactly that (presigned URLs for every action, session tokens,
//! path and virtual-hosted styles); with its XML/serde features off it adds only `hmac`, `sha2`,
//! `jiff`, `url` and `percent-encoding`. The transport is [`reqwest`] with rustls (ring, bundled
//! web-PKI roots: no OpenSSL, no cmake), which the server crates want anyway. The PUT is sent to
//! a presigned URL (query-string SigV4, `UNSIGNED-PAYLOAD`, `content-type` signed), which every
//! S3-compatible store accepts and which keeps the body out of the signature (no hashing pass over
//! the audio). `aws-sdk-s3` would pull in the Smithy runtime, aws-lc and ~200 crates, minutes of
//! compile on two cores, for the same two calls; `rust-s3` bundles its own HTTP stacks and
//! feature matrix.
//!
//! Tests run against `s3s-fs` (crates.io), a real S3 server that verifies SigV4 signatures,
//! installed by `scripts/install-test-deps.sh`.

pub mod config;
pub mod egress;
pub mod endpoint;
mod error;
mod upload;
pub mod validate;

pub use config::{ConfigError, RequestS3Config, S3Config, DEFAULT_REGION, MAX_PRESIGN_EXPIRY};
pub use egress::{EgressError, EgressPolicy};
pub use endpoint::{parse_endpoint_url, EndpointError, ParsedEndpoint};
pub use error::UploadError;
pub use upload::{RetryPolicy, Uploaded, Uploader};
pub use validate::{
    extension_for_content_type, BucketName, InvalidBucketName, InvalidObjectKey, KeyPrefix,
    ObjectKey,
};
