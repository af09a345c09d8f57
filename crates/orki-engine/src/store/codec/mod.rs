//! The value codec of the database, decoded with an error instead of a panic.
//!
//! Records are JSON, except the three written for every event and attempt
//! (deliveries, events, attempts): those have a compact binary form, a tag byte
//! then fixed-width fields and length-prefixed strings, about ten times cheaper
//! to write and read than JSON and a third smaller. A JSON record starts with
//! `{`, never with the tag, so databases written before keep reading as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::{
    Attempt, AttemptRecord, DeliveryRecord, DeliveryState, ErrorClass, EventRecord, Ordering,
    RequestRecord, ResponseRecord,
};
use crate::{Error, Result};

/// The first byte of a record in the compact form, version 1.
const COMPACT_V1: u8 = 0x01;
/// Version 2: the fields of version 1, then those added since (a delivery's
/// place in its key's order, an event's ordering key). A record without
/// them is still written as version 1, byte for byte as before.
const COMPACT_V2: u8 = 0x02;

/// A type stored in the database. JSON unless it has a compact form.
pub trait Record: DeserializeOwned {
    /// Appends the compact form; `false` when the type has none (JSON is used).
    fn write_compact(&self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// The version its compact form is written in.
    fn compact_version(&self) -> u8 {
        COMPACT_V1
    }

    /// Reads the compact form written by [`Record::write_compact`] (in
    /// `r.version()`).
    fn read_compact(_r: &mut Reader<'_>) -> std::result::Result<Self, String> {
        Err("no compact form for this record".into())
    }
}

/// Encodes a record for storage.
pub fn encode<T: Record + Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.push(value.compact_version());
    if value.write_compact(&mut out) {
        return Ok(out);
    }
    serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

/// Decodes a stored record, in either form; `what` names it in the error.
pub fn decode<T: Record>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&version @ (COMPACT_V1 | COMPACT_V2), rest)) => {
            let mut r = Reader { rest, version };
            T::read_compact(&mut r)
                .and_then(|v| match r.rest.is_empty() {
                    true => Ok(v),
                    false => Err(format!("{} bytes left over", r.rest.len())),
                })
                .map_err(|e| Error::Corrupt(format!("{what}: {e}")))
        }
        _ => serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what}: {e}"))),
    }
}

// Stored as JSON: rare or small writes, read by people debugging a database.
impl Record for crate::model::WebhookRecord {}
impl Record for crate::model::IdempotencyRecord {}
impl Record for crate::settings::Settings {}

// ----- writing -----

fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

fn put_str(out: &mut Vec<u8>, v: &str) {
    // Strings here are bounded far below 4 GiB (events are capped in size).
    put_u32(out, u32::try_from(v.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(v.as_bytes());
}

/// Seconds and nanoseconds: exact, whatever the precision of the clock.
fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp().to_le_bytes());
    put_u32(out, t.timestamp_subsec_nanos());
}

fn put_opt<T>(out: &mut Vec<u8>, v: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        Some(v) => {
            out.push(1);
            put(out, v);
        }
        None => out.push(0),
    }
}

fn put_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    put_u32(out, u32::try_from(map.len()).unwrap_or(u32::MAX));
    for (k, v) in map {
        put_str(out, k);
        put_str(out, v);
    }
}

// ----- reading -----

/// The unread rest of a compact record, and its version.
pub struct Reader<'a> {
    rest: &'a [u8],
    version: u8,
}

type Read<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Read<[u8; N]> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| "the record ends too early".to_owned())?;
        self.rest = rest;
        Ok(*head)
    }

    /// Whether the record holds the fields of version 2.
    fn v2(&self) -> bool {
        self.version == COMPACT_V2
    }

    fn u8(&mut self) -> Read<u8> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Read<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Read<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn u128(&mut self) -> Read<u128> {
        Ok(u128::from_le_bytes(self.take()?))
    }

    fn bool(&mut self) -> Read<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{b} is not a boolean")),
        }
    }

    fn string(&mut self) -> Read<String> {
        let len = self.u32()? as usize;
        if len > self.rest.len() {
            return Err("a string runs past the record".into());
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())
    }

    fn time(&mut self) -> Read<DateTime<Utc>> {
        let secs = i64::from_le_bytes(self.take()?);
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| format!("{secs} is not a time"))
    }

    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<Option<T>> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            b => Err(format!("{b} is not an option tag")),
        }
    }

    fn map(&mut self) -> Read<BTreeMap<String, String>> {
        let n = self.u32()?;
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            map.insert(k, self.string()?);
        }
        Ok(map)
    }
}

// ----- the compact records -----

fn state_code(s: DeliveryState) -> u8 {
    match s {
        DeliveryState::Pending => 0,
        DeliveryState::Succeeded => 1,
        DeliveryState::Failed => 2,
        DeliveryState::Cancelled => 3,
    }
}

fn state_of(code: u8) -> Read<DeliveryState> {
    Ok(match code {
        0 => DeliveryState::Pending,
        1 => DeliveryState::Succeeded,
        2 => DeliveryState::Failed,
        3 => DeliveryState::Cancelled,
        _ => return Err(format!("{code} is not a delivery state")),
    })
}

