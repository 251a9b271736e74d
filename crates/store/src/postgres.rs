//! The PostgreSQL backend, for shared deployments: servers share one database, audit appends
//! are serialised across them by a transaction-scoped advisory lock, and deleted tuples are
//! reclaimed with `VACUUM`.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use candor_domain::AuditSealer;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Pool, Postgres, Transaction};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::Sql;
use crate::{Result, StoreError};

/// The PostgreSQL store.
pub type PostgresStore = SqlStore<Postgres>;

/// The advisory lock key that serialises audit-chain appends.
const AUDIT_LOCK_KEY: i64 = 0x43_61_6e_64_6f_72; // "Candor"

/// The tables that hold personal data, vacuumed after deletes.
const PERSONAL_TABLES: [&str; 4] = [
    "events",
    "consent_history",
    "consent_current",
    "subject_keys",
];

/// Every table the migrations create, and the migrations' own.
const TABLES: [&str; 14] = [
    "events",
    "consent_history",
    "consent_current",
    "subject_keys",
    "restrictions",
    "requests",
    "privacy_budgets",
    "model_artifacts",
    "api_keys",
    "audit_log",
    "audit_head",
    "items",
    "meta",
    "_sqlx_migrations",
];

impl SqlStore<Postgres> {
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
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let bulk = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            bulk,
            sealer,
            _alive: Arc::new(()),
        })
    }
}

/// Drops every table of Candor's in the database at `url` (its default schema).
pub(crate) async fn destroy(url: &str) -> Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(PgConnectOptions::from_str(url)?)
        .await?;
    for table in TABLES {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table} CASCADE"))
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}

impl crate::sealed::Sealed for Postgres {}

impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const WRITERS: usize = 3;

    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>>> + Send {
        let pool = pool.clone();
        async move { Ok(pool.begin().await?) }
    }

    async fn lock_audit(tx: &mut PgConnection) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK_KEY)
            .execute(tx)
            .await?;
        Ok(())
    }

    fn purge_deleted_bytes(pool: &Pool<Self>) -> impl Future<Output = Result<()>> + Send {
        // The rows are unreadable at once and their payloads' key is gone; VACUUM reclaims
        // the dead tuples that still hold their bytes.
        let pool = pool.clone();
        async move {
            for table in PERSONAL_TABLES {
                sqlx::query(&format!("VACUUM {table}"))
                    .execute(&pool)
                    .await?;
            }
            Ok(())
        }
    }

    crate::sql::statement_runners!(PgArguments, into_parts);
}
