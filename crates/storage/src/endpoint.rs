//! Parsing S3 endpoint URLs, RunPod style: `BUCKET_ENDPOINT_URL` may carry the bucket
//! (virtual-hosted, `https://my-bucket.s3.us-east-1.amazonaws.com`, or path-style,
//! `https://s3.us-east-1.amazonaws.com/my-bucket`) and names the region in its host.
//!
//! runpod-python (`runpod/serverless/utils/rp_upload.py`) takes the region from the label after
//! `.s3.` or from a `<region>.digitaloceanspaces.com` host; this module does the same and also
//! splits off the bucket, so the rest is the service endpoint that SigV4 requests go to:
//!
//! | host | bucket | region | style |
//! |---|---|---|---|
//! | `[<bucket>.]s3[.dualstack].<region>.amazonaws.com[.cn]`, `[<bucket>.]s3-<region>.amazonaws.com` | host labels before `s3` | the label after | virtual-hosted |
//! | `[<bucket>.]s3.amazonaws.com` | as above | `us-east-1` | virtual-hosted |
//! | `[<bucket>.]<region>.digitaloceanspaces.com` | labels before the region | `nyc3`, `fra1`, … | virtual-hosted |
//! | `[<bucket>.]<account>[.eu\|.fedramp].r2.cloudflarestorage.com` | labels before the account | `auto` | path |
//! | `[<bucket>.]s3.<region>.<domain>.<tld>` (Backblaze, Wasabi, Scaleway, OVH, …) | labels before `s3` | the label after | path |
//! | anything else (MinIO, an IP, `localhost`) | — | — (default) | path |
//!
//! When the host carries no bucket, the first path segment is the bucket (path-style URL, and
//! path-style requests). Whatever path is left after the bucket becomes the key prefix.

use thiserror::Error;
use url::{Host, Url};

/// An endpoint URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEndpoint {
    /// The service endpoint (scheme, host, port; path `/`), without the bucket.
    pub endpoint: Url,
    /// The bucket named by the URL's host or first path segment.
    pub bucket: Option<String>,
    /// The region named by the host (`auto` for Cloudflare R2).
    pub region: Option<String>,
    /// Whether requests should use path-style URLs (`<endpoint>/<bucket>/<key>`).
    pub path_style: bool,
    /// Path left after the bucket (`https://b.s3.amazonaws.com/audio/` → `audio`).
    pub key_prefix: Option<String>,
}

/// Why an endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    #[error("{value:?} is not a URL ({reason}): give e.g. https://s3.us-east-1.amazonaws.com")]
    NotAUrl { value: String, reason: String },
    #[error("{value:?} uses the scheme {scheme:?}: S3 endpoints are http:// or https://")]
    Scheme { value: String, scheme: String },
    #[error("{value:?} has no host")]
    NoHost { value: String },
    #[error("{value:?} contains a user name or password: put credentials in the access key variables, not the URL")]
    UserInfo { value: String },
    #[error("{value:?} has a query string or fragment: give only scheme, host, port and optional /bucket path")]
    Query { value: String },
}

