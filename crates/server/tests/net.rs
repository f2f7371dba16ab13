//! Hostile clients over real sockets against `serve_with` + `guard_bodies` (no model needed):
//! silent, half-header, idle keep-alive, stalled-body and endless-chunked connections are closed
//! within a generous bound; an over-limit `Content-Length` is a 413 before any body byte; the
//! connection cap holds further clients back until a slot frees. Every probe is bounded in time.
#![allow(clippy::unwrap_used)] // tests: a failure should panic with its location

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use higgs_server::{guard_bodies, serve_with, NetConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above every configured timeout in these tests, far below "hangs forever".
const BOUND: Duration = Duration::from_secs(8);

async fn start(net: NetConfig) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let router = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/echo", post(|b: Bytes| async move { b.len().to_string() }));
    let router = guard_bodies(router, 1 << 20, net.body_read_timeout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        serve_with(listener, router, &net, std::future::pending())
            .await
            .unwrap();
    });
    (addr, task)
}

fn short() -> NetConfig {
    NetConfig {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        max_connections: 64,
        ..Default::default()
    }
}

/// Reads until the server closes the connection; `Some(everything read)` if it did within
/// `bound`, `None` if it was still open.
async fn read_until_closed(s: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let r = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    r.ok().map(|()| all)
}

#[tokio::test]
async fn silent_and_half_header_connections_are_closed() {
    let (addr, task) = start(short()).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut silent, BOUND).await.is_some(),
        "a silent connection stayed open"
    );
    assert!(
        read_until_closed(&mut half, BOUND).await.is_some(),
        "a half-sent header stayed open"
    );
    task.abort();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (addr, task) = start(short()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let all = read_until_closed(&mut s, BOUND)
        .await
        .expect("the idle keep-alive connection stayed open");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("pong"), "{text}");
    task.abort();
}

#[tokio::test]
async fn an_over_limit_content_length_is_refused_before_the_body() {
    let (addr, task) = start(short()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .await
    .unwrap();
    // No body byte is sent; the answer must come anyway (well before the body timeout matters,
    // but the bound is generous).
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, s.read(&mut buf))
        .await
        .expect("no answer to an over-limit Content-Length")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    task.abort();
}

#[tokio::test]
async fn a_stalled_body_and_an_endless_chunked_body_are_cut_off() {
    let (addr, task) = start(short()).await;
    // 100 bytes of a declared 1000, then silence.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    stalled.write_all(&[b'a'; 100]).await.unwrap();
    let all = read_until_closed(&mut stalled, BOUND)
        .await
        .expect("a stalled body kept its connection open");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // A chunk every 50 ms, never the last one: the body deadline ends it.
    let mut endless = TcpStream::connect(addr).await.unwrap();
    endless
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        if endless.write_all(b"1\r\na\r\n").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(50), endless.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    };
    assert!(closed, "an endless chunked body was read for {BOUND:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    task.abort();
}

#[tokio::test]
async fn the_connection_cap_holds_further_clients_back() {
    let net = NetConfig {
        // Long enough that the held connections are not closed during the test.
        header_read_timeout: Duration::from_secs(30),
        max_connections: 2,
        ..short()
    };
    let (addr, task) = start(net).await;
    let held1 = TcpStream::connect(addr).await.unwrap();
    let _held2 = TcpStream::connect(addr).await.unwrap();
    // Let the server accept both (bounded: connecting is local).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served while the cap of 2 was in use"
    );
    drop(held1);
    let n = tokio::time::timeout(BOUND, third.read(&mut buf))
        .await
        .expect("the waiting client was not served after a slot freed")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    task.abort();
}
