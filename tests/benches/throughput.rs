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

#[path = "../../crates/orki-engine/benches/history.rs"]
mod history;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
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

/// The end of an HTTP/1.1 head in `buf`, and its `Content-Length`.
fn parse_head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some((end, len))
}

/// Reads from `io` into `buf` until it holds a whole HTTP/1.1 message; returns
/// the end of its head and its body length, or `None` when the peer is gone.
async fn read_message<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(usize, usize)> {
    let (head_end, len) = loop {
        if let Some(parsed) = parse_head(buf) {
            break parsed;
        }
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    };
    while buf.len() < head_end + len {
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some((head_end, len))
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or_default()
}

/// One sink connection: HTTP/1.1 keep-alive over TLS. A GET is the handshake
/// (the challenge is echoed); a POST is a delivery, answered 200 at once.
async fn sink_conn<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, sink: Arc<Sink>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    while let Some((head_end, len)) = read_message(&mut io, &mut buf).await {
        let now = now_ns();
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let answer = if head.starts_with("GET ") {
            let challenge = head
                .split_whitespace()
                .nth(1)
                .and_then(|target| target.split("hub.challenge=").nth(1))
                .map(|rest| rest.split('&').next().unwrap_or_default())
                .unwrap_or_default()
                .to_owned();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{challenge}",
                challenge.len()
            )
        } else {
            // The load generator puts its send time in the event: "t0":<ns>.
            let body = std::str::from_utf8(&buf[head_end..head_end + len]).unwrap_or_default();
            let t0 = body
                .find("\"t0\":")
                .map(|i| &body[i + 5..])
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u128>().ok())
                .unwrap_or(now);
            let latency_us = (now.saturating_sub(t0) / 1000) as u64;
            let id = header(&head, "x-orki-delivery").to_owned();
            sink.arrivals.lock().expect("lock").push((id, latency_us));
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned()
        };
        buf.drain(..head_end + len);
        if io.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A lean HTTPS sink on 127.0.0.1 (HTTP/1.1 keep-alive, answers at once) that
/// records each delivery's id and ingest→arrival latency.
async fn start_sink(ca: &support::TestCa) -> (String, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let (cert, key) = ca.server_cert();
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("tls config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let shared = sink.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (acceptor, sink) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    sink_conn(tls, sink).await;
                }
            });
        }
    });
    (format!("https://127.0.0.1:{}/sink", addr.port()), sink)
}

