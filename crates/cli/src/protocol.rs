//! The offline evaluation protocol of DESIGN §7 on `user<TAB>item` files (`candor eval` and
//! `candor bench dp`): fit on the train file, rank the whole catalogue minus each user's training items, and
//! report NDCG@10, Recall@20, Precision@10, HR@10, Coverage@10, the exposure Gini and fit time,
//! for one split or the mean over every `seed-*` split of a directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candor_models::als::{Als, AlsConfig};
use candor_models::blend::Blend;
use candor_models::dp::{DpConfig, DpItemModel, DpPopularity};
use candor_models::ease::{Ease, EaseConfig};
use candor_models::knn::{ItemKnn, KnnConfig};
use candor_models::metrics::{EvalReport, evaluate_with_categories};
use candor_models::popularity::Popularity;
use candor_models::{Interactions, Scorer};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The models `eval` knows, in table order.
pub const MODELS: [&str; 6] = ["popularity", "knn", "als", "ease", "edlae", "blend"];

/// The differentially private models, run for each `--epsilon` (`dp-served` is the DP model
/// sparsified as the server serves it).
pub const DP_MODELS: [&str; 3] = ["dp-popularity", "dp", "dp-served"];

/// Parses `--epsilon` values: positive numbers, or `inf` for no noise.
pub fn parse_epsilons(values: &[String]) -> anyhow::Result<Vec<f64>> {
    values
        .iter()
        .map(|e| match e.trim() {
            "inf" | "infinity" => Ok(f64::INFINITY),
            t => match t.parse::<f64>() {
                Ok(v) if v >= candor_models::dp::MIN_EPSILON && v.is_finite() => Ok(v),
                _ => anyhow::bail!(
                    "--epsilon {t}: epsilon must be a number of at least 0.01, or inf"
                ),
            },
        })
        .collect()
}

/// One split, indexed.
pub struct Split {
    /// Training interactions.
    pub train: Interactions,
    /// Test interactions (same user and item indices).
    pub test: Interactions,
    /// Item categories by index, when a categories file was given.
    pub categories: Option<Vec<Option<u32>>>,
}

/// Reads `item<TAB>category` lines into per-index category codes for the catalogue.
pub fn load_categories(path: &Path, items: &Path) -> anyhow::Result<Vec<Option<u32>>> {
    let catalogue = std::fs::read_to_string(items)
        .with_context(|| format!("cannot read {}", items.display()))?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut codes: HashMap<String, u32> = HashMap::new();
    let mut by_item: HashMap<String, u32> = HashMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (item, category) = line.split_once('\t').with_context(|| {
            format!(
                "{} line {}: expected `item<TAB>category`",
                path.display(),
                n + 1
            )
        })?;
        let next = codes.len() as u32;
        let code = *codes.entry(category.trim().to_owned()).or_insert(next);
        by_item.insert(item.trim().to_owned(), code);
    }
    Ok(catalogue
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|id| by_item.get(id).copied())
        .collect())
}

fn read_pairs(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let mut parts = line.split('\t');
            match (parts.next(), parts.next()) {
                (Some(u), Some(i)) => Ok((u.trim().to_owned(), i.trim().to_owned())),
                _ => anyhow::bail!(
                    "{} line {}: expected `user<TAB>item`",
                    path.display(),
                    n + 1
                ),
            }
        })
        .collect()
}

/// Reads a split: the catalogue file lists one item id per line.
pub fn load_split(train: &Path, test: &Path, items: &Path) -> anyhow::Result<Split> {
    let catalogue = std::fs::read_to_string(items)
        .with_context(|| format!("cannot read {}", items.display()))?;
    let item_index: HashMap<&str, u32> = catalogue
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, id)| (id, i as u32))
        .collect();
    anyhow::ensure!(!item_index.is_empty(), "{} lists no items", items.display());
    let train_pairs = read_pairs(train)?;
    let test_pairs = read_pairs(test)?;
    let mut user_index: HashMap<String, u32> = HashMap::new();
    let mut index = |pairs: &[(String, String)], file: &Path| -> anyhow::Result<Vec<(u32, u32)>> {
        pairs
            .iter()
            .map(|(u, i)| {
                let item = *item_index.get(i.as_str()).with_context(|| {
                    format!("{}: item {i} is not in the catalogue", file.display())
                })?;
                let next = user_index.len() as u32;
                let user = *user_index.entry(u.clone()).or_insert(next);
                Ok((user, item))
            })
            .collect()
    };
    let train_idx = index(&train_pairs, train)?;
    let test_idx = index(&test_pairs, test)?;
    let (n_users, n_items) = (user_index.len(), item_index.len());
    Ok(Split {
        train: Interactions::from_pairs(n_users, n_items, &train_idx),
        test: Interactions::from_pairs(n_users, n_items, &test_idx),
        categories: None,
    })
}

