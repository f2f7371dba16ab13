//! A fake Hugging Face hub on two local ports (std `TcpListener`, one thread per connection,
//! `Connection: close`), honest to what the real hub does:
//!
//! * `GET /api/models/{repo}/revision/{rev}` → `{"id","sha","siblings":[{"rfilename"}]}`.
//! * `HEAD|GET /{repo}/resolve/{rev}/{file}`: regular files answer 200 with `ETag` = git blob id,
//!   `Content-Length`, `Accept-Ranges`, `X-Repo-Commit` and honour `Range` (206 +
//!   `Content-Range`); LFS files (`*.safetensors`, `*.pth`, `tokenizer.json`) answer 302 to a CDN
//!   on another origin with `X-Linked-Etag` = sha256, `X-Linked-Size`, `X-Repo-Commit`, `ETag`.
//! * The CDN (`/blobs/{sha256}?X-Amz-Signature=...`) serves bytes with Range support.
//! * Errors like the hub: unknown or private repo without a valid token → 401 with
//!   `X-Error-Code: RepoNotFound`; with a token → 404; unknown revision → 404 `RevisionNotFound`;
//!   unknown file → 404 `EntryNotFound`; all with `X-Error-Message` and a JSON `{"error"}` body.
//!
//! Faults for tests: cut the connection after N body bytes, or flip a byte, for a given file.

#![allow(dead_code, clippy::unwrap_used)]

use higgs_hub::integrity::{git_blob_sha1_hex, sha256_hex};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct FakeRepo {
    pub commit: String,
    pub files: BTreeMap<String, Vec<u8>>,
    pub private: bool,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Close the connection after this many body bytes (the next `times` GETs of the file).
    DropAfter { bytes: usize, times: usize },
    /// Flip one byte of the body (the next `times` GETs).
    Corrupt { times: usize },
    /// Ignore `Range` headers (answer 200 with the whole file).
    IgnoreRange,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
    pub cdn: bool,
}

#[derive(Default)]
pub struct State {
    pub repos: HashMap<String, FakeRepo>,
    pub token: Option<String>,
    pub faults: HashMap<String, Fault>,
    pub log: Vec<Logged>,
}

pub struct FakeHub {
    pub endpoint: String,
    pub cdn: String,
    pub state: Arc<Mutex<State>>,
}

pub fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".pth") || file == "tokenizer.json"
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let state = Arc::new(Mutex::new(State::default()));
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", hub.local_addr().unwrap());
        let cdn_url = format!("http://{}", cdn.local_addr().unwrap());
        for (listener, is_cdn) in [(hub, false), (cdn, true)] {
            let state = state.clone();
            let cdn_url = cdn_url.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    let cdn_url = cdn_url.clone();
                    std::thread::spawn(move || {
                        let _ = handle(stream, &state, is_cdn, &cdn_url);
                    });
                }
            });
        }
        FakeHub {
            endpoint,
            cdn: cdn_url,
            state,
        }
    }

    /// Adds a repository with every file under `dir` (recursively).
    pub fn add_repo_from_dir(&self, repo: &str, dir: &Path, private: bool) {
        let mut files = BTreeMap::new();
        collect(dir, dir, &mut files);
        self.add_repo(repo, files, private);
    }

    pub fn add_repo(&self, repo: &str, files: BTreeMap<String, Vec<u8>>, private: bool) {
        let commit = git_blob_sha1_hex(repo.as_bytes());
        self.state.lock().unwrap().repos.insert(
            repo.to_string(),
            FakeRepo {
                commit,
                files,
                private,
            },
        );
    }

    pub fn set_fault(&self, file: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(file.to_string(), fault);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

struct Req {
    method: String,
    target: String,
    headers: HashMap<String, String>,
}

fn read_request(stream: &TcpStream) -> Option<Req> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Req {
        method,
        target,
        headers,
    })
}

fn respond(
    mut s: &TcpStream,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &[u8],
    send_body: bool,
) {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    if send_body {
        let _ = s.write_all(body);
    }
    let _ = s.flush();
}

