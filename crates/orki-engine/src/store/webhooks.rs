//! The registry: webhooks and their subscriptions.

use redb::ReadableTable;

use super::Store;
use super::attempts::with_last_attempt;
use super::deliveries::cancel_pending;
use crate::ids::WebhookId;
use crate::model::WebhookRecord;
use crate::store::codec::{decode, encode};
use crate::store::tables::{ATTEMPT_INDEX, ATTEMPTS, WEBHOOKS};
use crate::{Error, Result};

impl Store {
    /// Saves a new webhook.
    pub(crate) fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(WEBHOOKS)?
            .insert(webhook.id.0, encode(webhook)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// One webhook.
    pub(crate) fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(WEBHOOKS)?;
        let (index, attempts) = (txn.open_table(ATTEMPT_INDEX)?, txn.open_table(ATTEMPTS)?);
        table
            .get(id.0)?
            .map(|v| with_last_attempt(decode(v.value(), "webhook")?, &index, &attempts))
            .transpose()
    }

    /// All webhooks, oldest first.
    pub(crate) fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(WEBHOOKS)?;
        let (index, attempts) = (txn.open_table(ATTEMPT_INDEX)?, txn.open_table(ATTEMPTS)?);
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(with_last_attempt(
                decode(v.value(), "webhook")?,
                &index,
                &attempts,
            )?);
        }
        Ok(out)
    }

    /// Changes a webhook in one transaction. `change` may refuse with an error, and then
    /// nothing is written. Disabling a webhook cancels its pending deliveries.
    pub(crate) fn update_webhook(
        &self,
        id: WebhookId,
        change: impl FnOnce(&mut WebhookRecord) -> Result<()>,
    ) -> Result<WebhookRecord> {
        let txn = self.write()?;
        let updated = {
            let mut table = txn.open_table(WEBHOOKS)?;
            let mut webhook: WebhookRecord = match table.get(id.0)? {
                Some(v) => decode(v.value(), "webhook")?,
                None => return Err(Error::not_found("webhook", id)),
            };
            change(&mut webhook)?;
            table.insert(id.0, encode(&webhook)?.as_slice())?;
            let index = txn.open_table(ATTEMPT_INDEX)?;
            let attempts = txn.open_table(ATTEMPTS)?;
            with_last_attempt(webhook, &index, &attempts)?
        };
        if !updated.enabled {
            cancel_pending(&txn, id)?;
        }
        txn.commit()?;
        Ok(updated)
    }

    /// Deletes a webhook and cancels its pending deliveries. The log keeps its attempts.
    pub(crate) fn delete_webhook(&self, id: WebhookId) -> Result<()> {
        let txn = self.write()?;
        if txn.open_table(WEBHOOKS)?.remove(id.0)?.is_none() {
            return Err(Error::not_found("webhook", id));
        }
        cancel_pending(&txn, id)?;
        txn.commit()?;
        Ok(())
    }
}
