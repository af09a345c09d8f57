//! The crash loop: the real `orki-webhooksd` is killed with SIGKILL at random
//! moments while several clients post, and started again on the same data
//! directory, `ORKI_CRASH_CYCLES` times (20 by default). At the end every
//! event answered `202` has reached every endpoint subscribed to its type, and
//! every `Idempotency-Key` answered still names the same event. How many
//! deliveries arrived more than once (at least once allows it) and the longest
//! restart are printed (`-- --nocapture` shows them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::process::{register_for, start_for_kill_test};
use crate::support::daemon::INGEST_KEY;
use crate::support::receiver::Received;
use crate::support::{Receiver, TestCa};

/// Clients posting at once.
const CLIENTS: usize = 4;
/// A cycle is killed once this many events or fewer were accepted in it (a
/// random number from 0, so some kills land during the restart itself).
const MOST_PER_CYCLE: usize = 40;
/// Every third event is of this type, which only one endpoint subscribes to.
const RARE: &str = "chat.status_changed";
const COMMON: &str = "message.created";

/// One client across the cycles: the request the kill cut off is sent again,
/// with the same `Idempotency-Key`, after the restart (as a careful client does).
struct Client {
    id: usize,
    next: u32,
}

/// An event answered `202`.
#[derive(Debug, Clone)]
struct Accepted {
    key: String,
    id: String,
    event_type: &'static str,
    /// The request body (a key posted again must come with the same one).
    body: Value,
}

fn event_type(i: u32) -> &'static str {
    if i.is_multiple_of(3) { RARE } else { COMMON }
}

/// Posts the client's next event; `None` when the daemon is gone (the kill
/// cut the request off: it is sent again, with the same key, after the
/// restart). Any answer but `202` fails the test.
async fn post_next(client: &mut Client, http: &reqwest::Client, base: &str) -> Option<Accepted> {
    let i = client.next;
    let key = format!("crash-{}-{i}", client.id);
    let ty = event_type(i);
    let request = json!({"type": ty, "data": {"client": client.id, "i": i}});
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(INGEST_KEY)
        .header("Idempotency-Key", &key)
        .json(&request)
        .send()
        .await
        .ok()?;
    let status = r.status();
    let body = r.json::<Value>().await.ok()?;
    assert_eq!(status, 202, "{key}: {body}");
    client.next += 1;
    Some(Accepted {
        key,
        id: body["id"].as_str().expect("id").to_owned(),
        event_type: ty,
        body: request,
    })
}

/// Posts until the daemon is gone (the kill); each `202` is noted in
/// `accepted` and counted in `count`.
async fn post_until_killed(
    mut client: Client,
    http: reqwest::Client,
    base: String,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    count: watch::Sender<usize>,
) -> Client {
    while let Some(a) = post_next(&mut client, &http, &base).await {
        accepted.lock().expect("lock").push(a);
        count.send_modify(|n| *n += 1);
    }
    client
}

/// What one endpoint received, by event id and by delivery id.
#[derive(Default)]
struct Got {
    events: HashMap<String, String>,
    deliveries: HashMap<String, u32>,
}

impl Got {
    fn note(&mut self, r: &Received) {
        assert!(r.signature_ok, "a delivery with a bad signature");
        assert_eq!(r.answered, 200);
        let body = r.json();
        let id = body["id"].as_str().expect("event id").to_owned();
        let ty = body["type"].as_str().expect("event type").to_owned();
        self.events.insert(id, ty);
        *self
            .deliveries
            .entry(r.header("x-orki-delivery"))
            .or_default() += 1;
    }

    /// Deliveries that arrived more than once, and how many extra copies came.
    fn duplicates(&self) -> (usize, u32) {
        let twice = self.deliveries.values().filter(|&&n| n > 1).count();
        (twice, self.deliveries.values().map(|n| n - 1).sum())
    }
}