fn class_code(c: ErrorClass) -> u8 {
    match c {
        ErrorClass::Dns => 0,
        ErrorClass::Connect => 1,
        ErrorClass::Tls => 2,
        ErrorClass::Timeout => 3,
        ErrorClass::Status => 4,
        ErrorClass::Redirect => 5,
    }
}

fn class_of(code: u8) -> Read<ErrorClass> {
    Ok(match code {
        0 => ErrorClass::Dns,
        1 => ErrorClass::Connect,
        2 => ErrorClass::Tls,
        3 => ErrorClass::Timeout,
        4 => ErrorClass::Status,
        5 => ErrorClass::Redirect,
        _ => return Err(format!("{code} is not an error class")),
    })
}

impl Record for DeliveryRecord {
    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        put_u128(out, self.id.0);
        put_u128(out, self.event_id.0);
        put_u128(out, self.webhook_id.0);
        put_str(out, &self.event_type);
        put_time(out, self.created_at);
        put_u32(out, self.attempts);
        put_u8(out, state_code(self.state));
        put_opt(out, self.due_ms, put_u64);
        put_bool(out, self.test);
        if let Some(o) = self.ordering {
            put_u128(out, o.key);
            put_u64(out, o.seq);
        }
        true
    }

    fn compact_version(&self) -> u8 {
        if self.ordering.is_some() {
            COMPACT_V2
        } else {
            COMPACT_V1
        }
    }

    fn read_compact(r: &mut Reader<'_>) -> Read<Self> {
        Ok(Self {
            id: DeliveryId(r.u128()?),
            event_id: EventId(r.u128()?),
            webhook_id: WebhookId(r.u128()?),
            event_type: r.string()?,
            created_at: r.time()?,
            attempts: r.u32()?,
            state: state_of(r.u8()?)?,
            due_ms: r.opt(Reader::u64)?,
            test: r.bool()?,
            ordering: match r.v2() {
                false => None,
                true => Some(Ordering {
                    key: r.u128()?,
                    seq: r.u64()?,
                }),
            },
        })
    }
}

impl Record for EventRecord {
    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        put_u128(out, self.id.0);
        put_str(out, &self.event_type);
        put_time(out, self.created_at);
        put_str(out, &self.payload);
        put_bool(out, self.test);
        put_opt(out, self.idempotency_key.as_deref(), put_str);
        if let Some(key) = &self.ordering_key {
            put_str(out, key);
        }
        true
    }

    fn compact_version(&self) -> u8 {
        if self.ordering_key.is_some() {
            COMPACT_V2
        } else {
            COMPACT_V1
        }
    }

    fn read_compact(r: &mut Reader<'_>) -> Read<Self> {
        Ok(Self {
            id: EventId(r.u128()?),
            event_type: r.string()?,
            created_at: r.time()?,
            payload: r.string()?,
            test: r.bool()?,
            idempotency_key: r.opt(Reader::string)?,
            ordering_key: match r.v2() {
                false => None,
                true => Some(r.string()?),
            },
        })
    }
}

impl Record for AttemptRecord {
    fn write_compact(&self, out: &mut Vec<u8>) -> bool {
        let a = &self.attempt;
        put_u128(out, a.id.0);
        put_u128(out, a.delivery_id.0);
        put_u128(out, a.webhook_id.0);
        put_u128(out, a.event_id.0);
        put_str(out, &a.event_type);
        put_u32(out, a.attempt);
        put_time(out, a.timestamp);
        put_bool(out, a.success);
        put_opt(out, a.status_code, put_u16);
        put_u64(out, a.response_time_ms);
        put_opt(out, a.error.as_deref(), put_str);
        put_opt(out, a.error_class.map(class_code), put_u8);
        put_bool(out, a.test);
        put_opt(out, a.next_retry_at, put_time);
        put_str(out, &self.request.url);
        put_str(out, &self.request.method);
        put_map(out, &self.request.headers);
        put_opt(out, self.response.as_ref(), |out, r| {
            put_u16(out, r.status);
            put_map(out, &r.headers);
            put_str(out, &r.body);
            put_bool(out, r.body_truncated);
        });
        true
    }

    fn read_compact(r: &mut Reader<'_>) -> Read<Self> {
        let attempt = Attempt {
            id: AttemptId(r.u128()?),
            delivery_id: DeliveryId(r.u128()?),
            webhook_id: WebhookId(r.u128()?),
            event_id: EventId(r.u128()?),
            event_type: r.string()?,
            attempt: r.u32()?,
            timestamp: r.time()?,
            success: r.bool()?,
            status_code: r.opt(Reader::u16)?,
            response_time_ms: r.u64()?,
            error: r.opt(Reader::string)?,
            error_class: r.opt(|r| class_of(r.u8()?))?,
            test: r.bool()?,
            next_retry_at: r.opt(Reader::time)?,
        };
        let request = RequestRecord {
            url: r.string()?,
            method: r.string()?,
            headers: r.map()?,
        };
        let response = r.opt(|r| {
            Ok(ResponseRecord {
                status: r.u16()?,
                headers: r.map()?,
                body: r.string()?,
                body_truncated: r.bool()?,
            })
        })?;
        Ok(Self {
            attempt,
            request,
            response,
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
