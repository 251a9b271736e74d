//! The `candor` binary: parse flags, load settings, start tracing, run the command.

mod bench;
mod demo;
mod eval;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use candor_engine::{Actor, Engine, Role};
use clap::{Args, Parser, Subcommand};
use settings::{Overrides, Settings};

/// Candor: a personalization engine that keeps its privacy promises in code.
#[derive(Parser)]
#[command(name = "candor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct Common {
    /// Settings file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory: key file and, by default, the SQLite database.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://...
    #[arg(long, global = true)]
    store: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Generate a synthetic shop, load it through the engine, and serve it.
    Demo {
        #[command(flatten)]
        common: Common,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
        /// Delete an earlier demo database in the data directory first.
        #[arg(long)]
        fresh: bool,
        /// RNG seed for the generated data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Number of subjects.
        #[arg(long, default_value_t = 1000)]
        subjects: usize,
        /// Number of catalogue items.
        #[arg(long, default_value_t = 2000)]
        items: usize,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Differential-privacy budget planning.
    Privacy {
        #[command(subcommand)]
        command: PrivacyCommand,
    },
    /// Verify consent receipts offline.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// Verify the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Train the item model on events consented for personalization and print its card.
    Train {
        #[command(flatten)]
        common: Common,
    },
    /// Delete events past their retention now.
    Sweep {
        #[command(flatten)]
        common: Common,
    },
    /// Offline evaluation on user<TAB>item files (DESIGN §7 protocol).
    Eval {
        /// Training file.
        #[arg(long, requires_all = ["test", "items"], conflicts_with = "splits")]
        train: Option<PathBuf>,
        /// Test file.
        #[arg(long)]
        test: Option<PathBuf>,
        /// Catalogue file: one item id per line.
        #[arg(long)]
        items: Option<PathBuf>,
        /// A directory with items.tsv and seed-*/{train,test}.tsv: prints the mean over seeds.
        #[arg(long)]
        splits: Option<PathBuf>,
        /// Optional `item<TAB>category` file: adds intra-list diversity (ILD@10).
        #[arg(long)]
        categories: Option<PathBuf>,
        /// popularity, knn, als, ease, edlae, blend, dp-popularity, dp, or all (with
        /// --epsilon: the DP models).
        #[arg(long, default_value = "all")]
        model: String,
        /// Train the DP models at each ε of a comma-separated list (`inf` for no noise),
        /// e.g. 0.5,1,2,4,8,inf.
        #[arg(long, value_delimiter = ',')]
        epsilon: Vec<String>,
        /// δ of the DP models.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// Hyperparameter overrides, e.g. als.factors=128.
        #[arg(long = "param")]
        params: Vec<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Evaluate on a validation split carved from each train file (20% of each user's
        /// training items, seeded) instead of the test file: for choosing hyperparameters.
        #[arg(long)]
        validate: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print only the key.
    Create {
        #[command(flatten)]
        common: Common,
        /// admin, service, analyst or dpo.
        #[arg(long)]
        role: String,
        /// A label for people.
        #[arg(long, default_value = "")]
        label: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; errors name the line and the field.
    Check {
        /// The policy TOML file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Print ε (and the best Rényi order) for a mechanism composed T times.
    Epsilon {
        /// gaussian or laplace.
        #[arg(long)]
        mechanism: String,
        /// Gaussian noise multiplier.
        #[arg(long)]
        sigma: Option<f64>,
        /// Laplace scale.
        #[arg(long)]
        scale: Option<f64>,
        /// Laplace L1 sensitivity.
        #[arg(long, default_value_t = 1.0)]
        sensitivity: f64,
        /// Number of compositions (steps).
        #[arg(long, default_value_t = 1)]
        compositions: u64,
        /// Poisson sampling rate (Gaussian only).
        #[arg(long)]
        sampling_rate: Option<f64>,
        /// δ.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Check a receipt's signature; exit 1 if any byte was changed.
    Verify {
        /// The receipt (JSON).
        file: PathBuf,
        /// The signer's expected public key (hex), from GET /v1/keys/receipts.
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and the signed head; exit 1 naming the first bad position.
    Verify {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// ALS training on generated data, recommendation and fold-in latency.
    Models {
        /// Interactions to generate.
        #[arg(long, default_value_t = 1_000_000)]
        interactions: usize,
        /// Catalogue size.
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        /// Users.
        #[arg(long, default_value_t = 50_000)]
        users: usize,
        /// ALS factors.
        #[arg(long, default_value_t = 64)]
        factors: usize,
        /// ALS iterations.
        #[arg(long, default_value_t = 15)]
        iterations: usize,
    },
    /// The DP item model against the non-private models on generated data with planted
    /// taste structure (quality ratio and fit time per ε).
    Dp {
        /// Users.
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Catalogue size.
        #[arg(long, default_value_t = 5_000)]
        items: usize,
        /// Interactions to generate.
        #[arg(long, default_value_t = 2_000_000)]
        interactions: usize,
        /// Comma-separated ε values (`inf` for no noise).
        #[arg(long, value_delimiter = ',', default_value = "0.5,1,2,4,8,inf")]
        epsilon: Vec<String>,
        /// δ.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// Hyperparameter overrides, as in `candor eval`.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Only these reference models (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "popularity,edlae,als")]
        reference: Vec<String>,
    },
    /// Ingestion through the engine (consent check, encryption, durable commit).
    Ingest {
        #[command(flatten)]
        common: Common,
        /// Events to ingest.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Events per batch.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Distinct consenting subjects.
        #[arg(long, default_value_t = 2_000)]
        subjects: usize,
        /// Catalogue size.
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        /// Concurrent clients sending batches.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
}

fn load_settings(common: &Common, listen: Option<String>) -> anyhow::Result<Settings> {
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

fn init_tracing(settings: &Settings) {
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

async fn open_engine(settings: &Settings) -> anyhow::Result<Arc<Engine>> {
    let config = settings.engine_config()?;
    Ok(Arc::new(Engine::open(config).await?))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { common, listen } => {
            let settings = load_settings(&common, listen)?;
            init_tracing(&settings);
            let engine = open_engine(&settings).await?;
            serve(&settings, engine, None).await
        }
        Command::Demo {
            common,
            listen,
            fresh,
            seed,
            subjects,
            items,
        } => {
            let settings = load_settings(&common, listen)?;
            init_tracing(&settings);
            if fresh {
                Engine::destroy_store(&settings.engine_config()?).await?;
            }
            let engine = open_engine(&settings).await?;
            let shape = demo::DemoShape {
                seed,
                items,
                subjects,
            };
            if engine.stats().await?.items == 0 {
                let summary = demo::load(&engine, &shape).await?;
                println!(
                    "demo shop: {items} items; {subjects} subjects ({} consenting, {} without consent, {} with expired consent)",
                    summary.consenting, summary.without_consent, summary.expired
                );
                let refused: Vec<String> = summary
                    .refused
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect();
                println!(
                    "events: {} stored, refused: {}",
                    summary.accepted,
                    if refused.is_empty() {
                        "none".into()
                    } else {
                        refused.join(", ")
                    }
                );
            } else {
                println!(
                    "demo shop already loaded in {} (use --fresh to regenerate)",
                    settings.store.data_dir.display()
                );
            }
            if engine.model_card().is_err() {
                let card = engine.train(&Actor::system()).await?;
                println!(
                    "trained {} on {} consented events from {} subjects (model version {})",
                    card.algorithm, card.events, card.subjects, card.version
                );
            }
            let key = engine
                .create_api_key(&Actor::cli(), Role::Admin, "demo admin")
                .await?;
            serve(&settings, engine, Some(key.to_string())).await
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    common,
                    role,
                    label,
                },
        } => {
            let settings = load_settings(&common, None)?;
            let role =
                Role::parse(&role).context("--role must be one of admin, service, analyst, dpo")?;
            let engine = open_engine(&settings).await?;
            let key = engine.create_api_key(&Actor::cli(), role, &label).await?;
            println!("{}", key.as_str());
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => {
            let policy = settings::load_policy(&file)?;
            println!(
                "policy {} is valid: version {}, {} purposes, {} data categories, {} event types",
                file.display(),
                policy.version,
                policy.purposes.len(),
                policy.categories.len(),
                policy.event_types.len()
            );
            Ok(())
        }
        Command::Audit {
            command: AuditCommand::Verify { common },
        } => {
            let settings = load_settings(&common, None)?;
            let engine = open_engine(&settings).await?;
            let report = engine.verify_audit().await?;
            if report.ok {
                println!(
                    "audit log verified: {} entries, signed head matches",
                    report.entries
                );
                Ok(())
            } else {
                anyhow::bail!(
                    "audit log broken at position {}: {}",
                    report.first_bad_position.unwrap_or(0),
                    report.problem.unwrap_or_default()
                )
            }
        }
        Command::Eval {
            train,
            test,
            items,
            splits,
            model,
            params,
            json,
            validate,
            categories,
            epsilon,
            delta,
        } => {
            let mut p = eval::Params::default();
            p.apply(&params)?;
            anyhow::ensure!(
                delta > 0.0 && delta < 1.0,
                "--delta {delta}: delta must be in (0, 1)"
            );
            p.dp.delta = delta;
            let epsilons = eval::parse_epsilons(&epsilon)?;
            let models: Vec<&str> = match (model.as_str(), epsilons.is_empty()) {
                ("all", true) => eval::MODELS.to_vec(),
                ("all", false) => eval::DP_MODELS.to_vec(),
                (m, _) => vec![m],
            };
            let splits_dir = splits.clone();
            let splits: Vec<eval::Split> = match (&splits, &train, &test, &items) {
                (Some(dir), None, _, _) => eval::seed_dirs(dir)?
                    .iter()
                    .map(|seed| {
                        eval::load_split(
                            &seed.join("train.tsv"),
                            &seed.join("test.tsv"),
                            &dir.join("items.tsv"),
                        )
                    })
                    .collect::<anyhow::Result<_>>()?,
                (None, Some(train), Some(test), Some(items)) => {
                    vec![eval::load_split(train, test, items)?]
                }
                _ => anyhow::bail!("give --splits DIR, or --train, --test and --items"),
            };
            let mut splits = splits;
            if let Some(path) = &categories {
                let items = match (&items, &splits_dir) {
                    (Some(items), _) => items.clone(),
                    (None, Some(dir)) => dir.join("items.tsv"),
                    _ => unreachable!("checked above"),
                };
                let codes = eval::load_categories(path, &items)?;
                for s in &mut splits {
                    s.categories = Some(codes.clone());
                }
            }
            let splits: Vec<eval::Split> = if validate {
                splits
                    .iter()
                    .enumerate()
                    .map(|(k, s)| eval::validation_split(s, 1000 + k as u64))
                    .collect()
            } else {
                splits
            };
            let mut rows = Vec::new();
            let runs_at = |eps: Option<f64>| -> Vec<Option<f64>> {
                if epsilons.is_empty() {
                    vec![eps]
                } else {
                    epsilons.iter().map(|&e| Some(e)).collect()
                }
            };
            for m in models {
                let dp = eval::DP_MODELS.contains(&m);
                for eps in runs_at(None) {
                    let mut p = p;
                    let name = match (dp, eps) {
                        (true, Some(e)) => {
                            p.dp.epsilon = e;
                            format!("{m} ε={e}")
                        }
                        _ => m.to_string(),
                    };
                    let runs = splits
                        .iter()
                        .map(|s| eval::run(m, s, &p))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let (report, fit) = eval::mean(&runs);
                    rows.push((name, report, fit));
                    if !dp {
                        break;
                    }
                }
            }
            eval::print_table(&rows, json);
            Ok(())
        }
        Command::Privacy {
            command:
                PrivacyCommand::Epsilon {
                    mechanism,
                    sigma,
                    scale,
                    sensitivity,
                    compositions,
                    sampling_rate,
                    delta,
                },
        } => {
            let plan = candor_privacy::PlanRequest {
                mechanism: &mechanism,
                sigma,
                scale,
                sensitivity: Some(sensitivity),
                compositions: Some(compositions),
                sampling_rate,
            }
            .plan()?;
            let bound = plan.epsilon(delta)?;
            if bound.order.is_finite() {
                println!(
                    "epsilon = {:.4} at delta = {delta:e} (best Renyi order {})",
                    bound.epsilon, bound.order
                );
            } else {
                println!("epsilon = {:.4} (pure DP)", bound.epsilon);
            }
            Ok(())
        }
        Command::Receipts {
            command: ReceiptsCommand::Verify { file, public_key },
        } => {
            use candor_engine::SignedDocument;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let receipt: candor_engine::ConsentReceipt = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a consent receipt", file.display()))?;
            let expected = match public_key {
                None => None,
                Some(hex) => {
                    let bytes: Vec<u8> = (0..hex.len() / 2)
                        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                        .collect();
                    Some(
                        <[u8; 32]>::try_from(bytes.as_slice())
                            .ok()
                            .context("--public-key must be 64 hex digits")?,
                    )
                }
            };
            anyhow::ensure!(
                receipt.verify(expected.as_ref()),
                "the receipt's signature does not verify: it was changed, or signed by another key"
            );
            println!(
                "receipt {} is valid (signed by {})",
                receipt.consent_receipt_id, receipt.public_key
            );
            Ok(())
        }
        Command::Train { common } => {
            let settings = load_settings(&common, None)?;
            let engine = open_engine(&settings).await?;
            let card = engine.train(&Actor::cli()).await?;
            println!("{}", serde_json::to_string_pretty(&card)?);
            Ok(())
        }
        Command::Sweep { common } => {
            let settings = load_settings(&common, None)?;
            let engine = open_engine(&settings).await?;
            let deleted = engine.sweep_retention(&Actor::cli()).await?;
            println!("deleted {deleted} events past their retention");
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Models {
                    interactions,
                    items,
                    users,
                    factors,
                    iterations,
                },
        } => {
            anyhow::ensure!(
                items >= 20 && users >= 1 && interactions >= users && factors >= 1,
                "--items must be at least 20, --users at least 1, --interactions at least --users"
            );
            bench::models(bench::ModelBench {
                interactions,
                items,
                users,
                factors,
                iterations,
            })
        }
        Command::Bench {
            command:
                BenchCommand::Dp {
                    users,
                    items,
                    interactions,
                    epsilon,
                    delta,
                    params,
                    reference,
                },
        } => {
            anyhow::ensure!(
                items >= 20 && users >= 1 && interactions >= users,
                "--items must be at least 20, --users at least 1, --interactions at least --users"
            );
            anyhow::ensure!(
                delta > 0.0 && delta < 1.0,
                "--delta {delta}: delta must be in (0, 1)"
            );
            bench::dp(bench::DpBench {
                users,
                items,
                interactions,
                epsilons: eval::parse_epsilons(&epsilon)?,
                delta,
                params,
                reference,
            })
        }
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    common,
                    events,
                    batch,
                    subjects,
                    items,
                    concurrency,
                },
        } => {
            let mut settings = load_settings(&common, None)?;
            let _tmp;
            if common.data_dir.is_none() {
                let dir = tempfile_dir()?;
                settings.store.data_dir = dir.clone();
                _tmp = TempDir(dir);
            }
            settings.ingest.max_batch = settings.ingest.max_batch.max(batch);
            init_tracing(&settings);
            let engine = open_engine(&settings).await?;
            anyhow::ensure!(
                subjects >= 1 && items >= 1 && batch >= 1 && concurrency >= 1,
                "--subjects, --items, --batch and --concurrency must be at least 1"
            );
            bench::ingest(
                engine,
                bench::IngestBench {
                    events,
                    batch,
                    subjects,
                    items,
                    concurrency,
                },
            )
            .await
        }
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "candor-bench-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn serve(
    settings: &Settings,
    engine: Arc<Engine>,
    admin_key: Option<String>,
) -> anyhow::Result<()> {
    use candor_engine::{Periodic, spawn_periodic};
    let weak = Arc::downgrade(&engine);
    if settings.models.train_interval_secs > 0 {
        spawn_periodic(
            weak.clone(),
            Periodic::Training,
            Duration::from_secs(settings.models.train_interval_secs),
        );
    }
    spawn_periodic(
        weak.clone(),
        Periodic::ModelRefresh,
        Duration::from_secs(60),
    );
    spawn_periodic(
        weak,
        Periodic::RetentionSweep,
        Duration::from_secs(settings.retention.sweep_interval_secs),
    );
    let listener = tokio::net::TcpListener::bind(&settings.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
    let addr = listener.local_addr()?;
    let state = candor_server::AppState::new(engine.clone(), settings.server.max_body_bytes);
    let app = candor_server::app(state);
    println!("listening on http://{addr} (store: {})", engine.backend());
    if let Some(key) = admin_key {
        let base = format!("http://{addr}");
        println!("try:");
        println!("  export KEY={key}");
        println!("  curl -s {base}/v1/policy");
        println!(
            "  curl -s -H \"Authorization: Bearer $KEY\" {base}/v1/subjects/user-0001/consent"
        );
        println!(
            "  curl -s -X POST -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \
             -d '{{\"subject\":\"user-0001\",\"item\":\"item-00001\",\"type\":\"view\"}}' {base}/v1/events"
        );
        println!(
            "  curl -s -X POST -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \
             -d '{{\"subject\":\"user-0008\",\"item\":\"item-00001\",\"type\":\"view\"}}' {base}/v1/events   # no consent: refused"
        );
        println!(
            "  curl -s -H \"Authorization: Bearer $KEY\" '{base}/v1/subjects/user-0001/recommendations?n=5'"
        );
        println!(
            "  curl -s -H \"Authorization: Bearer $KEY\" '{base}/v1/subjects/user-0008/recommendations?n=5&context=item-00001'   # no consent: contextual"
        );
        println!("  curl -s {base}/v1/models/current");
        println!("  curl -s -H \"Authorization: Bearer $KEY\" {base}/v1/audit/verify");
        println!(
            "  curl -s -X POST -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \
             -d '{{\"kind\":\"top_k\",\"epsilon\":0.5,\"k\":5}}' {base}/v1/analytics/query   # DP, charged to the budget"
        );
        println!("  curl -s -H \"Authorization: Bearer $KEY\" {base}/v1/analytics/budget");
        println!("  curl -s -H \"Authorization: Bearer $KEY\" {base}/metrics | grep candor_events");
        println!("admin key: {key}");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    axum_serve(listener, app).await
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the server stopped with an error")
}
