//! The `Store` trait and its two backends, SQLite (embedded, the default) and PostgreSQL.
//! This is the only crate that knows SQL. It stores what the engine hands it: pseudonyms,
//! ciphertexts, consent records, plain catalogue rows and sealed audit entries. Its one read
//! path to personal data, [`Store::read_events`], takes a purpose and returns only events whose
//! category the subject has consented to for that purpose at the time of reading.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use candor_domain::{
    AuditDraft, AuditEntry, AuditSealer, ConsentRecord, ConsentRow, Item, Jurisdiction, Pseudonym,
    Purpose, RequestKind, RequestStatus, SignedHead, Timestamp,
};

mod backend;

pub use backend::{PostgresStore, SqliteStore};

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
}

/// Result alias for the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An event ready to be stored: pseudonymous, with an encrypted payload.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The data category, in plain form so reads can be purpose-bound.
    pub category: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// When the retention sweeper deletes it.
    pub expires_at: Timestamp,
    /// Keyed hash of (subject, item, type, time): refuses duplicates without revealing them.
    pub dedup: [u8; 16],
    /// AEAD ciphertext of the payload under the subject's data key.
    pub payload: Vec<u8>,
}

/// The events of one ingestion request and how to audit them.
pub struct EventGroup {
    /// The events.
    pub events: Vec<NewEvent>,
    /// Builds the group's audit entry from the number of events stored.
    pub audit: Box<dyn Fn(u64) -> AuditDraft + Send + Sync>,
}

impl std::fmt::Debug for EventGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventGroup")
            .field("events", &self.events.len())
            .finish()
    }
}

/// A stored event as returned by a purpose-bound read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Row id, increasing with insertion.
    pub id: i64,
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The data category.
    pub category: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// The encrypted payload.
    pub payload: Vec<u8>,
}

/// A purpose-bound read: the purpose, optionally one subject, and a page.
#[derive(Debug, Clone)]
pub struct PurposeRead<'a> {
    /// The purpose the data will be used for.
    pub purpose: &'a Purpose,
    /// Only this subject's events, if set.
    pub subject: Option<&'a Pseudonym>,
    /// The time at which consent must be live.
    pub now: Timestamp,
    /// Return events with `id > after_id`.
    pub after_id: i64,
    /// At most this many events.
    pub limit: u32,
}

/// An API key as stored: the secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id.
    pub id: String,
    /// Role name.
    pub role: String,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    /// A label for people.
    pub label: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A data subject's request as stored (deadlines are the engine's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsRequest {
    /// Random id.
    pub id: String,
    /// What is asked for.
    pub kind: RequestKind,
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The law whose deadlines apply.
    pub jurisdiction: Jurisdiction,
    /// Where it stands.
    pub status: RequestStatus,
    /// When received.
    pub received_at: Timestamp,
    /// When due (before any extension).
    pub due_at: Timestamp,
    /// When an acknowledgement is due (CCPA).
    pub ack_due_at: Option<Timestamp>,
    /// The extended deadline, if extended.
    pub extended_until: Option<Timestamp>,
    /// Why it was extended.
    pub extension_reason: Option<String>,
    /// When completed.
    pub completed_at: Option<Timestamp>,
}

/// What an erasure deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErasedRows {
    /// Events.
    pub events: u64,
    /// Consent records (history and current).
    pub consent_records: u64,
    /// Data keys destroyed (0 or 1).
    pub keys: u64,
}

impl ErasedRows {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.events + self.consent_records + self.keys
    }
}

/// A stored model artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelArtifact {
    /// Increasing version.
    pub version: i64,
    /// When it was stored.
    pub created_at: Timestamp,
    /// The model card (JSON).
    pub card: String,
    /// The encoded weights.
    pub weights: Vec<u8>,
}

/// A charge against a dataset's differential-privacy budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCharge<'a> {
    /// The dataset.
    pub dataset: &'a str,
    /// The cost, in zCDP ρ.
    pub rho: f64,
    /// The most ρ the period may spend.
    pub limit_rho: f64,
    /// Now.
    pub at: Timestamp,
    /// The budget starts afresh this many milliseconds after its period began, if set.
    pub refill_ms: Option<i64>,
}

/// A dataset's budget state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetState {
    /// ρ spent in this period.
    pub spent_rho: f64,
    /// When this period began.
    pub period_start: Timestamp,
}

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

/// Builds the audit entry for a write once the number of affected rows is known (inside the
/// write's transaction).
pub type CountAudit<'a> = &'a (dyn Fn(u64) -> AuditDraft + Send + Sync);

