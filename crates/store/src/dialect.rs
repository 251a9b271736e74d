//! [`SqlStore`], the one implementation of the store traits, generic over a [`Dialect`]: what
//! differs between SQLite and PostgreSQL (how a write transaction begins, how audit appends
//! are serialised, how deleted bytes are purged, how a statement is run) and nothing else.
//! The queries themselves live once, in the table-group files, written against [`Sql`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candor_domain::{AuditSealer, Pseudonym};
use sqlx::{Pool, Transaction};

use crate::sql::{Get, Sql};
use crate::{Result, sealed};

/// A database Candor stores into: SQLite ([`crate::SqliteStore`]) or PostgreSQL
/// ([`crate::PostgresStore`]). Sealed: the two backends are the only ones.
pub trait Dialect: sqlx::Database<Row: Get> + sealed::Sealed {
    /// `"sqlite"` or `"postgres"`.
    const BACKEND: &'static str;
    /// How many write transactions are worth running at once.
    const WRITERS: usize;

    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock first).
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>>> + Send;

    /// Serialises audit-chain appends across writers, inside `tx` (PostgreSQL: an advisory
    /// transaction lock; SQLite: nothing, its one writer already does).
    fn lock_audit(tx: &mut Self::Connection) -> impl Future<Output = Result<()>> + Send;

    /// Makes sure no deleted byte lingers in the database files after a delete of personal
    /// data (SQLite: a truncating WAL checkpoint; PostgreSQL: `VACUUM`).
    fn purge_deleted_bytes(pool: &Pool<Self>) -> impl Future<Output = Result<()>> + Send;

    /// Runs a statement; returns the number of rows it affected.
    fn execute(conn: &mut Self::Connection, sql: Sql) -> impl Future<Output = Result<u64>> + Send;

    /// Runs a query; returns its rows.
    fn fetch_all(
        conn: &mut Self::Connection,
        sql: Sql,
    ) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;
}

/// The store over one database: a pool for reads, a pool for writes (one connection on
/// SQLite), a small pool for long reads (everyone's events, the whole audit log) so they never
/// hold the connections requests wait for, and the sealer that hashes, MACs and signs audit
/// entries.
pub struct SqlStore<D: Dialect> {
    pub(crate) read: Pool<D>,
    pub(crate) write: Pool<D>,
    pub(crate) bulk: Pool<D>,
    pub(crate) revisions: Revisions,
    pub(crate) sealer: Arc<dyn AuditSealer>,
    /// Background work (the SQLite checkpointer) runs while this is alive.
    pub(crate) _alive: Arc<()>,
}

impl<D: Dialect> SqlStore<D> {
    /// Rows of a read-only query on the read pool.
    pub(crate) async fn fetch(&self, sql: Sql) -> Result<Vec<D::Row>> {
        let mut conn = self.read.acquire().await?;
        D::fetch_all(&mut conn, sql).await
    }

    /// Rows of a long read-only query, on the pool kept for them.
    pub(crate) async fn fetch_bulk(&self, sql: Sql) -> Result<Vec<D::Row>> {
        let mut conn = self.bulk.acquire().await?;
        D::fetch_all(&mut conn, sql).await
    }

    /// The first row of a read-only query, if any.
    pub(crate) async fn fetch_one(&self, sql: Sql) -> Result<Option<D::Row>> {
        Ok(self.fetch(sql).await?.into_iter().next())
    }

    /// A statement on the write pool, outside any explicit transaction.
    pub(crate) async fn execute(&self, sql: Sql) -> Result<u64> {
        let mut conn = self.write.acquire().await?;
        D::execute(&mut conn, sql).await
    }

    /// Begins a write transaction.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, D>> {
        D::begin_write(&self.write).await
    }
}

/// Counters that move, in this process, after every committed write that can change what a
/// subject's purpose-bound read returns (their events, consent, restriction, erasure; a
/// retention sweep moves every subject's). Subjects share 4,096 buckets, so a write may also
/// move others' counters: a cache keyed on them misses more often, never serves stale data.
pub(crate) struct Revisions {
    buckets: Vec<AtomicU64>,
    all: AtomicU64,
}

impl Default for Revisions {
    fn default() -> Self {
        Self {
            buckets: (0..4096).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
        }
    }
}

impl Revisions {
    fn bucket(&self, subject: &Pseudonym) -> &AtomicU64 {
        let i = u16::from_le_bytes([subject.0[0], subject.0[1]]) as usize % self.buckets.len();
        &self.buckets[i]
    }

    /// After a write of these subjects' data committed.
    pub(crate) fn bump<'a>(&self, subjects: impl IntoIterator<Item = &'a Pseudonym>) {
        for s in subjects {
            self.bucket(s).fetch_add(1, Ordering::SeqCst);
        }
    }

    /// After a write of anyone's data committed.
    pub(crate) fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
    }

    /// The subject's revision now.
    pub(crate) fn of(&self, subject: &Pseudonym) -> u128 {
        (u128::from(self.all.load(Ordering::SeqCst)) << 64)
            | u128::from(self.bucket(subject).load(Ordering::SeqCst))
    }
}
