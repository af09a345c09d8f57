//! No local program can stall the listener: idle connections past the
//! open-file limit, headers trickled forever, connections that sit idle, and
//! a crowd holding unfinished large headers. `/v1/health` and ingest stay
//! responsive throughout and memory stays bounded.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::daemon::{self, Daemon};
use crate::support::{TestCa, TestEngine};

/// Enough descriptors in this process for the crowds below.
fn room_for(files: u64) {
    let now = rlimit::increase_nofile_limit(files + 256).expect("raise the open-file limit");
    assert!(
        now >= files + 256,
        "this test needs {files} open files, the limit is {now}"
    );
}

/// `/v1/health` and an ingest over new connections, each answered within 5 s.
async fn still_responsive(base: &str) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let health = client
        .get(format!("{base}/v1/health"))
        .send()
        .await
        .expect("health answers");
    assert_eq!(health.status(), 200);
    let ingest = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(daemon::INGEST_KEY)
        .json(&json!({ "type": "message.created", "data": { "text": "still here" } }))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(ingest.status(), 202);
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

/// Reads until the peer closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the listener closed the connection in time");
    got
}

#[tokio::test]
async fn idle_connections_past_the_open_file_limit_do_not_lock_out_health_or_ingest() {
    room_for(1_200);
    let dir = tempfile::tempdir().expect("dir");
    // The daemon may not raise this limit: 1,100 connections cannot all be open.
    let d = Daemon::start_with_open_file_limit(dir.path(), &[], 1024).await;
    let addr = d.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    still_responsive(&d.base).await;
    // The oldest idle ones were closed to make room, and nothing ran out.
    let mut first = idle.remove(0);
    assert!(
        read_to_close(&mut first, Duration::from_secs(5))
            .await
            .is_empty()
    );
    let stderr = std::fs::read_to_string(daemon::stderr_path(dir.path())).expect("stderr");
    assert!(
        !stderr.contains("Too many open files"),
        "the daemon ran out of descriptors"
    );
    assert!(stderr.contains("an idle connection was closed to make room"));
    d.terminate(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn trickled_headers_and_idle_kept_alive_connections_are_closed() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| c.idle_timeout = Duration::from_secs(1)).await;
    let addr = engine.base.trim_start_matches("http://").to_owned();

    // One header byte every 100 ms, never finishing: closed at the deadline.
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a trickled header was held for 10 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
    trickle.abort();

    // A kept-alive connection that is answered, then says nothing: closed.
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    idle.write_all(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut idle, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""status":"ok""#), "{answer}");
}

#[tokio::test]
async fn a_crowd_holding_large_unfinished_headers_keeps_memory_bounded() {
    room_for(1_200);
    let dir = tempfile::tempdir().expect("dir");
    let d = Daemon::start(dir.path(), &[]).await;
    let addr = d.base.trim_start_matches("http://").to_owned();
    let before = rss_mib(d.pid());
    // Each holds a 15 KiB header (under the limit) without finishing it.
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}",
        "p".repeat(15 * 1024)
    );
    let mut crowd = Vec::new();
    for _ in 0..1_000 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        crowd.push(s);
    }
    still_responsive(&d.base).await;
    let during = rss_mib(d.pid());
    assert!(
        during < before + 80,
        "1,000 unfinished 15 KiB headers took the daemon from {before} to {during} MiB"
    );
    // A header past the limit is refused at once with 431, in the JSON error shape.
    let mut big = TcpStream::connect(&addr).await.expect("connect");
    let huge = format!(
        "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(40 * 1024)
    );
    let _ = big.write_all(huge.as_bytes()).await;
    let answer = read_to_close(&mut big, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    d.terminate(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_open_event_stream_does_not_hold_up_the_engine_stopping() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let mut stream = engine
        .admin(reqwest::Method::GET, "/v1/stream")
        .send()
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), 200);
    let reading = tokio::spawn(async move { while let Ok(Some(_)) = stream.chunk().await {} });
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), engine.stop())
        .await
        .expect("stopped without waiting for the stream's client");
    tokio::time::timeout(Duration::from_secs(3), reading)
        .await
        .expect("the stream ended")
        .expect("reader");
    assert!(started.elapsed() < Duration::from_secs(3));
}
