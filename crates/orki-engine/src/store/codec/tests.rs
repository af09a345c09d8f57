use super::*;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default() + chrono::Duration::nanoseconds(123_456)
}

fn attempt(full: bool) -> AttemptRecord {
    let headers: BTreeMap<String, String> = [("X-Orki-Event", "order.paid"), ("A", "é")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    AttemptRecord {
        attempt: Attempt {
            id: AttemptId::generate(),
            delivery_id: DeliveryId::generate(),
            webhook_id: WebhookId::generate(),
            event_id: EventId::generate(),
            event_type: "order.paid".into(),
            attempt: 3,
            timestamp: at(1_790_000_000_123),
            success: !full,
            status_code: full.then_some(503),
            response_time_ms: 42,
            error: full.then(|| "the endpoint answered HTTP 503, not 2xx".into()),
            error_class: full.then_some(ErrorClass::Redirect),
            test: full,
            next_retry_at: full.then(|| at(1_790_000_060_000)),
        },
        request: RequestRecord {
            url: "https://example.test/hook?x=1".into(),
            method: "POST".into(),
            headers: headers.clone(),
        },
        response: full.then(|| ResponseRecord {
            status: 503,
            headers,
            body: "busy ✓".into(),
            body_truncated: true,
        }),
    }
}

/// Both forms read back to the same value (compared through JSON, which
/// every record has), and every cut-short compact record is an error.
fn round_trips<T: Record + Serialize + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_vec(value).expect("json");
    let compact = encode(value).expect("encode");
    assert!([COMPACT_V1, COMPACT_V2].contains(&compact[0]));
    assert!(compact.len() < json.len(), "compact is smaller");
    for bytes in [&compact, &json] {
        let back: T = decode(bytes, "record").expect("decode");
        assert_eq!(serde_json::to_vec(&back).expect("json"), json);
    }
    for cut in 1..compact.len() {
        assert!(
            decode::<T>(&compact[..cut], "record").is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = compact.clone();
    longer.push(0);
    assert!(decode::<T>(&longer, "record").is_err(), "trailing bytes");
}

#[test]
fn compact_records_round_trip_and_json_ones_still_read() {
    for full in [false, true] {
        round_trips(&attempt(full));
    }
    for (due, key) in [(Some(1_790_000_000_000), None), (None, Some("k-1"))] {
        round_trips(&DeliveryRecord {
            id: DeliveryId::generate(),
            event_id: EventId::generate(),
            webhook_id: WebhookId::generate(),
            event_type: "order.paid".into(),
            created_at: at(1_790_000_000_000),
            attempts: 2,
            state: if due.is_some() {
                DeliveryState::Pending
            } else {
                DeliveryState::Cancelled
            },
            due_ms: due,
            test: key.is_some(),
            ordering: key.map(|_| Ordering {
                key: u128::MAX - 7,
                seq: 41,
            }),
        });
        round_trips(&EventRecord {
            id: EventId::generate(),
            event_type: "order.paid".into(),
            created_at: at(1_790_000_000_000),
            payload: r#"{"id":"evt_1","data":{"note":"a \"quoted\" é"}}"#.into(),
            test: key.is_none(),
            idempotency_key: key.map(str::to_owned),
            ordering_key: key.map(|k| format!("chat-{k}")),
        });
    }
}

#[test]
fn bad_compact_values_are_errors_not_panics() {
    let mut bytes = encode(&attempt(true)).expect("encode");
    // The success flag sits after the tag, four ids, the type and the number.
    let flag = 1 + 16 * 4 + 4 + "order.paid".len() + 4 + 12;
    bytes[flag] = 7;
    let err = decode::<AttemptRecord>(&bytes, "attempt").expect_err("bad bool");
    assert!(err.to_string().contains("7 is not a boolean"), "{err}");
}
