//! `candor policy check`: validate a policy file; errors name the line and the field.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};

/// Flags of `candor policy`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; errors name the line and the field.
    Check {
        /// The policy TOML file.
        file: PathBuf,
    },
}

/// Checks the file and summarizes it.
pub fn run(args: Args) -> anyhow::Result<()> {
    let PolicyCommand::Check { file } = args.command;
    let policy = crate::settings::load_policy(&file)?;
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
