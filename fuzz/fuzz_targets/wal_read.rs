//! A write-ahead log file as found on disk after a crash, a bad disk or a
//! stray write: reading it takes the unbroken chain from its start (never a
//! panic, never more memory than the file), and replaying that chain into a
//! database is an error or a success.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orki_engine::store::{self, wal};

fuzz_target!(|data: &[u8]| {
    let records = wal::parse(data);
    let payload: usize = records.iter().map(|(_, p)| p.len()).sum();
    assert!(payload <= data.len(), "no record is longer than the file");
    for pair in records.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "one unbroken chain");
    }
    let _ = store::replay_log_bytes(data);
});
