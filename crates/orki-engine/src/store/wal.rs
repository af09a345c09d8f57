//! The write-ahead log of the group commit (`orki-webhooks.wal` beside the
//! database).
//!
//! A durable redb commit writes and syncs every B-tree page the batch touched
//! (~28 scattered pages for a batch of ingests and attempt records, ~2 ms on
//! this kind of disk). So most batches are committed to redb without a sync
//! (`Durability::None`: visible at once, on disk at the next durable commit)
//! and made durable instead by appending what they wrote (a redo record: each
//! put and delete, table by table) to this file and syncing it: one sequential
//! write of a few KiB. Every second, or once the log holds
//! `CHECKPOINT_BYTES`, a batch is committed durably (a checkpoint) and the
//! log starts again from its beginning. Opening the database replays the
//! records the durable state does not hold yet: each batch records its
//! sequence number in the database (`meta_v1`, `wal_seq`), so a record is
//! replayed exactly when its number is past that.
//!
//! A record on disk: `length u32 | crc32 u32 | seq u64 | payload` (little
//! endian; the CRC covers seq and payload). Reading starts at offset 0 and
//! follows the chain while each record is whole, its CRC holds and its number
//! is one past the one before; the first break ends the log: a torn last
//! write, or older records left behind the current end after a restart from
//! offset 0 (their numbers are lower).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::Clock;
use crate::{Error, Result};

/// A checkpoint is due once this much has been logged since the last one.
pub(crate) const CHECKPOINT_BYTES: u64 = 2 * 1024 * 1024;
/// A checkpoint is due this long after the last one, when anything was logged.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Bytes before a record's payload.
const HEADER: usize = 16;
/// No record is larger (a batch of 1,024 attempt records with 64 KiB response
/// bodies is 64 MiB).
const MAX_PAYLOAD: usize = 1 << 30;
/// The largest record buffer kept between appends.
const KEEP_BUFFER: usize = 1024 * 1024;

/// The log file next to the database at `db`.
pub(crate) fn path_for(db: &Path) -> PathBuf {
    db.with_extension("wal")
}

/// The open log, written by the group commit's one thread.
#[derive(Debug)]
pub(crate) struct Wal {
    file: File,
    /// Bytes logged since the last checkpoint: where the next record goes.
    len: u64,
    checkpointed_at: Instant,
    /// A write or sync failed: what the log holds is no longer known, so the
    /// next batch is committed durably (which makes the log unnecessary).
    broken: bool,
    every: Duration,
    buf: Vec<u8>,
    /// Where the interval is measured (see [`Wal::set_clock`]).
    clock: Clock,
}

