//! Delivery-log query benchmark: fills a real redb file with a million attempts
//! (20 webhooks, 3 event types, ~10 % failures, 25 days) and measures p50/p99 of
//! filtered first pages and deep pages (50 rows, as the API serves them).
//!
//! `cargo bench -p orki-engine --bench log_queries` (set `ORKI_BENCH_ATTEMPTS` for
//! another size). Results go in docs/BENCHMARKS.md.

mod history;

use std::time::{Duration, Instant};

use history::DAY_MS;
use orki_engine::Store;
use orki_engine::event_types::NAMES;
use orki_engine::ids::{AttemptId, WebhookId};
use orki_engine::store::AttemptFilter;
use rand::Rng;

const PAGE: usize = 51; // 50 rows + 1 to know whether there is a next page
const RUNS: usize = 400;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let total: usize = std::env::var("ORKI_BENCH_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orki-webhooks.redb");
    let store = Store::open(&path).expect("store");
    let webhooks: Vec<WebhookId> = (0..20).map(|_| WebhookId::generate()).collect();
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let start_ms = now_ms - 25 * DAY_MS;
    let mut rng = rand::rng();

    let fill_started = Instant::now();
    let sample_ids = history::fill(&store, &webhooks, total, now_ms);
    let fill = fill_started.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    // The file grows in large steps; the pages in use are the real size.
    let used = store.used_bytes().expect("used bytes");
    println!(
        "filled {total} attempts (with their events and deliveries) in {:.1} s; file {:.0} MB, pages in use {:.0} MB ({:.0} bytes per attempt)",
        fill.as_secs_f64(),
        size as f64 / 1e6,
        used as f64 / 1e6,
        used as f64 / total as f64
    );

    type Case = (
        &'static str,
        Box<dyn Fn(&mut rand::rngs::ThreadRng) -> (AttemptFilter, Option<AttemptId>)>,
    );
    let whs = webhooks.clone();
    let whs2 = webhooks.clone();
    let whs3 = webhooks.clone();
    let whs4 = webhooks.clone();
    let ids = sample_ids.clone();
    let ids2 = sample_ids.clone();
    let ids3 = sample_ids.clone();
    let cases: Vec<Case> = vec![
        (
            "first page, no filter",
            Box::new(|_| (AttemptFilter::default(), None)),
        ),
        (
            "first page, webhook",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(whs[r.random_range(0..20)]),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, event type",
            Box::new(|r| {
                (
                    AttemptFilter {
                        event_type: Some(NAMES[r.random_range(0..3)].into()),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, failures",
            Box::new(|_| {
                (
                    AttemptFilter {
                        success: Some(false),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, webhook + failures",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(whs2[r.random_range(0..20)]),
                        success: Some(false),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, webhook + type + outcome",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(whs3[r.random_range(0..20)]),
                        event_type: Some(NAMES[r.random_range(0..3)].into()),
                        success: Some(r.random_bool(0.5)),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, one day's range",
            Box::new(move |r| {
                let from = start_ms + r.random_range(0..24) * DAY_MS;
                (
                    AttemptFilter {
                        from_ms: Some(from),
                        to_ms: Some(from + DAY_MS),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, failures in a day of one webhook",
            Box::new(move |r| {
                let from = start_ms + r.random_range(0..24) * DAY_MS;
                (
                    AttemptFilter {
                        webhook: Some(whs4[r.random_range(0..20)]),
                        success: Some(false),
                        from_ms: Some(from),
                        to_ms: Some(from + DAY_MS),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "deep page, no filter",
            Box::new(move |r| {
                (
                    AttemptFilter::default(),
                    Some(ids[r.random_range(0..ids.len())]),
                )
            }),
        ),
        (
            "deep page, event type + failures",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        event_type: Some(NAMES[r.random_range(0..3)].into()),
                        success: Some(false),
                        ..Default::default()
                    },
                    Some(ids2[r.random_range(0..ids2.len())]),
                )
            }),
        ),
        (
            "deep page, webhook",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(webhooks[r.random_range(0..20)]),
                        ..Default::default()
                    },
                    Some(ids3[r.random_range(0..ids3.len())]),
                )
            }),
        ),
    ];

    println!("\n| query ({RUNS} runs, 50 rows a page) | p50 | p99 | rows (median) |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, make) in &cases {
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let (filter, cursor) = make(&mut rng);
            let t = Instant::now();
            let page = store.list_attempts(&filter, cursor, PAGE).expect("query");
            times.push(t.elapsed());
            rows.push(page.len());
        }
        times.sort();
        rows.sort();
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {} |",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            rows[rows.len() / 2]
        );
    }
}
