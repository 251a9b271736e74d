//! Settings, loaded in layers: compiled-in defaults, then an optional TOML file, then
//! `CANDOR__SECTION__KEY` environment variables, then command-line flags. Unknown keys at any
//! layer are an error that names them. Secrets are not settings: keys come from the key file
//! or the `CANDOR_*_KEY` variables (see `candor_engine::keys`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Storage.
    pub store: StoreSettings,
    /// The policy file.
    pub policy: PolicySettings,
    /// Ingestion limits.
    pub ingest: IngestSettings,
    /// The retention sweeper.
    pub retention: RetentionSettings,
    /// Model training.
    pub models: ModelSettings,
    /// Differentially private analytics.
    pub analytics: AnalyticsSettings,
    /// IAB TCF.
    pub tcf: TcfSettings,
    /// Subject sessions (the privacy center's credential).
    pub sessions: SessionSettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[sessions]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// How long a subject session lasts at most, and by default, in seconds (at least 60).
    pub ttl_secs: u64,
}

/// `[tcf]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcfSettings {
    /// This service's IAB TCF vendor id; 0 refuses TC strings.
    pub vendor_id: u16,
}

/// `[models]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Seconds between scheduled trainings of the item model; 0 turns the schedule off.
    pub train_interval_secs: u64,
    /// Train the shared item model with differential privacy (DESIGN §2); false trains it
    /// without noise, which the model card then says.
    pub dp: bool,
    /// ε of each training's release.
    pub epsilon: f64,
    /// δ of each training's release.
    pub delta: f64,
    /// The most ε all releases of a period may compose to; 0: no cap (the card still says).
    pub releases_epsilon: f64,
    /// Days after which that cap starts afresh (needed with a cap).
    pub releases_refill_days: u32,
}

/// `[analytics]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// ε the analytics dataset may spend per period.
    pub epsilon: f64,
    /// δ of the analytics budget.
    pub delta: f64,
    /// Days after which the budget starts afresh; 0: never.
    pub refill_days: u32,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Origins (`https://shop.example`) whose pages may call the API from a browser; none by
    /// default.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Requests per second (burst as many) from one source address; 0 turns the limit off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_address: u32,
    /// Requests per second (burst as many) per API key id; 0 turns the limit off.
    #[serde(default = "default_rate_limit")]
    pub rate_limit_per_key: u32,
    /// PEM certificate chain: with `tls_key`, the listener speaks TLS (HTTP/2 and HTTP/1.1)
    /// and reloads both files on SIGHUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has for the TLS handshake and the first request to start, and for
    /// each request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
}

fn default_rate_limit() -> u32 {
    20_000
}

fn default_header_timeout() -> u64 {
    10
}

fn default_body_timeout() -> u64 {
    30
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Data directory (key file, and the SQLite database by default).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; empty means `sqlite://DATA_DIR/candor.db`.
    pub url: String,
    /// Where subjects' data keys live, apart from the data (`sqlite://PATH` or
    /// `postgres://...`); empty means `sqlite://DATA_DIR/keys.db` beside a SQLite store, and
    /// the store itself for PostgreSQL (set it there).
    #[serde(default)]
    pub key_store_url: String,
}

/// `[policy]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Path of a policy TOML file; empty means the shipped default policy.
    pub file: String,
}

/// `[ingest]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Most events per batch.
    pub max_batch: usize,
    /// Accepted clock skew for future timestamps, in seconds.
    pub future_skew_secs: u32,
}

/// `[retention]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Seconds between sweeps.
    pub sweep_interval_secs: u64,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `candor_server=debug`.
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings {
                listen: "127.0.0.1:8080".into(),
                max_body_bytes: 16 * 1024 * 1024,
                allowed_origins: Vec::new(),
                rate_limit_per_address: default_rate_limit(),
                rate_limit_per_key: default_rate_limit(),
                tls_cert: None,
                tls_key: None,
                header_timeout_secs: default_header_timeout(),
                body_timeout_secs: default_body_timeout(),
            },
            store: StoreSettings {
                data_dir: PathBuf::from("candor-data"),
                url: String::new(),
                key_store_url: String::new(),
            },
            policy: PolicySettings {
                file: String::new(),
            },
            ingest: IngestSettings {
                max_batch: 10_000,
                future_skew_secs: 300,
            },
            retention: RetentionSettings {
                sweep_interval_secs: 3600,
            },
            models: ModelSettings {
                train_interval_secs: 86_400,
                dp: true,
                epsilon: 8.0,
                delta: 1e-5,
                releases_epsilon: 0.0,
                releases_refill_days: 0,
            },
            analytics: AnalyticsSettings {
                epsilon: 4.0,
                delta: 1e-6,
                refill_days: 0,
            },
            tcf: TcfSettings { vendor_id: 0 },
            sessions: SessionSettings { ttl_secs: 900 },
            log: LogSettings {
                level: "info".into(),
                json: false,
            },
        }
    }
}

/// Flags that override settings (the last layer).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--listen`
    pub listen: Option<String>,
    /// `--store`
    pub store_url: Option<String>,
}