impl Wal {
    /// Opens (or creates) the log, emptied: call this only when the database
    /// holds everything the log held (after [`read`] and its replay).
    pub(crate) fn open(path: &Path, every: Duration) -> Result<Self> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        // Private like the database: it holds the same records.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::private_files::FILE_MODE);
        let file = options.open(path).map_err(|source| Error::Io {
            context: format!("opening the write-ahead log {}", path.display()),
            source,
        })?;
        Ok(Self {
            file,
            len: 0,
            checkpointed_at: Clock::System.instant(),
            broken: false,
            every,
            buf: Vec::new(),
            clock: Clock::System,
        })
    }

    /// Measures the checkpoint interval on `clock` from now on (the group
    /// commit's, which tests drive), starting it again.
    pub(crate) fn set_clock(&mut self, clock: Clock) {
        self.checkpointed_at = clock.instant();
        self.clock = clock;
    }

    /// Whether the next batch should be committed durably: the log is long or
    /// old enough, or it failed.
    pub(crate) fn wants_checkpoint(&self) -> bool {
        self.broken
            || self.len >= CHECKPOINT_BYTES
            || self.checkpoint_due_in().is_some_and(|due| due.is_zero())
    }

    /// How long until a checkpoint is due by time, when anything was logged
    /// since the last one.
    pub(crate) fn checkpoint_due_in(&self) -> Option<Duration> {
        (self.len > 0).then(|| {
            let since = self.clock.instant().duration_since(self.checkpointed_at);
            self.every.saturating_sub(since)
        })
    }

    /// Appends record `seq` and syncs it: when this returns `Ok`, the record
    /// survives a crash.
    /// The payload is given in parts (one per table), written as one.
    pub(crate) fn append(&mut self, seq: u64, payload: &[Vec<u8>]) -> std::io::Result<()> {
        let total: usize = payload.iter().map(Vec::len).sum();
        let len = u32::try_from(total)
            .ok()
            .filter(|&n| n as usize <= MAX_PAYLOAD)
            .ok_or_else(|| std::io::Error::other("a write-ahead record is too large"))?;
        self.buf.clear();
        put_record(&mut self.buf, len, seq, payload);
        let written = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        let appended = self.buf.len() as u64;
        // A batch of large response bodies can make one record many MiB; its
        // buffer is not kept for the small ones after it.
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        match written {
            Ok(()) => {
                self.len += appended;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// The database now holds everything durably: the next record goes at the
    /// log's beginning again.
    pub(crate) fn checkpointed(&mut self) {
        match self.file.seek(SeekFrom::Start(0)) {
            Ok(_) => {
                self.len = 0;
                self.broken = false;
            }
            // A record appended after the old ones would follow a gap in the
            // numbers (the checkpoint took one) and not be read back: every
            // batch is committed durably until a rewind succeeds.
            Err(e) => {
                self.broken = true;
                tracing::warn!(error = %e, "rewinding the write-ahead log failed");
            }
        }
        self.checkpointed_at = self.clock.instant();
    }

    /// The database holds everything, and nothing more will be logged (a
    /// clean stop): the log is emptied, so the next start reads nothing.
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.checkpointed();
        Ok(())
    }

    /// A checkpoint failed: the next one by time is tried a full interval
    /// later, not at once again.
    pub(crate) fn checkpoint_failed(&mut self) {
        self.checkpointed_at = self.clock.instant();
    }

    /// Bytes logged since the last checkpoint.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Nothing was logged since the last checkpoint.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Appends record `seq` (`len` bytes of payload, in `parts`) to `buf`.
fn put_record(buf: &mut Vec<u8>, len: u32, seq: u64, parts: &[impl AsRef<[u8]>]) {
    let start = buf.len();
    buf.reserve(HEADER + len as usize);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    for part in parts {
        buf.extend_from_slice(part.as_ref());
    }
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Record `seq` with `payload` as `Wal::append` writes it (tests, the
/// fuzzer); `None` past the size limit.
pub fn record(seq: u64, payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= MAX_PAYLOAD)?;
    let mut buf = Vec::new();
    put_record(&mut buf, len, seq, &[payload]);
    Some(buf)
}

/// The records of the log at `path`, in order, as far as they form an
/// unbroken chain from offset 0 (none when there is no file).
pub(crate) fn read(path: &Path) -> Result<Vec<(u64, Vec<u8>)>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                context: format!("reading the write-ahead log {}", path.display()),
                source,
            });
        }
    };
    Ok(parse(&bytes))
}