/// Persistent state. Every method that writes personal data or consent also appends the given
/// audit drafts to the hash chain in the same transaction, so the log and the data never
/// disagree.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// How many write transactions are worth running at once (SQLite has one writer).
    fn concurrent_writers(&self) -> usize;

    /// Reads a metadata value.
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Writes a metadata value.
    async fn put_meta(&self, key: &str, value: &str) -> Result<()>;

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

    /// The wrapped data keys of those of the given subjects that have one.
    async fn subject_keys(&self, subjects: &[Pseudonym]) -> Result<Vec<(Pseudonym, Vec<u8>)>>;
    /// Stores each wrapped key unless its subject already has one, in one transaction;
    /// returns the keys in force for those subjects.
    async fn ensure_subject_keys(
        &self,
        keys: &[(Pseudonym, Vec<u8>)],
        at: Timestamp,
    ) -> Result<Vec<(Pseudonym, Vec<u8>)>>;

    /// Appends consent records (history) and makes them current, with audit entries.
    async fn record_consent(&self, records: &[ConsentRecord], audit: &[AuditDraft]) -> Result<()>;
    /// Current consent rows of the given subjects.
    async fn consent_current(&self, subjects: &[Pseudonym])
    -> Result<Vec<(Pseudonym, ConsentRow)>>;
    /// Those of `subjects` that hold no live grant (granted, not lapsed at `now`) of
    /// `category` for any of `purposes`. Usually few or none, so little comes back.
    async fn subjects_without_grant(
        &self,
        subjects: &[Pseudonym],
        category: &str,
        purposes: &[&str],
        now: Timestamp,
    ) -> Result<HashSet<Pseudonym>>;
    /// A subject's whole consent history, oldest first.
    async fn consent_history(&self, subject: &Pseudonym) -> Result<Vec<ConsentRecord>>;

    /// Stores several groups of events (one per ingestion request) and, per group, the audit
    /// entry built from the number it stored, all in one transaction: all or nothing. Returns,
    /// per group and event, whether it was stored (`false`: an event with the same dedup key
    /// already exists, or appears earlier in this call).
    async fn insert_event_groups(&self, groups: &[EventGroup]) -> Result<Vec<Vec<bool>>>;
    /// The processing read of personal data: events whose category is consented for the
    /// purpose at `read.now`, of subjects whose processing is not restricted, in id order.
    /// Audit entries are appended by the engine.
    async fn read_events(&self, read: &PurposeRead<'_>) -> Result<Vec<StoredEvent>>;
    /// Every stored event of one subject, whatever its consent state now: the read path of
    /// the subject's own right of access (GDPR Art. 15 and 20), used by the engine's export
    /// only. In id order.
    async fn subject_events(&self, subject: &Pseudonym) -> Result<Vec<StoredEvent>>;
    /// Deletes some of one subject's events (rectification), auditing the count; returns how
    /// many existed and were deleted. Ids of other subjects' events are ignored.
    async fn delete_subject_events(
        &self,
        subject: &Pseudonym,
        ids: &[i64],
        audit: CountAudit<'_>,
    ) -> Result<u64>;
    /// Deletes events past their retention, auditing the count.
    async fn delete_expired_events(&self, now: Timestamp, audit: CountAudit<'_>) -> Result<u64>;

    /// Appends audit entries on their own.
    async fn append_audit(&self, audit: &[AuditDraft]) -> Result<()>;
    /// Audit entries in chain order, from position `after_seq + 1`.
    async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>>;
    /// The signed head, if any entry exists.
    async fn audit_head(&self) -> Result<Option<SignedHead>>;

    /// Stores an API key, with an audit entry.
    async fn put_api_key(&self, key: &ApiKeyRecord, audit: &[AuditDraft]) -> Result<()>;
    /// Looks an API key up by id.
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>>;

    /// Erases a subject in one transaction: their events, consent records and data key (so
    /// any copy of their ciphertext left anywhere is unreadable), with the audit entry. Then
    /// makes sure no deleted byte lingers in the database files (SQLite: `secure_delete`
    /// overwrote the pages, and the WAL is checkpointed and truncated).
    async fn erase_subject(&self, subject: &Pseudonym, audit: CountAudit<'_>)
    -> Result<ErasedRows>;

    /// Restricts processing of a subject's data (or lifts the restriction), with the audit entry.
    async fn set_restriction(
        &self,
        subject: &Pseudonym,
        restricted: bool,
        at: Timestamp,
        audit: &[AuditDraft],
    ) -> Result<()>;
    /// Which of the given subjects are restricted.
    async fn restricted(&self, subjects: &[Pseudonym]) -> Result<HashSet<Pseudonym>>;

    /// Stores a new rights request, or replaces one (same id) with its new state; audited.
    async fn put_request(&self, request: &RightsRequest, audit: &[AuditDraft]) -> Result<()>;
    /// One request.
    async fn get_request(&self, id: &str) -> Result<Option<RightsRequest>>;
    /// All requests, newest first.
    async fn list_requests(&self) -> Result<Vec<RightsRequest>>;

    /// Charges a budget atomically with its audit entries: refills it first if its period
    /// has passed, then adds the cost only if the total stays within the limit. `None` means
    /// it would overspend, and nothing was written.
    async fn charge_budget(
        &self,
        charge: &BudgetCharge<'_>,
        audit: &[AuditDraft],
    ) -> Result<Option<BudgetState>>;
    /// A dataset's budget state (`None` before its first charge).
    async fn budget(&self, dataset: &str) -> Result<Option<BudgetState>>;

    /// Stores a trained model artifact; returns its version.
    async fn put_model(&self, card: &str, weights: &[u8], at: Timestamp) -> Result<i64>;
    /// The newest model artifact.
    async fn latest_model(&self) -> Result<Option<ModelArtifact>>;

    /// Row counts.
    async fn stats(&self) -> Result<StoreStats>;
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
