//! Test harness: an engine over a fresh SQLite file or a fresh PostgreSQL schema, plus raw
//! access to the database for tampering and for scanning every stored byte.

use std::io::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Once};

use candor_crypto::KeyRing;
use candor_domain::{AuditEntry, Item, Policy};
use candor_engine::audit::Sealer;
use candor_engine::{Engine, EngineConfig, EngineError, ShiftedClock};
use candor_store::{PostgresStore, SqliteStore, Store};
use sqlx::Connection;

/// The variable naming the PostgreSQL server for the PostgreSQL half of the suite.
pub const PG_URL_VAR: &str = "CANDOR_TEST_POSTGRES_URL";

enum Backend {
    Sqlite { path: String },
    Postgres { url: String, schema: String },
}

/// An engine over a fresh database.
pub struct Harness {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    /// The engines' clock: tests advance it instead of sleeping.
    pub clock: Arc<ShiftedClock>,
    /// The key ring every engine of the harness opens with.
    pub keys: Arc<KeyRing>,
    /// The configuration every engine of the harness opens with.
    pub config: EngineConfig,
    backend: Backend,
    _dir: tempfile::TempDir,
}

static SKIP_NOTICE: Once = Once::new();

impl Harness {
    /// A fresh SQLite database in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candor.db").display().to_string();
        let keys = Arc::new(KeyRing::generate());
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&path, Arc::new(Sealer::new(keys.clone())))
                .await
                .unwrap(),
        );
        let mut config = EngineConfig::for_data_dir(dir.path());
        config.store_url = format!("sqlite://{path}");
        Self::build(config, keys, store, Backend::Sqlite { path }, dir).await
    }

    /// A fresh schema on the PostgreSQL server named by `CANDOR_TEST_POSTGRES_URL`, or `None`
    /// (with a notice on stderr) when it is not set.
    pub async fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var(PG_URL_VAR) else {
            SKIP_NOTICE.call_once(|| {
                let _ = std::io::stderr().write_all(
                    format!("note: PostgreSQL suite skipped: {PG_URL_VAR} is not set\n").as_bytes(),
                );
            });
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let schema = format!("candor_test_{:016x}", rand::random::<u64>());
        let keys = Arc::new(KeyRing::generate());
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::open_in_schema(&url, Some(&schema), Arc::new(Sealer::new(keys.clone())))
                .await
                .expect("PostgreSQL at CANDOR_TEST_POSTGRES_URL is reachable"),
        );
        let mut config = EngineConfig::for_data_dir(dir.path());
        config.store_url = url.clone();
        Some(Self::build(config, keys, store, Backend::Postgres { url, schema }, dir).await)
    }

    async fn build(
        config: EngineConfig,
        keys: Arc<KeyRing>,
        store: Arc<dyn Store>,
        backend: Backend,
        dir: tempfile::TempDir,
    ) -> Self {
        // The invariant tests train the item model without noise so that what it recommends
        // is exact; the DP model's own tests turn privacy on with `reconfigure`.
        let mut config = config;
        config.model_privacy = None;
        let clock = Arc::new(ShiftedClock::new());
        config.clock = clock.clone();
        let engine = Arc::new(
            Engine::with_store(config.clone(), keys.clone(), store.clone())
                .await
                .unwrap(),
        );
        Self {
            engine,
            store,
            clock,
            keys,
            config,
            backend,
            _dir: dir,
        }
    }

    /// The same database with the engine's configuration changed by `change`.
    pub async fn reconfigure(mut self, change: impl FnOnce(&mut EngineConfig)) -> Self {
        change(&mut self.config);
        self.engine = Arc::new(
            Engine::with_store(self.config.clone(), self.keys.clone(), self.store.clone())
                .await
                .unwrap(),
        );
        self
    }

    /// The same database under another policy.
    pub async fn with_policy(self, policy: Policy) -> Self {
        self.reconfigure(|c| c.policy = policy).await
    }

    /// The same database with this service's IAB TCF vendor id set.
    pub async fn with_tcf_vendor(self, vendor: u16) -> Self {
        self.reconfigure(|c| c.tcf_vendor_id = Some(vendor)).await
    }

    /// A second engine (another server) on the same database and keys.
    pub async fn second_engine(&self) -> Engine {
        Engine::with_store(self.config.clone(), self.keys.clone(), self.store.clone())
            .await
            .unwrap()
    }

    /// Opens the same database with a different key ring.
    pub async fn reopen_with_other_keys(&self) -> Result<Engine, EngineError> {
        Engine::with_store(
            self.config.clone(),
            Arc::new(KeyRing::generate()),
            self.store.clone(),
        )
        .await
    }

    /// Whether the harness runs on PostgreSQL (some raw SQL differs).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// Puts plain items with these ids in the catalogue.
    pub async fn items(&self, ids: &[&str]) {
        let items: Vec<Item> = ids
            .iter()
            .map(|id| Item {
                id: id.to_string(),
                title: format!("Item {id}"),
                category: Some("books".into()),
                provider: None,
                attributes: Default::default(),
            })
            .collect();
        self.engine.put_items(&items).await.unwrap();
    }

    /// Every audit entry, read straight from the store.
    pub async fn audit_entries(&self) -> Vec<AuditEntry> {
        self.store.audit_entries(0, 100_000).await.unwrap()
    }

    /// Runs raw SQL statements against the database (tampering).
    pub async fn sql(&self, statements: &[&str]) {
        match &self.backend {
            Backend::Sqlite { path } => {
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                    .await
                    .unwrap();
                for s in statements {
                    sqlx::query(s).execute(&mut conn).await.unwrap();
                }
                conn.close().await.unwrap();
            }
            Backend::Postgres { .. } => {
                let mut conn = self.pg().await;
                for s in statements {
                    sqlx::query(s).execute(&mut conn).await.unwrap();
                }
                conn.close().await.unwrap();
            }
        }
    }

    /// Inserts a raw audit row (a forgery).
    pub async fn insert_audit_row(&self, e: &AuditEntry) {
        let sql = "INSERT INTO audit_log (seq, at, actor, action, subject, purpose, detail, prev_hash, hash, mac) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        macro_rules! bind_all {
            ($q:expr) => {
                $q.bind(e.seq as i64)
                    .bind(e.at.0)
                    .bind(e.actor.clone())
                    .bind(e.action.clone())
                    .bind(e.subject.map(|p| p.0.to_vec()))
                    .bind(e.purpose.clone())
                    .bind(e.detail.clone())
                    .bind(e.prev_hash.to_vec())
                    .bind(e.hash.to_vec())
                    .bind(vec![7u8; 32])
            };
        }
        match &self.backend {
            Backend::Sqlite { path } => {
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                    .await
                    .unwrap();
                bind_all!(sqlx::query(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Backend::Postgres { .. } => {
                let mut conn = self.pg().await;
                bind_all!(sqlx::query(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

    async fn pg(&self) -> sqlx::PgConnection {
        let Backend::Postgres { url, schema } = &self.backend else {
            unreachable!()
        };
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .unwrap()
            .options([("search_path", schema.as_str())]);
        sqlx::PgConnection::connect_with(&options).await.unwrap()
    }

    /// Asserts that `marker` occurs nowhere in the stored data: for SQLite, in no byte of the
    /// database file, its WAL or its shared-memory file; for PostgreSQL, in no column of any
    /// table (bytea included, as text and as hex).
    pub async fn assert_absent(&self, marker: &str) {
        self.assert_absent_bytes(marker.as_bytes()).await;
    }

    /// [`Harness::assert_absent`] for arbitrary bytes (ciphertexts, pseudonyms).
    pub async fn assert_absent_bytes(&self, needle: &[u8]) {
        let marker = String::from_utf8_lossy(needle).into_owned();
        match &self.backend {
            Backend::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let file = format!("{path}{suffix}");
                    let Ok(bytes) = std::fs::read(&file) else {
                        continue;
                    };
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "`{marker}` found in {file}"
                    );
                }
            }
            Backend::Postgres { .. } => {
                let mut conn = self.pg().await;
                let hex_marker: String = needle.iter().map(|b| format!("{b:02x}")).collect();
                for table in [
                    "meta",
                    "items",
                    "subject_keys",
                    "consent_history",
                    "consent_current",
                    "events",
                    "audit_log",
                    "audit_head",
                    "api_keys",
                ] {
                    let dump: String = sqlx::query_scalar(&format!(
                        "SELECT COALESCE(string_agg(row_to_json(t)::text, E'\\n'), '') FROM {table} t"
                    ))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                    assert!(!dump.contains(&marker), "`{marker}` found in table {table}");
                    assert!(
                        !dump.contains(&hex_marker),
                        "`{marker}` found (hex) in table {table}"
                    );
                }
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Backend::Postgres { url, schema } = &self.backend {
            let (url, schema) = (url.clone(), schema.clone());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}
