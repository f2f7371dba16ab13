//! [`UploadError`]: what went wrong with an upload and how to fix it.

use thiserror::Error;

use crate::config::ConfigError;
use crate::validate::{InvalidBucketName, InvalidObjectKey};

/// Why an upload failed. Messages name the bucket and endpoint but never a credential or a signed
/// URL. On any of these the caller still has the audio (an upload only reads it) and can return
/// it inline instead.
#[derive(Debug, Error)]
pub enum UploadError {
    #[error(
        "no bucket to upload to: name one in the request (s3_bucket, or s3Config.bucketName), or set \
         BUCKET_NAME or S3_BUCKET, or a BUCKET_ENDPOINT_URL that contains the bucket"
    )]
    NoBucket,
    #[error("invalid S3 configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bucket(#[from] InvalidBucketName),
    #[error(transparent)]
    Key(#[from] InvalidObjectKey),
    #[error("content type {0:?} is not a valid HTTP header value: use e.g. audio/wav")]
    ContentType(String),
    #[error("could not set up the HTTP client for S3: {0}")]
    Client(String),
    #[error(
        "S3 refused the credentials: {code}: {message} (HTTP {status}, bucket {bucket}, endpoint {endpoint}); \
         check the access key id and secret (s3Config.accessId/accessSecret, BUCKET_ACCESS_KEY_ID/\
         BUCKET_SECRET_ACCESS_KEY or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and that they may write to \
         this bucket"
    )]
    Credentials {
        status: u16,
        code: String,
        message: String,
        bucket: String,
        endpoint: String,
    },
    #[error(
        "S3 refused the request because this machine's clock is off ({message}): set the clock right \
         (NTP) and retry"
    )]
    ClockSkew { message: String },
    #[error("bucket {bucket} does not exist at {endpoint}: create it, or fix the bucket name")]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error(
        "bucket {bucket} is not in region {region}{}: set S3_REGION, or use the bucket's regional endpoint URL",
        actual.as_deref().map(|r| format!(" but in {r}")).unwrap_or_default()
    )]
    WrongRegion {
        bucket: String,
        region: String,
        actual: Option<String>,
    },
    #[error("S3 rejected the upload to bucket {bucket}: HTTP {status} {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
        bucket: String,
    },
    #[error(
        "S3 upload to {endpoint} failed after {attempts} attempt(s), last: {last}; the store is down, \
         overloaded or unreachable from here"
    )]
    Unavailable {
        attempts: u32,
        endpoint: String,
        last: String,
    },
}

impl UploadError {
    /// A stable identifier for JSON error bodies and metrics labels.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::NoBucket => "s3_no_bucket",
            Self::Config(_) => "s3_config",
            Self::Bucket(_) => "s3_invalid_bucket",
            Self::Key(_) => "s3_invalid_key",
            Self::ContentType(_) => "s3_invalid_content_type",
            Self::Client(_) => "s3_client",
            Self::Credentials { .. } => "s3_credentials",
            Self::ClockSkew { .. } => "s3_clock_skew",
            Self::NoSuchBucket { .. } => "s3_no_such_bucket",
            Self::WrongRegion { .. } => "s3_wrong_region",
            Self::Rejected { .. } => "s3_rejected",
            Self::Unavailable { .. } => "s3_unavailable",
        }
    }

    /// Whether the caller's input (bucket, key, `s3Config`, content type) caused the failure, as
    /// opposed to the server's configuration or the store: a front door answers 4xx for these.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Bucket(_) | Self::Key(_) | Self::ContentType(_))
    }
}
