//! An HTTPS webhook receiver on 127.0.0.1 that behaves as a test tells it to and
//! reports every delivery it gets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use tokio::sync::mpsc;

use super::TestCa;

/// How the receiver answers the ownership handshake.
#[derive(Debug, Clone)]
pub enum HandshakeMode {
    /// Checks the token, echoes the challenge.
    Echo,
    /// Answers this status with the challenge.
    Status(u16),
    /// Answers 200 with something else.
    WrongBody,
    /// Sleeps before echoing.
    Sleep(Duration),
}

/// How the receiver answers deliveries.
#[derive(Debug, Clone)]
pub struct PostMode {
    /// Answer 500 to this many deliveries first.
    pub fail_next: u32,
    /// The status of every other answer.
    pub status: u16,
    /// Extra headers on the answer.
    pub headers: Vec<(String, String)>,
    /// Sleep this long before answering.
    pub sleep: Option<Duration>,
}

impl Default for PostMode {
    fn default() -> Self {
        Self {
            fail_next: 0,
            status: 200,
            headers: Vec::new(),
            sleep: None,
        }
    }
}

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request headers.
    pub headers: HeaderMap,
    /// Exact body bytes.
    pub body: Bytes,
    /// The status answered.
    pub answered: u16,
    /// The signature was valid for the receiver's token.
    pub signature_ok: bool,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

struct Shared {
    token: String,
    handshake: Mutex<HandshakeMode>,
    post: Mutex<PostMode>,
    handshakes: Mutex<u32>,
    tx: mpsc::UnboundedSender<Received>,
}

/// A running receiver.
pub struct Receiver {
    /// Its webhook URL.
    pub url: String,
    /// The verify token it expects.
    pub token: String,
    /// Its address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
    handle: axum_server::Handle<SocketAddr>,
}

fn verify(token: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes()).expect("any key");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn handshake(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    *s.handshakes.lock().expect("lock") += 1;
    let mode = s.handshake.lock().expect("lock").clone();
    let challenge = q.get("hub.challenge").cloned().unwrap_or_default();
    let token_ok = q.get("hub.mode").map(String::as_str) == Some("subscribe")
        && q.get("hub.verify_token") == Some(&s.token);
    match mode {
        HandshakeMode::Echo if token_ok => (StatusCode::OK, challenge).into_response(),
        HandshakeMode::Echo => (StatusCode::FORBIDDEN, "wrong verify token").into_response(),
        HandshakeMode::Status(code) => {
            (StatusCode::from_u16(code).expect("status"), challenge).into_response()
        }
        HandshakeMode::WrongBody => (StatusCode::OK, "hello").into_response(),
        HandshakeMode::Sleep(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, challenge).into_response()
        }
    }
}

async fn deliver(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let (status, extra, sleep) = {
        let mut mode = s.post.lock().expect("lock");
        let status = if mode.fail_next > 0 {
            mode.fail_next -= 1;
            500
        } else {
            mode.status
        };
        (status, mode.headers.clone(), mode.sleep)
    };
    if let Some(d) = sleep {
        tokio::time::sleep(d).await;
    }
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signature_ok = verify(&s.token, &body, sig);
    let _ = s.tx.send(Received {
        headers,
        body,
        answered: status,
        signature_ok,
    });
    let mut response = (StatusCode::from_u16(status).expect("status"), "received").into_response();
    for (k, v) in extra {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    response
}

impl Receiver {
    /// An HTTPS receiver with a certificate from `ca`.
    pub async fn start(ca: &TestCa) -> Self {
        let (cert, key) = ca.server_cert();
        Self::start_with(Some((cert, key)), "hook").await
    }

    /// A plain-HTTP receiver (for the allow-http-localhost setting).
    pub async fn start_plain() -> Self {
        Self::start_with(None, "hook").await
    }

    /// An HTTPS receiver on a listener bound elsewhere (another network
    /// namespace), with a certificate from `ca` for the listener's address.
    pub async fn start_on(ca: &TestCa, listener: std::net::TcpListener) -> Self {
        let ip = listener.local_addr().expect("addr").ip().to_string();
        let tls = ca.server_cert_for(&[&ip]);
        Self::start_listening(Some(tls), "hook", listener).await
    }

    async fn start_with(tls: Option<(String, String)>, path: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::start_listening(tls, path, listener).await
    }

    async fn start_listening(
        tls: Option<(String, String)>,
        path: &str,
        listener: std::net::TcpListener,
    ) -> Self {
        super::init();
        let (tx, rx) = mpsc::unbounded_channel();
        let token = format!("vt_{}", rand_suffix());
        let shared = Arc::new(Shared {
            token: token.clone(),
            handshake: Mutex::new(HandshakeMode::Echo),
            post: Mutex::new(PostMode::default()),
            handshakes: Mutex::new(0),
            tx,
        });
        let app = Router::new()
            .route(&format!("/{path}"), get(handshake).post(deliver))
            .with_state(shared.clone());
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let handle = axum_server::Handle::new();
        let scheme = if tls.is_some() { "https" } else { "http" };
        match tls {
            Some((cert, key)) => {
                let config = RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
                    .await
                    .expect("TLS config");
                let server = axum_server::from_tcp_rustls(listener, config)
                    .expect("server")
                    .handle(handle.clone());
                tokio::spawn(server.serve(app.into_make_service()));
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .expect("server")
                    .handle(handle.clone());
                tokio::spawn(server.serve(app.into_make_service()));
            }
        }
        Self {
            url: format!("{scheme}://{}:{}/{path}", addr.ip(), addr.port()),
            token,
            addr,
            shared,
            rx: tokio::sync::Mutex::new(rx),
            handle,
        }
    }

    /// Sets how the handshake is answered.
    pub fn set_handshake(&self, mode: HandshakeMode) {
        *self.shared.handshake.lock().expect("lock") = mode;
    }

    /// Sets how deliveries are answered.
    pub fn set_post(&self, mode: PostMode) {
        *self.shared.post.lock().expect("lock") = mode;
    }

    /// How many handshakes it answered.
    pub fn handshakes(&self) -> u32 {
        *self.shared.handshakes.lock().expect("lock")
    }

    /// The next delivery, waiting at most `within`.
    pub async fn next(&self, within: Duration) -> Received {
        tokio::time::timeout(within, self.rx.lock().await.recv())
            .await
            .unwrap_or_else(|_| panic!("no delivery at {} within {within:?}", self.url))
            .expect("receiver channel open")
    }

    /// A delivery if one is already waiting.
    pub async fn try_next(&self) -> Option<Received> {
        self.rx.lock().await.try_recv().ok()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{n:x}")
}