/// Carves a validation split out of a training set: for every user, a seeded 20% of their
/// training items are held out. Hyperparameters are chosen on this, never on the test file.
pub fn validation_split(split: &Split, seed: u64) -> Split {
    let (fit, held) = candor_models::holdout(&split.train, 0.2, seed);
    Split {
        train: fit,
        test: held,
        categories: split.categories.clone(),
    }
}

/// Hyperparameters, as chosen on a validation split carved from the ml-100k train files
/// (see docs/benchmarks.md); `--param name=value` overrides them.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Item-kNN.
    pub knn: KnnConfig,
    /// ALS.
    pub als: AlsConfig,
    /// EASE.
    pub ease: EaseConfig,
    /// EDLAE.
    pub edlae: EaseConfig,
    /// Weight of ALS in the ALS + EDLAE blend (EDLAE gets 1 − w).
    pub blend_als: f32,
    /// The DP item model (ε and δ come from `--epsilon` and `--delta`).
    pub dp: DpConfig,
    /// Seed of the DP noise, so that benchmark runs can be repeated.
    pub noise_seed: u64,
    /// Weights kept per item when the DP model is sparsified for serving (`dp-served`).
    pub dp_keep: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            knn: KnnConfig {
                neighbours: 800,
                shrink: 0.0,
            },
            als: AlsConfig {
                lambda: 30.0,
                alpha: 4.0,
                ..AlsConfig::default()
            },
            ease: EaseConfig {
                lambda: 500.0,
                dropout: 0.0,
            },
            edlae: EaseConfig {
                lambda: 200.0,
                dropout: 0.67,
            },
            blend_als: 0.7,
            dp: DpConfig {
                epsilon: f64::INFINITY,
                ..DpConfig::default()
            },
            noise_seed: 1,
            dp_keep: 200,
        }
    }
}

impl Params {
    /// Applies `name=value` overrides such as `als.factors=128` or `edlae.dropout=0.3`.
    pub fn apply(&mut self, overrides: &[String]) -> anyhow::Result<()> {
        for o in overrides {
            let (name, value) = o
                .split_once('=')
                .with_context(|| format!("--param {o}: expected name=value"))?;
            let v: f64 = value
                .parse()
                .with_context(|| format!("--param {o}: the value is not a number"))?;
            match name {
                "knn.neighbours" => self.knn.neighbours = v as usize,
                "knn.shrink" => self.knn.shrink = v as f32,
                "als.factors" => self.als.factors = v as usize,
                "als.lambda" => self.als.lambda = v as f32,
                "als.alpha" => self.als.alpha = v as f32,
                "als.iterations" => self.als.iterations = v as usize,
                "als.cg_steps" => self.als.cg_steps = v as usize,
                "ease.lambda" => self.ease.lambda = v,
                "edlae.lambda" => self.edlae.lambda = v,
                "edlae.dropout" => self.edlae.dropout = v,
                "blend.als" => self.blend_als = v as f32,
                "dp.max_items_per_user" => self.dp.max_items_per_user = v as usize,
                "dp.max_items" => self.dp.max_items = v as usize,
                "dp.factors" => self.dp.factors = v as usize,
                "dp.popularity_share" => self.dp.popularity_share = Some(v),
                "dp.edge" => self.dp.edge = v,
                "dp.reg" => self.dp.reg = v,
                "dp.popularity_weight" => self.dp.popularity_weight = v as f32,
                "dp.noise_seed" => self.noise_seed = v as u64,
                "dp.leverage" => self.dp.leverage = v != 0.0,
                "dp.keep" => self.dp_keep = v as usize,
                "dp.reference_users" => self.dp.reference_users = v,
                _ => anyhow::bail!("--param {o}: unknown parameter `{name}`"),
            }
        }
        Ok(())
    }
}

/// Fits a model by name.
pub fn fit(model: &str, train: &Interactions, params: &Params) -> anyhow::Result<Box<dyn Scorer>> {
    Ok(match model {
        "popularity" => Box::new(Popularity::fit(train)),
        "knn" => Box::new(ItemKnn::fit(train, params.knn)?),
        "als" => Box::new(Als::fit(train, params.als)?),
        "ease" => Box::new(Ease::fit(train, params.ease)?),
        "edlae" => Box::new(Ease::fit(train, params.edlae)?),
        "blend" => Box::new(Blend::new(vec![
            (Box::new(Als::fit(train, params.als)?), params.blend_als),
            (
                Box::new(Ease::fit(train, params.edlae)?),
                1.0 - params.blend_als,
            ),
        ])),
        "dp" => Box::new(DpItemModel::fit(
            train,
            params.dp,
            &mut StdRng::seed_from_u64(params.noise_seed),
        )?),
        // The DP model as the server serves it: sparsified to 200 weights per item.
        "dp-served" => Box::new(
            DpItemModel::fit(
                train,
                params.dp,
                &mut StdRng::seed_from_u64(params.noise_seed),
            )?
            .to_sparse(params.dp_keep),
        ),
        "dp-popularity" => Box::new(DpPopularity::fit(
            train,
            params.dp,
            &mut StdRng::seed_from_u64(params.noise_seed),
        )?),
        other => anyhow::bail!(
            "unknown model `{other}`; use one of {}, {} or all",
            MODELS.join(", "),
            DP_MODELS.join(", ")
        ),
    })
}