fn daemon_binary() -> PathBuf {
    // ORKI_BENCH_DAEMON=<path> measures another build (to compare two changes).
    if let Some(bin) = std::env::var_os("ORKI_BENCH_DAEMON") {
        return PathBuf::from(bin);
    }
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

/// The unit of the CPU times in /proc (`getconf CLK_TCK`, 100 on Linux), read once.
fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

struct Daemon {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon on `dir` (a fresh one when `None`); also returns the
    /// time until it listens.
    async fn start(ca: &support::TestCa, dir: Option<tempfile::TempDir>) -> (Self, Duration) {
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("dir"));
        let started = Instant::now();
        let mut child = Command::new(daemon_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .arg("--ca-file")
            .arg(&ca.pem_path)
            .env("ORKI_ADMIN_TOKEN", ADMIN)
            .env("ORKI_INGEST_KEY", INGEST)
            // The default log level (info), as users run it: a line per attempt.
            .env_remove("RUST_LOG")
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
        (Self { child, base, dir }, startup)
    }

    /// Stops the daemon as a service manager does (SIGTERM, then waits for its
    /// clean exit; killed after 60 s), removes its data and lets the disk settle,
    /// so the next scenario starts on a quiet machine.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        drop(self.dir);
        let _ = Command::new("sync").status().await;
    }

    /// CPU time the daemon has used so far (user + system), in seconds.
    fn cpu_secs(&self) -> f64 {
        let pid = self.child.id().unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let ticks: u64 = stat
            .rsplit_once(") ")
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        ticks as f64 / clock_ticks_per_sec()
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

/// Registers a webhook; its id.
async fn register(http: &reqwest::Client, base: &str, url: &str) -> String {
    register_as(http, base, url, false).await
}

/// Registers `url`; `ordered`: deliveries are ordered per `ordering_key`.
async fn register_as(http: &reqwest::Client, base: &str, url: &str, ordered: bool) -> String {
    let r = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(ADMIN)
        .json(&{
            let mut body =
                json!({"url": url, "verify_token": "bench-token", "events": ["message.created"]});
            // Only when set: a build before ordering refuses the field.
            if ordered {
                body["ordered"] = json!(true);
            }
            body
        })
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.expect("JSON");
    body["id"].as_str().expect("id").to_owned()
}

/// Two webhooks, one limited to `limit`/s, under `offered` events/s: the
/// unlimited one's deliveries/s and latency (it must keep full speed), and
/// the rate the limited one's endpoint saw during the load (it must be the
/// limit). The limited one's backlog is left queued.
async fn rate_limited_beside(ca: &support::TestCa, limit: u64, offered: u64, secs: u64) -> String {
    let (daemon, _) = Daemon::start(ca, None).await;
    let http = reqwest::Client::new();
    let (fast_url, fast) = start_sink(ca).await;
    let (slow_url, slow) = start_sink(ca).await;
    register(&http, &daemon.base, &fast_url).await;
    let id = register(&http, &daemon.base, &slow_url).await;
    let r = http
        .patch(format!("{}/v1/webhooks/{id}", daemon.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "rate_limit_per_s": limit }))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    let accepted = load(
        &daemon.base,
        64,
        Duration::from_secs(secs),
        Some(offered),
        0,
    )
    .await;
    let load_secs = started.elapsed().as_secs_f64();
    let limited_seen = slow.arrivals.lock().expect("lock").len();
    let wait_until = Instant::now() + Duration::from_secs(60);
    while fast.arrivals.lock().expect("lock").len() < accepted as usize
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivery_secs = started.elapsed().as_secs_f64();
    let mut latencies: Vec<u64> = fast
        .arrivals
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, l)| *l)
        .collect();
    assert_eq!(
        latencies.len(),
        accepted as usize,
        "the unlimited webhook got everything"
    );
    latencies.sort_unstable();
    daemon.stop().await;
    format!(
        "| {offered}/s offered, one webhook limited to {limit}/s beside an unlimited one | unlimited: {:.0} delivered/s, p50 {:.1} ms, p99 {:.1} ms | limited: {:.0}/s at its endpoint |",
        accepted as f64 / delivery_secs,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        limited_seen as f64 / load_secs,
    )
}

/// A keep-alive HTTP/1.1 connection to the daemon that posts events: a plain
/// socket and a preformatted request, so the load costs little CPU of its own.
struct Poster {
    stream: tokio::net::TcpStream,
    host: String,
    buf: Vec<u8>,
    /// With keys, each event gets `ordering_key` `chat-<n % keys>`, `n`
    /// counted across the posters.
    keys: u32,
    counter: Arc<std::sync::atomic::AtomicU32>,
}

