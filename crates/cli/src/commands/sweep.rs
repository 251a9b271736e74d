//! `candor sweep`: delete events past their retention now.

use candor_engine::Actor;
use clap::Args as ClapArgs;

use super::{Common, load_settings, open_engine};

/// Flags of `candor sweep`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

/// Sweeps (audited) and says how many events were deleted.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, None)?;
    let engine = open_engine(&settings).await?;
    let deleted = engine.sweep_retention(&Actor::cli()).await?;
    println!("deleted {deleted} events past their retention");
    Ok(())
}