/// A model's figures on a split, with its fit time.
pub fn run(model: &str, split: &Split, params: &Params) -> anyhow::Result<(EvalReport, f64)> {
    let start = Instant::now();
    let scorer = fit(model, &split.train, params)?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let report = evaluate_with_categories(
        scorer.as_ref(),
        &split.train,
        &split.test,
        split.categories.as_deref(),
    );
    Ok((report, fit_seconds))
}

/// The `seed-*` directories of a splits directory, sorted.
pub fn seed_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    seeds.sort();
    anyhow::ensure!(!seeds.is_empty(), "{} has no seed-* splits", dir.display());
    Ok(seeds)
}

/// The printed figures of a report: JSON key, table header, value (`None`: not measured).
fn columns(r: &EvalReport, fit: f64) -> [(&'static str, &'static str, Option<String>); 10] {
    let f4 = |v: f64| Some(format!("{v:.4}"));
    [
        ("ndcg@10", "NDCG@10", f4(r.ndcg_10)),
        ("recall@20", "Recall@20", f4(r.recall_20)),
        ("precision@10", "Precision@10", f4(r.precision_10)),
        ("hr@10", "HR@10", f4(r.hr_10)),
        ("coverage@10", "Coverage@10", f4(r.coverage_10)),
        ("gini@10", "Gini@10", f4(r.gini_10)),
        (
            "popularity@10",
            "popularity@10",
            Some(format!("{:.1}", r.popularity_10)),
        ),
        ("ild@10", "ILD@10", r.ild_10.and_then(f4)),
        ("fit_seconds", "fit s", Some(format!("{fit:.3}"))),
        ("users", "users", Some(r.users.to_string())),
    ]
}

/// Prints the table (or JSON lines) of mean figures per model.
pub fn print_table(rows: &[(String, EvalReport, f64)], json: bool) {
    if json {
        for (model, r, fit) in rows {
            let fields: Vec<String> = columns(r, *fit)
                .into_iter()
                .map(|(key, _, v)| format!("\"{key}\":{}", v.unwrap_or_else(|| "null".into())))
                .collect();
            println!("{{\"model\":\"{model}\",{}}}", fields.join(","));
        }
        return;
    }
    let Some((_, first, fit)) = rows.first() else {
        return;
    };
    let headers: Vec<&str> = columns(first, *fit).iter().map(|c| c.1).collect();
    println!("| model | {} |", headers.join(" | "));
    println!("|---|{}", "---|".repeat(headers.len()));
    for (model, r, fit) in rows {
        let cells: Vec<String> = columns(r, *fit)
            .into_iter()
            .map(|(_, _, v)| v.unwrap_or_else(|| "—".into()))
            .collect();
        println!("| {model} | {} |", cells.join(" | "));
    }
}

/// Averages reports.
pub fn mean(reports: &[(EvalReport, f64)]) -> (EvalReport, f64) {
    let n = reports.len().max(1) as f64;
    let avg = |f: fn(&EvalReport) -> f64| reports.iter().map(|(r, _)| f(r)).sum::<f64>() / n;
    (
        EvalReport {
            users: reports.iter().map(|(r, _)| r.users).sum::<usize>() / reports.len().max(1),
            ndcg_10: avg(|r| r.ndcg_10),
            recall_20: avg(|r| r.recall_20),
            precision_10: avg(|r| r.precision_10),
            hr_10: avg(|r| r.hr_10),
            coverage_10: avg(|r| r.coverage_10),
            gini_10: avg(|r| r.gini_10),
            lorenz_10: std::array::from_fn(|i| {
                reports.iter().map(|(r, _)| r.lorenz_10[i]).sum::<f64>() / n
            }),
            popularity_10: avg(|r| r.popularity_10),
            ild_10: reports
                .iter()
                .map(|(r, _)| r.ild_10)
                .collect::<Option<Vec<f64>>>()
                .map(|v| v.iter().sum::<f64>() / n),
        },
        reports.iter().map(|(_, t)| t).sum::<f64>() / n,
    )
}
