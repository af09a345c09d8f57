//! Redo records with a valid frame and CRC but any payload (a bug in an older
//! build, a record edited by hand): replaying them is a clear error or a
//! success, never a panic. The input is split at each `0xff 0xfe` pair into
//! records numbered from 1, so the fuzzer can also build chains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orki_engine::store::{self, wal};

fuzz_target!(|data: &[u8]| {
    let mut log = Vec::new();
    let mut seq = 1;
    let mut rest = data;
    loop {
        let cut = rest.windows(2).position(|w| w == [0xff, 0xfe]);
        let (payload, next) = match cut {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        log.extend(wal::record(seq, payload).expect("small"));
        seq += 1;
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    if let Ok(n) = store::replay_log_bytes(&log) {
        assert_eq!(n as u64, seq - 1, "every whole record is read");
    }
});
