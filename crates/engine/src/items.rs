//! The catalogue: plain, non-personal item data, validated here.

use candor_domain::ErrorCode;
use candor_domain::{Item, ItemId};

use crate::{Engine, EngineError, Result};

/// Longest title, in bytes.
pub const MAX_TITLE_LEN: usize = 512;
/// Longest category or provider, in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// Largest attributes object, serialized, in bytes.
pub const MAX_ATTRIBUTES_LEN: usize = 4096;
/// Most catalogue ids remembered as known.
const ITEM_CACHE_LIMIT: usize = 2_000_000;
/// How long a server trusts that an item it saw is still in the catalogue, in milliseconds
/// of engine clock: an item deleted through another server is refused everywhere within this.
pub const ITEM_RECHECK_MS: i64 = 500;
/// Most items per import call.
pub const MAX_IMPORT: usize = 10_000;

fn check_item(item: &Item) -> Result<()> {
    ItemId::parse(&item.id)
        .map_err(|e| EngineError::refused(ErrorCode::InvalidId, e.to_string()))?;
    if item.title.len() > MAX_TITLE_LEN {
        return Err(EngineError::refused(
            ErrorCode::InvalidField,
            format!("title is longer than {MAX_TITLE_LEN} bytes"),
        ));
    }
    for (name, value) in [("category", &item.category), ("provider", &item.provider)] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > MAX_LABEL_LEN)
        {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                format!("{name} must be 1 to {MAX_LABEL_LEN} bytes"),
            ));
        }
    }
    if serde_json::to_string(&item.attributes).map_or(0, |s| s.len()) > MAX_ATTRIBUTES_LEN {
        return Err(EngineError::refused(
            ErrorCode::InvalidField,
            format!("attributes are larger than {MAX_ATTRIBUTES_LEN} bytes"),
        ));
    }
    Ok(())
}

impl Engine {
    /// Inserts or replaces items, all or none; the whole call fails on the first bad item.
    pub async fn put_items(&self, items: &[Item]) -> Result<()> {
        if items.len() > MAX_IMPORT {
            return Err(EngineError::refused(
                ErrorCode::BatchTooLarge,
                format!("import at most {MAX_IMPORT} items per call"),
            ));
        }
        for (index, item) in items.iter().enumerate() {
            check_item(item).map_err(|e| match e {
                EngineError::Refused { code, message } => {
                    EngineError::refused(code, format!("item {index}: {message}"))
                }
                other => other,
            })?;
        }
        self.store.put_items(items, self.now()).await?;
        self.remember_items(items.iter().map(|i| i.id.as_str()));
        Ok(())
    }

    fn remember_items<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let now = self.now();
        let mut known = self.known_items.write();
        if known.len() > ITEM_CACHE_LIMIT {
            known.clear();
        }
        known.extend(ids.map(|id| (id.to_owned(), now)));
    }

    /// Which of `ids` are not in the catalogue. Ids seen in the catalogue within
    /// [`ITEM_RECHECK_MS`] are trusted (catalogue data is not personal), so only the others
    /// cost a query, and an item deleted through another server is refused here within that.
    pub(crate) async fn missing_items(
        &self,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>> {
        let now = self.now();
        let unseen: Vec<&str> = {
            let known = self.known_items.read();
            ids.iter()
                .copied()
                .filter(|id| {
                    known
                        .get(*id)
                        .is_none_or(|seen| !(0..ITEM_RECHECK_MS).contains(&(now.0 - seen.0)))
                })
                .collect()
        };
        if unseen.is_empty() {
            return Ok(Default::default());
        }
        let missing = self.store.missing_items(&unseen).await?;
        {
            let mut known = self.known_items.write();
            for id in &missing {
                known.remove(id);
            }
        }
        self.remember_items(unseen.iter().copied().filter(|id| !missing.contains(*id)));
        Ok(missing)
    }

    /// One item.
    pub async fn get_item(&self, id: &str) -> Result<Item> {
        ItemId::parse(id).map_err(|e| EngineError::refused(ErrorCode::InvalidId, e.to_string()))?;
        self.store.get_item(id).await?.ok_or_else(|| {
            EngineError::refused(
                ErrorCode::UnknownItem,
                "the catalogue has no item with this id",
            )
        })
    }

    /// A page of items in id order.
    pub async fn list_items(&self, after: Option<&str>, limit: u32) -> Result<Vec<Item>> {
        Ok(self.store.list_items(after, limit.clamp(1, 1000)).await?)
    }

    /// Deletes an item.
    pub async fn delete_item(&self, id: &str) -> Result<()> {
        ItemId::parse(id).map_err(|e| EngineError::refused(ErrorCode::InvalidId, e.to_string()))?;
        self.known_items.write().remove(id);
        if self.store.delete_item(id).await? {
            Ok(())
        } else {
            Err(EngineError::refused(
                ErrorCode::UnknownItem,
                "the catalogue has no item with this id",
            ))
        }
    }
}
