//! `meta`: key-value metadata (the key ring's fingerprint), the backend's identity, and row
//! counts.

use async_trait::async_trait;

use crate::Result;
use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};

/// Row counts, for health and benchmarks. Counts only; no personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Stored events.
    pub events: u64,
    /// Subjects holding a data key.
    pub subjects: u64,
    /// Consent history records.
    pub consent_records: u64,
    /// Audit entries.
    pub audit_entries: u64,
    /// Catalogue items.
    pub items: u64,
}

/// Metadata and what the store is.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// How many write transactions are worth running at once (SQLite has one writer).
    fn concurrent_writers(&self) -> usize;
    /// Reads a metadata value.
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Writes a metadata value.
    async fn put_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Row counts.
    async fn stats(&self) -> Result<StoreStats>;
}

#[async_trait]
impl<D: Dialect> MetaStore for SqlStore<D> {
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    fn concurrent_writers(&self) -> usize {
        D::WRITERS
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .fetch_one(Sql::new("SELECT value FROM meta WHERE key = $1").arg(key))
            .await?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        let upsert = Sql::new(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .arg(key)
        .arg(value);
        self.execute(upsert).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<StoreStats> {
        let mut counts = [0u64; 5];
        let tables = [
            "events",
            "subject_keys",
            "consent_history",
            "audit_log",
            "items",
        ];
        for (count, table) in counts.iter_mut().zip(tables) {
            let sql = Sql::new(&format!("SELECT COUNT(*) AS n FROM {table}"));
            let row = self.fetch_one(sql).await?;
            *count = row.map_or(Ok(0), |r| r.int("n"))? as u64;
        }
        let [events, subjects, consent_records, audit_entries, items] = counts;
        Ok(StoreStats {
            events,
            subjects,
            consent_records,
            audit_entries,
            items,
        })
    }
}
