//! Typed, time-ordered ids (UUIDv7 as `u128`), shown as `<prefix>_<32 hex>`.
//!
//! Ordering by id is ordering by creation time, which gives the attempt log
//! its newest-first order and stable pagination cursors for free.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u128);

        impl $name {
            /// The prefix in the textual form.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, later than every id made before it in this process.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().as_u128())
            }

            /// A new id stamped with `unix_ms` (imports, tests, benchmarks).
            pub fn at_unix_ms(unix_ms: u64) -> Self {
                let ts = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    unix_ms / 1000,
                    ((unix_ms % 1000) * 1_000_000) as u32,
                );
                Self(uuid::Uuid::new_v7(ts).as_u128())
            }

            /// When it was made, in Unix milliseconds (the UUIDv7 timestamp).
            pub fn unix_ms(self) -> u64 {
                (self.0 >> 80) as u64
            }

            /// The smallest possible id of a millisecond: a range bound for time filters.
            pub fn floor_at(unix_ms: u64) -> Self {
                Self(u128::from(unix_ms) << 80)
            }

            /// Parses `<prefix>_<32 hex>`; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                let hex = text.strip_prefix($prefix)?.strip_prefix('_')?;
                if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                u128::from_str_radix(hex, 16).ok().map(Self)
            }

            /// [`Self::parse`], or the `not_found` error an unknown id gets
            /// (a malformed id names nothing, so it is not found either).
            pub fn parse_or_not_found(text: &str) -> crate::Result<Self> {
                Self::parse(text).ok_or_else(|| crate::Error::not_found($kind, text))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}_{:032x}", $prefix, self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("not a valid {} id: {text:?}", $prefix))
                })
            }
        }
    };
}

id_type!(
    /// A registered webhook.
    WebhookId,
    "wh",
    "webhook"
);
id_type!(
    /// An accepted event.
    EventId,
    "evt",
    "event"
);
id_type!(
    /// One event's delivery to one webhook (stable across retries).
    DeliveryId,
    "dlv",
    "delivery"
);
id_type!(
    /// One attempt of a delivery.
    AttemptId,
    "att",
    "attempt"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let a = EventId::generate();
        let b = EventId::generate();
        assert!(b > a);
        let text = a.to_string();
        assert!(text.starts_with("evt_") && text.len() == 36);
        assert_eq!(EventId::parse(&text), Some(a));
        assert_eq!(WebhookId::parse(&text), None);
        assert_eq!(EventId::parse("evt_xyz"), None);
        assert_eq!(EventId::parse(&format!("{text}0")), None);
        let old = EventId::at_unix_ms(1_700_000_000_123);
        assert_eq!(old.unix_ms(), 1_700_000_000_123);
        assert!(EventId::floor_at(1_700_000_000_123) <= old);
        assert!(EventId::floor_at(1_700_000_000_124) > old);
    }
}