/// Receives at `rx` until every id in `wanted` has arrived (bounded).
async fn receive_all(rx: &Receiver, got: &mut Got, wanted: &HashSet<String>, name: &str) {
    while let Some(r) = rx.try_next().await {
        got.note(&r);
    }
    // (The bound is the outer one: `next`'s own would fail without the list.)
    let done = tokio::time::timeout(Duration::from_secs(90), async {
        while !wanted.iter().all(|id| got.events.contains_key(id)) {
            got.note(&rx.next(Duration::from_secs(3600)).await);
        }
    })
    .await;
    if done.is_err() {
        let lost: Vec<&String> = wanted
            .iter()
            .filter(|id| !got.events.contains_key(*id))
            .collect();
        panic!(
            "{} accepted events never reached {name}: {lost:?}",
            lost.len()
        );
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_no_accepted_event() {
    let cycles: usize = std::env::var("ORKI_CRASH_CYCLES")
        .ok()
        .map(|v| v.parse().expect("ORKI_CRASH_CYCLES is a number"))
        .unwrap_or(20);
    assert!(cycles >= 1, "ORKI_CRASH_CYCLES: at least one cycle");
    let seed: u64 = std::env::var("ORKI_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("ORKI_CRASH_SEED is a number"))
        .unwrap_or_else(rand::random);
    println!("crash loop: {cycles} cycles, ORKI_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let began = Instant::now();

    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    // Both endpoints take every delivery at once: deliveries go out during
    // the load, so kills land between a send and its record too.
    let all = Receiver::start(&ca).await;
    let common = Receiver::start(&ca).await;
    let http = reqwest::Client::new();

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let mut clients: Vec<Client> = (0..CLIENTS).map(|id| Client { id, next: 0 }).collect();
    let mut restarts = Vec::with_capacity(cycles + 1);
    for cycle in 0..cycles {
        let started = Instant::now();
        let daemon = start_for_kill_test(&ca, dir.path()).await;
        restarts.push(started.elapsed());
        if cycle == 0 {
            register_for(&http, &daemon.base, &all, &[COMMON, RARE]).await;
            register_for(&http, &daemon.base, &common, &[COMMON]).await;
        }
        let (count, mut counted) = watch::channel(0);
        let target = rng.random_range(0..=MOST_PER_CYCLE);
        let tasks: Vec<_> = clients
            .drain(..)
            .map(|c| {
                tokio::spawn(post_until_killed(
                    c,
                    reqwest::Client::new(),
                    daemon.base.clone(),
                    accepted.clone(),
                    count.clone(),
                ))
            })
            .collect();
        drop(count);
        tokio::time::timeout(Duration::from_secs(60), counted.wait_for(|n| *n >= target))
            .await
            .unwrap_or_else(|_| panic!("cycle {cycle}: {target} events accepted within 60 s"))
            .expect("a client is posting");
        daemon.kill().await;
        for t in tasks {
            let client = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("clients stop once the daemon is gone")
                .expect("client task");
            clients.push(client);
        }
    }

    // The last start: everything accepted arrives, without another kill.
    let started = Instant::now();
    let daemon = start_for_kill_test(&ca, dir.path()).await;
    restarts.push(started.elapsed());
    // The requests the last kill cut off, sent again: then every event that
    // was stored has been answered, and nothing else may arrive.
    let mut accepted = accepted.lock().expect("lock").clone();
    for c in &mut clients {
        accepted.push(post_next(c, &http, &daemon.base).await.expect("202"));
    }
    let wanted_all: HashSet<String> = accepted.iter().map(|a| a.id.clone()).collect();
    let wanted_common: HashSet<String> = accepted
        .iter()
        .filter(|a| a.event_type == COMMON)
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(wanted_all.len(), accepted.len(), "one event per key");
    let (mut got_all, mut got_common) = (Got::default(), Got::default());
    receive_all(
        &all,
        &mut got_all,
        &wanted_all,
        "the endpoint of both types",
    )
    .await;
    receive_all(
        &common,
        &mut got_common,
        &wanted_common,
        "the other endpoint",
    )
    .await;

    // Every key answered before a kill still names its event: posting it
    // again creates nothing.
    for a in &accepted {
        let r = http
            .post(format!("{}/v1/events", daemon.base))
            .bearer_auth(INGEST_KEY)
            .header("Idempotency-Key", &a.key)
            .json(&a.body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 202, "{}", a.key);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["id"], a.id.as_str(), "{} names its first event", a.key);
    }
    let status = daemon.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit: {status:?}");
    for (rx, got) in [(&all, &mut got_all), (&common, &mut got_common)] {
        while let Some(r) = rx.try_next().await {
            got.note(&r);
        }
    }
    assert!(
        got_common.events.values().all(|ty| ty == COMMON),
        "only subscribed types reach an endpoint"
    );
    for (got, wanted) in [(&got_all, &wanted_all), (&got_common, &wanted_common)] {
        let unknown: Vec<&String> = got
            .events
            .keys()
            .filter(|id| !wanted.contains(*id))
            .collect();
        assert!(
            unknown.is_empty(),
            "events nobody was answered for: {unknown:?}"
        );
    }
    let delivered = got_all.deliveries.len() + got_common.deliveries.len();
    let (a, b) = (got_all.duplicates(), got_common.duplicates());
    restarts.sort();
    println!(
        "crash loop: {cycles} cycles, {} events accepted ({} deliveries due), 0 lost; \
         {delivered} deliveries received, {} of them more than once ({} extra copies); \
         restarts (spawn to listening) median {} ms, longest {} ms; {:.1} s in all \
         (ORKI_CRASH_SEED={seed})",
        accepted.len(),
        wanted_all.len() + wanted_common.len(),
        a.0 + b.0,
        a.1 + b.1,
        restarts[restarts.len() / 2].as_millis(),
        restarts.last().expect("a start").as_millis(),
        began.elapsed().as_secs_f64(),
    );
}
