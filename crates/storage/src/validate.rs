//! Bucket-name and object-key validation.
//!
//! Names come from environment variables and from requests, so they are checked once, here, before
//! any URL is built: rusty-s3 resolves `.`/`..` path segments like a file system and turns an empty
//! key into a bucket-level request, so such keys must never reach it (see its `Bucket` docs).

use std::fmt;

use thiserror::Error;

/// The longest object key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest key prefix accepted, so that a generated `{prefix}/{yyyy-mm-dd}/{uuid}.{ext}` key
/// (at most 64 more bytes) still fits in [`MAX_KEY_BYTES`].
pub const MAX_PREFIX_BYTES: usize = MAX_KEY_BYTES - 64;

/// How much of an offending value an error message repeats.
const SHOWN_CHARS: usize = 80;

/// A value shortened for an error message (request input can be arbitrarily long).
fn shown(value: &str) -> String {
    if value.chars().count() <= SHOWN_CHARS {
        value.to_owned()
    } else {
        let head: String = value.chars().take(SHOWN_CHARS).collect();
        format!("{head}…")
    }
}

/// Why a bucket name was refused. The rules are AWS's (which DigitalOcean Spaces, Cloudflare R2,
/// Backblaze B2 and MinIO share): 3–63 characters of `a-z`, `0-9`, `.` and `-`, starting and ending
/// with a letter or digit, no `..`, not an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidBucketName {
    #[error("the bucket name is empty: give a bucket of 3 to 63 characters (a-z, 0-9, '.', '-')")]
    Empty,
    #[error("bucket name {name:?} has {len} characters: S3 bucket names have 3 to 63")]
    Length { name: String, len: usize },
    #[error(
        "bucket name {name:?} contains {ch:?}: S3 bucket names use only lowercase letters, digits, '.' and '-'"
    )]
    Character { name: String, ch: char },
    #[error("bucket name {name:?} must start and end with a lowercase letter or a digit")]
    Edge { name: String },
    #[error("bucket name {name:?} contains \"..\", \".-\" or \"-.\", which S3 refuses")]
    Dots { name: String },
    #[error("bucket name {name:?} is formatted as an IP address, which S3 refuses")]
    IpAddress { name: String },
}

/// Why an object key (or key prefix) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidObjectKey {
    #[error("the object key is empty: give a key such as \"audio/speech.wav\"")]
    Empty,
    #[error("object key {key:?} is {len} bytes long: S3 keys are at most {max} bytes")]
    TooLong { key: String, len: usize, max: usize },
    #[error(
        "object key {key:?} starts with '/': give it relative to the bucket, e.g. \"audio/x.wav\""
    )]
    LeadingSlash { key: String },
    #[error(
        "object key {key:?} has a \".\" or \"..\" path segment: such keys are resolved away in URLs, so they are refused"
    )]
    DotSegment { key: String },
    #[error("object key {key:?} has an empty path segment (\"//\" or a trailing '/')")]
    EmptySegment { key: String },
    #[error("object key {key:?} contains a backslash: use '/' to separate path segments")]
    Backslash { key: String },
    #[error("object key {key:?} contains a control character")]
    ControlCharacter { key: String },
}

/// A validated bucket name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketName(String);

