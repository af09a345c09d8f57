//! Outgoing HTTP: one client that trusts the system store plus the configured
//! extra CAs and never follows redirects; one signed POST (or handshake GET),
//! bounded in time and in the size of what is kept; failures classified.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::{Certificate, Client, RequestBuilder};

use crate::model::ErrorClass;
use crate::{Error, Result};

/// The `User-Agent` of every request the engine sends.
pub(crate) const USER_AGENT: &str = concat!("Orki-Webhooks/", env!("CARGO_PKG_VERSION"));

/// The largest part of a response body that is kept in the log.
pub(crate) const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// The outgoing HTTP client.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    client: Client,
    timeout: Duration,
}

/// What came back from one request (or why nothing usable did).
#[derive(Debug, Clone, Default)]
pub(crate) struct Exchange {
    /// The HTTP status, if an answer came back.
    pub status: Option<u16>,
    /// The answer's headers.
    pub headers: BTreeMap<String, String>,
    /// The body, lossy UTF-8, at most [`MAX_RESPONSE_BODY`] bytes of it.
    pub body: String,
    /// The body was longer than what is kept.
    pub body_truncated: bool,
    /// From sending to the end of the answer or the failure.
    pub elapsed: Duration,
    /// Transport-level failure (not a bad status: callers judge statuses).
    pub failure: Option<(ErrorClass, String)>,
    /// The connect found no route (network or host unreachable).
    pub unreachable: bool,
}

impl Outbound {
    /// Builds the client; each CA file must hold at least one PEM certificate.
    pub(crate) fn new(ca_files: &[PathBuf], timeout: Duration) -> Result<Self> {
        let extra = load_ca_files(ca_files)?;
        let client = Client::builder()
            .redirect(Policy::none())
            .tls_certs_merge(extra)
            .user_agent(USER_AGENT)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self { client, timeout })
    }

    /// The underlying client, for building requests.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The time limit of one exchange.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a request and reads the answer, all within the time limit.
    pub(crate) async fn exchange(&self, request: RequestBuilder) -> Exchange {
        self.exchange_within(request, self.timeout).await
    }

    /// Sends a request and reads the answer, all within `limit`.
    pub(crate) async fn exchange_within(
        &self,
        request: RequestBuilder,
        limit: Duration,
    ) -> Exchange {
        let started = Instant::now();
        let mut out = Exchange::default();
        let result = tokio::time::timeout(limit, async {
            let mut response = request.send().await?;
            out.status = Some(response.status().as_u16());
            for (name, value) in response.headers() {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                out.headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert(value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                let room = MAX_RESPONSE_BODY - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    out.body_truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            out.body = String::from_utf8_lossy(&body).into_owned();
            Ok::<(), reqwest::Error>(())
        })
        .await;
        out.failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                out.unreachable = unreachable(&e);
                Some(classify(&e, limit))
            }
            Err(_) => Some((ErrorClass::Timeout, timeout_message(limit))),
        };
        out.elapsed = started.elapsed();
        out
    }
}

/// Reads the extra CA files; each must hold at least one PEM certificate.
pub(crate) fn load_ca_files(ca_files: &[PathBuf]) -> Result<Vec<Certificate>> {
    let mut extra = Vec::new();
    for path in ca_files {
        let pem = std::fs::read(path).map_err(|source| Error::Io {
            context: format!("reading the CA file {}", path.display()),
            source,
        })?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::Config(format!(
                "{} is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
        extra.extend(certs);
    }
    Ok(extra)
}

fn timeout_message(limit: Duration) -> String {
    format!("no complete answer within {} ms", limit.as_millis())
}

/// Whether a transport error is a connect that found no route
/// (`ENETUNREACH`, `EHOSTUNREACH`).
pub(crate) fn unreachable(error: &reqwest::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// Classifies a transport error by walking its sources.
pub(crate) fn classify(error: &reqwest::Error, limit: Duration) -> (ErrorClass, String) {
    if error.is_timeout() {
        return (ErrorClass::Timeout, timeout_message(limit));
    }
    let mut messages = Vec::new();
    let mut tls = None;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        messages.push(e.to_string());
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            tls = Some(r.to_string());
        }
        // io::Error hides its inner error from `source()`; look inside it too.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref()
                && let Some(r) = inner.downcast_ref::<rustls::Error>()
            {
                tls = Some(r.to_string());
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return (ErrorClass::Timeout, timeout_message(limit));
            }
        }
        current = e.source();
    }
    let innermost = messages.last().cloned().unwrap_or_default();
    let all = messages.join(": ").to_lowercase();
    if let Some(detail) = tls {
        return (ErrorClass::Tls, format!("TLS failed: {detail}"));
    }
    if all.contains("dns error") || all.contains("failed to lookup address") {
        return (
            ErrorClass::Dns,
            format!("the host name did not resolve: {innermost}"),
        );
    }
    // A server that speaks plain HTTP on an https:// URL answers the TLS hello
    // with bytes rustls cannot read ("received corrupt message ...").
    if all.contains("certificate")
        || all.contains("tls")
        || all.contains("handshake")
        || all.contains("corrupt message")
    {
        return (ErrorClass::Tls, format!("TLS failed: {innermost}"));
    }
    (
        ErrorClass::Connect,
        format!("could not connect: {innermost}"),
    )
}
