//! [`S3Config`]: where uploads go and with which credentials, from environment variables (passed in
//! as a map: nothing in this crate reads the process environment) or from a request's RunPod-style
//! `s3Config`.
//!
//! Precedence, highest first: the request's `s3Config` > the request's bucket/key (given to
//! [`Uploader::put`](crate::Uploader::put)) > RunPod's `BUCKET_*` variables > the AWS `AWS_*`
//! variables. Our own `S3_*` variables fill in what neither convention names (`S3_BUCKET`,
//! `S3_KEY_PREFIX`, `S3_REGION`, `S3_FORCE_PATH_STYLE`, `S3_PRESIGN_EXPIRY_SECS`).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::Url;

use crate::endpoint::{parse_endpoint_url, EndpointError, ParsedEndpoint};
use crate::validate::{BucketName, InvalidBucketName, InvalidObjectKey, KeyPrefix};

/// The default region, as in the AWS SDKs.
pub const DEFAULT_REGION: &str = "us-east-1";
/// SigV4 presigned URLs live at most 7 days; this is also the default, as in runpod-python.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where uploads go and how they are signed.
///
/// `Debug` never prints the secret key or session token.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Service endpoint without the bucket (`https://nyc3.digitaloceanspaces.com`); `None` is AWS
    /// (`https://s3.<region>.amazonaws.com`).
    pub endpoint_url: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// The bucket used when a request names none.
    pub bucket: Option<String>,
    /// Prefix of generated keys (`{prefix}/{yyyy-mm-dd}/{uuid}.{ext}`), without surrounding '/'.
    pub key_prefix: Option<String>,
    /// Path-style (`<endpoint>/<bucket>/<key>`) instead of virtual-hosted (`<bucket>.<host>/<key>`).
    pub path_style: bool,
    /// Lifetime of the presigned GET URLs: 1 s to 7 days.
    pub presign_expiry: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("path_style", &self.path_style)
            .field("presign_expiry", &self.presign_expiry)
            .finish()
    }
}

/// A request's RunPod-style `s3Config` object (RunPod docs, "send requests"):
/// `{"accessId", "accessSecret", "bucketName", "endpointUrl"}`. Every field is optional here;
/// [`S3Config::from_request`] says which combinations work.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestS3Config {
    #[serde(default)]
    pub access_id: Option<String>,
    #[serde(default)]
    pub access_secret: Option<String>,
    #[serde(default)]
    pub bucket_name: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

impl fmt::Debug for RequestS3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestS3Config")
            .field("access_id", &self.access_id)
            .field(
                "access_secret",
                &self.access_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("bucket_name", &self.bucket_name)
            .field("endpoint_url", &self.endpoint_url)
            .finish()
    }
}

/// Why an S3 configuration was refused. `source` names the variable or request field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{given} is set but {missing} is not: set both (the access key id and its secret go together)")]
    PartialCredentials {
        given: &'static str,
        missing: &'static str,
    },
    #[error(
        "S3 uploads are configured ({because} is set) but no credentials are: set BUCKET_ACCESS_KEY_ID and \
         BUCKET_SECRET_ACCESS_KEY, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    MissingCredentials { because: &'static str },
    #[error(
        "s3Config has no accessId/accessSecret and the server has no S3 credentials of its own: give \
         accessId and accessSecret in s3Config"
    )]
    RequestWithoutCredentials,
    #[error(
        "s3Config.endpointUrl points to another S3 service than the server's, so the server's credentials \
         are not used for it: give accessId and accessSecret in s3Config too"
    )]
    ForeignEndpointWithoutCredentials,
    #[error("{source_name}: {error}")]
    Endpoint {
        source_name: &'static str,
        error: EndpointError,
    },
    #[error("{source_name}: {error}")]
    Bucket {
        source_name: &'static str,
        error: InvalidBucketName,
    },
    #[error("{source_name}: bad key prefix: {error}")]
    KeyPrefix {
        source_name: &'static str,
        error: InvalidObjectKey,
    },
    #[error("{source_name} is {value:?}: {expected}")]
    Value {
        source_name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{field} is empty: give a non-empty value")]
    EmptyField { field: &'static str },
    #[error("region {region:?} is not a region name: use letters, digits and '-' (e.g. us-east-1, nyc3, auto)")]
    Region { region: String },
    #[error("presign expiry of {secs} s is out of range: SigV4 presigned URLs live 1 s to 604800 s (7 days)")]
    PresignExpiry { secs: u64 },
}

/// A value and the variable or field it came from.
struct Sourced<'a> {
    name: &'static str,
    value: &'a str,
}

