//! `candor train`: train the item model on events consented for personalization and print
//! its card.

use candor_engine::Actor;
use clap::Args as ClapArgs;

use super::{Common, load_settings, open_engine};

/// Flags of `candor train`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

/// Trains, stores the new version, and prints its card as JSON.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, None)?;
    let engine = open_engine(&settings).await?;
    let card = engine.train(&Actor::cli()).await?;
    println!("{}", serde_json::to_string_pretty(&card)?);
    Ok(())
}
