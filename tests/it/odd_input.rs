//! HTTP-edge inputs that are handled well today, kept as regressions: each is
//! refused with the JSON error shape (or accepted byte for byte where it is
//! valid JSON), nothing is stored for a refused one, and the listener stays
//! responsive.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Receiver, TestCa, TestEngine};

/// `POST /v1/events` with this exact body; the status and the JSON answer.
async fn post_raw(engine: &TestEngine, body: Vec<u8>) -> (u16, Value) {
    let r = engine
        .http
        .post(format!("{}/v1/events", engine.base))
        .bearer_auth(&engine.ingest)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("every answer is JSON");
    (status, body)
}

async fn healthy(engine: &TestEngine) {
    let r = engine
        .http
        .get(format!("{}/v1/health", engine.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("health answers");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn odd_bodies_are_refused_or_kept_byte_for_byte() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine.register_ok(&rx, &["message.created"]).await;

    let deep = |n: usize| {
        let mut b = br#"{"type":"message.created","data":{"x":"#.to_vec();
        b.extend(std::iter::repeat_n(b'[', n));
        b.extend(std::iter::repeat_n(b']', n));
        b.extend(b"}}");
        b
    };
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid UTF-8",
            b"{\"type\":\"message.created\",\"data\":{\"t\":\"\xff\xfe\"}}".to_vec(),
            "invalid_json",
        ),
        (
            "a raw NUL in a string",
            b"{\"type\":\"message.created\",\"data\":{\"t\":\"a\0b\"}}".to_vec(),
            "invalid_json",
        ),
        ("a NUL byte outside", b"\0".to_vec(), "invalid_json"),
        (
            "a duplicate type",
            br#"{"type":"meta.message","type":"message.created","data":{}}"#.to_vec(),
            "invalid_field",
        ),
        (
            "1e999 as the type",
            br#"{"type":1e999,"data":{}}"#.to_vec(),
            "invalid_",
        ),
    ];
    for (what, body, code) in refused {
        let (status, answer) = post_raw(&engine, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        let got = answer["error"]["code"].as_str().unwrap_or_default();
        assert!(got.starts_with(code), "{what}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{what}");
    }
    healthy(&engine).await;

    // Valid JSON, however odd, is kept exactly as posted: a number too large
    // for a double, duplicate keys, an escaped NUL, 100 levels of nesting.
    let data = format!(
        r#"{{"big":1e999,"k":1,"k":2,"nul":"a\u0000b","deep":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let body = format!(r#"{{"type":"message.created","data":{data}}}"#);
    let (status, odd) = post_raw(&engine, body.into_bytes()).await;
    assert_eq!(status, 202, "{odd}");
    // 100,000 levels of nesting inside `data`: valid JSON, never parsed
    // into a tree (kept as raw text), so no recursion limit applies.
    let (status, nested) = post_raw(&engine, deep(100_000)).await;
    assert_eq!(status, 202, "{nested}");
    let mut sent = std::collections::HashMap::new();
    for _ in 0..2 {
        let got = rx.next(Duration::from_secs(10)).await;
        let body = String::from_utf8(got.body.to_vec()).expect("UTF-8");
        // The envelope starts {"id":"evt_…", with the event's id.
        let id = body.split('"').nth(3).unwrap_or_default().to_owned();
        sent.insert(id, body);
    }
    let odd_sent = &sent[odd["id"].as_str().expect("id")];
    assert!(
        odd_sent.contains(&data),
        "data is delivered byte for byte: {odd_sent}"
    );
    let nested_sent = &sent[nested["id"].as_str().expect("id")];
    assert_eq!(nested_sent.matches('[').count(), 100_000);
    // Nothing else was stored: the refused ones made no delivery.
    assert!(rx.try_next().await.is_none());
}

/// Writes `request` on a new connection and reads the whole answer.
async fn exchange(engine: &TestEngine, request: &[u8]) -> String {
    let addr = engine.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn oversized_chunked_bodies_and_header_floods_are_refused() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;

    // 1 MiB + 1 in 64 KiB chunks, without a Content-Length.
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        engine.ingest
    )
    .into_bytes();
    let mut left = 1024 * 1024 + 1;
    while left > 0 {
        let n = left.min(64 * 1024);
        request.extend(format!("{n:x}\r\n").as_bytes());
        request.extend(std::iter::repeat_n(b' ', n));
        request.extend(b"\r\n");
        left -= n;
    }
    request.extend(b"0\r\n\r\n");
    let answer = exchange(&engine, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // Thousands of headers.
    let mut request = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    for i in 0..5000 {
        request.extend(format!("X-Flood-{i}: {i}\r\n").as_bytes());
    }
    request.extend(b"Connection: close\r\n\r\n");
    let answer = exchange(&engine, &request).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    healthy(&engine).await;
}

#[tokio::test]
async fn stream_clients_that_never_read_do_not_stall_delivery() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let created = engine.register_ok(&rx, &["message.created"]).await;
    let id = created["id"].as_str().expect("id").to_owned();

    // Ten SSE subscribers that send their request and never read a byte.
    let addr = engine.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(
            format!(
                "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
                engine.admin
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        idle.push(s);
    }
    // Enough events (each with a large attempt record) to fill their socket
    // buffers and the broadcast channel behind them.
    let mut events = engine.handle.subscribe();
    let padding = "x".repeat(16 * 1024);
    let n = 300;
    for i in 0..n {
        let r = engine
            .post_event("message.created", json!({"i": i, "pad": padding}))
            .await;
        assert_eq!(r.status(), 202);
    }
    let mut recorded = 0;
    while recorded < n {
        engine
            .next_attempt(&mut events, &id, Duration::from_secs(30))
            .await;
        recorded += 1;
    }
    healthy(&engine).await;
    drop(idle);
}