fn lookup<'a>(env: &'a HashMap<String, String>, name: &'static str) -> Option<Sourced<'a>> {
    env.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|value| Sourced { name, value })
}

fn first<'a>(env: &'a HashMap<String, String>, names: &[&'static str]) -> Option<Sourced<'a>> {
    names.iter().find_map(|name| lookup(env, name))
}

fn parse_endpoint(src: &Sourced<'_>) -> Result<ParsedEndpoint, ConfigError> {
    parse_endpoint_url(src.value).map_err(|error| ConfigError::Endpoint {
        source_name: src.name,
        error,
    })
}

fn parse_bool(src: &Sourced<'_>) -> Result<bool, ConfigError> {
    match src.value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Value {
            source_name: src.name,
            value: src.value.to_owned(),
            expected: "expected true or false",
        }),
    }
}

impl S3Config {
    /// A configuration for AWS S3 in [`DEFAULT_REGION`] with these credentials and defaults
    /// elsewhere (virtual-hosted URLs, 7-day presigned URLs, no default bucket).
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            endpoint_url: None,
            region: DEFAULT_REGION.to_owned(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            bucket: None,
            key_prefix: None,
            path_style: false,
            presign_expiry: MAX_PRESIGN_EXPIRY,
        }
    }

    /// Builds the configuration from environment variables (the CLI passes `std::env::vars()`).
    /// Empty values count as unset. `Ok(None)`: nothing S3-related is set, uploads are off.
    ///
    /// | what | variables, first set wins |
    /// |---|---|
    /// | credentials (as a pair) | `BUCKET_ACCESS_KEY_ID` + `BUCKET_SECRET_ACCESS_KEY`; else `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) |
    /// | endpoint | `BUCKET_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`; none: AWS |
    /// | bucket | `BUCKET_NAME`, the bucket in the endpoint URL, `S3_BUCKET` |
    /// | region | `S3_REGION`, the region in the endpoint's host, `AWS_REGION`, `AWS_DEFAULT_REGION`, `us-east-1` |
    /// | key prefix | `S3_KEY_PREFIX`, the path after the bucket in the endpoint URL |
    /// | URL style | `S3_FORCE_PATH_STYLE`; else from the endpoint (see [`crate::endpoint`]) |
    /// | presigned URL lifetime | `S3_PRESIGN_EXPIRY_SECS` (1–604800), default 7 days |
    ///
    /// The region in the endpoint's host beats `AWS_REGION`: a request signed for another region
    /// than the endpoint's fails anyway.
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<Option<Self>, ConfigError> {
        let credentials = env_credentials(env)?;
        let endpoint_src = first(
            env,
            &[
                "BUCKET_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
            ],
        );
        let Some((access_key_id, secret_access_key, session_token)) = credentials else {
            // Signals that S3 was wanted; AWS_ENDPOINT_URL alone may be meant for other AWS services.
            return match first(env, &["BUCKET_ENDPOINT_URL", "BUCKET_NAME", "S3_BUCKET"]) {
                Some(src) => Err(ConfigError::MissingCredentials { because: src.name }),
                None => Ok(None),
            };
        };
        let parsed = endpoint_src.as_ref().map(parse_endpoint).transpose()?;

        let mut config = Self::new(access_key_id, secret_access_key);
        config.session_token = session_token;
        if let Some(parsed) = &parsed {
            config.endpoint_url = Some(parsed.endpoint.to_string());
            config.path_style = parsed.path_style;
        }
        let (bucket, bucket_source) = if let Some(src) = lookup(env, "BUCKET_NAME") {
            (Some(src.value.to_owned()), src.name)
        } else if let Some(bucket) = parsed.as_ref().and_then(|p| p.bucket.clone()) {
            let name = endpoint_src.as_ref().map_or("endpoint URL", |s| s.name);
            (Some(bucket), name)
        } else if let Some(src) = lookup(env, "S3_BUCKET") {
            (Some(src.value.to_owned()), src.name)
        } else {
            (None, "bucket")
        };
        if let Some(bucket) = &bucket {
            BucketName::parse(bucket).map_err(|error| ConfigError::Bucket {
                source_name: bucket_source,
                error,
            })?;
        }
        config.bucket = bucket;
        config.region = if let Some(src) = lookup(env, "S3_REGION") {
            src.value.to_owned()
        } else if let Some(region) = parsed.as_ref().and_then(|p| p.region.clone()) {
            region
        } else if let Some(src) = first(env, &["AWS_REGION", "AWS_DEFAULT_REGION"]) {
            src.value.to_owned()
        } else {
            DEFAULT_REGION.to_owned()
        };
        if let Some(src) = lookup(env, "S3_KEY_PREFIX") {
            config.key_prefix = prefix_string(src.name, src.value)?;
        } else if let Some(prefix) = parsed.as_ref().and_then(|p| p.key_prefix.as_deref()) {
            let name = endpoint_src.as_ref().map_or("endpoint URL", |s| s.name);
            config.key_prefix = prefix_string(name, prefix)?;
        }
        if let Some(src) = lookup(env, "S3_FORCE_PATH_STYLE") {
            config.path_style = parse_bool(&src)?;
        }
        if let Some(src) = lookup(env, "S3_PRESIGN_EXPIRY_SECS") {
            let secs: u64 = src.value.parse().map_err(|_| ConfigError::Value {
                source_name: src.name,
                value: src.value.to_owned(),
                expected: "expected a whole number of seconds, 1 to 604800",
            })?;
            config.presign_expiry = Duration::from_secs(secs);
        }
        config.validate()?;
        Ok(Some(config))
    }

    /// Builds the configuration for one request from its RunPod-style `s3Config`, on top of the
    /// server's own configuration `base` (if any).
    ///
    /// - `accessId`/`accessSecret` go together; without them the server's credentials are used, but
    ///   only when `endpointUrl` is absent or names the same service as the server's endpoint
    ///   (the server's credentials are never sent to a host the caller picked).
    /// - `endpointUrl` is parsed like `BUCKET_ENDPOINT_URL` (bucket, region and prefix may come
    ///   from it); `bucketName` beats the bucket in the URL.
    /// - The presigned URL lifetime stays the server's.
    pub fn from_request(
        request: &RequestS3Config,
        base: Option<&S3Config>,
    ) -> Result<Self, ConfigError> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let access_id = nonempty(&request.access_id);
        let access_secret = nonempty(&request.access_secret);
        let bucket_name = nonempty(&request.bucket_name);
        let endpoint_src = nonempty(&request.endpoint_url);
        let parsed = endpoint_src
            .as_deref()
            .map(|value| {
                parse_endpoint(&Sourced {
                    name: "s3Config.endpointUrl",
                    value,
                })
            })
            .transpose()?;

        let same_service = match (&parsed, base) {
            (None, _) => true,
            (Some(parsed), Some(base)) => {
                base.service_endpoint().ok().as_ref() == Some(&parsed.endpoint)
            }
            (Some(_), None) => false,
        };
        let mut config = match (access_id, access_secret) {
            (Some(id), Some(secret)) => {
                let mut config = match base {
                    Some(base) if same_service => base.clone(),
                    _ => Self::new("", ""),
                };
                config.access_key_id = id;
                config.secret_access_key = secret;
                config.session_token = None;
                if let Some(base) = base {
                    config.presign_expiry = base.presign_expiry;
                }
                config
            }
            (Some(_), None) => {
                return Err(ConfigError::PartialCredentials {
                    given: "s3Config.accessId",
                    missing: "s3Config.accessSecret",
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::PartialCredentials {
                    given: "s3Config.accessSecret",
                    missing: "s3Config.accessId",
                })
            }
            (None, None) => match base {
                Some(base) if same_service => base.clone(),
                Some(_) => return Err(ConfigError::ForeignEndpointWithoutCredentials),
                None => return Err(ConfigError::RequestWithoutCredentials),
            },
        };
        if let Some(parsed) = parsed {
            config.endpoint_url = Some(parsed.endpoint.to_string());
            config.path_style = parsed.path_style;
            if let Some(region) = parsed.region {
                config.region = region;
            } else if !same_service {
                config.region = DEFAULT_REGION.to_owned();
            }
            if parsed.bucket.is_some() {
                config.bucket = parsed.bucket;
            }
            if let Some(prefix) = parsed.key_prefix {
                config.key_prefix = prefix_string("s3Config.endpointUrl", &prefix)?;
            }
        }
        if let Some(bucket) = bucket_name {
            config.bucket = Some(bucket);
        }
        if let Some(bucket) = &config.bucket {
            BucketName::parse(bucket).map_err(|error| ConfigError::Bucket {
                source_name: "s3Config.bucketName",
                error,
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; [`Uploader::new`](crate::Uploader::new) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.access_key_id.trim().is_empty() {
            return Err(ConfigError::EmptyField {
                field: "access_key_id",
            });
        }
        if self.secret_access_key.is_empty() {
            return Err(ConfigError::EmptyField {
                field: "secret_access_key",
            });
        }
        if self.region.is_empty()
            || self.region.len() > 64
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Region {
                region: self.region.chars().take(80).collect(),
            });
        }
        self.service_endpoint()?;
        if let Some(bucket) = &self.bucket {
            BucketName::parse(bucket).map_err(|error| ConfigError::Bucket {
                source_name: "bucket",
                error,
            })?;
        }
        if let Some(prefix) = &self.key_prefix {
            parse_prefix("key_prefix", prefix)?;
        }
        let secs = self.presign_expiry.as_secs();
        if secs == 0 || self.presign_expiry > MAX_PRESIGN_EXPIRY {
            return Err(ConfigError::PresignExpiry { secs });
        }
        Ok(())
    }

    /// The service endpoint requests go to: `endpoint_url`, or AWS's for the region.
    pub fn service_endpoint(&self) -> Result<Url, ConfigError> {
        match &self.endpoint_url {
            Some(raw) => {
                let parsed = parse_endpoint(&Sourced {
                    name: "endpoint_url",
                    value: raw,
                })?;
                Ok(parsed.endpoint)
            }
            None => {
                let domain = if self.region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                let raw = format!("https://s3.{}.{domain}/", self.region);
                Url::parse(&raw).map_err(|e| ConfigError::Endpoint {
                    source_name: "region",
                    error: EndpointError::NotAUrl {
                        value: raw,
                        reason: e.to_string(),
                    },
                })
            }
        }
    }

    /// The key prefix, validated.
    pub(crate) fn prefix(&self) -> Result<Option<KeyPrefix>, ConfigError> {
        match &self.key_prefix {
            Some(prefix) => parse_prefix("key_prefix", prefix),
            None => Ok(None),
        }
    }
}

