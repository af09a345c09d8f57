//! Round trips of any record (proptest), and any bytes decoding to an error
//! or a value that encodes back to the same bytes.

use super::*;
use proptest::prelude::*;

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Any second chrono holds, any nanosecond of it.
    (
        -8_000_000_000_000i64..8_000_000_000_000,
        0u32..1_000_000_000,
    )
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap_or_default())
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn headers() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(text(), text(), 0..5)
}

fn state() -> impl Strategy<Value = DeliveryState> {
    prop_oneof![
        Just(DeliveryState::Pending),
        Just(DeliveryState::Succeeded),
        Just(DeliveryState::Failed),
        Just(DeliveryState::Cancelled),
    ]
}

fn class() -> impl Strategy<Value = ErrorClass> {
    prop_oneof![
        Just(ErrorClass::Dns),
        Just(ErrorClass::Connect),
        Just(ErrorClass::Tls),
        Just(ErrorClass::Timeout),
        Just(ErrorClass::Status),
        Just(ErrorClass::Redirect),
    ]
}

fn delivery() -> impl Strategy<Value = DeliveryRecord> {
    (
        any::<[u128; 3]>(),
        text(),
        time(),
        any::<u32>(),
        state(),
        any::<Option<u64>>(),
        any::<bool>(),
        any::<Option<(u128, u64)>>(),
    )
        .prop_map(
            |(
                [id, event, webhook],
                event_type,
                created_at,
                attempts,
                state,
                due_ms,
                test,
                ordering,
            )| {
                DeliveryRecord {
                    id: DeliveryId(id),
                    event_id: EventId(event),
                    webhook_id: WebhookId(webhook),
                    event_type,
                    created_at,
                    attempts,
                    state,
                    due_ms,
                    test,
                    ordering: ordering.map(|(key, seq)| Ordering { key, seq }),
                }
            },
        )
}

fn event() -> impl Strategy<Value = EventRecord> {
    (
        any::<u128>(),
        text(),
        time(),
        text(),
        any::<bool>(),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(id, event_type, created_at, payload, test, idempotency_key, ordering_key)| {
                EventRecord {
                    id: EventId(id),
                    event_type,
                    created_at,
                    payload,
                    test,
                    idempotency_key,
                    ordering_key,
                }
            },
        )
}

fn attempt() -> impl Strategy<Value = AttemptRecord> {
    let head = (
        any::<[u128; 4]>(),
        text(),
        any::<u32>(),
        time(),
        any::<bool>(),
        any::<Option<u16>>(),
        any::<u64>(),
    );
    let tail = (
        prop::option::of(text()),
        prop::option::of(class()),
        any::<bool>(),
        prop::option::of(time()),
        (text(), text(), headers()),
        prop::option::of((any::<u16>(), headers(), text(), any::<bool>())),
    );
    (head, tail).prop_map(
        |(
            ([id, delivery, webhook, event], event_type, n, timestamp, success, status, ms),
            (error, error_class, test, next_retry_at, (url, method, headers), response),
        )| AttemptRecord {
            attempt: Attempt {
                id: AttemptId(id),
                delivery_id: DeliveryId(delivery),
                webhook_id: WebhookId(webhook),
                event_id: EventId(event),
                event_type,
                attempt: n,
                timestamp,
                success,
                status_code: status,
                response_time_ms: ms,
                error,
                error_class,
                test,
                next_retry_at,
            },
            request: RequestRecord {
                url,
                method,
                headers,
            },
            response: response.map(|(status, headers, body, body_truncated)| ResponseRecord {
                status,
                headers,
                body,
                body_truncated,
            }),
        },
    )
}

/// Encoded, decoded, and equal (through JSON, which every record has);
/// encoding the decoded value gives the same bytes.
fn round_trip<T: Record + Serialize>(value: &T) -> std::result::Result<(), TestCaseError> {
    let bytes = encode(value).expect("encode");
    let back: T = decode(&bytes, "record").expect("decode");
    prop_assert_eq!(
        serde_json::to_value(&back).expect("json"),
        serde_json::to_value(value).expect("json")
    );
    prop_assert_eq!(encode(&back).expect("encode"), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn deliveries_round_trip(d in delivery()) {
        round_trip(&d)?;
    }

    #[test]
    fn events_round_trip(e in event()) {
        round_trip(&e)?;
    }

    #[test]
    fn attempts_round_trip(a in attempt()) {
        round_trip(&a)?;
    }

    #[test]
    fn any_bytes_decode_to_an_error_or_a_stable_value(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        lead in prop::option::of(prop::sample::select(vec![COMPACT_V1, COMPACT_V2])),
    ) {
        let mut bytes = bytes;
        if let Some(tag) = lead {
            bytes.insert(0, tag);
        }
        if let Ok(d) = decode::<DeliveryRecord>(&bytes, "d") {
            // The compact form has one encoding per value.
            if matches!(bytes.first(), Some(&(COMPACT_V1 | COMPACT_V2))) {
                prop_assert_eq!(encode(&d).expect("encode"), bytes.clone());
            }
            round_trip(&d)?;
        }
        if let Ok(e) = decode::<EventRecord>(&bytes, "e") {
            round_trip(&e)?;
        }
        if let Ok(a) = decode::<AttemptRecord>(&bytes, "a") {
            round_trip(&a)?;
        }
    }
}
