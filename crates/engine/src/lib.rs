//! The one boundary to personal data. The server, the CLI and the tests all go through
//! [`Engine`]: it pseudonymizes subject ids, checks consent before anything is stored, binds
//! every read to a purpose, encrypts payloads under per-subject keys, and appends every access
//! and consent change to the audit chain. Nothing above it touches the store directly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use candor_crypto::{KeyRing, SecretKey};
use candor_domain::{AuditDraft, ErrorCode, Policy, Pseudonym, SubjectId, Timestamp};
use candor_store::{Store, StoreError};

pub mod analytics;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod consent;
pub mod erase;
pub mod export;
pub mod ingest;
pub mod items;
pub mod keys;
pub mod log;
pub mod model;
pub mod read;
pub mod receipts;
pub mod recommend;
pub mod requests;
pub mod rights;
pub mod sessions;
pub mod signing;
pub mod transparency;
mod writer;

pub use analytics::{AnalyticsAnswer, AnalyticsBudget, AnalyticsQuery, BudgetStatus, QueryKind};
pub use audit::AuditReport;
pub use auth::{Access, ApiKeyView, KEY_RECHECK_MS, Principal, Role, key_id_of};
pub use candor_store::ConsentDecisions;
pub use clock::{Clock, ShiftedClock, SystemClock};
pub use consent::{ConsentUpdate, ConsentView, PurposeChoice};
pub use erase::{ErasureCertificate, ModelRetraining};
pub use export::SubjectExport;
pub use ingest::{EventDraft, IngestReport, Refusal};
pub use log::{ConsistencyProof, InclusionProof, LoggedEntry, TreeHead};
pub use model::{ModelCard, ModelCardView, ModelEvaluation, ModelPrivacyCard};
pub use read::Event;
pub use receipts::ConsentReceipt;
pub use recommend::{RecommendRequest, Recommendations};
pub use sessions::SubjectSession;
pub use signing::SignedDocument;

/// What went wrong. `Refused` is the caller's mistake, or a rule that refuses the request: it
/// carries a code from the error table and a sentence safe to show. Every other variant is an
/// internal fault whose details are logged and never shown.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is refused: malformed, naming something unknown, or breaking a rule.
    #[error("{message}")]
    Refused {
        /// The code from the error table.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
    },
    /// A storage fault.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// A storage fault shared by every call in a group transaction.
    #[error("storage error: {0}")]
    GroupStore(Arc<StoreError>),
    /// Stored data could not be decrypted or a key could not be unwrapped.
    #[error("stored data failed authentication")]
    Crypto,
    /// The noise sampler failed (a fault, never the caller's doing).
    #[error("the noise sampler failed: {0}")]
    Noise(String),
    /// Start-up could not proceed (key file, key mismatch, configuration).
    #[error("{0}")]
    Setup(String),
}

impl EngineError {
    pub(crate) fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    /// The error-table code of a refusal; `None` for internal faults.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Who is acting, as recorded in the audit log: `key:<id>`, `cli` or `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    /// The CLI acting for an operator.
    pub fn cli() -> Self {
        Self("cli".into())
    }
    /// Candor itself (sweeper, demo loader).
    pub fn system() -> Self {
        Self("system".into())
    }
}

/// How the engine is set up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `sqlite://PATH` or `postgres://...`.
    pub store_url: String,
    /// Where subjects' wrapped data keys live, apart from the data so that a restored data
    /// backup cannot bring an erased subject's key back: `sqlite://PATH` or `postgres://...`.
    /// Empty: `sqlite://DATA_DIR/keys.db` beside a SQLite store; the store itself (with a
    /// warning) for PostgreSQL.
    pub key_store_url: String,
    /// Where the key file lives (and the SQLite database by default).
    pub data_dir: PathBuf,
    /// The policy in force.
    pub policy: Policy,
    /// The largest accepted event batch.
    pub max_batch: usize,
    /// How far in the future an event timestamp may be, in milliseconds (clock skew).
    pub future_skew_ms: i64,
    /// Seconds between scheduled trainings (0: none); erasure certificates promise the model
    /// forgets a subject within this when it cannot retrain at once.
    pub train_interval_secs: u64,
    /// This service's IAB TCF vendor id; TC strings are refused without one.
    pub tcf_vendor_id: Option<u16>,
    /// Differential privacy of the shared item model; `None` trains it without noise.
    pub model_privacy: Option<ModelPrivacy>,
    /// The DP analytics budget.
    pub analytics: AnalyticsBudget,
    /// How long a subject session lasts at most (and by default), in seconds.
    pub session_ttl_secs: u64,
    /// Where the engine reads the time.
    pub clock: Arc<dyn Clock>,
}

