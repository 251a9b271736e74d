//! The store and its two backends, SQLite (embedded, the default) and PostgreSQL. This is the
//! only crate that knows SQL. It stores what the engine hands it: pseudonyms, ciphertexts,
//! consent records, plain catalogue rows and sealed audit entries. Its one processing read of
//! personal data, [`EventStore::read_events`], takes a purpose and returns only events whose
//! category the subject has consented to for that purpose at the time of reading.
//!
//! The code map: one file per group of tables, each with its trait and its SQL, written once
//! for both backends against [`sql::Sql`] (`meta`, `catalogue`, `keys`, `consent`, `events`,
//! `audit`, `subjects`, `requests`, `sessions`, `budgets`, `models`); [`SqlStore`] implements them all,
//! generic over a [`Dialect`]; `sqlite.rs` and `postgres.rs` hold what differs (setup,
//! migrations, transactions, audit locking, purging). [`Store`] is all the traits together.

use std::sync::Arc;

use candor_domain::{AuditSealer, Pseudonym};

mod audit;
mod budgets;
mod catalogue;
mod consent;
mod dialect;
mod events;
mod keys;
mod meta;
mod models;
mod postgres;
mod requests;
mod sessions;
pub mod sql;
mod sqlite;
mod subjects;

pub use audit::AuditStore;
pub use budgets::{BudgetCharge, BudgetState, BudgetStore};
pub use catalogue::CatalogueStore;
pub use consent::{ConsentDecisions, ConsentLeaf, ConsentStore, ReceiptRecord};
pub use dialect::{Dialect, SqlStore};
pub use events::{EventGroup, EventStore, NewEvent, PurposeRead, StoredEvent};
pub use keys::{ApiKeyRecord, KeyStore};
pub use meta::{MetaStore, StoreStats};
pub use models::{ModelArtifact, ModelStore};
pub use postgres::PostgresStore;
pub use requests::{RequestStore, RightsRequest};
pub use sessions::{SessionRecord, SessionStore};
pub use sqlite::SqliteStore;
pub use subjects::{ErasedRows, SubjectStore};

/// Every store trait, for `use candor_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AuditStore, BudgetStore, CatalogueStore, ConsentStore, EventStore, KeyStore, MetaStore,
        ModelStore, RequestStore, SessionStore, Store, SubjectStore,
    };
}

mod sealed {
    /// Only this crate's backends are [`crate::Dialect`]s.
    pub trait Sealed {}
}

/// What went wrong in the store. Callers map it to "internal error"; details are logged, not
/// shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not `sqlite://...` or `postgres://...`.
    #[error("unsupported store URL scheme (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl,
    /// A database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
    /// A database file could not be created, narrowed to its owner, or removed.
    #[error("database file: {0}")]
    Io(String),
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Builds the audit entry for a write once the number of affected rows is known (inside the
/// write's transaction).
pub type CountAudit<'a> = &'a (dyn Fn(u64) -> candor_domain::AuditDraft + Send + Sync);

/// Persistent state: every store trait. Every method that writes personal data or consent also
/// appends the given audit drafts to the hash chain in the same transaction, so the log and the
/// data never disagree.
pub trait Store:
    MetaStore
    + CatalogueStore
    + KeyStore
    + ConsentStore
    + EventStore
    + AuditStore
    + SubjectStore
    + RequestStore
    + SessionStore
    + BudgetStore
    + ModelStore
    + 'static
{
}

impl<T> Store for T where
    T: MetaStore
        + CatalogueStore
        + KeyStore
        + ConsentStore
        + EventStore
        + AuditStore
        + SubjectStore
        + RequestStore
        + SessionStore
        + BudgetStore
        + ModelStore
        + 'static
{
}

/// Rows per multi-row INSERT (kept well under both engines' bind-parameter limits).
pub(crate) const INSERT_CHUNK: usize = 1000;
/// Ids per `IN (...)` list.
pub(crate) const IN_CHUNK: usize = 900;

pub(crate) fn pseudonym(bytes: Vec<u8>, table: &'static str) -> Result<Pseudonym> {
    Pseudonym::from_slice(&bytes).ok_or(StoreError::Corrupt(table))
}

/// The compact per-subject index key: the pseudonym's first 8 bytes.
pub(crate) fn subject_hint(subject: &Pseudonym) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&subject.0[..8]);
    i64::from_be_bytes(first)
}

/// Opens (creating and migrating as needed) the store at `url`: `sqlite://PATH` or
/// `postgres://...`.
pub async fn open(url: &str, sealer: Arc<dyn AuditSealer>) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open(path, sealer).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url, sealer).await?));
    }
    Err(StoreError::UnsupportedUrl)
}

/// Deletes everything stored at `url`, so the next [`open`] starts afresh: the SQLite file
/// with its WAL and shared-memory files, or every Candor table of the PostgreSQL database.
pub async fn destroy(url: &str) -> Result<()> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return sqlite::destroy(path);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return postgres::destroy(url).await;
    }
    Err(StoreError::UnsupportedUrl)
}
