//! `candor demo`: generate the synthetic shop, load it through the engine, train, and serve.

use candor_engine::{Actor, Engine, Role};
use clap::Args as ClapArgs;

use super::{Common, init_tracing, load_settings, open_engine};
use crate::shop;

/// Flags of `candor demo`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<String>,
    /// Empty the configured store first, and generate the shop again.
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
}

/// Loads the shop unless it is there, trains unless a model is, and serves with a new admin
/// key.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, args.listen)?;
    init_tracing(&settings);
    if args.fresh {
        Engine::destroy_store(&settings.engine_config()?).await?;
    }
    let engine = open_engine(&settings).await?;
    let shape = shop::DemoShape {
        seed: args.seed,
        items: args.items,
        subjects: args.subjects,
    };
    if engine.stats().await?.items == 0 {
        let summary = shop::load(&engine, &shape).await?;
        println!(
            "demo shop: {} items; {} subjects ({} consenting, {} without consent, {} with expired consent)",
            args.items, args.subjects, summary.consenting, summary.without_consent, summary.expired
        );
        let refused: Vec<String> = summary
            .refused
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let refused = if refused.is_empty() {
            "none".into()
        } else {
            refused.join(", ")
        };
        println!("events: {} stored, refused: {refused}", summary.accepted);
    } else {
        println!(
            "demo shop already loaded in {} (use --fresh to regenerate)",
            settings.store_url()
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
        .create_api_key(&Actor::cli(), Role::Admin, "demo admin", None)
        .await?;
    // A privacy-center link for a consenting person and for one who never consented.
    let mut sessions = Vec::new();
    for (who, subject) in [
        ("a consenting person", shop::subject_id(1)),
        ("a person without consent", shop::subject_id(8)),
    ] {
        let subject = candor_domain::SubjectId::parse(&subject)?;
        let session = engine.open_session(&Actor::cli(), &subject, None).await?;
        sessions.push((who, session.token.to_string()));
    }
    let demo = super::serve::Demo {
        admin_key: key.to_string(),
        sessions,
        session_minutes: settings.sessions.ttl_secs / 60,
    };
    super::serve::serve(&settings, engine, Some(demo)).await
}