/// The (ε, δ) the shared item model is trained under, and an optional cap on all releases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrivacy {
    /// ε of each release.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// The most ε (at δ) that all releases of a period may compose to; `None`: no cap (the
    /// card still states the composed ε).
    pub releases_epsilon: Option<f64>,
    /// The period after which the cap starts afresh (required with a cap).
    pub releases_refill_ms: Option<i64>,
}

impl Default for ModelPrivacy {
    fn default() -> Self {
        Self {
            epsilon: 8.0,
            delta: 1e-5,
            releases_epsilon: None,
            releases_refill_ms: None,
        }
    }
}

impl EngineConfig {
    /// The key store in force; `None` when the data keys stay in the data store.
    pub fn resolved_key_store_url(&self) -> Option<String> {
        if !self.key_store_url.is_empty() {
            return (self.key_store_url != self.store_url).then(|| self.key_store_url.clone());
        }
        self.store_url
            .starts_with("sqlite://")
            .then(|| format!("sqlite://{}", self.data_dir.join("keys.db").display()))
    }

    /// Defaults for a data directory: SQLite inside it, the shipped policy.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            store_url: format!("sqlite://{}", data_dir.join("candor.db").display()),
            key_store_url: String::new(),
            data_dir,
            policy: Policy::default_policy(),
            max_batch: 10_000,
            future_skew_ms: 5 * 60 * 1000,
            train_interval_secs: 86_400,
            tcf_vendor_id: None,
            model_privacy: Some(ModelPrivacy::default()),
            analytics: AnalyticsBudget::default(),
            session_ttl_secs: 900,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The engine. Cheap to share behind an `Arc`.
pub struct Engine {
    store: Arc<dyn Store>,
    /// Where the wrapped data keys live: a store of their own, or `store` itself.
    vault: Arc<dyn Store>,
    keys: Arc<KeyRing>,
    policy: Arc<Policy>,
    config: EngineConfig,
    /// Unwrapped data keys, with the wrapped form they came from: a write compares it with
    /// the key store's before using the key, so a key erased or replaced by another server
    /// is never used to seal.
    key_cache: Mutex<HashMap<Pseudonym, (Vec<u8>, SecretKey)>>,
    api_keys: RwLock<HashMap<String, auth::CachedKey>>,
    /// Subject sessions by id, as last read from the store.
    sessions: RwLock<HashMap<String, sessions::CachedSession>>,
    /// Catalogue ids seen, with when (engine clock).
    known_items: RwLock<HashMap<String, Timestamp>>,
    writer: writer::Writer,
    serving: RwLock<Option<Arc<model::Serving>>>,
    /// The audit log as far as this server has verified it: where incremental verification
    /// starts, and the tree that tree heads and proofs come from.
    checkpoint: Mutex<log::Checkpoint>,
}

impl Engine {
    /// Opens the engine: loads or creates the key ring, opens and migrates the store, and
    /// checks that the key ring is the one the database was written with.
    pub async fn open(config: EngineConfig) -> Result<Self> {
        let keys = Arc::new(keys::load_or_create(&config.data_dir)?);
        Self::open_with_keys(config, keys).await
    }

    /// Opens the engine with a given key ring (tests, or keys from a secrets manager).
    pub async fn open_with_keys(config: EngineConfig, keys: Arc<KeyRing>) -> Result<Self> {
        let sealer = Arc::new(audit::Sealer::new(keys.clone()));
        let store = candor_store::open(&config.store_url, sealer).await?;
        Self::with_store(config, keys, store).await
    }

    /// Builds the engine over an already opened store whose sealer uses the same key ring.
    pub async fn with_store(
        config: EngineConfig,
        keys: Arc<KeyRing>,
        store: Arc<dyn Store>,
    ) -> Result<Self> {
        let fingerprint = keys.fingerprint();
        match store.get_meta("keyring_fingerprint").await? {
            Some(stored) if stored != fingerprint => {
                return Err(EngineError::Setup(
                    "the key ring does not match the one this database was created with; \
                     refusing to start (check the key file or CANDOR_* key variables)"
                        .into(),
                ));
            }
            Some(_) => {}
            None => store.put_meta("keyring_fingerprint", &fingerprint).await?,
        }
        let vault = keys::open_vault(&config, &keys, &store).await?;
        let engine = Self {
            vault,
            keys,
            policy: Arc::new(config.policy.clone()),
            config,
            key_cache: Mutex::new(Default::default()),
            api_keys: RwLock::new(Default::default()),
            sessions: RwLock::new(Default::default()),
            known_items: RwLock::new(Default::default()),
            writer: writer::Writer::spawn(store.clone()),
            serving: RwLock::new(None),
            checkpoint: Mutex::new(Default::default()),
            store,
        };
        engine.load_model().await?;
        Ok(engine)
    }

