//! Offline is not failure, for real: `orki-webhooksd` in a network namespace
//! of the test's own, an HTTPS receiver in a second one, a veth pair between
//! them. With the link down, deliveries are held (no failure recorded, the
//! webhook's failure count unchanged, `/v1/health` says offline); with it up
//! again, every held one arrives.
//!
//! Needs root and `ip` (CI runs as root); without them it fails, unless
//! `ORKI_SKIP_NETNS_TESTS=1` says to skip it.

use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::daemon::{ADMIN_TOKEN, Daemon, INGEST_KEY};
use crate::support::{Receiver, TestCa};

/// The daemon's side of the veth pair and the receiver's address.
const DAEMON_ADDR: &str = "10.213.7.1/30";
const RECEIVER_IP: &str = "10.213.7.2";
const RECEIVER_ADDR: &str = "10.213.7.2/30";
const LINK: &str = "veth0";

/// Two network namespaces made for one test, deleted when dropped (also
/// when the test panics).
struct Namespaces {
    daemon: String,
    receiver: String,
}

impl Namespaces {
    fn create() -> Self {
        let tag = format!("{}-{:x}", std::process::id(), rand::random::<u32>());
        let ns = Namespaces {
            daemon: format!("orki-d-{tag}"),
            receiver: format!("orki-r-{tag}"),
        };
        // The guard comes first: a failure below still deletes what was made.
        ip(&["netns", "add", &ns.daemon]);
        ip(&["netns", "add", &ns.receiver]);
        // Made straight into the namespaces: the machine's own is not touched.
        ip(&[
            "link",
            "add",
            LINK,
            "netns",
            &ns.daemon,
            "type",
            "veth",
            "peer",
            "name",
            LINK,
            "netns",
            &ns.receiver,
        ]);
        for (name, addr) in [(&ns.daemon, DAEMON_ADDR), (&ns.receiver, RECEIVER_ADDR)] {
            ip(&["-n", name, "addr", "add", addr, "dev", LINK]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
            ip(&["-n", name, "link", "set", LINK, "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.daemon, &self.receiver] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Runs `ip` with `args`, panicking with its message if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into the named network namespace: sockets it
/// (and threads it starts) makes from now on are in that namespace.
fn enter(netns: &str) {
    let file = File::open(format!("/run/netns/{netns}")).expect("open the namespace");
    setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Whether this run can make namespaces; fails loudly if not, unless told to skip.
fn can_run() -> bool {
    if std::env::var("ORKI_SKIP_NETNS_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: ORKI_SKIP_NETNS_TESTS=1");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the network-namespace test needs root (CI runs as root); set ORKI_SKIP_NETNS_TESTS=1 to skip it"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|o| o.status.success()),
        "the network-namespace test needs iproute2's `ip`; set ORKI_SKIP_NETNS_TESTS=1 to skip it"
    );
    true
}

#[test]
fn deliveries_are_held_while_offline_and_all_arrive_once_online() {
    if !can_run() {
        return;
    }
    let ns = Namespaces::create();
    let (daemon_ns, receiver_ns) = (ns.daemon.clone(), ns.receiver.clone());
    // A thread of its own, as it changes namespaces: it binds the receiver's
    // socket in one, then runs the test (its client sockets) in the daemon's.
    let run = std::thread::spawn(move || {
        enter(&receiver_ns);
        let listener = std::net::TcpListener::bind((RECEIVER_IP, 0)).expect("bind the receiver");
        enter(&daemon_ns);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(held_and_delivered(&daemon_ns, listener))
    });
    let result = run.join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The daemon's admin API and ingest, over its loopback (this thread's
/// namespace is the daemon's).
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = if path == "/v1/events" {
            INGEST_KEY
        } else {
            ADMIN_TOKEN
        };
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request to the daemon");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post_event(&self, n: u32) {
        let event = json!({ "type": "message.created", "data": { "n": n } });
        let (status, body) = self.call(Method::POST, "/v1/events", Some(event)).await;
        assert_eq!(status, 202, "ingest: {body}");
    }

    /// Polls `GET /v1/health` until its `network` is `want` (at most `within`).
    async fn network_becomes(&self, want: &str, within: Duration) {
        let start = Instant::now();
        loop {
            let health = self.get("/v1/health").await;
            if health["network"] == want {
                return;
            }
            assert!(
                start.elapsed() < within,
                "network not {want} within {within:?}: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits (each at most `within`) until the receiver got every event numbered
/// in `want`, and nothing else. A held attempt may arrive twice: one that
/// timed out on a connection made before the link went down is sent by the
/// kernel once it is up (at-least-once; receivers drop duplicates by
/// `X-Orki-Delivery`).
async fn received(receiver: &Receiver, want: std::ops::Range<u64>, within: Duration) {
    let mut missing: std::collections::BTreeSet<u64> = want.clone().collect();
    while !missing.is_empty() {
        let r = receiver.next(within).await;
        assert!(r.signature_ok, "signed");
        let n = r.json()["data"]["n"].as_u64().expect("n");
        assert!(want.contains(&n), "event {n} arrived, expected {want:?}");
        missing.remove(&n);
    }
}

async fn held_and_delivered(daemon_ns: &str, listener: std::net::TcpListener) {
    let ca = TestCa::new("netns test CA");
    let receiver = Receiver::start_on(&ca, listener).await;
    let dir = tempfile::tempdir().expect("data dir");
    let ca_file = ca.pem_path.to_str().expect("path");
    let daemon = Daemon::start_in_netns(daemon_ns, dir.path(), &["--ca-file", ca_file]).await;
    let api = Api {
        base: daemon.base.clone(),
        http: reqwest::Client::new(),
    };
    assert_eq!(api.get("/v1/health").await["network"], "online");
    let hook = json!({ "url": receiver.url, "verify_token": receiver.token, "events": ["message.created"] });
    let (status, webhook) = api.call(Method::POST, "/v1/webhooks", Some(hook)).await;
    assert_eq!(status, 201, "registration: {webhook}");
    let id = webhook["id"].as_str().expect("id").to_owned();

    for n in 0..3 {
        api.post_event(n).await;
    }
    let limit = Duration::from_secs(10);
    received(&receiver, 0..3, limit).await;

    // The link goes down; the events posted now cannot leave the machine.
    let ns = NamespaceLink(daemon_ns);
    ns.set(false);
    for n in 3..8 {
        api.post_event(n).await;
    }
    api.network_becomes("offline", limit).await;
    let failures = api
        .get(&format!("/v1/attempts?webhook_id={id}&outcome=failure"))
        .await;
    assert_eq!(
        failures["items"],
        json!([]),
        "no failure recorded while offline"
    );
    let webhook = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(webhook["consecutive_failures"], 0, "{webhook}");
    assert_eq!(webhook["warning"], false, "{webhook}");
    assert!(receiver.try_next().await.is_none(), "sent while offline?");

    // Up again: every held event arrives within seconds, none failed.
    ns.set(true);
    received(&receiver, 3..8, limit).await;
    api.network_becomes("online", limit).await;
    let failures = api
        .get(&format!("/v1/attempts?webhook_id={id}&outcome=failure"))
        .await;
    assert_eq!(failures["items"], json!([]), "no failure recorded");
    // Each event's one attempt is recorded once its answer is in.
    let start = Instant::now();
    loop {
        let all = api.get(&format!("/v1/attempts?webhook_id={id}")).await;
        let n = all["items"].as_array().map_or(0, Vec::len);
        if n == 8 {
            break;
        }
        assert!(
            n < 8 && start.elapsed() < limit,
            "8 attempts recorded: {all}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let webhook = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(webhook["consecutive_failures"], 0, "{webhook}");
    drop(daemon);
}

/// The daemon's side of the veth pair, by its namespace's name.
struct NamespaceLink<'a>(&'a str);

impl NamespaceLink<'_> {
    fn set(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", self.0, "link", "set", LINK, state]);
    }
}
