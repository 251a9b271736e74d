//! [`SqlStore`], the one implementation of the store traits, generic over a [`Dialect`]: what
//! differs between SQLite and PostgreSQL (how a write transaction begins, how audit appends
//! are serialised, how deleted bytes are purged, how a statement is run) and nothing else.
//! The queries themselves live once, in the table-group files, written against [`Sql`].

use std::future::Future;
use std::sync::Arc;

use candor_domain::AuditSealer;
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
