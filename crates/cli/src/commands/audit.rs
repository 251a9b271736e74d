//! `candor audit verify`: verify the hash chain and the signed head.

use clap::{Args as ClapArgs, Subcommand};

use super::{Common, load_settings, open_engine};

/// Flags of `candor audit`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and the signed head; exit 1 naming the first bad position.
    Verify {
        #[command(flatten)]
        common: Common,
    },
}

/// Verifies the chain, or exits 1 naming the first bad position.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let AuditCommand::Verify { common } = args.command;
    let settings = load_settings(&common, None)?;
    let engine = open_engine(&settings).await?;
    let report = engine.verify_audit().await?;
    anyhow::ensure!(
        report.ok,
        "audit log broken at position {}: {}",
        report.first_bad_position.unwrap_or(0),
        report.problem.unwrap_or_default()
    );
    println!(
        "audit log verified: {} entries, signed head matches",
        report.entries
    );
    Ok(())
}
