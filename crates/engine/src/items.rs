//! The catalogue: plain, non-personal item data, validated here.

use candor_domain::{Item, ItemId, Timestamp};

use crate::{Engine, EngineError, Result};

/// Longest title, in bytes.
pub const MAX_TITLE_LEN: usize = 512;
/// Longest category or provider, in bytes.
pub const MAX_LABEL_LEN: usize = 128;
/// Largest attributes object, serialized, in bytes.
pub const MAX_ATTRIBUTES_LEN: usize = 4096;
/// Most items per import call.
pub const MAX_IMPORT: usize = 10_000;

fn check_item(item: &Item) -> Result<()> {
    ItemId::parse(&item.id).map_err(|e| EngineError::invalid("invalid_id", e.to_string()))?;
    if item.title.len() > MAX_TITLE_LEN {
        return Err(EngineError::invalid(
            "invalid_field",
            format!("title is longer than {MAX_TITLE_LEN} bytes"),
        ));
    }
    for (name, value) in [("category", &item.category), ("provider", &item.provider)] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.len() > MAX_LABEL_LEN)
        {
            return Err(EngineError::invalid(
                "invalid_field",
                format!("{name} must be 1 to {MAX_LABEL_LEN} bytes"),
            ));
        }
    }
    if serde_json::to_string(&item.attributes).map_or(0, |s| s.len()) > MAX_ATTRIBUTES_LEN {
        return Err(EngineError::invalid(
            "invalid_field",
            format!("attributes are larger than {MAX_ATTRIBUTES_LEN} bytes"),
        ));
    }
    Ok(())
}

impl Engine {
    /// Inserts or replaces items, all or none; the whole call fails on the first bad item.
    pub async fn put_items(&self, items: &[Item]) -> Result<()> {
        if items.len() > MAX_IMPORT {
            return Err(EngineError::invalid(
                "batch_too_large",
                format!("import at most {MAX_IMPORT} items per call"),
            ));
        }
        for (index, item) in items.iter().enumerate() {
            check_item(item).map_err(|e| match e {
                EngineError::Invalid { code, message } => {
                    EngineError::invalid(code, format!("item {index}: {message}"))
                }
                other => other,
            })?;
        }
        Ok(self.store.put_items(items, Timestamp::now()).await?)
    }

    /// One item.
    pub async fn get_item(&self, id: &str) -> Result<Item> {
        ItemId::parse(id).map_err(|e| EngineError::invalid("invalid_id", e.to_string()))?;
        self.store.get_item(id).await?.ok_or_else(|| {
            EngineError::not_found("unknown_item", "the catalogue has no item with this id")
        })
    }

    /// A page of items in id order.
    pub async fn list_items(&self, after: Option<&str>, limit: u32) -> Result<Vec<Item>> {
        Ok(self.store.list_items(after, limit.clamp(1, 1000)).await?)
    }

    /// Deletes an item.
    pub async fn delete_item(&self, id: &str) -> Result<()> {
        ItemId::parse(id).map_err(|e| EngineError::invalid("invalid_id", e.to_string()))?;
        if self.store.delete_item(id).await? {
            Ok(())
        } else {
            Err(EngineError::not_found(
                "unknown_item",
                "the catalogue has no item with this id",
            ))
        }
    }
}
