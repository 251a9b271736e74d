//! The benchmarks behind `candor bench`: ingestion through the engine exactly as the API does
//! it (consent check, encryption, durable commit), model training and serving latency, and
//! the DP item model on planted data. Figures go to `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candor_domain::{ConsentMethod, Item, SubjectId, Timestamp};
use candor_engine::{Actor, ConsentUpdate, Engine, EventDraft};

/// The shape of an ingestion benchmark.
#[derive(Debug, Clone, Copy)]
pub struct IngestBench {
    /// Events to ingest.
    pub events: usize,
    /// Events per batch.
    pub batch: usize,
    /// Distinct subjects (all consenting).
    pub subjects: usize,
    /// Catalogue size.
    pub items: usize,
    /// Concurrent clients.
    pub concurrency: usize,
}

/// Resident set size of this process in MiB, from `/proc/self/status`.
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the ingestion benchmark and prints its figures.
pub async fn ingest(engine: Arc<Engine>, bench: IngestBench) -> anyhow::Result<()> {
    let actor = Actor::system();
    let items: Vec<Item> = (0..bench.items)
        .map(|i| Item {
            id: format!("bench-item-{i}"),
            title: format!("Item {i}"),
            category: Some(format!("c{}", i % 20)),
            provider: None,
            attributes: Default::default(),
        })
        .collect();
    for chunk in items.chunks(5000) {
        engine.put_items(chunk).await?;
    }
    let setup = Instant::now();
    let update = ConsentUpdate::whole(&["personalize.content.profiling"], true, ConsentMethod::Api);
    for s in 0..bench.subjects {
        engine
            .set_consent(
                &actor,
                &SubjectId::parse(&format!("bench-user-{s}"))?,
                &update,
                false,
            )
            .await?;
    }
    eprintln!(
        "consent for {} subjects in {:.1} s",
        bench.subjects,
        setup.elapsed().as_secs_f64()
    );

    let base = Timestamp::now().0 - 10 * candor_domain::timestamp::DAY_MS;
    let batches: Vec<(usize, usize)> = (0..bench.events)
        .step_by(bench.batch)
        .map(|start| (start, bench.batch.min(bench.events - start)))
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // `concurrency` clients take batches in turn, as concurrent API callers would.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..bench.concurrency {
        let (engine, batches, next, actor) =
            (engine.clone(), batches.clone(), next.clone(), actor.clone());
        clients.spawn(async move {
            let mut accepted = 0usize;
            while let Some(&(start, n)) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                let drafts: Vec<EventDraft> = (start..start + n)
                    .map(|i| EventDraft {
                        subject: format!("bench-user-{}", i % bench.subjects),
                        item: format!("bench-item-{}", (i * 7919) % bench.items),
                        event_type: "view".into(),
                        value: None,
                        timestamp: Some(Timestamp(base + i as i64).to_rfc3339()),
                        context: BTreeMap::from([("device".to_string(), "mobile".to_string())]),
                    })
                    .collect();
                let report = engine.ingest(&actor, &drafts, false).await?;
                anyhow::ensure!(
                    report.refused.is_empty(),
                    "benchmark events were refused: {:?}",
                    report.refused.first()
                );
                accepted += report.accepted;
            }
            Ok::<usize, anyhow::Error>(accepted)
        });
    }
    let mut accepted = 0;
    while let Some(result) = clients.join_next().await {
        accepted += result??;
    }
    let spent = started.elapsed().as_secs_f64();
    println!(
        "ingest via engine into {}: {accepted} events in batches of {} from {} concurrent clients over {} subjects: {:.2} s, {:.0} events/s, RSS {:.0} MiB",
        engine.backend(),
        bench.batch,
        bench.concurrency,
        bench.subjects,
        spent,
        accepted as f64 / spent,
        rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}

