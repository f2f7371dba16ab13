//! The hub's HTTP protocol, as `huggingface_hub` (`file_download.py`, `get_hf_file_metadata`) and
//! `hf-hub` (`api/sync.rs`, `metadata`) speak it:
//!
//! * `GET {endpoint}/api/models/{repo}/revision/{rev}` → JSON `{ "sha", "siblings": [{ "rfilename" }] }`.
//! * `HEAD {endpoint}/{repo}/resolve/{rev}/{file}` without following redirects. A relative redirect
//!   (renamed repository) is followed; an absolute one is the CDN URL of an LFS file. The response
//!   carries `X-Repo-Commit`, and `X-Linked-Etag` / `X-Linked-Size` (LFS: the sha256 of the content
//!   and its size) or `ETag` / `Content-Length` (regular git files: the git blob id).
//! * `GET` of the final URL, with `Range: bytes=N-` to resume.
//!
//! The token goes only to the endpoint's own origin, never to the CDN (whose URLs are presigned).

use crate::error::{HubError, Result};
use crate::integrity::Expected;
use serde::Deserialize;
use std::time::Duration;

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the hub. Built by the caller (the CLI reads `HF_ENDPOINT`, `HF_TOKEN`, proxies).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL, e.g. `https://huggingface.co` or a mirror; no trailing slash needed.
    pub endpoint: String,
    /// Access token (`hf_...`) for private or gated repositories.
    pub token: Option<String>,
    /// HTTP(S) proxy URL, if any (`http://host:port`).
    pub proxy: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response before the transfer counts as stalled.
    pub read_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token: None,
            proxy: None,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A repository listing at one revision.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    /// The commit the revision points to (downloads are pinned to it).
    pub sha: Option<String>,
    /// Every file in the repository.
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// One file of a [`RepoInfo`].
#[derive(Debug, Clone, Deserialize)]
pub struct Sibling {
    /// Path inside the repository.
    pub rfilename: String,
}

impl RepoInfo {
    /// Whether the repository has this file.
    pub fn has(&self, file: &str) -> bool {
        self.siblings.iter().any(|s| s.rfilename == file)
    }
}

/// What the hub says about one file before it is downloaded.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Commit the file was resolved at (`X-Repo-Commit`; the hub may leave it off after a
    /// relative redirect, and downloads are pinned to the listing's commit anyway).
    pub commit: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// The ETag, quotes removed, and what it lets us check.
    pub etag: String,
    pub expected: Expected,
    /// Where the bytes are (the resolve URL, or the CDN URL it redirects to).
    pub download_url: String,
    /// Whether `download_url` is on the endpoint's origin (and so may receive the token).
    pub same_origin: bool,
}

/// A blocking hub client.
#[derive(Debug, Clone)]
pub struct HubClient {
    config: HubConfig,
    endpoint: String,
    agent: ureq::Agent,
}