fn parse_prefix(source_name: &'static str, prefix: &str) -> Result<Option<KeyPrefix>, ConfigError> {
    KeyPrefix::parse(prefix).map_err(|error| ConfigError::KeyPrefix { source_name, error })
}

/// A validated prefix as stored in [`S3Config::key_prefix`].
fn prefix_string(source_name: &'static str, prefix: &str) -> Result<Option<String>, ConfigError> {
    Ok(parse_prefix(source_name, prefix)?.map(|p| p.as_str().to_owned()))
}

type EnvCredentials = (String, String, Option<String>);

fn env_credentials(env: &HashMap<String, String>) -> Result<Option<EnvCredentials>, ConfigError> {
    let pair = |id: &'static str, secret: &'static str| match (lookup(env, id), lookup(env, secret))
    {
        (Some(id), Some(secret)) => Ok(Some((id.value.to_owned(), secret.value.to_owned()))),
        (Some(_), None) => Err(ConfigError::PartialCredentials {
            given: id,
            missing: secret,
        }),
        (None, Some(_)) => Err(ConfigError::PartialCredentials {
            given: secret,
            missing: id,
        }),
        (None, None) => Ok(None),
    };
    if let Some((id, secret)) = pair("BUCKET_ACCESS_KEY_ID", "BUCKET_SECRET_ACCESS_KEY")? {
        return Ok(Some((id, secret, None)));
    }
    if let Some((id, secret)) = pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")? {
        let token = lookup(env, "AWS_SESSION_TOKEN").map(|s| s.value.to_owned());
        return Ok(Some((id, secret, token)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn nothing_set_means_no_uploads() {
        assert_eq!(S3Config::from_env_map(&env(&[])).unwrap(), None);
        assert_eq!(
            S3Config::from_env_map(&env(&[
                ("AWS_ENDPOINT_URL", "http://x:1"),
                ("AWS_REGION", "eu-west-1")
            ]))
            .unwrap(),
            None
        );
        assert_eq!(
            S3Config::from_env_map(&env(&[("BUCKET_ACCESS_KEY_ID", "  ")])).unwrap(),
            None
        );
    }

    #[test]
    fn runpod_variables() {
        let c = S3Config::from_env_map(&env(&[
            (
                "BUCKET_ENDPOINT_URL",
                "https://my-bucket.nyc3.digitaloceanspaces.com",
            ),
            ("BUCKET_ACCESS_KEY_ID", "DO00ID"),
            ("BUCKET_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ACCESS_KEY_ID", "AKIA-ignored"),
            ("AWS_SECRET_ACCESS_KEY", "ignored"),
            ("AWS_SESSION_TOKEN", "ignored-token"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_BUCKET", "ignored-bucket"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            c.endpoint_url.as_deref(),
            Some("https://nyc3.digitaloceanspaces.com/")
        );
        assert_eq!(c.bucket.as_deref(), Some("my-bucket"));
        assert_eq!(c.region, "nyc3");
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("DO00ID", "secret")
        );
        assert_eq!(c.session_token, None);
        assert!(!c.path_style);
        assert_eq!(c.presign_expiry, MAX_PRESIGN_EXPIRY);
    }

    #[test]
    fn bucket_name_beats_the_url_bucket() {
        let c = S3Config::from_env_map(&env(&[
            (
                "BUCKET_ENDPOINT_URL",
                "https://url-bucket.s3.us-east-2.amazonaws.com",
            ),
            ("BUCKET_ACCESS_KEY_ID", "id"),
            ("BUCKET_SECRET_ACCESS_KEY", "secret"),
            ("BUCKET_NAME", "named-bucket"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.bucket.as_deref(), Some("named-bucket"));
        assert_eq!(c.region, "us-east-2");
    }

    #[test]
    fn aws_variables() {
        let c = S3Config::from_env_map(&env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_DEFAULT_REGION", "eu-central-1"),
            ("S3_BUCKET", "audio-out"),
            ("S3_KEY_PREFIX", "/tts/"),
            ("S3_PRESIGN_EXPIRY_SECS", "3600"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint_url, None);
        assert_eq!(
            c.service_endpoint().unwrap().as_str(),
            "https://s3.eu-central-1.amazonaws.com/"
        );
        assert_eq!(c.region, "eu-central-1");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert_eq!(c.bucket.as_deref(), Some("audio-out"));
        assert_eq!(c.key_prefix.as_deref(), Some("tts"));
        assert_eq!(c.presign_expiry, Duration::from_secs(3600));
        assert!(!format!("{c:?}").contains("tok") || format!("{c:?}").contains("<redacted>"));
        assert!(!format!("{c:?}").contains("\"s\""));
    }

    #[test]
    fn aws_endpoint_variables() {
        let c = S3Config::from_env_map(&env(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
            ("AWS_ENDPOINT_URL", "http://ignored:1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000/bkt/pre"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_FORCE_PATH_STYLE", "false"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:9000/"));
        assert_eq!(c.bucket.as_deref(), Some("bkt"));
        assert_eq!(c.key_prefix.as_deref(), Some("pre"));
        assert_eq!(c.region, "eu-west-1");
        assert!(!c.path_style);
        let c = S3Config::from_env_map(&env(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_REGION", "auto"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.region, "auto");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = S3Config::from_env_map(&env(&[("BUCKET_ACCESS_KEY_ID", "x")])).unwrap_err();
        assert!(
            err.to_string().contains("BUCKET_SECRET_ACCESS_KEY"),
            "{err}"
        );
        let err = S3Config::from_env_map(&env(&[("AWS_SECRET_ACCESS_KEY", "x")])).unwrap_err();
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
        let err = S3Config::from_env_map(&env(&[(
            "BUCKET_ENDPOINT_URL",
            "https://b.s3.amazonaws.com",
        )]))
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingCredentials {
                because: "BUCKET_ENDPOINT_URL"
            }
        );
        let creds = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")];
        let with = |extra: (&str, &str)| {
            let mut e = env(&creds);
            e.insert(extra.0.to_owned(), extra.1.to_owned());
            S3Config::from_env_map(&e).unwrap_err().to_string()
        };
        assert!(with(("BUCKET_ENDPOINT_URL", "ftp://x")).contains("BUCKET_ENDPOINT_URL"));
        assert!(with(("S3_BUCKET", "Bad_Bucket")).contains("S3_BUCKET"));
        assert!(with(("S3_KEY_PREFIX", "a/../b")).contains("S3_KEY_PREFIX"));
        assert!(with(("S3_PRESIGN_EXPIRY_SECS", "604801")).contains("604800"));
        assert!(with(("S3_PRESIGN_EXPIRY_SECS", "soon")).contains("S3_PRESIGN_EXPIRY_SECS"));
        assert!(with(("S3_FORCE_PATH_STYLE", "maybe")).contains("S3_FORCE_PATH_STYLE"));
        assert!(with(("AWS_REGION", "us east")).contains("region"));
    }

    fn base() -> S3Config {
        S3Config::from_env_map(&env(&[
            (
                "BUCKET_ENDPOINT_URL",
                "https://server-bucket.s3.us-east-1.amazonaws.com",
            ),
            ("BUCKET_ACCESS_KEY_ID", "server-id"),
            ("BUCKET_SECRET_ACCESS_KEY", "server-secret"),
            ("S3_PRESIGN_EXPIRY_SECS", "600"),
        ]))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn request_with_own_credentials_and_endpoint() {
        let req: RequestS3Config = serde_json::from_value(serde_json::json!({
            "accessId": "user-id", "accessSecret": "user-secret",
            "bucketName": "user-bucket", "endpointUrl": "https://fra1.digitaloceanspaces.com"
        }))
        .unwrap();
        let c = S3Config::from_request(&req, Some(&base())).unwrap();
        assert_eq!(c.access_key_id, "user-id");
        assert_eq!(c.bucket.as_deref(), Some("user-bucket"));
        assert_eq!(c.region, "fra1");
        assert_eq!(
            c.endpoint_url.as_deref(),
            Some("https://fra1.digitaloceanspaces.com/")
        );
        assert_eq!(c.presign_expiry, Duration::from_secs(600));
        assert!(!format!("{req:?}").contains("user-secret"));
        // Without a server configuration too.
        let c = S3Config::from_request(&req, None).unwrap();
        assert_eq!(c.presign_expiry, MAX_PRESIGN_EXPIRY);
    }

    #[test]
    fn request_bucket_only_reuses_server_credentials() {
        let req = RequestS3Config {
            bucket_name: Some("other-bucket".into()),
            ..Default::default()
        };
        let c = S3Config::from_request(&req, Some(&base())).unwrap();
        assert_eq!(c.access_key_id, "server-id");
        assert_eq!(c.bucket.as_deref(), Some("other-bucket"));
        // Same service named through another bucket's virtual host: still the server's service.
        let req = RequestS3Config {
            endpoint_url: Some("https://bk2.s3.us-east-1.amazonaws.com".into()),
            ..Default::default()
        };
        let c = S3Config::from_request(&req, Some(&base())).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.bucket.as_deref()),
            ("server-id", Some("bk2"))
        );
    }

    #[test]
    fn request_errors() {
        let foreign = RequestS3Config {
            endpoint_url: Some("https://attacker.example.com/b".into()),
            ..Default::default()
        };
        assert_eq!(
            S3Config::from_request(&foreign, Some(&base())),
            Err(ConfigError::ForeignEndpointWithoutCredentials)
        );
        assert_eq!(
            S3Config::from_request(&RequestS3Config::default(), None),
            Err(ConfigError::RequestWithoutCredentials)
        );
        let half = RequestS3Config {
            access_id: Some("x".into()),
            ..Default::default()
        };
        assert!(matches!(
            S3Config::from_request(&half, Some(&base())),
            Err(ConfigError::PartialCredentials { .. })
        ));
        let bad_bucket = RequestS3Config {
            bucket_name: Some("../etc".into()),
            ..Default::default()
        };
        let err = S3Config::from_request(&bad_bucket, Some(&base())).unwrap_err();
        assert!(err.to_string().contains("s3Config.bucketName"), "{err}");
    }
}
