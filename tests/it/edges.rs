//! The HTTP edge, probed as a hostile or careless local program would: bodies
//! that cannot be read, Host tricks, requests hyper itself refuses, webhook
//! URLs with credentials, https:// to a plain-HTTP server, and the attempt's
//! record of what really went on the wire. Every refusal carries the JSON
//! error shape and changes nothing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Receiver, TestCa, TestEngine, expect_error};

/// Sends raw bytes, half-closes, and reads the answer until the listener closes.
async fn raw(engine: &TestEngine, request: &[u8]) -> (u16, Value) {
    let addr = engine.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bodies_that_cannot_be_read_are_400_and_only_the_size_limit_is_413() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine.register_ok(&rx, &["message.created"]).await;
    let head = |extra: &str| {
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\n{extra}\r\n",
            engine.ingest
        )
    };
    let chunked = format!(
        "{}zz\r\n{{}}\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked\r\n")
    );
    let (status, body) = raw(&engine, chunked.as_bytes()).await;
    assert_eq!((status, code(&body)), (400, "invalid_body"), "{body}");
    let short = format!("{}{{\"type\":", head("Content-Length: 100\r\n"));
    let (status, body) = raw(&engine, short.as_bytes()).await;
    assert_eq!((status, code(&body)), (400, "invalid_body"), "{body}");
    // Over the limit without a Content-Length: still a 413.
    let big = "x".repeat(1024 * 1024 + 10);
    let over = format!(
        "{}{:x}\r\n{big}\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked\r\n"),
        big.len()
    );
    let (status, body) = raw(&engine, over.as_bytes()).await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"), "{body}");
    assert_eq!(engine.handle.pending_deliveries().await.expect("count"), 0);
    assert!(rx.try_next().await.is_none(), "nothing was delivered");
}

#[tokio::test]
async fn host_tricks_are_refused() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let port = engine.base.rsplit(':').next().expect("port").to_owned();
    let get = |target: &str, hosts: &[&str]| {
        let hosts: String = hosts.iter().map(|h| format!("Host: {h}\r\n")).collect();
        format!(
            "GET {target} HTTP/1.1\r\n{hosts}Authorization: Bearer {}\r\n\r\n",
            engine.admin
        )
    };
    for host in [
        "localhost:evil",
        "localhost:18788@evil.com",
        "127.0.0.1:99999",
    ] {
        let (status, body) = raw(&engine, get("/v1/settings", &[host]).as_bytes()).await;
        assert_eq!((status, code(&body)), (403, "host_not_allowed"), "{host}");
    }
    // RFC 9112 §3.2.2: the absolute-form target's authority wins over Host.
    let evil = get("http://evil.com/v1/settings", &["127.0.0.1"]);
    let (status, body) = raw(&engine, evil.as_bytes()).await;
    assert_eq!((status, code(&body)), (403, "host_not_allowed"), "{body}");
    // RFC 9112 §3.2: two Host headers are a 400.
    let two = get("/v1/settings", &["127.0.0.1", "evil.com"]);
    let (status, body) = raw(&engine, two.as_bytes()).await;
    assert_eq!((status, code(&body)), (400, "invalid_host"), "{body}");

    // The absolute form addressed to loopback is answered.
    let addr = engine.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let ok = format!(
        "GET http://127.0.0.1:{port}/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(ok.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn answers_written_before_any_handler_carry_the_json_error_shape() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let (status, body) = raw(
        &engine,
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
    )
    .await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let huge = format!(
        "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    let (status, body) = raw(&engine, huge.as_bytes()).await;
    assert_eq!((status, code(&body)), (431, "headers_too_large"));
    let many: String = (0..2_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n");
    let (status, body) = raw(&engine, many.as_bytes()).await;
    assert_eq!((status, code(&body)), (431, "headers_too_large"));
    let wrong = engine
        .admin(Method::PUT, "/v1/webhooks")
        .send()
        .await
        .expect("send");
    assert!(wrong.headers().get("allow").is_some());
    expect_error(wrong, 405, "method_not_allowed").await;
    let wrong = engine
        .http
        .delete(format!("{}/v1/health", engine.base))
        .send()
        .await
        .expect("send");
    expect_error(wrong, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn webhook_urls_with_a_user_or_password_are_refused_and_nothing_is_saved() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let with_password = rx.url.replacen("https://", "https://user:s3cret@", 1);
    let r = engine
        .register(&with_password, &rx.token, &["message.created"])
        .await;
    let error = expect_error(r, 400, "invalid_url").await;
    assert!(!error.to_string().contains("s3cret"), "{error}");
    assert_eq!(rx.handshakes(), 0, "refused before any request");
    let listed = engine.get_json("/v1/webhooks").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));

    let hook = engine.register_ok(&rx, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id");
    let r = engine
        .admin(Method::PATCH, &format!("/v1/webhooks/{id}"))
        .json(&json!({ "url": with_password.replacen("user:s3cret@", "user@", 1) }))
        .send()
        .await
        .expect("send");
    expect_error(r, 400, "invalid_url").await;
    let now = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(now["url"], rx.url.as_str());
}

#[tokio::test]
async fn https_to_a_server_speaking_plain_http_fails_at_the_tls_step() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let plain = Receiver::start_plain().await;
    let url = plain.url.replacen("http://", "https://", 1);
    let r = engine
        .register(&url, &plain.token, &["message.created"])
        .await;
    let error = expect_error(r, 422, "verification_failed").await;
    assert_eq!(error["step"], "tls", "{error}");
}

#[tokio::test]
async fn the_attempt_records_every_header_that_went_on_the_wire() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = engine.register_ok(&rx, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    let mut events = engine.handle.subscribe();
    assert_eq!(
        engine
            .post_event("message.created", json!({ "n": 1 }))
            .await
            .status(),
        202
    );
    let got = rx.next(Duration::from_secs(10)).await;
    let attempt = engine
        .next_attempt(&mut events, &id, Duration::from_secs(10))
        .await;
    let detail = engine
        .get_json(&format!(
            "/v1/attempts/{}",
            attempt["id"].as_str().expect("id")
        ))
        .await;
    let recorded = detail["request"]["headers"].as_object().expect("headers");
    let recorded: std::collections::HashMap<String, &Value> = recorded
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    for (name, value) in &got.headers {
        assert_eq!(
            recorded.get(name.as_str()).and_then(|v| v.as_str()),
            Some(value.to_str().expect("ascii")),
            "header {name} as sent, in {recorded:?}"
        );
    }
    for name in [
        "accept",
        "host",
        "content-length",
        "content-type",
        "user-agent",
    ] {
        assert!(recorded.contains_key(name), "{name} recorded");
    }
}
