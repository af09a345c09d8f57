//! The delivery log: pages of attempts and one attempt in full.

use serde::Serialize;

use super::EngineHandle;
use crate::ids::AttemptId;
use crate::model::{Attempt, AttemptDetail};
use crate::query::AttemptQuery;
use crate::{Error, Result};

/// One page of the delivery log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptPage {
    /// Attempts, newest first.
    pub items: Vec<Attempt>,
    /// Pass as `cursor` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<AttemptId>,
}

impl EngineHandle {
    /// A page of the delivery log, newest first, filtered.
    pub async fn list_attempts(&self, query: AttemptQuery) -> Result<AttemptPage> {
        let AttemptQuery {
            filter,
            cursor,
            limit,
        } = query;
        let limit = limit.clamp(1, 500);
        let mut items = self
            .storage()
            .list_attempts(filter, cursor, limit + 1)
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| a.id)
        } else {
            None
        };
        Ok(AttemptPage { items, next_cursor })
    }

    /// One attempt with the exact request and the response.
    pub async fn get_attempt(&self, id: AttemptId) -> Result<AttemptDetail> {
        self.storage()
            .get_attempt(id)
            .await?
            .ok_or_else(|| Error::not_found("attempt", id))
    }
}