impl HubClient {
    /// Builds the client. Fails only on an unusable proxy URL.
    pub fn new(config: HubConfig) -> Result<Self> {
        let mut builder = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(config.connect_timeout)
            .timeout_read(config.read_timeout)
            .user_agent(concat!("higgs-hub/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = &config.proxy {
            let proxy = ureq::Proxy::new(p).map_err(|e| HubError::Transport {
                url: p.clone(),
                detail: format!("invalid proxy URL: {e}"),
            })?;
            builder = builder.proxy(proxy);
        }
        let endpoint = config.endpoint.trim_end_matches('/').to_string();
        Ok(Self {
            agent: builder.build(),
            endpoint,
            config,
        })
    }

    /// The endpoint, without trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`.
    pub fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            repo,
            encode_segment(revision),
            file.split('/')
                .map(encode_segment)
                .collect::<Vec<_>>()
                .join("/")
        )
    }

    /// Lists a repository at a revision.
    pub fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint,
            repo,
            encode_segment(revision)
        );
        let resp = self.call(self.agent.get(&url), true, &url, repo, revision, None)?;
        let body = resp.into_string().map_err(|e| HubError::Transport {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        serde_json::from_str(&body).map_err(|e| HubError::BadResponse {
            url,
            reason: format!("repository listing is not the hub's JSON: {e}"),
        })
    }

    /// Resolves a file: commit, size, ETag and final URL (follows relative redirects only).
    pub fn file_metadata(&self, repo: &str, revision: &str, file: &str) -> Result<FileMeta> {
        let mut url = self.resolve_url(repo, revision, file);
        for _ in 0..5 {
            let resp = self.call(
                self.agent.head(&url),
                true,
                &url,
                repo,
                revision,
                Some(file),
            )?;
            let status = resp.status();
            let location = resp.header("location").map(str::to_string);
            if (300..400).contains(&status) {
                let loc = location.ok_or(HubError::MissingHeader {
                    url: url.clone(),
                    header: "Location",
                })?;
                if loc.starts_with('/') {
                    url = format!("{}{}", origin(&url), loc);
                    continue;
                }
                return meta_from(&resp, &url, loc, &self.endpoint);
            }
            let here = url.clone();
            return meta_from(&resp, &url, here, &self.endpoint);
        }
        Err(HubError::BadResponse {
            url,
            reason: "too many relative redirects".into(),
        })
    }

    /// `GET meta.download_url` from byte `start` on. Returns the response (status 200 or 206).
    pub(crate) fn get_from(&self, meta: &FileMeta, start: u64) -> Result<ureq::Response> {
        let url = &meta.download_url;
        let mut req = self.agent.get(url);
        if start > 0 {
            req = req.set("Range", &format!("bytes={start}-"));
        }
        self.call(req, meta.same_origin, url, "", "", None)
    }

    /// Sends a request, adding the token when allowed, and turns HTTP errors into [`HubError`]s.
    fn call(
        &self,
        mut req: ureq::Request,
        auth: bool,
        url: &str,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> Result<ureq::Response> {
        if auth {
            if let Some(t) = &self.config.token {
                req = req.set("Authorization", &format!("Bearer {t}"));
            }
        }
        match req.call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, resp)) => {
                let code = resp.header("x-error-code").unwrap_or("").to_string();
                let header_msg = resp.header("x-error-message").map(str::to_string);
                let body = resp.into_string().unwrap_or_default();
                let detail = header_msg
                    .or_else(|| {
                        serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    })
                    .unwrap_or_else(|| body.chars().take(200).collect());
                let detail = if code.is_empty() {
                    detail
                } else {
                    format!("{code}: {detail}")
                };
                Err(self.status_error(status, &code, detail, url, repo, revision, file))
            }
            Err(ureq::Error::Transport(t)) => Err(HubError::Transport {
                url: url.to_string(),
                detail: t.to_string(),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn status_error(
        &self,
        status: u16,
        code: &str,
        detail: String,
        url: &str,
        repo: &str,
        revision: &str,
        file: Option<&str>,
    ) -> HubError {
        match (status, code) {
            (401, _) => HubError::Unauthorized {
                repo: repo.to_string(),
                url: url.to_string(),
                detail,
                token_hint: if self.config.token.is_some() {
                    "; the token given was refused or has no access: check HF_TOKEN / --token and the repository name"
                } else {
                    "; if it is gated or private, pass a token: set HF_TOKEN or use --token"
                },
            },
            (403, _) => HubError::Forbidden {
                repo: repo.to_string(),
                url: url.to_string(),
                detail,
            },
            (404, "RevisionNotFound") => HubError::RevisionNotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                detail,
            },
            (404, "EntryNotFound") => HubError::EntryNotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.unwrap_or("").to_string(),
                detail,
            },
            (404, _) if (!repo.is_empty() && file.is_none()) || code == "RepoNotFound" => {
                HubError::RepoNotFound {
                    repo: repo.to_string(),
                    endpoint: self.endpoint.clone(),
                    detail,
                }
            }
            (404, _) if file.is_some() => HubError::EntryNotFound {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: file.unwrap_or("").to_string(),
                detail,
            },
            _ => HubError::Http {
                url: url.to_string(),
                status,
                detail,
            },
        }
    }
}

fn meta_from(
    resp: &ureq::Response,
    url: &str,
    download_url: String,
    endpoint: &str,
) -> Result<FileMeta> {
    let commit = resp.header("x-repo-commit").map(str::to_string);
    let raw_etag = resp
        .header("x-linked-etag")
        .or_else(|| resp.header("etag"))
        .ok_or(HubError::MissingHeader {
            url: url.to_string(),
            header: "ETag",
        })?;
    let etag = raw_etag.trim_start_matches("W/").replace('"', "");
    let (size_header, size) = match resp.header("x-linked-size") {
        Some(s) => ("X-Linked-Size", Some(s)),
        None => ("Content-Length", resp.header("content-length")),
    };
    let size_str = size.ok_or(HubError::MissingHeader {
        url: url.to_string(),
        header: size_header,
    })?;
    let size = size_str
        .trim()
        .parse::<u64>()
        .map_err(|_| HubError::InvalidHeader {
            url: url.to_string(),
            header: size_header,
            value: size_str.to_string(),
        })?;
    let same_origin = origin(&download_url) == origin(endpoint);
    Ok(FileMeta {
        commit,
        size,
        expected: Expected::from_etag(&etag, size),
        etag,
        download_url,
        same_origin,
    })
}

/// `scheme://host[:port]` of a URL.
pub(crate) fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_encoding() {
        assert_eq!(origin("https://hf.co/a/b?c"), "https://hf.co");
        assert_eq!(origin("http://127.0.0.1:80"), "http://127.0.0.1:80");
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(
            encode_segment("model-00001.safetensors"),
            "model-00001.safetensors"
        );
    }
}
