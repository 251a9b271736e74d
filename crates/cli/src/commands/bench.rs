//! `candor bench`: ingestion through the engine, model training and serving latency, and the
//! DP item model on planted data (the implementations are in `crate::bench`).

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};

use super::{Common, init_tracing, load_settings, open_engine};
use crate::benchmarks as bench;

/// Flags of `candor bench`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
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

/// Runs one benchmark and prints its figures.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Models {
            interactions,
            items,
            users,
            factors,
            iterations,
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
        BenchCommand::Dp {
            users,
            items,
            interactions,
            epsilon,
            delta,
            params,
            reference,
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
                epsilons: crate::protocol::parse_epsilons(&epsilon)?,
                delta,
                params,
                reference,
            })
        }
        BenchCommand::Ingest {
            common,
            events,
            batch,
            subjects,
            items,
            concurrency,
        } => {
            anyhow::ensure!(
                subjects >= 1 && items >= 1 && batch >= 1 && concurrency >= 1,
                "--subjects, --items, --batch and --concurrency must be at least 1"
            );
            let mut settings = load_settings(&common, None)?;
            let _tmp;
            if common.data_dir.is_none() {
                let dir = TempDir::new()?;
                settings.store.data_dir = dir.0.clone();
                _tmp = dir;
            }
            settings.ingest.max_batch = settings.ingest.max_batch.max(batch);
            init_tracing(&settings);
            let engine = open_engine(&settings).await?;
            let shape = bench::IngestBench {
                events,
                batch,
                subjects,
                items,
                concurrency,
            };
            bench::ingest(engine, shape).await
        }
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "candor-bench-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
