//! The SQLite and PostgreSQL backends. Their SQL is the same apart from the schema file and
//! how a write transaction serialises audit appends, so one macro implements [`Store`] for
//! both and each backend supplies `begin_write` and `lock_audit`.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use candor_domain::{
    AuditDraft, AuditEntry, AuditSealer, ConsentMethod, ConsentRecord, ConsentRow, Item,
    Jurisdiction, Pseudonym, RequestKind, RequestStatus, SignedHead, Timestamp,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Sqlite, SqlitePool, Transaction};

use crate::{
    ApiKeyRecord, BudgetCharge, BudgetState, CountAudit, ErasedRows, EventGroup, ModelArtifact,
    NewEvent, PurposeRead, Result, RightsRequest, Store, StoreError, StoreStats, StoredEvent,
};

/// Rows per multi-row INSERT (kept well under both engines' bind-parameter limits).
const INSERT_CHUNK: usize = 1000;
/// Ids per `IN (...)` list.
const IN_CHUNK: usize = 900;

/// The embedded SQLite backend: one writer connection (SQLite has one writer anyway, and this
/// serialises audit appends in-process) and a small pool of readers, in WAL mode with full
/// synchronous commits and `secure_delete` so deleted rows are overwritten.
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    sealer: Arc<dyn AuditSealer>,
    /// The background checkpointer runs while this is alive.
    _checkpointer: Arc<()>,
}

/// How often the background connection checkpoints the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] until the store is dropped.
fn spawn_checkpointer(pool: SqlitePool, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CHECKPOINT_EVERY);
        loop {
            ticker.tick().await;
            if alive.upgrade().is_none() {
                pool.close().await;
                return;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::warn!(%error, "WAL checkpoint failed");
            }
        }
    });
}

impl SqliteStore {
    /// Opens or creates the database file at `path` and migrates it.
    pub async fn open(path: &str, sealer: Arc<dyn AuditSealer>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "on")
            .pragma("temp_store", "memory");
        // The writer gets a 64 MiB page cache so a large batch does not spill pages to the WAL
        // (and rewrite them) before it commits. It never checkpoints: a background connection
        // does (PASSIVE, which blocks neither readers nor the writer), so no commit waits while
        // the WAL is copied into the database file.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", "-65536")
                    .pragma("wal_autocheckpoint", "0"),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let alive = Arc::new(());
        spawn_checkpointer(checkpointer, Arc::downgrade(&alive));
        Ok(Self {
            read,
            write,
            sealer,
            _checkpointer: alive,
        })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn lock_audit(_tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        // The single writer connection and BEGIN IMMEDIATE already serialise appends.
        Ok(())
    }

    /// Deleted cells were overwritten in the database file (`secure_delete`); the WAL still
    /// holds the pre-deletion pages until it is checkpointed and truncated.
    async fn purge_deleted_bytes(pool: &SqlitePool) -> Result<()> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await?;
        Ok(())
    }
}

/// The PostgreSQL backend, for shared deployments: audit appends are serialised across
/// servers by a transaction-scoped advisory lock.
pub struct PostgresStore {
    read: PgPool,
    write: PgPool,
    sealer: Arc<dyn AuditSealer>,
}

/// The advisory lock key that serialises audit-chain appends.
const AUDIT_LOCK_KEY: i64 = 0x43_61_6e_64_6f_72; // "Candor"

