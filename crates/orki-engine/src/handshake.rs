//! The ownership handshake run before a webhook is saved (and when its URL or
//! token changes): `GET <url>?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`
//! must answer 2xx within the time limit with the challenge as its body.

use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::time::Instant;
use url::{Host, Url};

use crate::model::ErrorClass;
use crate::outbound::Outbound;

pub(crate) use crate::verification::{Step, VerificationFailure};

fn fail(step: Step, message: impl Into<String>) -> VerificationFailure {
    VerificationFailure {
        step,
        message: message.into(),
    }
}

/// Runs the handshake against `url` with `token`.
pub(crate) async fn verify(
    out: &Outbound,
    url: &Url,
    token: &str,
) -> Result<(), VerificationFailure> {
    let limit = out.timeout();
    let deadline = Instant::now() + limit;
    let host = url
        .host()
        .ok_or_else(|| fail(Step::Dns, "the URL has no host"))?;
    if let Host::Domain(name) = host {
        let port = url.port_or_known_default().unwrap_or(443);
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((name, port))).await {
            Err(_) => {
                return Err(fail(
                    Step::Timeout,
                    format!("resolving {name} took longer than {} ms", limit.as_millis()),
                ));
            }
            Ok(Err(e)) => return Err(fail(Step::Dns, format!("{name} did not resolve: {e}"))),
            Ok(Ok(mut addrs)) => {
                if addrs.next().is_none() {
                    return Err(fail(Step::Dns, format!("{name} has no address")));
                }
            }
        }
    }

    let challenge: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let mut target = url.clone();
    target
        .query_pairs_mut()
        .append_pair("hub.mode", "subscribe")
        .append_pair("hub.verify_token", token)
        .append_pair("hub.challenge", &challenge);

    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let ex = out
        .exchange_within(out.client().get(target), remaining)
        .await;
    if let Some((class, message)) = ex.failure {
        let step = match class {
            ErrorClass::Dns => Step::Dns,
            ErrorClass::Tls => Step::Tls,
            ErrorClass::Timeout => Step::Timeout,
            _ => Step::Connect,
        };
        return Err(fail(step, message));
    }
    let status = ex.status.unwrap_or(0);
    if !(200..300).contains(&status) {
        let hint = if (300..400).contains(&status) {
            " (redirects are not followed: register the final URL)"
        } else {
            ""
        };
        return Err(fail(
            Step::Status,
            format!(
                "the endpoint answered HTTP {status}; it must answer 2xx with the challenge{hint}"
            ),
        ));
    }
    if ex.body.trim() != challenge {
        let got: String = ex.body.chars().take(80).collect();
        return Err(fail(
            Step::ChallengeMismatch,
            format!(
                "the body must be exactly the hub.challenge value ({} characters); it was {got:?}",
                challenge.len()
            ),
        ));
    }
    Ok(())
}