impl Poster {
    async fn connect(base: &str, keys: u32, counter: Arc<std::sync::atomic::AtomicU32>) -> Self {
        let host = base.trim_start_matches("http://").to_owned();
        let stream = tokio::net::TcpStream::connect(&host)
            .await
            .expect("connect to the daemon");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            host,
            buf: Vec::with_capacity(4096),
            keys,
            counter,
        }
    }

    /// Posts one event; true on a 202.
    async fn post(&mut self) -> bool {
        let key = match self.keys {
            0 => String::new(),
            keys => {
                let n = self
                    .counter
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!(r#","ordering_key":"chat-{}""#, n % keys)
            }
        };
        let body = format!(
            r#"{{"type":"message.created","data":{{"t0":{},"text":"bench"}}{key}}}"#,
            now_ns()
        );
        let request = format!(
            "POST /v1/events HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {INGEST}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        if self.stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        self.buf.clear();
        read_message(&mut self.stream, &mut self.buf)
            .await
            .is_some()
            && self.buf.starts_with(b"HTTP/1.1 202")
    }
}

/// Posts events for `duration` from `concurrency` connections, as fast as they
/// are answered, or at `rate`/s overall when given; with `keys`, each event
/// has one of that many ordering keys.
async fn load(
    base: &str,
    concurrency: usize,
    duration: Duration,
    rate: Option<u64>,
    keys: u32,
) -> u64 {
    let counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let deadline = Instant::now() + duration;
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // With a rate, a ticker hands out one ticket per event; idle connections take them.
    let tickets = rate.map(|rate| {
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1_000_000);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while Instant::now() < deadline {
                tick.tick().await;
                if tx.send(()).await.is_err() {
                    break;
                }
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut poster = Poster::connect(base, keys, counter.clone()).await;
        let (accepted, tickets) = (accepted.clone(), tickets.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Some(tickets) = &tickets {
                    let next = tickets.lock().await.recv().await;
                    if next.is_none() {
                        break;
                    }
                }
                if poster.post().await {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
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
    /// Daemon CPU time per accepted event, from the first post to the last arrival.
    cpu_us_per_event: f64,
}

/// A data dir holding `stored` finished attempts (20 other webhooks), and its size.
async fn prefilled(stored: usize) -> (tempfile::TempDir, u64) {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("orki-webhooks.redb");
        let store = orki_engine::Store::open(&path).expect("store");
        let webhooks: Vec<_> = (0..20)
            .map(|_| orki_engine::ids::WebhookId::generate())
            .collect();
        let now_ms = chrono::Utc::now().timestamp_millis() as u64;
        history::fill(&store, &webhooks, stored, now_ms);
        drop(store);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        (dir, size)
    })
    .await
    .expect("fill")
}

/// What a scenario sends: to how many webhooks, from how many connections,
/// at what rate (`None`: as fast as answered), with how many ordering keys
/// (0: none; else the webhooks are ordered).
#[derive(Clone, Copy)]
struct Shape {
    webhooks: usize,
    concurrency: usize,
    rate: Option<u64>,
    keys: u32,
}

async fn scenario(
    ca: &support::TestCa,
    name: &str,
    shape: Shape,
    secs: u64,
    dir: Option<tempfile::TempDir>,
) -> (Run, Duration) {
    let Shape {
        webhooks,
        concurrency,
        rate,
        keys,
    } = shape;
    let (daemon, startup) = Daemon::start(ca, dir).await;
    let http = reqwest::Client::new();
    let mut sinks = Vec::new();
    for _ in 0..webhooks {
        let (url, sink) = start_sink(ca).await;
        register_as(&http, &daemon.base, &url, keys > 0).await;
        sinks.push(sink);
    }
    let rss_idle = daemon.rss_kib("VmRSS:");
    let cpu_before = daemon.cpu_secs();
    let started = Instant::now();
    let accepted = load(
        &daemon.base,
        concurrency,
        Duration::from_secs(secs),
        rate,
        keys,
    )
    .await;
    let secs_taken = started.elapsed().as_secs_f64();
    let expected = accepted as usize * webhooks;
    let wait_until = Instant::now() + Duration::from_secs(120);
    loop {
        let got: usize = sinks
            .iter()
            .map(|s| s.arrivals.lock().expect("lock").len())
            .sum();
        // Duplicates do not count: wait for every delivery.
        let complete = got >= expected && {
            let mut distinct = HashSet::new();
            for s in &sinks {
                for (id, _) in s.arrivals.lock().expect("lock").iter() {
                    distinct.insert(id.clone());
                }
            }
            distinct.len() >= expected
        };
        if complete || Instant::now() > wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivery_secs = started.elapsed().as_secs_f64();
    let cpu = daemon.cpu_secs() - cpu_before;
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
        cpu_us_per_event: cpu * 1e6 / accepted.max(1) as f64,
    };
    assert_eq!(
        run.deliveries, expected,
        "{name}: every accepted event delivered to every webhook"
    );
    assert_eq!(
        run.duplicates, 0,
        "{name}: no delivery arrives twice (the sinks always answer 200)"
    );
    daemon.stop().await;
    (run, startup)
}

#[tokio::main]
async fn main() {
    let ca = support::TestCa::new("Orki Bench CA");
    let secs: u64 = std::env::var("ORKI_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // ORKI_BENCH_ONLY=<text> runs only the scenarios whose name contains it.
    let only = std::env::var("ORKI_BENCH_ONLY").unwrap_or_default();
    let (daemon, startup) = Daemon::start(&ca, None).await;
    daemon.stop().await;
    println!(
        "startup (empty data dir): {:.0} ms",
        startup.as_secs_f64() * 1000.0
    );
    println!(
        "\n| scenario | accepted/s | deliveries/s | p50 ingest→arrival | p99 | RSS idle | RSS peak | dup | daemon CPU/event |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let scenarios: Vec<(String, usize, usize, Option<u64>, u32)> = vec![
        ("1 webhook, c=1".into(), 1, 1, None, 0),
        ("1 webhook, c=16".into(), 1, 16, None, 0),
        ("1 webhook, c=64".into(), 1, 64, None, 0),
        ("10 webhooks, c=1".into(), 10, 1, None, 0),
        ("10 webhooks, c=16".into(), 10, 16, None, 0),
        ("10 webhooks, c=64".into(), 10, 64, None, 0),
        ("1 webhook, 500/s offered".into(), 1, 64, Some(500), 0),
        ("1 webhook, 2000/s offered".into(), 1, 64, Some(2000), 0),
        ("ordered, 1,000 keys, c=64".into(), 1, 64, None, 1000),
    ];
    let row = |r: &Run| {
        format!(
            "{:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} MiB | {:.1} MiB | {} | {:.0} µs",
            r.accepted as f64 / r.secs,
            r.deliveries as f64 / r.delivery_secs,
            r.p50_ms,
            r.p99_ms,
            r.rss_idle_mib,
            r.rss_peak_mib,
            r.duplicates,
            r.cpu_us_per_event
        )
    };
    for (name, webhooks, concurrency, rate, keys) in scenarios {
        if !name.contains(only.as_str()) {
            continue;
        }
        let (r, _) = scenario(
            &ca,
            &name,
            Shape {
                webhooks,
                concurrency,
                rate,
                keys,
            },
            secs,
            None,
        )
        .await;
        println!("| {} | {} |", r.name, row(&r));
    }

    // The same load on a data dir that already holds a history of attempts:
    // startup time, database size, and whether throughput holds as it grows.
    if "rate-limited".contains(only.as_str()) {
        println!(
            "\n| rate-limited | the unlimited webhook | the limited one |\n| --- | --- | --- |"
        );
        println!("{}", rate_limited_beside(&ca, 200, 1000, secs).await);
    }
    let sizes: Vec<usize> = std::env::var("ORKI_BENCH_HISTORY")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("ORKI_BENCH_HISTORY: {n:?} is not a count"))
        })
        .filter(|stored| format!("{stored} stored").contains(only.as_str()))
        .collect();
    if sizes.is_empty() {
        return;
    }
    println!(
        "\n| 1 webhook, c=64, with stored attempts | DB file | startup | accepted/s | deliveries/s | p50 | p99 | RSS idle | RSS peak | dup | daemon CPU/event |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for stored in sizes {
        let (dir, size) = prefilled(stored).await;
        let name = format!("{stored} stored");
        let (r, startup) = scenario(
            &ca,
            &name,
            Shape {
                webhooks: 1,
                concurrency: 64,
                rate: None,
                keys: 0,
            },
            secs,
            Some(dir),
        )
        .await;
        println!(
            "| {stored} | {:.0} MB | {:.0} ms | {} |",
            size as f64 / 1e6,
            startup.as_secs_f64() * 1000.0,
            row(&r)
        );
    }
}