impl Settings {
    /// Loads the layers. `env` is the environment to read (the process's, or a test's).
    pub fn load(file: Option<&Path>, env: Env, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "the settings file {} does not exist",
                file.display()
            );
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(env);
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(("store.data_dir", dir));
        }
        if let Some(listen) = &overrides.listen {
            figment = figment.merge(("server.listen", listen));
        }
        if let Some(url) = &overrides.store_url {
            figment = figment.merge(("store.url", url));
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!(figment_message(e)))?;
        settings.check()?;
        Ok(settings)
    }

    /// The process environment's `CANDOR__` variables.
    pub fn process_env() -> Env {
        Env::prefixed("CANDOR__").split("__")
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ingest.max_batch >= 1,
            "ingest.max_batch must be at least 1"
        );
        anyhow::ensure!(
            self.retention.sweep_interval_secs >= 1,
            "retention.sweep_interval_secs must be at least 1"
        );
        anyhow::ensure!(
            self.server.max_body_bytes >= 1024,
            "server.max_body_bytes must be at least 1024"
        );
        self.allowed_origins()?;
        Ok(())
    }

    /// The configured CORS origins, each `http(s)://host[:port]` with nothing after it.
    pub fn allowed_origins(&self) -> anyhow::Result<Vec<axum::http::HeaderValue>> {
        self.server
            .allowed_origins
            .iter()
            .map(|origin| {
                let rest = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                anyhow::ensure!(
                    rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '?', '#', ' ', '*'])),
                    "server.allowed_origins: `{origin}` is not an origin such as https://shop.example"
                );
                axum::http::HeaderValue::from_str(origin)
                    .map_err(|_| anyhow::anyhow!("server.allowed_origins: `{origin}` is not a valid header value"))
            })
            .collect()
    }

    /// The store URL in force.
    pub fn store_url(&self) -> String {
        if self.store.url.is_empty() {
            format!(
                "sqlite://{}",
                self.store.data_dir.join("candor.db").display()
            )
        } else {
            self.store.url.clone()
        }
    }

    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> anyhow::Result<candor_engine::EngineConfig> {
        let dp_ok = |e: f64, d: f64| e.is_finite() && e > 0.0 && d > 0.0 && d < 1.0;
        anyhow::ensure!(
            dp_ok(self.models.epsilon, self.models.delta)
                && self.models.epsilon >= candor_models::dp::MIN_EPSILON,
            "[models] epsilon must be a number of at least 0.01 and delta in (0, 1)"
        );
        let cap = self.models.releases_epsilon;
        anyhow::ensure!(
            cap == 0.0
                || (cap.is_finite()
                    && cap >= self.models.epsilon
                    && self.models.releases_refill_days > 0),
            "[models] releases_epsilon must be 0 (no cap) or at least epsilon, with releases_refill_days > 0"
        );
        anyhow::ensure!(
            self.sessions.ttl_secs >= candor_engine::sessions::MIN_SESSION_SECS,
            "[sessions] ttl_secs must be at least {} seconds",
            candor_engine::sessions::MIN_SESSION_SECS
        );
        anyhow::ensure!(
            dp_ok(self.analytics.epsilon, self.analytics.delta),
            "[analytics] epsilon must be a number > 0 and delta in (0, 1)"
        );
        let policy = if self.policy.file.is_empty() {
            candor_domain::Policy::default_policy()
        } else {
            load_policy(Path::new(&self.policy.file))?
        };
        Ok(candor_engine::EngineConfig {
            store_url: self.store_url(),
            key_store_url: self.store.key_store_url.clone(),
            data_dir: self.store.data_dir.clone(),
            policy,
            max_batch: self.ingest.max_batch,
            future_skew_ms: self.ingest.future_skew_secs as i64 * 1000,
            train_interval_secs: self.models.train_interval_secs,
            tcf_vendor_id: (self.tcf.vendor_id > 0).then_some(self.tcf.vendor_id),
            model_privacy: self.models.dp.then_some(candor_engine::ModelPrivacy {
                epsilon: self.models.epsilon,
                delta: self.models.delta,
                releases_epsilon: (cap > 0.0).then_some(cap),
                releases_refill_ms: (cap > 0.0)
                    .then_some(self.models.releases_refill_days as i64 * 86_400_000),
            }),
            analytics: candor_engine::AnalyticsBudget {
                epsilon: self.analytics.epsilon,
                delta: self.analytics.delta,
                refill_ms: (self.analytics.refill_days > 0)
                    .then_some(self.analytics.refill_days as i64 * 86_400_000),
            },
            session_ttl_secs: self.sessions.ttl_secs,
            clock: std::sync::Arc::new(candor_engine::SystemClock),
        })
    }
}

/// Reads and checks a policy file.
pub fn load_policy(path: &Path) -> anyhow::Result<candor_domain::Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    candor_domain::Policy::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn figment_message(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            match (key.is_empty(), source.is_empty()) {
                (true, _) => format!("settings: {}", e.kind),
                (false, true) => format!("settings key `{key}`: {}", e.kind),
                (false, false) => format!("settings key `{key}` (from {source}): {}", e.kind),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
// figment's `Jail` closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_env_and_flags_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("candor.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:9000\"\n[ingest]\nmax_batch = 50\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("CANDOR__INGEST__MAX_BATCH", "70");
            let s = Settings::load(Some(&file), Settings::process_env(), &Overrides::default())
                .unwrap();
            assert_eq!(s.server.listen, "127.0.0.1:9000");
            assert_eq!(s.ingest.max_batch, 70);
            let flags = Overrides {
                listen: Some("127.0.0.1:9100".into()),
                ..Default::default()
            };
            let s = Settings::load(Some(&file), Settings::process_env(), &flags).unwrap();
            assert_eq!(s.server.listen, "127.0.0.1:9100");
            assert_eq!(s.store.data_dir, PathBuf::from("candor-data"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("candor.toml");
        std::fs::write(&file, "[server]\nlisen = \"x\"\n").unwrap();
        let err = Settings::load(
            Some(&file),
            Env::prefixed("CANDOR_TEST_NONE__"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        figment::Jail::expect_with(|jail| {
            jail.set_env("CANDOR__STORE__COLOUR", "blue");
            let err =
                Settings::load(None, Settings::process_env(), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("colour"), "{err}");
            Ok(())
        });
    }
}
