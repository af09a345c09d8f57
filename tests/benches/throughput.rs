//! Throughput, latency and footprint of the real `orki-webhooksd` (release build)
//! on a temp data dir, with a fast HTTPS sink on 127.0.0.1 and a load generator
//! in this process. Run with `scripts/bench` (it builds the release binary first).
//!
//! Reports: durable 202s per second at concurrency 1/16/64 with 1 and 10 webhooks
//! while deliveries are made; deliveries per second reaching the sink; ingest→
//! arrival latency p50/p99 at fixed offered loads; resident memory idle and under
//! load; and checks that every delivery arrived exactly once.

#![allow(missing_docs)]

#[path = "../it/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ADMIN: &str = "at_bench_admin_token_0123456789";
const INGEST: &str = "ik_bench_ingest_key_0123456789";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[derive(Default)]
struct Sink {
    /// (delivery id, ingest→arrival latency in µs)
    arrivals: Mutex<Vec<(String, u64)>>,
}

async fn handshake(Query(q): Query<std::collections::HashMap<String, String>>) -> String {
    q.get("hub.challenge").cloned().unwrap_or_default()
}

async fn deliver(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> &'static str {
    let now = now_ns();
    let id = headers
        .get("x-orki-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // The load generator puts its send time in the event: "t0":<ns>.
    let text = std::str::from_utf8(&body).unwrap_or_default();
    let t0 = text
        .find("\"t0\":")
        .map(|i| &text[i + 5..])
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u128>().ok())
        .unwrap_or(now);
    let latency_us = (now.saturating_sub(t0) / 1000) as u64;
    sink.arrivals.lock().expect("lock").push((id, latency_us));
    "ok"
}

async fn start_sink(ca: &support::TestCa) -> (String, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let (cert, key) = ca.server_cert();
    let config = RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
        .await
        .expect("tls");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/sink", get(handshake).post(deliver))
        .with_state(sink.clone());
    let server = axum_server::from_tcp_rustls(listener, config).expect("server");
    tokio::spawn(server.serve(app.into_make_service()));
    (format!("https://127.0.0.1:{}/sink", addr.port()), sink)
}

fn daemon_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("orki-webhooksd");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/bench",
        bin.display()
    );
    bin
}

