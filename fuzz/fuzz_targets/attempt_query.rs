//! Query strings of `GET /v1/attempts` (decoded as axum's `Query` does) and
//! replay filters: an error or a query within its documented bounds.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use orki_engine::query::{AttemptQuery, ReplayRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = serde_urlencoded::from_bytes::<HashMap<String, String>>(data) {
        if let Ok(q) = AttemptQuery::parse(&pairs) {
            assert!((1..=500).contains(&q.limit));
        }
    }
    if let Ok(replay) = serde_json::from_slice::<ReplayRequest>(data) {
        let _ = replay.filter();
    }
});
