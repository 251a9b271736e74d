//! `candor keys`: mint API keys from the command line.

use anyhow::Context;
use candor_engine::{Actor, Role};
use clap::{Args as ClapArgs, Subcommand};

use super::{Common, load_settings, open_engine};

/// Flags of `candor keys`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: KeysCommand,
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

/// Creates the key (audited) and prints it, and nothing else.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let KeysCommand::Create {
        common,
        role,
        label,
    } = args.command;
    let settings = load_settings(&common, None)?;
    let role = Role::parse(&role).context("--role must be one of admin, service, analyst, dpo")?;
    let engine = open_engine(&settings).await?;
    let key = engine.create_api_key(&Actor::cli(), role, &label).await?;
    println!("{}", key.as_str());
    Ok(())
}