impl PostgresStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str, sealer: Arc<dyn AuditSealer>) -> Result<Self> {
        Self::open_in_schema(url, None, sealer).await
    }

    /// Connects with `search_path` set to `schema` (created if missing): lets tests and
    /// tenants share one database.
    pub async fn open_in_schema(
        url: &str,
        schema: Option<&str>,
        sealer: Arc<dyn AuditSealer>,
    ) -> Result<Self> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            if !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(StoreError::UnsupportedUrl);
            }
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&admin)
                .await?;
            admin.close().await;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            sealer,
        })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.write.begin().await?)
    }

    /// PostgreSQL reclaims deleted tuples with VACUUM; the rows are unreadable at once and
    /// their payloads' key is gone.
    async fn purge_deleted_bytes(pool: &PgPool) -> Result<()> {
        for table in [
            "events",
            "consent_history",
            "consent_current",
            "subject_keys",
        ] {
            sqlx::query(&format!("VACUUM {table}"))
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    async fn lock_audit(tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK_KEY)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn pseudonym(bytes: Vec<u8>, table: &'static str) -> Result<Pseudonym> {
    Pseudonym::from_slice(&bytes).ok_or(StoreError::Corrupt(table))
}

/// The compact per-subject index key: the pseudonym's first 8 bytes.
fn subject_hint(subject: &Pseudonym) -> i64 {
    i64::from_be_bytes(subject.0[..8].try_into().expect("8 of 32 bytes"))
}

fn hash32(bytes: Vec<u8>, table: &'static str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(table))
}

fn named<T>(raw: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(raw).ok_or(StoreError::Corrupt("requests"))
}

fn method(raw: &str) -> Result<ConsentMethod> {
    ConsentMethod::parse(raw).ok_or(StoreError::Corrupt("consent"))
}

macro_rules! impl_store {
    ($store:ident, $db:ty, $name:literal, $writers:literal) => {
        impl $store {
            /// Seals `drafts` onto the chain inside `tx` and re-signs the head.
            async fn append_in_tx(
                &self,
                tx: &mut Transaction<'static, $db>,
                drafts: &[AuditDraft],
            ) -> Result<()> {
                if drafts.is_empty() {
                    return Ok(());
                }
                Self::lock_audit(tx).await?;
                let last: Option<(i64, Vec<u8>)> =
                    sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&mut **tx)
                        .await?;
                let (mut seq, mut prev) = match last {
                    Some((seq, hash)) => (seq as u64, hash32(hash, "audit_log")?),
                    None => (0, [0u8; 32]),
                };
                let mut entries = Vec::with_capacity(drafts.len());
                for draft in drafts {
                    seq += 1;
                    let entry = self.sealer.seal(draft, seq, prev);
                    prev = entry.hash;
                    entries.push(entry);
                }
                for chunk in entries.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO audit_log (seq, at, actor, action, subject, purpose, detail, prev_hash, hash, mac) ",
                    );
                    q.push_values(chunk, |mut b, e| {
                        b.push_bind(e.seq as i64)
                            .push_bind(e.at.0)
                            .push_bind(e.actor.clone())
                            .push_bind(e.action.clone())
                            .push_bind(e.subject.map(|p| p.0.to_vec()))
                            .push_bind(e.purpose.clone())
                            .push_bind(e.detail.clone())
                            .push_bind(e.prev_hash.to_vec())
                            .push_bind(e.hash.to_vec())
                            .push_bind(e.mac.to_vec());
                    });
                    q.build().execute(&mut **tx).await?;
                }
                let head = self.sealer.sign_head(seq, prev);
                sqlx::query(
                    "INSERT INTO audit_head (id, seq, hash, signature) VALUES (1, $1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, signature = excluded.signature",
                )
                .bind(head.seq as i64)
                .bind(head.hash.to_vec())
                .bind(head.signature)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            fn concurrent_writers(&self) -> usize {
                $writers
            }

            async fn get_meta(&self, key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.read)
                    .await?)
            }

            async fn put_meta(&self, key: &str, value: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn put_items(&self, items: &[Item], at: Timestamp) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for chunk in items.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO items (id, title, category, provider, attributes, updated_at) ",
                    );
                    q.push_values(chunk, |mut b, item| {
                        b.push_bind(item.id.clone())
                            .push_bind(item.title.clone())
                            .push_bind(item.category.clone())
                            .push_bind(item.provider.clone())
                            .push_bind(serde_json::Value::Object(item.attributes.clone()).to_string())
                            .push_bind(at.0);
                    });
                    q.push(
                        " ON CONFLICT (id) DO UPDATE SET title = excluded.title, category = excluded.category, \
                         provider = excluded.provider, attributes = excluded.attributes, updated_at = excluded.updated_at",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_item(&self, id: &str) -> Result<Option<Item>> {
                let row = sqlx::query(
                    "SELECT id, title, category, provider, attributes FROM items WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
                row.map(|r| item_from_row!(r)).transpose()
            }

            async fn list_items(&self, after: Option<&str>, limit: u32) -> Result<Vec<Item>> {
                let rows = sqlx::query(
                    "SELECT id, title, category, provider, attributes FROM items WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(|r| item_from_row!(r)).collect()
            }

            async fn delete_item(&self, id: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM items WHERE id = $1")
                    .bind(id)
                    .execute(&self.write)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn missing_items(&self, ids: &[&str]) -> Result<HashSet<String>> {
                let mut missing = HashSet::new();
                for chunk in ids.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("WITH wanted (id) AS (VALUES ");
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push("(");
                        sep.push_bind_unseparated(id.to_string());
                        sep.push_unseparated(")");
                    }
                    // NOT EXISTS probes the primary key per id; NOT IN (SELECT ...) would
                    // materialise the whole catalogue for every call.
                    q.push(") SELECT w.id FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = w.id)");
                    let rows: Vec<(String,)> = q.build_query_as().fetch_all(&self.read).await?;
                    missing.extend(rows.into_iter().map(|(id,)| id));
                }
                Ok(missing)
            }

            async fn subject_keys(&self, subjects: &[Pseudonym]) -> Result<Vec<(Pseudonym, Vec<u8>)>> {
                let mut out = Vec::with_capacity(subjects.len());
                for chunk in subjects.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("SELECT subject, wrapped_key FROM subject_keys WHERE subject IN (");
                    let mut sep = q.separated(", ");
                    for s in chunk {
                        sep.push_bind(s.0.to_vec());
                    }
                    q.push(")");
                    let rows: Vec<(Vec<u8>, Vec<u8>)> = q.build_query_as().fetch_all(&self.read).await?;
                    for (subject, key) in rows {
                        out.push((pseudonym(subject, "subject_keys")?, key));
                    }
                }
                Ok(out)
            }

            async fn ensure_subject_keys(
                &self,
                keys: &[(Pseudonym, Vec<u8>)],
                at: Timestamp,
            ) -> Result<Vec<(Pseudonym, Vec<u8>)>> {
                let mut tx = self.begin_write().await?;
                // Inserted in key order so concurrent writers lock rows in the same order.
                let mut ordered: Vec<&(Pseudonym, Vec<u8>)> = keys.iter().collect();
                ordered.sort_by_key(|(subject, _)| *subject);
                for chunk in ordered.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("INSERT INTO subject_keys (subject, wrapped_key, created_at) ");
                    q.push_values(chunk, |mut b, (subject, wrapped)| {
                        b.push_bind(subject.0.to_vec()).push_bind(wrapped.clone()).push_bind(at.0);
                    });
                    q.push(" ON CONFLICT (subject) DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                let mut out = Vec::with_capacity(keys.len());
                for chunk in keys.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("SELECT subject, wrapped_key FROM subject_keys WHERE subject IN (");
                    let mut sep = q.separated(", ");
                    for (s, _) in chunk {
                        sep.push_bind(s.0.to_vec());
                    }
                    q.push(")");
                    let rows: Vec<(Vec<u8>, Vec<u8>)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    for (subject, key) in rows {
                        out.push((pseudonym(subject, "subject_keys")?, key));
                    }
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn subjects_without_grant(
                &self,
                subjects: &[Pseudonym],
                category: &str,
                purposes: &[&str],
                now: Timestamp,
            ) -> Result<HashSet<Pseudonym>> {
                if purposes.is_empty() {
                    return Ok(subjects.iter().copied().collect());
                }
                let mut out = HashSet::new();
                for chunk in subjects.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("WITH wanted (subject) AS (VALUES ");
                    let mut sep = q.separated(", ");
                    for s in chunk {
                        sep.push("(");
                        sep.push_bind_unseparated(s.0.to_vec());
                        sep.push_unseparated(")");
                    }
                    // A correlated NOT EXISTS probes the (subject, purpose, category) key per
                    // subject instead of materialising every live grant for every call.
                    q.push(
                        ") SELECT w.subject FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM consent_current c \
                         WHERE c.subject = w.subject AND c.granted = ",
                    );
                    q.push_bind(true).push(" AND c.expires_at > ").push_bind(now.0);
                    q.push(" AND c.category = ").push_bind(category.to_owned()).push(" AND c.purpose IN (");
                    let mut sep = q.separated(", ");
                    for p in purposes {
                        sep.push_bind(p.to_string());
                    }
                    q.push("))");
                    let rows: Vec<(Vec<u8>,)> = q.build_query_as().fetch_all(&self.read).await?;
                    for (subject,) in rows {
                        out.insert(pseudonym(subject, "consent_current")?);
                    }
                }
                Ok(out)
            }

            async fn record_consent(&self, records: &[ConsentRecord], audit: &[AuditDraft]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                for chunk in records.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO consent_history (subject, purpose, category, granted, at, expires_at, policy_version, method) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.subject.0.to_vec())
                            .push_bind(r.purpose.clone())
                            .push_bind(r.category.clone())
                            .push_bind(r.granted)
                            .push_bind(r.at.0)
                            .push_bind(r.expires_at.0)
                            .push_bind(r.policy_version.clone())
                            .push_bind(r.method.as_str());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                // Rows are locked in key order (a stable sort keeps later records for the same
                // key later, so the newest still wins), so concurrent writers cannot deadlock.
                let mut ordered: Vec<&ConsentRecord> = records.iter().collect();
                ordered.sort_by(|a, b| (&a.subject, &a.purpose, &a.category).cmp(&(&b.subject, &b.purpose, &b.category)));
                for r in ordered {
                    sqlx::query(
                        "INSERT INTO consent_current (subject, purpose, category, granted, at, expires_at, method) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subject, purpose, category) DO UPDATE SET \
                         granted = excluded.granted, at = excluded.at, expires_at = excluded.expires_at, method = excluded.method",
                    )
                    .bind(r.subject.0.to_vec())
                    .bind(r.purpose.clone())
                    .bind(r.category.clone())
                    .bind(r.granted)
                    .bind(r.at.0)
                    .bind(r.expires_at.0)
                    .bind(r.method.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                self.append_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn consent_current(&self, subjects: &[Pseudonym]) -> Result<Vec<(Pseudonym, ConsentRow)>> {
                let mut out = Vec::new();
                for chunk in subjects.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT subject, purpose, category, granted, at, expires_at, method FROM consent_current WHERE subject IN (",
                    );
                    let mut sep = q.separated(", ");
                    for s in chunk {
                        sep.push_bind(s.0.to_vec());
                    }
                    q.push(")");
                    for r in q.build().fetch_all(&self.read).await? {
                        out.push((
                            pseudonym(r.try_get("subject")?, "consent_current")?,
                            ConsentRow {
                                purpose: r.try_get("purpose")?,
                                category: r.try_get("category")?,
                                granted: r.try_get("granted")?,
                                at: Timestamp(r.try_get("at")?),
                                expires_at: Timestamp(r.try_get("expires_at")?),
                                method: method(r.try_get::<&str, _>("method")?)?,
                            },
                        ));
                    }
                }
                Ok(out)
            }

            async fn consent_history(&self, subject: &Pseudonym) -> Result<Vec<ConsentRecord>> {
                let rows = sqlx::query(
                    "SELECT purpose, category, granted, at, expires_at, policy_version, method \
                     FROM consent_history WHERE subject = $1 ORDER BY id",
                )
                .bind(subject.0.to_vec())
                .fetch_all(&self.read)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok(ConsentRecord {
                            subject: *subject,
                            purpose: r.try_get("purpose")?,
                            category: r.try_get("category")?,
                            granted: r.try_get("granted")?,
                            at: Timestamp(r.try_get("at")?),
                            expires_at: Timestamp(r.try_get("expires_at")?),
                            policy_version: r.try_get("policy_version")?,
                            method: method(r.try_get::<&str, _>("method")?)?,
                        })
                    })
                    .collect()
            }

            async fn insert_event_groups(&self, groups: &[EventGroup]) -> Result<Vec<Vec<bool>>> {
                // Duplicates are rare: first insert everything and count. Only if some row was
                // skipped does a second pass ask which dedup keys exist and insert the rest (and a
                // concurrent writer slipping one in between makes a third pass do the same).
                let mut existing: HashSet<[u8; 16]> = HashSet::new();
                for attempt in 0..3 {
                    let t0 = std::time::Instant::now();
                    let mut tx = self.begin_write().await?;
                    if attempt > 0 {
                        existing.clear();
                        let all: Vec<&NewEvent> = groups.iter().flat_map(|g| &g.events).collect();
                        for chunk in all.chunks(IN_CHUNK) {
                            let mut q = QueryBuilder::<$db>::new("SELECT dedup FROM events WHERE dedup IN (");
                            let mut sep = q.separated(", ");
                            for e in chunk {
                                sep.push_bind(e.dedup.to_vec());
                            }
                            q.push(")");
                            let rows: Vec<(Vec<u8>,)> = q.build_query_as().fetch_all(&mut *tx).await?;
                            for (d,) in rows {
                                existing.insert(d.try_into().map_err(|_| StoreError::Corrupt("events"))?);
                            }
                        }
                    }
                    // The first occurrence of a dedup key in this call wins; later ones and keys
                    // already stored are duplicates.
                    let mut seen: HashSet<[u8; 16]> = HashSet::new();
                    let mut flags: Vec<Vec<bool>> = Vec::with_capacity(groups.len());
                    let mut fresh: Vec<&NewEvent> = Vec::new();
                    for group in groups {
                        let group_flags = group
                            .events
                            .iter()
                            .map(|e| {
                                let new = !existing.contains(&e.dedup) && seen.insert(e.dedup);
                                if new {
                                    fresh.push(e);
                                }
                                new
                            })
                            .collect();
                        flags.push(group_flags);
                    }
                    // In dedup order, so concurrent writers lock index entries in the same order.
                    fresh.sort_by_key(|e| e.dedup);
                    let mut inserted = 0u64;
                    for chunk in fresh.chunks(INSERT_CHUNK) {
                        let mut q = QueryBuilder::<$db>::new(
                            "INSERT INTO events (subject, subject_hint, category, occurred_at, expires_at, dedup, payload) ",
                        );
                        q.push_values(chunk, |mut b, e| {
                            b.push_bind(e.subject.0.to_vec())
                                .push_bind(subject_hint(&e.subject))
                                .push_bind(e.category.clone())
                                .push_bind(e.occurred_at.0)
                                .push_bind(e.expires_at.0)
                                .push_bind(e.dedup.to_vec())
                                .push_bind(e.payload.clone());
                        });
                        q.push(" ON CONFLICT (dedup) DO NOTHING");
                        inserted += q.build().execute(&mut *tx).await?.rows_affected();
                    }
                    if inserted != fresh.len() as u64 && attempt < 2 {
                        tx.rollback().await?;
                        continue;
                    }
                    let t_insert = t0.elapsed();
                    let drafts: Vec<AuditDraft> = groups
                        .iter()
                        .zip(&flags)
                        .filter_map(|(g, f)| {
                            let n = f.iter().filter(|&&stored| stored).count() as u64;
                            (n > 0).then(|| (g.audit)(n))
                        })
                        .collect();
                    self.append_in_tx(&mut tx, &drafts).await?;
                    tx.commit().await?;
                    tracing::debug!(
                        groups = groups.len(),
                        events = fresh.len(),
                        insert_us = t_insert.as_micros() as u64,
                        commit_us = (t0.elapsed() - t_insert).as_micros() as u64,
                        "stored events"
                    );
                    return Ok(flags);
                }
                unreachable!("the last attempt always returns")
            }

            async fn read_events(&self, read: &PurposeRead<'_>) -> Result<Vec<StoredEvent>> {
                let mut q = QueryBuilder::<$db>::new(
                    "SELECT e.id, e.subject, e.category, e.occurred_at, e.payload FROM events e \
                     JOIN consent_current c ON c.subject = e.subject AND c.category = e.category WHERE c.purpose = ",
                );
                q.push_bind(read.purpose.name.clone());
                q.push(" AND c.granted = ").push_bind(true);
                q.push(" AND c.expires_at > ").push_bind(read.now.0);
                q.push(" AND e.expires_at > ").push_bind(read.now.0);
                if read.after_id > 0 {
                    // Only when paging: on PostgreSQL a bare `id > 0` makes the planner AND a
                    // scan of the whole primary key into a one-subject read.
                    q.push(" AND e.id > ").push_bind(read.after_id);
                }
                q.push(" AND e.category IN (");
                let mut sep = q.separated(", ");
                for category in &read.purpose.categories {
                    sep.push_bind(category.clone());
                }
                q.push(")");
                if let Some(subject) = read.subject {
                    q.push(" AND e.subject_hint = ").push_bind(subject_hint(subject));
                    q.push(" AND e.subject = ").push_bind(subject.0.to_vec());
                }
                q.push(" AND NOT EXISTS (SELECT 1 FROM restrictions r WHERE r.subject = e.subject)");
                q.push(" ORDER BY e.id LIMIT ").push_bind(read.limit as i64);
                let rows = q.build().fetch_all(&self.read).await?;
                rows.into_iter().map(|r| stored_event_from_row!(r)).collect()
            }

            async fn subject_events(&self, subject: &Pseudonym) -> Result<Vec<StoredEvent>> {
                let rows = sqlx::query(
                    "SELECT id, subject, category, occurred_at, payload FROM events \
                     WHERE subject_hint = $1 AND subject = $2 ORDER BY id",
                )
                .bind(subject_hint(subject))
                .bind(subject.0.to_vec())
                .fetch_all(&self.read)
                .await?;
                rows.into_iter().map(|r| stored_event_from_row!(r)).collect()
            }

            async fn delete_subject_events(&self, subject: &Pseudonym, ids: &[i64], audit: CountAudit<'_>) -> Result<u64> {
                let mut tx = self.begin_write().await?;
                let mut deleted = 0;
                for chunk in ids.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("DELETE FROM events WHERE subject_hint = ");
                    q.push_bind(subject_hint(subject)).push(" AND subject = ").push_bind(subject.0.to_vec()).push(" AND id IN (");
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    q.push(")");
                    deleted += q.build().execute(&mut *tx).await?.rows_affected();
                }
                if deleted > 0 {
                    self.append_in_tx(&mut tx, &[audit(deleted)]).await?;
                }
                tx.commit().await?;
                if deleted > 0 {
                    Self::purge_deleted_bytes(&self.write).await?;
                }
                Ok(deleted)
            }

            async fn delete_expired_events(&self, now: Timestamp, audit: CountAudit<'_>) -> Result<u64> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM events WHERE expires_at <= $1")
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted > 0 {
                    self.append_in_tx(&mut tx, &[audit(deleted)]).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            }

            async fn append_audit(&self, audit: &[AuditDraft]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                self.append_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
                let rows = sqlx::query(
                    "SELECT seq, at, actor, action, subject, purpose, detail, prev_hash, hash, mac FROM audit_log \
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after_seq as i64)
                .bind(limit as i64)
                .fetch_all(&self.read)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        let subject: Option<Vec<u8>> = r.try_get("subject")?;
                        Ok(AuditEntry {
                            seq: r.try_get::<i64, _>("seq")? as u64,
                            at: Timestamp(r.try_get("at")?),
                            actor: r.try_get("actor")?,
                            action: r.try_get("action")?,
                            subject: subject.map(|s| pseudonym(s, "audit_log")).transpose()?,
                            purpose: r.try_get("purpose")?,
                            detail: r.try_get("detail")?,
                            prev_hash: hash32(r.try_get("prev_hash")?, "audit_log")?,
                            hash: hash32(r.try_get("hash")?, "audit_log")?,
                            mac: hash32(r.try_get("mac")?, "audit_log")?,
                        })
                    })
                    .collect()
            }

            async fn audit_head(&self) -> Result<Option<SignedHead>> {
                let row: Option<(i64, Vec<u8>, Vec<u8>)> =
                    sqlx::query_as("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
                        .fetch_optional(&self.read)
                        .await?;
                row.map(|(seq, hash, signature)| {
                    Ok(SignedHead {
                        seq: seq as u64,
                        hash: hash32(hash, "audit_head")?,
                        signature,
                    })
                })
                .transpose()
            }

            async fn put_api_key(&self, key: &ApiKeyRecord, audit: &[AuditDraft]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(key.id.clone())
                .bind(key.role.clone())
                .bind(key.secret_hash.clone())
                .bind(key.label.clone())
                .bind(key.created_at.0)
                .execute(&mut *tx)
                .await?;
                self.append_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
                let row = sqlx::query(
                    "SELECT id, role, secret_hash, label, created_at FROM api_keys WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
                row.map(|r| {
                    Ok(ApiKeyRecord {
                        id: r.try_get("id")?,
                        role: r.try_get("role")?,
                        secret_hash: r.try_get("secret_hash")?,
                        label: r.try_get("label")?,
                        created_at: Timestamp(r.try_get("created_at")?),
                    })
                })
                .transpose()
            }

            async fn erase_subject(&self, subject: &Pseudonym, audit: CountAudit<'_>) -> Result<ErasedRows> {
                let mut tx = self.begin_write().await?;
                let events = sqlx::query("DELETE FROM events WHERE subject_hint = $1 AND subject = $2")
                    .bind(subject_hint(subject))
                    .bind(subject.0.to_vec())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let mut consent_records = 0;
                for table in ["consent_history", "consent_current"] {
                    consent_records += sqlx::query(&format!("DELETE FROM {table} WHERE subject = $1"))
                        .bind(subject.0.to_vec())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                sqlx::query("DELETE FROM restrictions WHERE subject = $1")
                    .bind(subject.0.to_vec())
                    .execute(&mut *tx)
                    .await?;
                let keys = sqlx::query("DELETE FROM subject_keys WHERE subject = $1")
                    .bind(subject.0.to_vec())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let erased = ErasedRows { events, consent_records, keys };
                if erased.total() > 0 {
                    self.append_in_tx(&mut tx, &[audit(erased.total())]).await?;
                }
                tx.commit().await?;
                Self::purge_deleted_bytes(&self.write).await?;
                Ok(erased)
            }

            async fn set_restriction(&self, subject: &Pseudonym, restricted: bool, at: Timestamp, audit: &[AuditDraft]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                if restricted {
                    sqlx::query("INSERT INTO restrictions (subject, at) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING")
                        .bind(subject.0.to_vec())
                        .bind(at.0)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query("DELETE FROM restrictions WHERE subject = $1")
                        .bind(subject.0.to_vec())
                        .execute(&mut *tx)
                        .await?;
                }
                self.append_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn restricted(&self, subjects: &[Pseudonym]) -> Result<HashSet<Pseudonym>> {
                let mut out = HashSet::new();
                for chunk in subjects.chunks(IN_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("SELECT subject FROM restrictions WHERE subject IN (");
                    let mut sep = q.separated(", ");
                    for s in chunk {
                        sep.push_bind(s.0.to_vec());
                    }
                    q.push(")");
                    let rows: Vec<(Vec<u8>,)> = q.build_query_as().fetch_all(&self.read).await?;
                    for (subject,) in rows {
                        out.insert(pseudonym(subject, "restrictions")?);
                    }
                }
                Ok(out)
            }

            async fn put_request(&self, r: &RightsRequest, audit: &[AuditDraft]) -> Result<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO requests (id, kind, subject, jurisdiction, status, received_at, due_at, ack_due_at, \
                     extended_until, extension_reason, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status, extended_until = excluded.extended_until, \
                     extension_reason = excluded.extension_reason, completed_at = excluded.completed_at",
                )
                .bind(r.id.clone())
                .bind(r.kind.as_str())
                .bind(r.subject.0.to_vec())
                .bind(r.jurisdiction.as_str())
                .bind(r.status.as_str())
                .bind(r.received_at.0)
                .bind(r.due_at.0)
                .bind(r.ack_due_at.map(|t| t.0))
                .bind(r.extended_until.map(|t| t.0))
                .bind(r.extension_reason.clone())
                .bind(r.completed_at.map(|t| t.0))
                .execute(&mut *tx)
                .await?;
                self.append_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_request(&self, id: &str) -> Result<Option<RightsRequest>> {
                let row = sqlx::query("SELECT * FROM requests WHERE id = $1").bind(id).fetch_optional(&self.read).await?;
                row.map(|r| request_from_row!(r)).transpose()
            }

            async fn list_requests(&self) -> Result<Vec<RightsRequest>> {
                let rows = sqlx::query("SELECT * FROM requests ORDER BY received_at DESC, id").fetch_all(&self.read).await?;
                rows.into_iter().map(|r| request_from_row!(r)).collect()
            }

            async fn charge_budget(&self, c: &BudgetCharge<'_>, audit: &[AuditDraft]) -> Result<Option<BudgetState>> {
                let mut tx = self.begin_write().await?;
                sqlx::query("INSERT INTO privacy_budgets (dataset, spent_rho, period_start) VALUES ($1, 0, $2) ON CONFLICT (dataset) DO NOTHING")
                    .bind(c.dataset)
                    .bind(c.at.0)
                    .execute(&mut *tx)
                    .await?;
                if let Some(refill) = c.refill_ms {
                    sqlx::query("UPDATE privacy_budgets SET spent_rho = 0, period_start = $2 WHERE dataset = $1 AND period_start + $3 <= $2")
                        .bind(c.dataset)
                        .bind(c.at.0)
                        .bind(refill)
                        .execute(&mut *tx)
                        .await?;
                }
                let row: Option<(f64, i64)> = sqlx::query_as(
                    "UPDATE privacy_budgets SET spent_rho = spent_rho + $2 WHERE dataset = $1 AND spent_rho + $2 <= $3 \
                     RETURNING spent_rho, period_start",
                )
                .bind(c.dataset)
                .bind(c.rho)
                .bind(c.limit_rho)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((spent_rho, start)) = row else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                self.append_in_tx(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(Some(BudgetState { spent_rho, period_start: Timestamp(start) }))
            }

            async fn budget(&self, dataset: &str) -> Result<Option<BudgetState>> {
                let row: Option<(f64, i64)> = sqlx::query_as("SELECT spent_rho, period_start FROM privacy_budgets WHERE dataset = $1")
                    .bind(dataset)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(row.map(|(spent_rho, start)| BudgetState { spent_rho, period_start: Timestamp(start) }))
            }

            async fn put_model(&self, card: &str, weights: &[u8], at: Timestamp) -> Result<i64> {
                let version: i64 = sqlx::query_scalar(
                    "INSERT INTO model_artifacts (created_at, card, weights) VALUES ($1, $2, $3) RETURNING version",
                )
                .bind(at.0)
                .bind(card)
                .bind(weights)
                .fetch_one(&self.write)
                .await?;
                Ok(version)
            }

            async fn latest_model(&self) -> Result<Option<ModelArtifact>> {
                let row: Option<(i64, i64, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT version, created_at, card, weights FROM model_artifacts ORDER BY version DESC LIMIT 1",
                )
                .fetch_optional(&self.read)
                .await?;
                Ok(row.map(|(version, created_at, card, weights)| ModelArtifact {
                    version,
                    created_at: Timestamp(created_at),
                    card,
                    weights,
                }))
            }

            async fn stats(&self) -> Result<StoreStats> {
                let count = |table: &'static str| {
                    let pool = self.read.clone();
                    async move {
                        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                            .fetch_one(&pool)
                            .await?;
                        Ok::<u64, StoreError>(n as u64)
                    }
                };
                Ok(StoreStats {
                    events: count("events").await?,
                    subjects: count("subject_keys").await?,
                    consent_records: count("consent_history").await?,
                    audit_entries: count("audit_log").await?,
                    items: count("items").await?,
                })
            }
        }
    };
}

macro_rules! stored_event_from_row {
    ($r:expr) => {{
        let r = $r;
        Ok::<StoredEvent, StoreError>(StoredEvent {
            id: r.try_get("id")?,
            subject: pseudonym(r.try_get("subject")?, "events")?,
            category: r.try_get("category")?,
            occurred_at: Timestamp(r.try_get("occurred_at")?),
            payload: r.try_get("payload")?,
        })
    }};
}

macro_rules! request_from_row {
    ($r:expr) => {{
        let r = $r;
        let at = |name: &str| -> Result<Option<Timestamp>> {
            Ok(r.try_get::<Option<i64>, _>(name)?.map(Timestamp))
        };
        Ok::<RightsRequest, StoreError>(RightsRequest {
            id: r.try_get("id")?,
            kind: named(r.try_get("kind")?, RequestKind::parse)?,
            subject: pseudonym(r.try_get("subject")?, "requests")?,
            jurisdiction: named(r.try_get("jurisdiction")?, Jurisdiction::parse)?,
            status: named(r.try_get("status")?, RequestStatus::parse)?,
            received_at: Timestamp(r.try_get("received_at")?),
            due_at: Timestamp(r.try_get("due_at")?),
            ack_due_at: at("ack_due_at")?,
            extended_until: at("extended_until")?,
            extension_reason: r.try_get("extension_reason")?,
            completed_at: at("completed_at")?,
        })
    }};
}

macro_rules! item_from_row {
    ($r:expr) => {{
        let r = $r;
        let attributes: String = r.try_get("attributes")?;
        let attributes = match serde_json::from_str::<serde_json::Value>(&attributes) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(StoreError::Corrupt("items")),
        };
        Ok::<Item, StoreError>(Item {
            id: r.try_get("id")?,
            title: r.try_get("title")?,
            category: r.try_get("category")?,
            provider: r.try_get("provider")?,
            attributes,
        })
    }};
}

impl_store!(SqliteStore, Sqlite, "sqlite", 1);
impl_store!(PostgresStore, Postgres, "postgres", 3);