fn hub_error(s: &TcpStream, status: u16, code: &str, msg: &str, send_body: bool) {
    let body = format!("{{\"error\":\"{msg}\"}}");
    let reason = match status {
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "Not Found",
    };
    respond(
        s,
        status,
        reason,
        &[
            ("X-Error-Code", code.to_string()),
            ("X-Error-Message", msg.to_string()),
            ("Content-Type", "application/json".to_string()),
        ],
        body.as_bytes(),
        send_body,
    );
}

fn parse_range(h: Option<&String>, len: usize) -> Option<(usize, usize)> {
    let r = h?.strip_prefix("bytes=")?;
    let (a, b) = r.split_once('-')?;
    let a: usize = a.parse().ok()?;
    let b: usize = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        b.parse::<usize>().ok()?.min(len.saturating_sub(1))
    };
    Some((a, b))
}

/// Serves `data` (200 or 206), applying the file's fault on GETs.
fn serve_bytes(
    s: &TcpStream,
    req: &Req,
    data: &[u8],
    mut headers: Vec<(&str, String)>,
    file: &str,
    state: &Mutex<State>,
) {
    let send_body = req.method == "GET";
    let fault = if send_body {
        let mut st = state.lock().unwrap();
        let f = st.faults.get(file).cloned();
        match &f {
            Some(Fault::DropAfter { bytes, times }) if *times > 0 => {
                st.faults.insert(
                    file.to_string(),
                    Fault::DropAfter {
                        bytes: *bytes,
                        times: times - 1,
                    },
                );
                f
            }
            Some(Fault::Corrupt { times }) if *times > 0 => {
                st.faults
                    .insert(file.to_string(), Fault::Corrupt { times: times - 1 });
                f
            }
            Some(Fault::IgnoreRange) => f,
            _ => None,
        }
    } else {
        None
    };
    headers.push(("Accept-Ranges", "bytes".into()));
    let range = if matches!(fault, Some(Fault::IgnoreRange)) {
        None
    } else {
        parse_range(req.headers.get("range"), data.len())
    };
    let (status, reason, body) = match range {
        Some((a, _)) if a >= data.len() => {
            headers.push(("Content-Range", format!("bytes */{}", data.len())));
            respond(s, 416, "Range Not Satisfiable", &headers, b"", send_body);
            return;
        }
        Some((a, b)) => {
            headers.push(("Content-Range", format!("bytes {a}-{b}/{}", data.len())));
            (206, "Partial Content", data[a..=b].to_vec())
        }
        None => (200, "OK", data.to_vec()),
    };
    let mut body = body;
    match fault {
        Some(Fault::Corrupt { .. }) if !body.is_empty() => {
            let mid = body.len() / 2;
            body[mid] ^= 0xff;
        }
        Some(Fault::DropAfter { bytes, .. }) => {
            // Announce the full length, send part of it, then close the connection.
            headers.push(("Content-Length", body.len().to_string()));
            let cut = bytes.min(body.len());
            respond(s, status, reason, &headers, &body[..cut], true);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        _ => {}
    }
    respond(s, status, reason, &headers, &body, send_body);
}

fn handle(stream: TcpStream, state: &Mutex<State>, is_cdn: bool, cdn_url: &str) -> Option<()> {
    let req = read_request(&stream)?;
    let (path, _query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let path = path.to_string();
    state.lock().unwrap().log.push(Logged {
        method: req.method.clone(),
        path: path.clone(),
        range: req.headers.get("range").cloned(),
        auth: req.headers.get("authorization").cloned(),
        cdn: is_cdn,
    });
    let send_body = req.method != "HEAD";
    if is_cdn {
        let sha = path.strip_prefix("/blobs/")?;
        let found = {
            let st = state.lock().unwrap();
            st.repos.values().find_map(|r| {
                r.files
                    .iter()
                    .find(|(_, d)| sha256_hex(d) == sha)
                    .map(|(f, d)| (f.clone(), d.clone()))
            })
        };
        match found {
            Some((file, data)) => serve_bytes(
                &stream,
                &req,
                &data,
                vec![("ETag", format!("\"{sha}\""))],
                &file,
                state,
            ),
            None => respond(&stream, 404, "Not Found", &[], b"NoSuchKey", send_body),
        }
        return Some(());
    }
    let decoded = percent_decode(&path);
    let (repo_id, rest, is_api) = if let Some(p) = decoded.strip_prefix("/api/models/") {
        let (repo, rest) = split_repo(p)?;
        (repo, rest, true)
    } else {
        let (repo, rest) = split_repo(decoded.strip_prefix('/')?)?;
        (repo, rest, false)
    };
    let st = state.lock().unwrap();
    let auth_ok = match (&st.token, req.headers.get("authorization")) {
        (Some(t), Some(h)) => h == &format!("Bearer {t}"),
        _ => false,
    };
    let has_auth = req.headers.contains_key("authorization");
    let repo = match st.repos.get(&repo_id) {
        Some(r) if !r.private || auth_ok => r,
        _ => {
            let msg = "Repository not found";
            let status = if has_auth && auth_ok { 404 } else { 401 };
            drop(st);
            hub_error(&stream, status, "RepoNotFound", msg, send_body);
            return Some(());
        }
    };
    if is_api {
        let rev = rest.strip_prefix("revision/")?;
        if rev != "main" && rev != repo.commit {
            drop(st);
            hub_error(
                &stream,
                404,
                "RevisionNotFound",
                "Invalid rev id",
                send_body,
            );
            return Some(());
        }
        let siblings: Vec<String> = repo
            .files
            .keys()
            .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
            .collect();
        let body = format!(
            "{{\"_id\":\"x\",\"id\":\"{repo_id}\",\"sha\":\"{}\",\"private\":{},\"siblings\":[{}]}}",
            repo.commit,
            repo.private,
            siblings.join(",")
        );
        drop(st);
        respond(
            &stream,
            200,
            "OK",
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
            send_body,
        );
        return Some(());
    }
    let rest = rest.strip_prefix("resolve/")?;
    let (rev, file) = rest.split_once('/')?;
    if rev != "main" && rev != repo.commit {
        drop(st);
        hub_error(
            &stream,
            404,
            "RevisionNotFound",
            "Invalid rev id",
            send_body,
        );
        return Some(());
    }
    let Some(data) = repo.files.get(file).cloned() else {
        drop(st);
        hub_error(&stream, 404, "EntryNotFound", "Entry not found", send_body);
        return Some(());
    };
    let commit = repo.commit.clone();
    drop(st);
    if is_lfs(file) {
        let sha = sha256_hex(&data);
        let location =
            format!("{cdn_url}/blobs/{sha}?X-Amz-Signature=fake&response-content-disposition=x");
        let body = format!("Found. Redirecting to {location}");
        respond(
            &stream,
            302,
            "Found",
            &[
                ("Location", location),
                ("X-Repo-Commit", commit),
                ("X-Linked-Etag", format!("\"{sha}\"")),
                ("X-Linked-Size", data.len().to_string()),
                ("ETag", format!("\"{sha}\"")),
            ],
            body.as_bytes(),
            send_body,
        );
    } else {
        let etag = git_blob_sha1_hex(&data);
        serve_bytes(
            &stream,
            &req,
            &data,
            vec![("X-Repo-Commit", commit), ("ETag", format!("\"{etag}\""))],
            file,
            state,
        );
    }
    Some(())
}

/// `owner/name/rest` → (`owner/name`, `rest`).
fn split_repo(p: &str) -> Option<(String, String)> {
    let mut it = p.splitn(3, '/');
    let owner = it.next()?;
    let name = it.next()?;
    Some((
        format!("{owner}/{name}"),
        it.next().unwrap_or("").to_string(),
    ))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads everything from `r` (helper for tests).
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}
