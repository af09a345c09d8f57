//! `PATCH /v1/settings` bodies: a bad one is an error and changes nothing; a
//! good one leaves settings within their documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orki_engine::settings::{MAX_DATABASE_MB, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(patch) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
    else {
        return;
    };
    let mut settings = Settings::default();
    let before = settings.clone();
    match settings.apply_patch(&patch) {
        Err(_) => assert_eq!(settings, before, "a refused patch changes nothing"),
        Ok(_) => {
            assert!(settings.listen_port >= 1024);
            assert!((1..=1000).contains(&settings.warning_threshold));
            assert!((1..=3650).contains(&settings.retention_days));
            assert!(settings.max_database_mb.is_none_or(|m| (1..=MAX_DATABASE_MB).contains(&m)));
            assert!((1..=50).contains(&settings.retry_schedule_ms.len()));
            assert!(settings.retry_schedule_ms.iter().all(|&ms| ms > 0 && ms <= 7 * 86_400_000));
        }
    }
});
