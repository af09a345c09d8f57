//! Test support: certificates made in the test, HTTPS receivers on 127.0.0.1,
//! the engine in-process on port 0, and the real `orki-webhooksd` binary.

#![allow(dead_code)]

pub mod daemon;
pub mod receiver;

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use orki_engine::retry::RetryPolicy;
use orki_engine::{Config, Engine, EngineEvent, EngineHandle, Secret, Store};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use receiver::{HandshakeMode, Receiver};

/// Installs the process-wide rustls provider once (both ring-free builds agree on aws-lc-rs).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A certificate authority made for one test, its PEM written to a temp file.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
    /// The CA certificate file to pass as `--ca-file`.
    pub pem_path: PathBuf,
}

impl TestCa {
    /// A new CA.
    pub fn new(name: &str) -> Self {
        init();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, issuer.pem()).expect("write CA");
        Self {
            issuer,
            dir,
            pem_path,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`: `(cert PEM, key PEM)`.
    pub fn server_cert(&self) -> (String, String) {
        self.server_cert_for(&["localhost", "127.0.0.1"])
    }

    /// A server certificate for these names and addresses: `(cert PEM, key PEM)`.
    pub fn server_cert_for(&self, names: &[&str]) -> (String, String) {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let params = CertificateParams::new(names).expect("params");
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// The engine running in this process on a temp data dir and port 0.
pub struct TestEngine {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The admin token.
    pub admin: String,
    /// The ingest key.
    pub ingest: String,
    /// The engine's handle (to subscribe to events).
    pub handle: EngineHandle,
    /// A plain HTTP client for the listener.
    pub http: reqwest::Client,
    cancel: CancellationToken,
    engine: Option<Engine>,
    /// The data directory (kept until the test ends).
    pub dir: TempDir,
}

/// Fast retries for tests: 150 ms, then 150 ms, … (8 retries), no jitter.
pub fn fast_retries() -> RetryPolicy {
    retries(vec![Duration::from_millis(150); 8])
}

/// A retry policy with this schedule and no jitter.
pub fn retries(schedule: Vec<Duration>) -> RetryPolicy {
    RetryPolicy {
        schedule,
        jitter: 0.0,
    }
}

impl TestEngine {
    /// Starts an engine trusting `ca`, with fast retries; `tweak` adjusts the config.
    pub async fn start(ca: &TestCa, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), ca, tweak).await
    }

    /// Starts an engine on an existing data directory.
    pub async fn start_in(dir: TempDir, ca: &TestCa, tweak: impl FnOnce(&mut Config)) -> Self {
        init();
        let mut config = Config::new(dir.path());
        config.ca_files = vec![ca.pem_path.clone()];
        config.retry = Some(fast_retries());
        config.ingest_key = Some(Secret::new("ik_test_ingest_key_0123456789"));
        config.admin_token = Some(Secret::new("at_test_admin_token_0123456789"));
        tweak(&mut config);
        let store = Store::open(&config.database_path()).expect("open store");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let cancel = CancellationToken::new();
        let engine = Engine::start(config, store, listener, cancel.clone())
            .await
            .expect("engine starts");
        let handle = engine.handle();
        Self {
            base: format!("http://{}", engine.local_addr()),
            admin: handle.admin_token().expose().to_owned(),
            ingest: handle.ingest_key().expose().to_owned(),
            handle,
            http: reqwest::Client::new(),
            cancel,
            engine: Some(engine),
            dir,
        }
    }

    /// Stops the engine cleanly and gives back its data directory.
    pub async fn stop(mut self) -> TempDir {
        self.cancel.cancel();
        if let Some(engine) = self.engine.take() {
            engine.wait().await;
        }
        self.dir
    }

    /// `POST /v1/events` with the ingest key.
    pub async fn post_event(&self, event_type: &str, data: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(&self.ingest)
            .json(&json!({ "type": event_type, "data": data }))
            .send()
            .await
            .expect("POST /v1/events")
    }

    /// An admin request builder.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
    }

    /// `PATCH /v1/settings` with `patch`; returns the raw response.
    pub async fn patch_settings(&self, patch: &Value) -> reqwest::Response {
        self.admin(reqwest::Method::PATCH, "/v1/settings")
            .json(patch)
            .send()
            .await
            .expect("PATCH /v1/settings")
    }

    /// `GET` an admin path and decode the JSON (asserting 200).
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self
            .admin(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("JSON")
    }

    /// Registers a webhook; returns the raw response.
    pub async fn register(&self, url: &str, token: &str, events: &[&str]) -> reqwest::Response {
        self.admin(reqwest::Method::POST, "/v1/webhooks")
            .json(&json!({ "url": url, "verify_token": token, "events": events }))
            .send()
            .await
            .expect("POST /v1/webhooks")
    }

    /// Registers a webhook that must succeed; returns its JSON.
    pub async fn register_ok(&self, receiver: &Receiver, events: &[&str]) -> Value {
        let r = self.register(&receiver.url, &receiver.token, events).await;
        let status = r.status();
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(status, 201, "registration failed: {body}");
        body
    }

    /// Waits for the next recorded attempt of `webhook_id` (by engine event).
    pub async fn next_attempt(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<EngineEvent>,
        webhook_id: &str,
        within: Duration,
    ) -> Value {
        tokio::time::timeout(within, async {
            loop {
                match events.recv().await {
                    Ok(EngineEvent::AttemptRecorded(a))
                        if a.webhook_id.to_string() == webhook_id =>
                    {
                        return serde_json::to_value(a).expect("attempt JSON");
                    }
                    Ok(_) => {}
                    Err(e) => panic!("event stream ended: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no attempt for {webhook_id} within {within:?}"))
    }
}

/// Asserts an error answer: status and `error.code`; returns the error object.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(got, status, "status for {body}");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a message for a person in {body}"
    );
    body["error"].clone()
}
