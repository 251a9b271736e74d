//! One module per `candor` command, each with its own flags (`Args`) and its `run`; what
//! several share (the settings flags, loading settings, tracing, opening the engine) is here.

use std::path::PathBuf;
use std::sync::Arc;

use candor_engine::Engine;
use clap::Args;

use crate::settings::{Overrides, Settings};

pub mod audit;
pub mod bench;
pub mod demo;
pub mod eval;
pub mod keys;
pub mod policy;
pub mod privacy;
pub mod receipts;
pub mod serve;
pub mod sweep;
pub mod train;

/// Where the settings and the data are.
#[derive(Args, Clone, Default)]
pub struct Common {
    /// Settings file (TOML).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory: key file and, by default, the SQLite database.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://...
    #[arg(long, global = true)]
    pub store: Option<String>,
}

/// The settings in layers: defaults, the file, `CANDOR__*` variables, then these flags.
pub fn load_settings(common: &Common, listen: Option<String>) -> anyhow::Result<Settings> {
    let overrides = Overrides {
        data_dir: common.data_dir.clone(),
        listen,
        store_url: common.store.clone(),
    };
    Settings::load(
        common.config.as_deref(),
        Settings::process_env(),
        &overrides,
    )
}

/// Logs to stderr at the settings' level (or `RUST_LOG`), as text or JSON lines.
pub fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens the engine the settings describe.
pub async fn open_engine(settings: &Settings) -> anyhow::Result<Arc<Engine>> {
    let config = settings.engine_config()?;
    Ok(Arc::new(Engine::open(config).await?))
}
