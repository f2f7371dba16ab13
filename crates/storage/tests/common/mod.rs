//! A real S3 server for the tests: `s3s-fs` (installed by `scripts/install-test-deps.sh` into
//! `target/test-tools`, or named by `$HIGGS_S3S_FS`), started on a free port with an access key
//! and secret, so every request's SigV4 signature is verified. Killed when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use higgs_storage::S3Config;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

pub const ACCESS_KEY: &str = "HIGGSTESTACCESSKEY";
pub const SECRET_KEY: &str = "higgs-test-secret/0123456789abcdef";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Child,
    pub addr: SocketAddr,
    pub endpoint: String,
    _root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3s_fs_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HIGGS_S3S_FS") {
        return Some(path.into());
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/bin/s3s-fs");
    path.exists().then_some(path)
}

/// Starts s3s-fs, or returns `None` (with a message) when it is not installed. Under CI it must be.
pub fn start() -> Option<S3Server> {
    let Some(binary) = s3s_fs_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "s3s-fs is missing under CI: scripts/install-test-deps.sh should have installed it into target/test-tools"
        );
        eprintln!(
            "SKIPPED: s3s-fs is not installed; run scripts/install-test-deps.sh (or set HIGGS_S3S_FS) to run the S3 tests"
        );
        return None;
    };
    for _ in 0..5 {
        let root = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break; // port taken meanwhile: try another
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Some(S3Server {
                    child,
                    addr,
                    endpoint: format!("http://{addr}"),
                    _root: root,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("s3s-fs did not start listening");
}

impl S3Server {
    /// A configuration for this server with the right credentials.
    pub fn config(&self) -> S3Config {
        let mut config = S3Config::new(ACCESS_KEY, SECRET_KEY);
        config.endpoint_url = Some(self.endpoint.clone());
        config.path_style = true;
        config
    }

    /// Creates a bucket through the S3 API (signed CreateBucket).
    pub async fn create_bucket(&self, name: &str) {
        let bucket = Bucket::new(
            self.endpoint.parse().unwrap(),
            UrlStyle::Path,
            name.to_owned(),
            REGION,
        )
        .unwrap();
        let credentials = Credentials::new(ACCESS_KEY, SECRET_KEY);
        let url = bucket
            .create_bucket(&credentials)
            .sign(Duration::from_secs(60));
        let response = reqwest::Client::new().put(url).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "CreateBucket {name}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
}

/// Deterministic test audio: a WAV header and a pseudo-random payload.
pub fn audio(len: usize) -> Vec<u8> {
    let mut bytes = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
    let mut state = 0x2545_f491_u32;
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push(state as u8);
    }
    bytes.truncate(len);
    bytes
}
