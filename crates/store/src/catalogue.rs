//! `items`: the catalogue, plain and not personal.

use std::collections::HashSet;

use async_trait::async_trait;
use candor_domain::{Item, Timestamp};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};
use crate::{IN_CHUNK, INSERT_CHUNK, Result, StoreError};

/// The catalogue.
#[async_trait]
pub trait CatalogueStore: Send + Sync {
    /// Inserts or replaces catalogue items, all or none.
    async fn put_items(&self, items: &[Item], at: Timestamp) -> Result<()>;
    /// One item.
    async fn get_item(&self, id: &str) -> Result<Option<Item>>;
    /// Items in id order after `after`.
    async fn list_items(&self, after: Option<&str>, limit: u32) -> Result<Vec<Item>>;
    /// Deletes an item; `false` if it did not exist.
    async fn delete_item(&self, id: &str) -> Result<bool>;
    /// Which of the given ids are not in the catalogue (usually none, so little comes back).
    async fn missing_items(&self, ids: &[&str]) -> Result<HashSet<String>>;
}

fn item(r: &impl Get) -> Result<Item> {
    let attributes = match serde_json::from_str::<serde_json::Value>(&r.text("attributes")?) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(StoreError::Corrupt("items")),
    };
    Ok(Item {
        id: r.text("id")?,
        title: r.text("title")?,
        category: r.opt_text("category")?,
        provider: r.opt_text("provider")?,
        attributes,
    })
}

#[async_trait]
impl<D: Dialect> CatalogueStore for SqlStore<D> {
    async fn put_items(&self, items: &[Item], at: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        for chunk in items.chunks(INSERT_CHUNK) {
            let mut q = Sql::new(
                "INSERT INTO items (id, title, category, provider, attributes, updated_at) VALUES ",
            );
            q.rows(chunk, |item| {
                vec![
                    item.id.as_str().into(),
                    item.title.as_str().into(),
                    item.category.clone().into(),
                    item.provider.clone().into(),
                    serde_json::Value::Object(item.attributes.clone())
                        .to_string()
                        .into(),
                    at.0.into(),
                ]
            });
            q.push(
                " ON CONFLICT (id) DO UPDATE SET title = excluded.title, category = excluded.category, \
                 provider = excluded.provider, attributes = excluded.attributes, \
                 updated_at = excluded.updated_at",
            );
            D::execute(&mut tx, q).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_item(&self, id: &str) -> Result<Option<Item>> {
        let row = self
            .fetch_one(
                Sql::new(
                    "SELECT id, title, category, provider, attributes FROM items WHERE id = $1",
                )
                .arg(id),
            )
            .await?;
        row.as_ref().map(item).transpose()
    }

    async fn list_items(&self, after: Option<&str>, limit: u32) -> Result<Vec<Item>> {
        let rows = self
            .fetch(
                Sql::new(
                    "SELECT id, title, category, provider, attributes FROM items \
                     WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .arg(after.unwrap_or(""))
                .arg(limit as i64),
            )
            .await?;
        rows.iter().map(item).collect()
    }

    async fn delete_item(&self, id: &str) -> Result<bool> {
        let deleted = self
            .execute(Sql::new("DELETE FROM items WHERE id = $1").arg(id))
            .await?;
        Ok(deleted > 0)
    }

    async fn missing_items(&self, ids: &[&str]) -> Result<HashSet<String>> {
        let mut missing = HashSet::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let mut q = Sql::new("WITH wanted (id) AS (VALUES ");
            q.rows(chunk, |id| vec![(*id).into()]);
            // NOT EXISTS probes the primary key per id; NOT IN (SELECT ...) would
            // materialise the whole catalogue for every call.
            q.push(
                ") SELECT w.id AS id FROM wanted w \
                 WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = w.id)",
            );
            for row in self.fetch(q).await? {
                missing.insert(row.text("id")?);
            }
        }
        Ok(missing)
    }
}
