//! The one value codec of the database: JSON bytes, decoded with an error instead of a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Encodes a record for storage.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Storage(format!("encoding a record: {e}")))
}

/// Decodes a stored record; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}