/// The shape of the model benchmark.
#[derive(Debug, Clone, Copy)]
pub struct ModelBench {
    /// Interactions to generate.
    pub interactions: usize,
    /// Catalogue size.
    pub items: usize,
    /// Users.
    pub users: usize,
    /// ALS factors.
    pub factors: usize,
    /// ALS iterations.
    pub iterations: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Generated interactions with planted taste structure: Zipf-like popularity and 20 taste
/// clusters, each user drawing half their items uniformly from their cluster's slice of the
/// catalogue (the ALS timing benchmark's data).
pub fn planted(
    users: usize,
    items: usize,
    interactions: usize,
    seed: u64,
) -> anyhow::Result<Vec<(u32, u32)>> {
    planted_with(users, items, interactions, seed, 0.5, false)
}

/// Like [`planted`], with `taste` the share of each user's items drawn from their cluster's
/// slice, Zipf-distributed within the slice when `ranked` (so each taste has its own hits).
pub fn planted_with(
    users: usize,
    items: usize,
    interactions: usize,
    seed: u64,
    taste: f64,
    ranked: bool,
) -> anyhow::Result<Vec<(u32, u32)>> {
    use rand::distributions::{Distribution, WeightedIndex};
    use rand::{Rng, SeedableRng};

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let popularity: Vec<f64> = (0..items).map(|i| 1.0 / (i as f64 + 10.0)).collect();
    let sampler = WeightedIndex::new(&popularity)?;
    let clusters = 20;
    let slice = items / clusters;
    let per_user = interactions / users;
    let within: Vec<f64> = (0..slice).map(|i| 1.0 / (i as f64 + 5.0)).collect();
    let within = WeightedIndex::new(&within)?;
    let mut pairs = Vec::with_capacity(interactions);
    for u in 0..users {
        let cluster = u % clusters;
        for _ in 0..per_user {
            let item = if rng.gen_bool(taste) {
                let offset = if ranked {
                    within.sample(&mut rng)
                } else {
                    rng.gen_range(0..slice)
                };
                cluster * slice + offset
            } else {
                sampler.sample(&mut rng)
            };
            pairs.push((u as u32, item as u32));
        }
    }
    Ok(pairs)
}

/// The shape of the DP quality benchmark.
#[derive(Debug, Clone)]
pub struct DpBench {
    /// Users.
    pub users: usize,
    /// Catalogue size.
    pub items: usize,
    /// Interactions to generate (before de-duplication).
    pub interactions: usize,
    /// The ε values (infinity for no noise).
    pub epsilons: Vec<f64>,
    /// δ.
    pub delta: f64,
    /// Hyperparameter overrides.
    pub params: Vec<String>,
    /// The non-private models to compare with.
    pub reference: Vec<String>,
}

/// DP item model against the non-private models on generated data with planted structure:
/// NDCG@10 on a held-out 20% of each user's items, the ratio to the best non-private model,
/// and fit times.
pub fn dp(bench: DpBench) -> anyhow::Result<()> {
    let pairs = planted_with(bench.users, bench.items, bench.interactions, 11, 0.7, true)?;
    let data = candor_models::Interactions::from_pairs(bench.users, bench.items, &pairs);
    let (train, test) = candor_models::holdout(&data, 0.2, 5);
    println!(
        "generated: {} users, {} items, {} distinct interactions; 20% of each user's items held out; {} threads",
        bench.users,
        bench.items,
        data.nnz(),
        rayon::current_num_threads()
    );
    let split = crate::protocol::Split {
        train,
        test,
        categories: None,
    };
    let mut params = crate::protocol::Params::default();
    params.apply(&bench.params)?;
    params.dp.delta = bench.delta;
    let mut rows = Vec::new();
    let mut best = 0f64;
    for model in &bench.reference {
        let (report, fit) = crate::protocol::run(model, &split, &params)?;
        best = best.max(report.ndcg_10);
        rows.push((model.to_string(), report, fit));
    }
    for &epsilon in &bench.epsilons {
        params.dp.epsilon = epsilon;
        for model in crate::protocol::DP_MODELS {
            let (report, fit) = crate::protocol::run(model, &split, &params)?;
            rows.push((format!("{model} ε={epsilon}"), report, fit));
        }
    }
    crate::protocol::print_table(&rows, false);
    noise_speed()?;
    println!();
    println!("| model | NDCG@10 / best non-private ({best:.4}) |");
    println!("|---|---|");
    for (name, report, _) in &rows {
        println!("| {name} | {:.3}× |", report.ndcg_10 / best);
    }
    Ok(())
}

/// Draw rates of the fast table sampler (training) and OpenDP's exact sampler (analytics).
fn noise_speed() -> anyhow::Result<()> {
    use rand::SeedableRng;
    let sigma = 2800.0;
    let table = candor_privacy::fast::DiscreteGaussianTable::new(sigma)?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let start = Instant::now();
    let n = 10_000_000;
    let mut acc = 0i64;
    for _ in 0..n {
        acc = acc.wrapping_add(table.sample(&mut rng));
    }
    std::hint::black_box(acc);
    let table_rate = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let m = 20_000;
    for _ in 0..m {
        std::hint::black_box(candor_privacy::noise::discrete_gaussian(sigma)?);
    }
    let exact_rate = m as f64 / start.elapsed().as_secs_f64();
    println!(
        "discrete Gaussian draws at σ = {sigma} on one thread: table sampler {:.1} M/s, OpenDP {:.3} M/s ({:.0}× faster)",
        table_rate / 1e6,
        exact_rate / 1e6,
        table_rate / exact_rate
    );
    Ok(())
}

/// ALS training time on generated data, then per-recommendation and fold-in latency.
pub fn models(bench: ModelBench) -> anyhow::Result<()> {
    use candor_models::Scorer;
    use candor_models::als::{Als, AlsConfig};

    let pairs = planted(bench.users, bench.items, bench.interactions, 7)?;
    let data = candor_models::Interactions::from_pairs(bench.users, bench.items, &pairs);
    let config = AlsConfig {
        factors: bench.factors,
        iterations: bench.iterations,
        ..AlsConfig::default()
    };
    let start = Instant::now();
    let als = Als::fit(&data, config)?;
    let fit = start.elapsed().as_secs_f64();
    println!(
        "ALS fit: {} interactions ({} distinct) x {} items x {} users, {} factors, {} iterations, {} threads: {:.2} s",
        bench.interactions,
        data.nnz(),
        bench.items,
        bench.users,
        bench.factors,
        bench.iterations,
        rayon::current_num_threads(),
        fit
    );

    let mut scores = vec![0f32; bench.items];
    let (mut recommend, mut fold) = (Vec::new(), Vec::new());
    for u in (0..bench.users).step_by((bench.users / 2000).max(1)) {
        let history = data.user(u);
        let start = Instant::now();
        als.score(history, &mut scores);
        let top = candor_models::topk::top_k(&scores, 10, |i| history.binary_search(&i).is_ok());
        recommend.push(start.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(top);
        let start = Instant::now();
        std::hint::black_box(als.fold_in(history));
        fold.push(start.elapsed().as_secs_f64() * 1e6);
    }
    recommend.sort_by(f64::total_cmp);
    fold.sort_by(f64::total_cmp);
    println!(
        "one recommendation in process (fold-in + {} scores + top-10), {} users: p50 {:.0} µs, p99 {:.0} µs",
        bench.items,
        recommend.len(),
        percentile(&recommend, 0.5),
        percentile(&recommend, 0.99)
    );
    println!(
        "fold-in of a history (mean length {:.0}): p50 {:.0} µs, p99 {:.0} µs",
        data.nnz() as f64 / bench.users as f64,
        percentile(&fold, 0.5),
        percentile(&fold, 0.99)
    );
    Ok(())
}
