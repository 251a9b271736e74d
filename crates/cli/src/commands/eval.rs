//! `candor eval`: the offline protocol of DESIGN §7 on one split or every `seed-*` split of a
//! directory, for one model or all of them, at one or several ε for the DP models.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::protocol::{self, Split};

/// Flags of `candor eval`.
#[derive(ClapArgs)]
pub struct Args {
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
}

/// The splits the flags name, with categories attached and validation carved if asked.
fn splits(args: &Args) -> anyhow::Result<Vec<Split>> {
    let (mut splits, items) = match (&args.splits, &args.train, &args.test, &args.items) {
        (Some(dir), None, _, _) => {
            let splits = protocol::seed_dirs(dir)?
                .iter()
                .map(|seed| {
                    protocol::load_split(
                        &seed.join("train.tsv"),
                        &seed.join("test.tsv"),
                        &dir.join("items.tsv"),
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            (splits, dir.join("items.tsv"))
        }
        (None, Some(train), Some(test), Some(items)) => (
            vec![protocol::load_split(train, test, items)?],
            items.clone(),
        ),
        _ => anyhow::bail!("give --splits DIR, or --train, --test and --items"),
    };
    if let Some(path) = &args.categories {
        let codes = protocol::load_categories(path, &items)?;
        for s in &mut splits {
            s.categories = Some(codes.clone());
        }
    }
    if !args.validate {
        return Ok(splits);
    }
    Ok(splits
        .iter()
        .enumerate()
        .map(|(k, s)| protocol::validation_split(s, 1000 + k as u64))
        .collect())
}

/// Evaluates each model (each DP model at each ε) on every split and prints the means.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut params = protocol::Params::default();
    params.apply(&args.params)?;
    anyhow::ensure!(
        args.delta > 0.0 && args.delta < 1.0,
        "--delta {}: delta must be in (0, 1)",
        args.delta
    );
    params.dp.delta = args.delta;
    let epsilons = protocol::parse_epsilons(&args.epsilon)?;
    let models: Vec<&str> = match (args.model.as_str(), epsilons.is_empty()) {
        ("all", true) => protocol::MODELS.to_vec(),
        ("all", false) => protocol::DP_MODELS.to_vec(),
        (m, _) => vec![m],
    };
    let splits = splits(&args)?;
    let mut rows = Vec::new();
    for model in models {
        let dp = protocol::DP_MODELS.contains(&model);
        let runs: Vec<Option<f64>> = if dp && !epsilons.is_empty() {
            epsilons.iter().map(|&e| Some(e)).collect()
        } else {
            vec![None]
        };
        for epsilon in runs {
            let mut p = params;
            let name = match epsilon {
                Some(e) => {
                    p.dp.epsilon = e;
                    format!("{model} ε={e}")
                }
                None => model.to_string(),
            };
            let results = splits
                .iter()
                .map(|s| protocol::run(model, s, &p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (report, fit) = protocol::mean(&results);
            rows.push((name, report, fit));
        }
    }
    protocol::print_table(&rows, args.json);
    Ok(())
}