struct Daemon {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(ca: &support::TestCa) -> (Self, Duration) {
        let dir = tempfile::tempdir().expect("dir");
        let started = Instant::now();
        let mut child = Command::new(daemon_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .arg("--ca-file")
            .arg(&ca.pem_path)
            .env("ORKI_ADMIN_TOKEN", ADMIN)
            .env("ORKI_INGEST_KEY", INGEST)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut base = String::new();
        while let Some(line) = lines.next_line().await.expect("line") {
            if let Some(rest) = line.split("listening on ").nth(1) {
                base = rest.trim().to_owned();
                break;
            }
        }
        let startup = started.elapsed();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (
            Self {
                child,
                base,
                _dir: dir,
            },
            startup,
        )
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().unwrap_or(0);
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

async fn register(http: &reqwest::Client, base: &str, url: &str) {
    let r = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(ADMIN)
        .json(&json!({"url": url, "verify_token": "bench-token", "events": ["message.created"]}))
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
}

/// Posts events for `duration` from `concurrency` loops (or at `rate`/s when given).
async fn load(base: &str, concurrency: usize, duration: Duration, rate: Option<u64>) -> u64 {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let url = format!("{base}/v1/events");
    let deadline = Instant::now() + duration;
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let post = |http: reqwest::Client, url: String, accepted: Arc<std::sync::atomic::AtomicU64>| async move {
        let body = format!(
            r#"{{"type":"message.created","data":{{"t0":{},"text":"bench"}}}}"#,
            now_ns()
        );
        let r = http
            .post(&url)
            .bearer_auth(INGEST)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 202) {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    match rate {
        None => {
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (http, url, accepted) = (http.clone(), url.clone(), accepted.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        post(http.clone(), url.clone(), accepted.clone()).await;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("load task");
            }
        }
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
            let mut tasks = Vec::new();
            while Instant::now() < deadline {
                tick.tick().await;
                let permit = limit.clone().acquire_owned().await.expect("semaphore");
                let (http, url, accepted) = (http.clone(), url.clone(), accepted.clone());
                tasks.push(tokio::spawn(async move {
                    post(http, url, accepted).await;
                    drop(permit);
                }));
            }
            for t in tasks {
                t.await.expect("load task");
            }
        }
    }
    accepted.load(std::sync::atomic::Ordering::Relaxed)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

struct Run {
    name: String,
    accepted: u64,
    secs: f64,
    deliveries: usize,
    delivery_secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    duplicates: usize,
    rss_idle_mib: f64,
    rss_peak_mib: f64,
}

async fn scenario(
    ca: &support::TestCa,
    name: &str,
    webhooks: usize,
    concurrency: usize,
    rate: Option<u64>,
    secs: u64,
) -> Run {
    let (daemon, _) = Daemon::start(ca).await;
    let http = reqwest::Client::new();
    let mut sinks = Vec::new();
    for _ in 0..webhooks {
        let (url, sink) = start_sink(ca).await;
        register(&http, &daemon.base, &url).await;
        sinks.push(sink);
    }
    let rss_idle = daemon.rss_kib("VmRSS:");
    let started = Instant::now();
    let accepted = load(&daemon.base, concurrency, Duration::from_secs(secs), rate).await;
    let secs_taken = started.elapsed().as_secs_f64();
    let expected = accepted as usize * webhooks;
    let wait_until = Instant::now() + Duration::from_secs(120);
    loop {
        let got: usize = sinks
            .iter()
            .map(|s| s.arrivals.lock().expect("lock").len())
            .sum();
        if got >= expected || Instant::now() > wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivery_secs = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut ids = HashSet::new();
    let mut duplicates = 0;
    for s in &sinks {
        for (id, lat) in s.arrivals.lock().expect("lock").iter() {
            if !ids.insert(id.clone()) {
                duplicates += 1;
            }
            latencies.push(*lat);
        }
    }
    latencies.sort_unstable();
    let run = Run {
        name: name.to_owned(),
        accepted,
        secs: secs_taken,
        deliveries: ids.len(),
        delivery_secs,
        p50_ms: pct(&latencies, 0.5),
        p99_ms: pct(&latencies, 0.99),
        duplicates,
        rss_idle_mib: rss_idle as f64 / 1024.0,
        rss_peak_mib: daemon.rss_kib("VmHWM:") as f64 / 1024.0,
    };
    assert_eq!(
        run.deliveries, expected,
        "{name}: every accepted event delivered to every webhook"
    );
    run
}

#[tokio::main]
async fn main() {
    let ca = support::TestCa::new("Orki Bench CA");
    let secs: u64 = std::env::var("ORKI_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let (_, startup) = Daemon::start(&ca).await;
    println!(
        "startup (empty data dir): {:.0} ms",
        startup.as_secs_f64() * 1000.0
    );
    println!(
        "\n| scenario | accepted/s | deliveries/s | p50 ingest→arrival | p99 | RSS idle | RSS peak | dup |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let scenarios: Vec<(String, usize, usize, Option<u64>)> = vec![
        ("1 webhook, c=1".into(), 1, 1, None),
        ("1 webhook, c=16".into(), 1, 16, None),
        ("1 webhook, c=64".into(), 1, 64, None),
        ("10 webhooks, c=1".into(), 10, 1, None),
        ("10 webhooks, c=16".into(), 10, 16, None),
        ("10 webhooks, c=64".into(), 10, 64, None),
        ("1 webhook, 500/s offered".into(), 1, 256, Some(500)),
        ("1 webhook, 2000/s offered".into(), 1, 256, Some(2000)),
    ];
    // ORKI_BENCH_ONLY=<text> runs only the scenarios whose name contains it.
    let only = std::env::var("ORKI_BENCH_ONLY").unwrap_or_default();
    for (name, webhooks, concurrency, rate) in scenarios {
        if !name.contains(only.as_str()) {
            continue;
        }
        let r = scenario(&ca, &name, webhooks, concurrency, rate, secs).await;
        println!(
            "| {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB | {} |",
            r.name,
            r.accepted as f64 / r.secs,
            r.deliveries as f64 / r.delivery_secs,
            r.p50_ms,
            r.p99_ms,
            r.rss_idle_mib,
            r.rss_peak_mib,
            r.duplicates
        );
    }
}
