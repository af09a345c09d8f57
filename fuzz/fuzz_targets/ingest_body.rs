//! `POST /v1/events` bodies: any bytes are a 400 with the JSON error shape or
//! a type and a `data` object kept byte for byte.
#![no_main]

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use orki_engine::http::parse_ingest_body;

fuzz_target!(|data: &[u8]| {
    match parse_ingest_body(data) {
        Ok((_, object, _)) => {
            assert!(object.starts_with('{'));
            // `data` is a slice of the body, as posted.
            let text = std::str::from_utf8(data).expect("accepted bodies are UTF-8");
            assert!(text.contains(object));
            // Valid JSON by the grammar (a tree of it need not exist: 1e999
            // is valid JSON that no double holds).
            let raw: &serde_json::value::RawValue =
                serde_json::from_str(object).expect("valid JSON");
            assert_eq!(raw.get(), object);
        }
        Err(e) => {
            assert_eq!(e.into_response().status(), 400);
        }
    }
});
