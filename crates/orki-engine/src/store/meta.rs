//! The meta table: credentials (made on first start) and settings.

use redb::ReadableTable;

use super::{ADMIN_TOKEN, INGEST_KEY, SETTINGS, Store};
use crate::settings::Settings;
use crate::store::codec::{decode, encode};
use crate::store::tables::META;
use crate::{Error, Result, Secret};

/// The two credentials of the listener.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Posts events, and nothing else.
    pub ingest_key: Secret,
    /// Manages everything, and does not post events.
    pub admin_token: Secret,
}

impl Store {
    /// The stored credentials, generated and saved on first start.
    pub fn credentials(&self) -> Result<Credentials> {
        let txn = self.write()?;
        let creds = {
            let mut meta = txn.open_table(META)?;
            let mut get_or_create = |name: &str, prefix: &str| -> Result<Secret> {
                if let Some(v) = meta.get(name)? {
                    return Ok(Secret::new(v.value()));
                }
                let fresh = Secret::generate(prefix);
                meta.insert(name, fresh.expose())?;
                Ok(fresh)
            };
            Credentials {
                ingest_key: get_or_create(INGEST_KEY, "ik_")?,
                admin_token: get_or_create(ADMIN_TOKEN, "at_")?,
            }
        };
        txn.commit()?;
        Ok(creds)
    }

    /// The stored settings (defaults until first saved).
    pub fn load_settings(&self) -> Result<Settings> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        match meta.get(SETTINGS)? {
            Some(v) => decode(v.value().as_bytes(), "settings"),
            None => Ok(Settings::default()),
        }
    }

    /// Saves the settings and, when asked, a fresh ingest key, in one transaction.
    pub(crate) fn save_settings(
        &self,
        settings: &Settings,
        regenerate_ingest_key: bool,
    ) -> Result<Option<Secret>> {
        let txn = self.write()?;
        let fresh = {
            let mut meta = txn.open_table(META)?;
            let json =
                String::from_utf8(encode(settings)?).map_err(|e| Error::Internal(e.to_string()))?;
            meta.insert(SETTINGS, json.as_str())?;
            if regenerate_ingest_key {
                let fresh = Secret::generate("ik_");
                meta.insert(INGEST_KEY, fresh.expose())?;
                Some(fresh)
            } else {
                None
            }
        };
        txn.commit()?;
        Ok(fresh)
    }
}
