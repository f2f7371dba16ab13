//! What a downloaded file is checked against. The hub's ETag is the sha256 of the content for LFS
//! files (`X-Linked-Etag`, 64 hex digits) and the git blob id for regular files (`ETag`, 40 hex
//! digits: sha1 of `"blob {len}\0"` + content). Any other ETag leaves only the size to check.

use crate::error::{HubError, Result};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The checks a file must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub digest: Option<ExpectedDigest>,
}

/// A content digest, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedDigest {
    /// sha256 of the content (LFS files).
    Sha256(String),
    /// git blob sha1 (regular files).
    GitSha1(String),
}

impl ExpectedDigest {
    /// Name shown in messages.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::GitSha1(_) => "git blob sha1",
        }
    }

    fn hex(&self) -> &str {
        match self {
            Self::Sha256(h) | Self::GitSha1(h) => h,
        }
    }
}

impl Expected {
    /// Reads an ETag (quotes already removed) as a digest when it has the shape of one.
    pub fn from_etag(etag: &str, size: u64) -> Self {
        let hex = etag.trim().to_ascii_lowercase();
        let is_hex = hex.bytes().all(|b| b.is_ascii_hexdigit());
        let digest = match hex.len() {
            64 if is_hex => Some(ExpectedDigest::Sha256(hex)),
            40 if is_hex => Some(ExpectedDigest::GitSha1(hex)),
            _ => None,
        };
        Self { size, digest }
    }
}

/// Why a file failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub algorithm: &'static str,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}, expected {}",
            self.algorithm, self.actual, self.expected
        )
    }
}

/// Checks a file on disk: `Ok(None)` when it matches, `Ok(Some(mismatch))` when it does not.
pub fn check_file(path: &Path, expected: &Expected) -> Result<Option<Mismatch>> {
    let len = std::fs::metadata(path)
        .map_err(|e| HubError::io(path, e))?
        .len();
    if len != expected.size {
        return Ok(Some(Mismatch {
            algorithm: "size",
            expected: format!("{} bytes", expected.size),
            actual: format!("{len} bytes"),
        }));
    }
    let Some(digest) = &expected.digest else {
        return Ok(None);
    };
    let actual = match digest {
        ExpectedDigest::Sha256(_) => hash_file(path, Sha256::new(), None)?,
        ExpectedDigest::GitSha1(_) => {
            let prefix = format!("blob {len}\0");
            hash_file(path, Sha1::new(), Some(prefix.as_bytes()))?
        }
    };
    if actual == digest.hex() {
        Ok(None)
    } else {
        Ok(Some(Mismatch {
            algorithm: digest.algorithm(),
            expected: digest.hex().to_string(),
            actual,
        }))
    }
}

fn hash_file<D: Digest>(path: &Path, mut hasher: D, prefix: Option<&[u8]>) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| HubError::io(path, e))?;
    if let Some(p) = prefix {
        hasher.update(p);
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| HubError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of bytes, lowercase hex (the hub's LFS oid).
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// git blob id of bytes, lowercase hex (the hub's ETag of a regular file).
pub fn git_blob_sha1_hex(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    to_hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha1_hex(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn etag_shapes() {
        let e = Expected::from_etag(&"a".repeat(64), 3);
        assert!(matches!(e.digest, Some(ExpectedDigest::Sha256(_))));
        let e = Expected::from_etag(&"B".repeat(40), 3);
        assert_eq!(e.digest, Some(ExpectedDigest::GitSha1("b".repeat(40))));
        assert_eq!(Expected::from_etag("xet-abc", 3).digest, None);
    }
}
