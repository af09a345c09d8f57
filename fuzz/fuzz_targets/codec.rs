//! Stored records from arbitrary bytes: the first byte picks the record type,
//! the rest is what the database holds. Decoding is an error or a value, never
//! a panic; a value that decodes encodes again and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orki_engine::store::codec::{Record, decode, encode};
use orki_engine::model::{
    AttemptRecord, DeliveryRecord, EventRecord, IdempotencyRecord, WebhookRecord,
};
use orki_engine::settings::Settings;
use serde::Serialize;

fn check<T: Record + Serialize>(bytes: &[u8]) {
    let Ok(value) = decode::<T>(bytes, "fuzzed") else {
        return;
    };
    let json = serde_json::to_vec(&value).expect("a decoded record serializes");
    let again = encode(&value).expect("a decoded record encodes");
    let back: T = decode(&again, "re-encoded").expect("what we encode decodes");
    assert_eq!(serde_json::to_vec(&back).expect("serializes"), json);
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 6 {
        0 => check::<DeliveryRecord>(bytes),
        1 => check::<EventRecord>(bytes),
        2 => check::<AttemptRecord>(bytes),
        3 => check::<WebhookRecord>(bytes),
        4 => check::<IdempotencyRecord>(bytes),
        _ => check::<Settings>(bytes),
    }
});