/// The records of a log's bytes, in order, as far as they form an unbroken
/// chain from the first byte (see `read`). Anything after the first break
/// is ignored, whatever it holds.
pub fn parse(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut rest = bytes;
    while rest.len() >= HEADER {
        let (head, tail) = rest.split_at(HEADER);
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut seq_bytes = [0; 8];
        seq_bytes.copy_from_slice(&head[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len > tail.len() || len > MAX_PAYLOAD {
            break;
        }
        let (payload, next) = tail.split_at(len);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[8..16]);
        hasher.update(payload);
        if hasher.finalize() != crc {
            break;
        }
        if records.last().is_some_and(|(last, _)| seq != last + 1) {
            break;
        }
        records.push((seq, payload.to_vec()));
        rest = next;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(path: &Path) -> Vec<u64> {
        read(path)
            .expect("read")
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    #[test]
    fn records_read_back_in_order_with_their_payloads() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.wal");
        assert!(read(&path).expect("no file").is_empty());
        let mut wal = Wal::open(&path, CHECKPOINT_EVERY).expect("open");
        assert!(!wal.wants_checkpoint(), "an empty log needs no checkpoint");
        wal.append(7, &[b"sev".to_vec(), b"en".to_vec()])
            .expect("append");
        wal.append(8, &[]).expect("append");
        wal.append(9, &[vec![0xff; 5000]]).expect("append");
        let records = read(&path).expect("read");
        assert_eq!(
            records,
            vec![
                (7, b"seven".to_vec()),
                (8, Vec::new()),
                (9, vec![0xff; 5000])
            ]
        );
        assert_eq!(wal.len(), 3 * HEADER as u64 + 5 + 5000);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_log() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.wal");
        let mut wal = Wal::open(&path, CHECKPOINT_EVERY).expect("open");
        for seq in 1..=3 {
            wal.append(seq, &[vec![seq as u8; 100]]).expect("append");
        }
        let whole = std::fs::read(&path).expect("bytes");
        // The last record cut short, as by a crash in the middle of its write.
        std::fs::write(&path, &whole[..whole.len() - 1]).expect("cut");
        assert_eq!(seqs(&path), [1, 2]);
        // One byte of the second record's payload changed.
        let mut damaged = whole.clone();
        damaged[HEADER + 100 + HEADER + 50] ^= 1;
        std::fs::write(&path, &damaged).expect("damage");
        assert_eq!(seqs(&path), [1]);
        // Garbage after the last record.
        let mut trailing = whole;
        trailing.extend_from_slice(&[0xab; 40]);
        std::fs::write(&path, &trailing).expect("garbage");
        assert_eq!(seqs(&path), [1, 2, 3]);
    }

    #[test]
    fn after_a_checkpoint_older_records_behind_the_end_are_not_read() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.wal");
        let mut wal = Wal::open(&path, Duration::ZERO).expect("open");
        for seq in 1..=4 {
            wal.append(seq, &[vec![1; 64]]).expect("append");
        }
        assert!(
            wal.wants_checkpoint(),
            "anything logged, and the time is up"
        );
        wal.checkpointed();
        assert!(wal.is_empty());
        assert!(!wal.wants_checkpoint());
        // Before anything new, the old chain is still whole (and each of its
        // records is already in the database, which replay checks).
        assert_eq!(seqs(&path), [1, 2, 3, 4]);
        // A new record shorter than the one it overwrote: the old bytes after
        // it do not continue the chain.
        wal.append(5, &[vec![2; 10]]).expect("append");
        assert_eq!(seqs(&path), [5]);
        // Nor does an old record that lines up exactly: its number is lower.
        wal.append(6, &[vec![3; 2 * (HEADER + 64) - (HEADER + 10) - HEADER]])
            .expect("append");
        assert_eq!(seqs(&path), [5, 6]);
        wal.append(7, &[vec![4; 64]]).expect("append");
        assert_eq!(seqs(&path), [5, 6, 7]);
    }

    #[test]
    fn a_checkpoint_is_due_in_time_only_when_something_was_logged() {
        let dir = tempfile::tempdir().expect("dir");
        let mut wal = Wal::open(&dir.path().join("x.wal"), Duration::from_secs(60)).expect("open");
        assert_eq!(wal.checkpoint_due_in(), None);
        wal.append(1, &[b"x".to_vec()]).expect("append");
        let due = wal.checkpoint_due_in().expect("due");
        assert!(
            due > Duration::from_secs(50) && due <= Duration::from_secs(60),
            "{due:?}"
        );
        wal.checkpointed();
        assert_eq!(wal.checkpoint_due_in(), None);
    }

    /// The interval is measured on the clock the log is given (tokio's,
    /// paused here), also when read from a thread outside the runtime, as
    /// the group commit's writer does.
    #[tokio::test(start_paused = true)]
    async fn the_interval_runs_on_the_clock_it_is_given() {
        let dir = tempfile::tempdir().expect("dir");
        let every = Duration::from_secs(60);
        let mut wal = Wal::open(&dir.path().join("x.wal"), every).expect("open");
        wal.set_clock(Clock::tokio());
        let off_runtime = |wal: &Wal| {
            std::thread::scope(|s| {
                s.spawn(|| (wal.checkpoint_due_in(), wal.wants_checkpoint()))
                    .join()
                    .expect("thread")
            })
        };
        wal.append(1, &[b"x".to_vec()]).expect("append");
        assert_eq!(off_runtime(&wal), (Some(every), false));
        tokio::time::advance(every - Duration::from_secs(1)).await;
        assert_eq!(off_runtime(&wal), (Some(Duration::from_secs(1)), false));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(off_runtime(&wal), (Some(Duration::ZERO), true));
        wal.checkpointed();
        wal.append(2, &[b"y".to_vec()]).expect("append");
        assert_eq!(
            off_runtime(&wal),
            (Some(every), false),
            "from the checkpoint"
        );
    }

    #[test]
    fn a_log_that_grew_large_wants_a_checkpoint() {
        let dir = tempfile::tempdir().expect("dir");
        let mut wal =
            Wal::open(&dir.path().join("x.wal"), Duration::from_secs(3600)).expect("open");
        wal.append(1, &[vec![0; 1000]]).expect("append");
        assert!(!wal.wants_checkpoint());
        wal.append(2, &[vec![0; CHECKPOINT_BYTES as usize]])
            .expect("append");
        assert!(wal.wants_checkpoint());
    }
}
