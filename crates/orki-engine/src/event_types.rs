//! The catalogue of event types, each with a description and a realistic sample payload.

use serde::Serialize;
use serde_json::{Value, json};

/// One event type as listed by `GET /v1/event-types`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventType {
    /// The type name, e.g. `message.created`.
    #[serde(rename = "type")]
    pub name: &'static str,
    /// What it means, for a person.
    pub description: &'static str,
    /// A realistic `data` object of this type.
    pub sample: Value,
}

/// The known type names, in display order.
pub const NAMES: [&str; 3] = ["meta.message", "message.created", "chat.status_changed"];

/// The type's code in the keys of the delivery-log index (`attempt_index_v1`).
/// Stored on disk: a code is never changed or reused, whatever the order of
/// [`NAMES`]; a new type takes the next free number. `u8::MAX` is taken (a
/// type no longer in the catalogue) and 0 means "any type" in older entries.
pub(crate) fn index_code(name: &str) -> Option<u8> {
    match name {
        "meta.message" => Some(1),
        "message.created" => Some(2),
        "chat.status_changed" => Some(3),
        _ => None,
    }
}

/// The type of an index code written by [`index_code`] (the golden tests
/// read the codes back).
#[cfg(test)]
pub(crate) fn of_index_code(code: u8) -> Option<&'static str> {
    match code {
        1 => Some("meta.message"),
        2 => Some("message.created"),
        3 => Some("chat.status_changed"),
        _ => None,
    }
}

/// Whether `name` is a known event type.
pub(crate) fn is_known(name: &str) -> bool {
    NAMES.contains(&name)
}

/// All event types with descriptions and samples.
pub(crate) fn catalogue() -> Vec<EventType> {
    NAMES.iter().filter_map(|name| find(name)).collect()
}

/// One event type by name.
pub fn find(name: &str) -> Option<EventType> {
    let (name, description, sample) = match name {
        "meta.message" => (
            "meta.message",
            "A message was received from WhatsApp or Instagram (Meta's webhook payload, as Meta sent it).",
            meta_message_sample(),
        ),
        "message.created" => (
            "message.created",
            "A new message was created in a chat, inbound or outbound.",
            message_created_sample(),
        ),
        "chat.status_changed" => (
            "chat.status_changed",
            "A chat's status changed (active, snoozed, closed, needs attention).",
            chat_status_changed_sample(),
        ),
        _ => return None,
    };
    Some(EventType {
        name,
        description,
        sample,
    })
}

fn meta_message_sample() -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "15550783881",
                        "phone_number_id": "106540352242922"
                    },
                    "contacts": [{
                        "profile": { "name": "Sheena Nelson" },
                        "wa_id": "16505551234"
                    }],
                    "messages": [{
                        "from": "16505551234",
                        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                        "timestamp": "1749416383",
                        "type": "text",
                        "text": { "body": "Hi! Is my order #4821 ready for pickup?" }
                    }]
                }
            }]
        }]
    })
}

fn message_created_sample() -> Value {
    json!({
        "message": {
            "id": "msg_01JD8Q3K6W1R9X2V4T7N5B0C3M",
            "chat_id": "chat_01JD8Q2ZP4E6H8K0M2Q4S6U8W0",
            "direction": "inbound",
            "channel": "whatsapp",
            "author": { "type": "contact", "id": "ct_01JD8Q1YB3D5F7H9K1M3P5R7T9", "name": "Sheena Nelson" },
            "content_type": "text",
            "text": "Hi! Is my order #4821 ready for pickup?",
            "attachments": [],
            "created_at": "2026-11-27T09:41:23Z"
        }
    })
}

fn chat_status_changed_sample() -> Value {
    json!({
        "chat": {
            "id": "chat_01JD8Q2ZP4E6H8K0M2Q4S6U8W0",
            "channel": "whatsapp",
            "contact": { "id": "ct_01JD8Q1YB3D5F7H9K1M3P5R7T9", "name": "Sheena Nelson" },
            "assignee": { "id": "usr_01JD7Z9V8T6R4P2N0L8J6G4E2C", "name": "Amira Haddad" },
            "previous_status": "active",
            "status": "snoozed",
            "snoozed_until": "2026-11-28T09:00:00Z",
            "changed_by": { "type": "user", "id": "usr_01JD7Z9V8T6R4P2N0L8J6G4E2C" },
            "changed_at": "2026-11-27T09:45:02Z"
        }
    })
}

/// What an admin reads when `name` is not a known event type (one wording
/// for ingest, subscriptions, tests and log filters).
pub(crate) fn unknown_message(name: &str) -> String {
    format!(
        "unknown event type {name:?}; known types: {}",
        NAMES.join(", ")
    )
}

/// The name of a known event type (`GET /v1/event-types` lists them).
pub struct EventTypeName;

impl utoipa::PartialSchema for EventTypeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(NAMES))
            .description(Some("A known event type"))
            .into()
    }
}

impl utoipa::ToSchema for EventTypeName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_sample_object() {
        let all = catalogue();
        assert_eq!(all.len(), NAMES.len());
        for t in all {
            assert!(t.sample.is_object(), "{}", t.name);
            assert!(!t.description.is_empty());
        }
        let meta = find("meta.message").expect("known");
        assert!(meta.sample["entry"][0]["changes"][0]["value"]["messages"][0]["text"].is_object());
        assert!(find("nope").is_none());
        assert!(!is_known("Message.Created"));
    }

    #[test]
    fn every_type_has_its_own_index_code_both_ways() {
        let mut seen = std::collections::HashSet::new();
        for name in NAMES {
            let code = index_code(name).expect("a code for every type");
            assert!(code != 0 && code != u8::MAX, "{name}: {code} is reserved");
            assert!(seen.insert(code), "{name}: {code} is taken");
            assert_eq!(of_index_code(code), Some(name));
        }
        assert_eq!(index_code("order.paid"), None);
        assert_eq!(of_index_code(0), None);
        assert_eq!(of_index_code(u8::MAX), None);
    }
}
