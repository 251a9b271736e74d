//! The embedded SQLite backend: one writer connection (SQLite has one writer anyway, and this
//! serialises audit appends in-process) and a small pool of readers, in WAL mode with full
//! synchronous commits and `secure_delete` so deleted rows are overwritten; a background
//! connection checkpoints the WAL every second so no commit waits for a checkpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use candor_domain::AuditSealer;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Pool, Sqlite, SqlitePool, Transaction};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::Sql;
use crate::{Result, StoreError};

/// The SQLite store.
pub type SqliteStore = SqlStore<Sqlite>;

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

/// Creates the database file readable and writable by its owner only (0600) before SQLite
/// opens it, and narrows an existing one and its WAL files to that: the rows are ciphertext,
/// but pseudonyms, timestamps and the audit log are not for other local users. SQLite gives
/// the files it creates beside the database (`-wal`, `-shm`) the database file's mode.
fn private_file(path: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.is_empty() || path == ":memory:" || path.starts_with("file:") {
            return Ok(());
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                for file in [
                    path.to_string(),
                    format!("{path}-wal"),
                    format!("{path}-shm"),
                ] {
                    if std::path::Path::new(&file).exists() {
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                            .map_err(|e| StoreError::Io(format!("{file}: {e}")))?;
                    }
                }
            }
            Err(e) => return Err(StoreError::Io(format!("{path}: {e}"))),
        }
    }
    Ok(())
}

impl SqlStore<Sqlite> {
    /// Opens or creates the database file at `path` and migrates it.
    pub async fn open(path: &str, sealer: Arc<dyn AuditSealer>) -> Result<Self> {
        private_file(path)?;
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
        let bulk = SqlitePoolOptions::new()
            .max_connections(1)
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
            bulk,
            sealer,
            _alive: alive,
        })
    }
}

/// Removes the database file at `path` and its WAL and shared-memory files, if present.
pub(crate) fn destroy(path: &str) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        match std::fs::remove_file(format!("{path}{suffix}")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::Io(e.to_string())),
        }
    }
    Ok(())
}

impl crate::sealed::Sealed for Sqlite {}

impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const WRITERS: usize = 1;

    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>>> + Send {
        let pool = pool.clone();
        async move { Ok(pool.begin_with("BEGIN IMMEDIATE").await?) }
    }

    fn lock_audit(_tx: &mut SqliteConnection) -> impl Future<Output = Result<()>> + Send {
        // The single writer connection and BEGIN IMMEDIATE already serialise appends.
        std::future::ready(Ok(()))
    }

    fn purge_deleted_bytes(pool: &Pool<Self>) -> impl Future<Output = Result<()>> + Send {
        // Deleted cells were overwritten in the database file (`secure_delete`); the WAL still
        // holds the pre-deletion pages until it is checkpointed and truncated.
        let pool = pool.clone();
        async move {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&pool)
                .await?;
            Ok(())
        }
    }

    crate::sql::statement_runners!(SqliteArguments<'static>, into_positional);
}