/// Splits `raw` as described in the module docs.
pub fn parse_endpoint_url(raw: &str) -> Result<ParsedEndpoint, EndpointError> {
    let raw = raw.trim();
    let value = || raw.chars().take(200).collect::<String>();
    let url = Url::parse(raw).map_err(|e| EndpointError::NotAUrl {
        value: value(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(EndpointError::Scheme {
            value: value(),
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::UserInfo { value: value() });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(EndpointError::Query { value: value() });
    }
    let host = match url.host() {
        Some(Host::Domain(domain)) => domain.trim_end_matches('.').to_ascii_lowercase(),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => String::new(),
        None => return Err(EndpointError::NoHost { value: value() }),
    };
    let split = split_host(&host);
    let mut endpoint = url.clone();
    endpoint.set_path("/");
    if let Some(service_host) = &split.service_host {
        endpoint
            .set_host(Some(service_host))
            .map_err(|e| EndpointError::NotAUrl {
                value: value(),
                reason: e.to_string(),
            })?;
    }
    let mut segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let (bucket, path_style) = match split.bucket {
        Some(bucket) => (Some(bucket), split.path_style_default),
        None if !segments.is_empty() => (Some(segments.remove(0).to_owned()), true),
        None => (None, split.path_style_default),
    };
    let key_prefix = (!segments.is_empty()).then(|| segments.join("/"));
    Ok(ParsedEndpoint {
        endpoint,
        bucket,
        region: split.region,
        path_style,
        key_prefix,
    })
}

struct HostSplit {
    bucket: Option<String>,
    region: Option<String>,
    /// The host without the bucket labels, when the bucket was in it.
    service_host: Option<String>,
    path_style_default: bool,
}

fn split_host(host: &str) -> HostSplit {
    let labels: Vec<&str> = if host.is_empty() {
        Vec::new()
    } else {
        host.split('.').collect()
    };
    let join = |part: &[&str]| (!part.is_empty()).then(|| part.join("."));
    let generic = HostSplit {
        bucket: None,
        region: None,
        service_host: None,
        path_style_default: true,
    };
    let ends_with = |suffix: &[&str]| labels.len() > suffix.len() && labels.ends_with(suffix);

    // AWS: [bucket.]s3[.dualstack].<region>.amazonaws.com[.cn], [bucket.]s3-<region>.amazonaws.com,
    // [bucket.]s3.amazonaws.com.
    if ends_with(&["amazonaws", "com"]) || ends_with(&["amazonaws", "com", "cn"]) {
        let Some(i) = labels
            .iter()
            .position(|l| *l == "s3" || l.starts_with("s3-"))
        else {
            return generic;
        };
        let region = if labels[i] == "s3" {
            let mut next = i + 1;
            if labels.get(next) == Some(&"dualstack") {
                next += 1;
            }
            match labels.get(next) {
                Some(&"amazonaws") | None => Some("us-east-1".to_owned()),
                Some(region) => Some((*region).to_owned()),
            }
        } else {
            match &labels[i]["s3-".len()..] {
                "external-1" => Some("us-east-1".to_owned()),
                region => Some(region.to_owned()),
            }
        };
        return HostSplit {
            bucket: join(&labels[..i]),
            region,
            service_host: join(&labels[i..]),
            path_style_default: false,
        };
    }
    // DigitalOcean Spaces: [bucket.]<region>.digitaloceanspaces.com
    if ends_with(&["digitaloceanspaces", "com"]) {
        let before = &labels[..labels.len() - 2];
        let Some((region, bucket)) = before.split_last() else {
            return generic;
        };
        return HostSplit {
            bucket: join(bucket),
            region: Some((*region).to_owned()),
            service_host: Some(format!("{region}.digitaloceanspaces.com")),
            path_style_default: false,
        };
    }
    // Cloudflare R2: [bucket.]<account>[.eu|.fedramp].r2.cloudflarestorage.com
    if ends_with(&["r2", "cloudflarestorage", "com"]) {
        let before = &labels[..labels.len() - 3];
        let account_labels = match before.last() {
            Some(&"eu") | Some(&"fedramp") => 2,
            _ => 1,
        };
        let split_at = before.len().saturating_sub(account_labels);
        return HostSplit {
            bucket: join(&before[..split_at]),
            region: Some("auto".to_owned()),
            service_host: join(&labels[split_at..]),
            path_style_default: true,
        };
    }
    // Other S3-compatible services: [bucket.]s3.<region>.<domain>.<tld>
    if let Some(i) = labels.iter().position(|l| *l == "s3") {
        if labels.len() >= i + 4 {
            return HostSplit {
                bucket: join(&labels[..i]),
                region: Some(labels[i + 1].to_owned()),
                service_host: join(&labels[i..]),
                path_style_default: true,
            };
        }
    }
    generic
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(raw: &str) -> (String, Option<String>, Option<String>, bool, Option<String>) {
        let p = parse_endpoint_url(raw).unwrap();
        (
            p.endpoint.to_string(),
            p.bucket,
            p.region,
            p.path_style,
            p.key_prefix,
        )
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn aws_virtual_hosted() {
        assert_eq!(
            parse("https://my-bucket.s3.us-east-1.amazonaws.com"),
            (
                "https://s3.us-east-1.amazonaws.com/".into(),
                s("my-bucket"),
                s("us-east-1"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://my-bucket.s3.eu-west-3.amazonaws.com/tts/out/"),
            (
                "https://s3.eu-west-3.amazonaws.com/".into(),
                s("my-bucket"),
                s("eu-west-3"),
                false,
                s("tts/out")
            )
        );
        assert_eq!(
            parse("https://my.dotted.bucket.s3.dualstack.ap-south-1.amazonaws.com"),
            (
                "https://s3.dualstack.ap-south-1.amazonaws.com/".into(),
                s("my.dotted.bucket"),
                s("ap-south-1"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://legacy.s3-us-west-2.amazonaws.com"),
            (
                "https://s3-us-west-2.amazonaws.com/".into(),
                s("legacy"),
                s("us-west-2"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://old.s3.amazonaws.com"),
            (
                "https://s3.amazonaws.com/".into(),
                s("old"),
                s("us-east-1"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://b1.s3.cn-north-1.amazonaws.com.cn"),
            (
                "https://s3.cn-north-1.amazonaws.com.cn/".into(),
                s("b1"),
                s("cn-north-1"),
                false,
                None
            )
        );
    }

    #[test]
    fn aws_path_style_and_bare() {
        assert_eq!(
            parse("https://s3.us-west-2.amazonaws.com/my-bucket"),
            (
                "https://s3.us-west-2.amazonaws.com/".into(),
                s("my-bucket"),
                s("us-west-2"),
                true,
                None
            )
        );
        assert_eq!(
            parse("https://s3.us-west-2.amazonaws.com/my-bucket/a/b"),
            (
                "https://s3.us-west-2.amazonaws.com/".into(),
                s("my-bucket"),
                s("us-west-2"),
                true,
                s("a/b")
            )
        );
        assert_eq!(
            parse("https://s3.us-west-2.amazonaws.com"),
            (
                "https://s3.us-west-2.amazonaws.com/".into(),
                None,
                s("us-west-2"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://s3.amazonaws.com/"),
            (
                "https://s3.amazonaws.com/".into(),
                None,
                s("us-east-1"),
                false,
                None
            )
        );
    }

    #[test]
    fn digitalocean_spaces() {
        assert_eq!(
            parse("https://my-bucket.nyc3.digitaloceanspaces.com"),
            (
                "https://nyc3.digitaloceanspaces.com/".into(),
                s("my-bucket"),
                s("nyc3"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://fra1.digitaloceanspaces.com"),
            (
                "https://fra1.digitaloceanspaces.com/".into(),
                None,
                s("fra1"),
                false,
                None
            )
        );
        assert_eq!(
            parse("https://sgp1.digitaloceanspaces.com/media"),
            (
                "https://sgp1.digitaloceanspaces.com/".into(),
                s("media"),
                s("sgp1"),
                true,
                None
            )
        );
    }

    #[test]
    fn cloudflare_r2() {
        let acct = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            parse(&format!("https://{acct}.r2.cloudflarestorage.com")),
            (
                format!("https://{acct}.r2.cloudflarestorage.com/"),
                None,
                s("auto"),
                true,
                None
            )
        );
        assert_eq!(
            parse(&format!("https://{acct}.r2.cloudflarestorage.com/voices")),
            (
                format!("https://{acct}.r2.cloudflarestorage.com/"),
                s("voices"),
                s("auto"),
                true,
                None
            )
        );
        assert_eq!(
            parse(&format!("https://voices.{acct}.r2.cloudflarestorage.com")),
            (
                format!("https://{acct}.r2.cloudflarestorage.com/"),
                s("voices"),
                s("auto"),
                true,
                None
            )
        );
        assert_eq!(
            parse(&format!("https://{acct}.eu.r2.cloudflarestorage.com/b")),
            (
                format!("https://{acct}.eu.r2.cloudflarestorage.com/"),
                s("b"),
                s("auto"),
                true,
                None
            )
        );
        assert_eq!(
            parse(&format!("https://bk.{acct}.eu.r2.cloudflarestorage.com")),
            (
                format!("https://{acct}.eu.r2.cloudflarestorage.com/"),
                s("bk"),
                s("auto"),
                true,
                None
            )
        );
    }

    #[test]
    fn other_s3_compatible() {
        assert_eq!(
            parse("https://s3.us-west-004.backblazeb2.com/my-bucket"),
            (
                "https://s3.us-west-004.backblazeb2.com/".into(),
                s("my-bucket"),
                s("us-west-004"),
                true,
                None
            )
        );
        assert_eq!(
            parse("https://my-bucket.s3.eu-central-1.wasabisys.com"),
            (
                "https://s3.eu-central-1.wasabisys.com/".into(),
                s("my-bucket"),
                s("eu-central-1"),
                true,
                None
            )
        );
        // `s3.<domain>.<tld>`: no region label.
        assert_eq!(
            parse("https://s3.wasabisys.com"),
            ("https://s3.wasabisys.com/".into(), None, None, true, None)
        );
        assert_eq!(
            parse("http://127.0.0.1:9000/bucket/pre/fix"),
            (
                "http://127.0.0.1:9000/".into(),
                s("bucket"),
                None,
                true,
                s("pre/fix")
            )
        );
        assert_eq!(
            parse("http://localhost:9000"),
            ("http://localhost:9000/".into(), None, None, true, None)
        );
        assert_eq!(
            parse("https://minio.example.com:9443/"),
            (
                "https://minio.example.com:9443/".into(),
                None,
                None,
                true,
                None
            )
        );
    }

    #[test]
    fn refused_urls() {
        assert!(matches!(
            parse_endpoint_url("s3.amazonaws.com"),
            Err(EndpointError::NotAUrl { .. })
        ));
        assert!(matches!(
            parse_endpoint_url("ftp://x.com"),
            Err(EndpointError::Scheme { .. })
        ));
        assert!(matches!(
            parse_endpoint_url("https://key:secret@x.com"),
            Err(EndpointError::UserInfo { .. })
        ));
        assert!(matches!(
            parse_endpoint_url("https://x.com/?a=b"),
            Err(EndpointError::Query { .. })
        ));
    }
}