    /// Deletes everything the store at `config.store_url` and its key store hold (the demo's
    /// `--fresh`), so the next [`Engine::open`] starts from an empty database. The key file
    /// is kept.
    pub async fn destroy_store(config: &EngineConfig) -> Result<()> {
        if let Some(vault) = config.resolved_key_store_url() {
            candor_store::destroy(&vault).await?;
        }
        Ok(candor_store::destroy(&config.store_url).await?)
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The time now, by the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.config.clock.now()
    }

    /// The store backend's name, for health output.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Row counts (no personal data).
    pub async fn stats(&self) -> Result<candor_store::StoreStats> {
        let mut stats = self.store.stats().await?;
        if !Arc::ptr_eq(&self.vault, &self.store) {
            // Subjects are counted by their data keys, which live in the key store.
            stats.subjects = self.vault.stats().await?.subjects;
        }
        Ok(stats)
    }

    /// The public half of the server's signing key.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.keys.verifying_key()
    }

    pub(crate) fn pseudonymize(&self, subject: &SubjectId) -> Pseudonym {
        Pseudonym(self.keys.pseudonymize(subject.as_str()))
    }

    /// Appends audit entries through the group writer: the caller waits for the commit, but
    /// concurrent callers share it.
    pub(crate) async fn audit(&self, drafts: Vec<AuditDraft>) -> Result<()> {
        self.writer
            .audit(drafts)
            .await
            .map_err(EngineError::GroupStore)
    }

    pub(crate) fn draft(
        &self,
        actor: &Actor,
        action: candor_domain::AuditAction,
        subject: Option<Pseudonym>,
        purpose: Option<&str>,
        detail: String,
    ) -> AuditDraft {
        AuditDraft {
            at: self.now(),
            actor: actor.0.clone(),
            action,
            subject,
            purpose: purpose.map(str::to_owned),
            detail,
        }
    }

    /// Deletes events past their retention, and subject sessions past their expiry; returns
    /// how many events.
    pub async fn sweep_retention(&self, actor: &Actor) -> Result<u64> {
        self.purge_expired_sessions().await?;
        let audit = |n: u64| {
            self.draft(
                actor,
                candor_domain::AuditAction::RetentionSweep,
                None,
                None,
                format!("deleted={n}"),
            )
        };
        Ok(self.store.delete_expired_events(self.now(), &audit).await?)
    }
}

/// The engine's periodic background jobs; each runs until the engine is dropped by everyone
/// else, and a failed run is logged and retried at the next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// Delete events past their retention, and expired subject sessions.
    RetentionSweep,
    /// Serve a newer stored item model (trained by another server or by `candor train`).
    ModelRefresh,
    /// Retrain the item model, so withdrawn and erased subjects drop out of it. The first
    /// run waits one period.
    Training,
    /// Verify what the audit log gained and publish a signed tree head over it.
    TreeHead,
}

/// Runs `job` every `every` on the engine.
pub fn spawn_periodic(
    engine: std::sync::Weak<Engine>,
    job: Periodic,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        if job == Periodic::Training {
            ticker.tick().await;
        }
        loop {
            ticker.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let actor = Actor::system();
            let outcome = match job {
                Periodic::RetentionSweep => engine
                    .sweep_retention(&actor)
                    .await
                    .map(|n| (n > 0).then(|| format!("deleted {n} expired events"))),
                Periodic::ModelRefresh => engine
                    .refresh_model()
                    .await
                    .map(|new| new.then(|| "loaded a newer item model".to_string())),
                Periodic::Training => engine
                    .train(&actor)
                    .await
                    .map(|card| Some(format!("trained model version {}", card.version))),
                Periodic::TreeHead => engine.tree_head().await.map(|_| None),
            };
            match outcome {
                Ok(Some(done)) => tracing::info!(job = ?job, "{done}"),
                Ok(None) => {}
                Err(error) => tracing::warn!(job = ?job, %error, "background job failed"),
            }
        }
    })
}