impl BucketName {
    /// Checks `name` against the S3 bucket naming rules.
    pub fn parse(name: &str) -> Result<Self, InvalidBucketName> {
        let len = name.chars().count();
        if len == 0 {
            return Err(InvalidBucketName::Empty);
        }
        let name_owned = || shown(name);
        if !(3..=63).contains(&len) {
            return Err(InvalidBucketName::Length {
                name: name_owned(),
                len,
            });
        }
        if let Some(ch) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
        {
            return Err(InvalidBucketName::Character {
                name: name_owned(),
                ch,
            });
        }
        let edge_ok =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
            return Err(InvalidBucketName::Edge { name: name_owned() });
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return Err(InvalidBucketName::Dots { name: name_owned() });
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(InvalidBucketName::IpAddress { name: name_owned() });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated object key: non-empty, at most [`MAX_KEY_BYTES`], relative, made of non-empty path
/// segments none of which is `.` or `..`, without backslashes or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks `key` against the rules above.
    pub fn parse(key: &str) -> Result<Self, InvalidObjectKey> {
        check_path(key, MAX_KEY_BYTES)?;
        Ok(Self(key.to_owned()))
    }

    /// The default key scheme: `{prefix}/{yyyy-mm-dd}/{uuid}.{ext}` (UTC date, random v4 uuid), or
    /// `{yyyy-mm-dd}/{uuid}.{ext}` without a prefix. `ext` is cleaned to at most 10 ASCII
    /// alphanumerics (`bin` if nothing is left).
    pub fn generate(prefix: Option<&KeyPrefix>, ext: &str) -> Self {
        let ext: String = ext
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>()
            .to_ascii_lowercase();
        let ext = if ext.is_empty() {
            "bin".to_owned()
        } else {
            ext
        };
        let date = jiff::Timestamp::now().strftime("%Y-%m-%d");
        let uuid = uuid::Uuid::new_v4();
        match prefix {
            Some(prefix) => Self(format!("{}/{date}/{uuid}.{ext}", prefix.as_str())),
            None => Self(format!("{date}/{uuid}.{ext}")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated key prefix: like an [`ObjectKey`] but at most [`MAX_PREFIX_BYTES`], stored without
/// leading or trailing '/'.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Trims surrounding '/' and validates the rest; `Ok(None)` for an empty prefix.
    pub fn parse(prefix: &str) -> Result<Option<Self>, InvalidObjectKey> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(None);
        }
        check_path(trimmed, MAX_PREFIX_BYTES)?;
        Ok(Some(Self(trimmed.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_path(key: &str, max: usize) -> Result<(), InvalidObjectKey> {
    if key.is_empty() {
        return Err(InvalidObjectKey::Empty);
    }
    let key_owned = || shown(key);
    if key.len() > max {
        return Err(InvalidObjectKey::TooLong {
            key: key_owned(),
            len: key.len(),
            max,
        });
    }
    if key.starts_with('/') {
        return Err(InvalidObjectKey::LeadingSlash { key: key_owned() });
    }
    if key.chars().any(char::is_control) {
        return Err(InvalidObjectKey::ControlCharacter { key: key_owned() });
    }
    if key.contains('\\') {
        return Err(InvalidObjectKey::Backslash { key: key_owned() });
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(InvalidObjectKey::EmptySegment { key: key_owned() });
        }
        if segment == "." || segment == ".." {
            return Err(InvalidObjectKey::DotSegment { key: key_owned() });
        }
    }
    Ok(())
}

/// The file extension for an audio `Content-Type` (parameters ignored), `bin` when unknown.
pub fn extension_for_content_type(content_type: &str) -> &'static str {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "audio/wav" | "audio/wave" | "audio/x-wav" | "audio/vnd.wave" => "wav",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/opus" => "opus",
        "audio/ogg" => "ogg",
        "audio/aac" | "audio/x-aac" => "aac",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/pcm" | "audio/l16" => "pcm",
        "application/json" => "json",
        "text/plain" => "txt",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "my.bucket.v2", "a1b", &"a".repeat(63)] {
            assert!(BucketName::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(BucketName::parse(""), Err(InvalidBucketName::Empty));
        assert!(matches!(
            BucketName::parse("ab"),
            Err(InvalidBucketName::Length { .. })
        ));
        assert!(matches!(
            BucketName::parse(&"a".repeat(64)),
            Err(InvalidBucketName::Length { .. })
        ));
        assert!(matches!(
            BucketName::parse("My-Bucket"),
            Err(InvalidBucketName::Character { ch: 'M', .. })
        ));
        assert!(matches!(
            BucketName::parse("my_bucket"),
            Err(InvalidBucketName::Character { ch: '_', .. })
        ));
        assert!(matches!(
            BucketName::parse("../etc"),
            Err(InvalidBucketName::Character { ch: '/', .. })
        ));
        assert!(matches!(
            BucketName::parse(".abc"),
            Err(InvalidBucketName::Edge { .. })
        ));
        assert!(matches!(
            BucketName::parse("-abc"),
            Err(InvalidBucketName::Edge { .. })
        ));
        assert!(matches!(
            BucketName::parse("a..b"),
            Err(InvalidBucketName::Dots { .. })
        ));
        assert!(matches!(
            BucketName::parse("192.168.1.1"),
            Err(InvalidBucketName::IpAddress { .. })
        ));
    }

    #[test]
    fn object_keys() {
        for ok in [
            "a",
            "audio/x.wav",
            "job-1/8f3a.wav",
            "é/ü.wav",
            "a..b/c",
            "...",
            ".hidden",
        ] {
            assert!(ObjectKey::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(ObjectKey::parse(""), Err(InvalidObjectKey::Empty));
        assert!(matches!(
            ObjectKey::parse("/etc/passwd"),
            Err(InvalidObjectKey::LeadingSlash { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("../../etc/passwd"),
            Err(InvalidObjectKey::DotSegment { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("a/./b"),
            Err(InvalidObjectKey::DotSegment { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("a/.."),
            Err(InvalidObjectKey::DotSegment { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("a//b"),
            Err(InvalidObjectKey::EmptySegment { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("a/"),
            Err(InvalidObjectKey::EmptySegment { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("a\\..\\b"),
            Err(InvalidObjectKey::Backslash { .. })
        ));
        assert!(matches!(
            ObjectKey::parse("a\nb"),
            Err(InvalidObjectKey::ControlCharacter { .. })
        ));
        assert!(matches!(
            ObjectKey::parse(&"k".repeat(1025)),
            Err(InvalidObjectKey::TooLong { len: 1025, .. })
        ));
        assert!(ObjectKey::parse(&"k".repeat(1024)).is_ok());
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let err = ObjectKey::parse(&format!("/{}", "x".repeat(10_000))).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }

    #[test]
    fn generated_keys() {
        let prefix = KeyPrefix::parse("/tts/out/").unwrap().unwrap();
        assert_eq!(prefix.as_str(), "tts/out");
        let key = ObjectKey::generate(Some(&prefix), "wav");
        let parts: Vec<&str> = key.as_str().split('/').collect();
        assert_eq!(parts.len(), 4, "{key}");
        assert_eq!(&parts[..2], ["tts", "out"]);
        assert_eq!(parts[2].len(), 10);
        assert!(parts[2].as_bytes()[4] == b'-' && parts[2].as_bytes()[7] == b'-');
        assert!(parts[3].ends_with(".wav") && parts[3].len() == 36 + 4);
        assert!(ObjectKey::parse(key.as_str()).is_ok());
        let bare = ObjectKey::generate(None, "../Mp3");
        assert!(bare.as_str().ends_with(".mp3") && bare.as_str().split('/').count() == 2);
        assert!(ObjectKey::generate(None, "").as_str().ends_with(".bin"));
        assert_eq!(KeyPrefix::parse("//").unwrap(), None);
    }

    #[test]
    fn content_type_extensions() {
        assert_eq!(extension_for_content_type("audio/wav"), "wav");
        assert_eq!(extension_for_content_type("Audio/MPEG; charset=x"), "mp3");
        assert_eq!(extension_for_content_type("audio/ogg; codecs=opus"), "ogg");
        assert_eq!(extension_for_content_type("weird"), "bin");
    }
}
