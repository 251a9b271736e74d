//! `candor audit`: verify the log (`verify`), print its signed tree head (`tree-head`), and
//! check an inclusion or consistency proof offline, with the public key alone (`check-proof`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use candor_engine::{ConsentReceipt, ConsistencyProof, InclusionProof, TreeHead};
use clap::{Args as ClapArgs, Subcommand};
use serde::de::DeserializeOwned;

use super::receipts::public_key;
use super::{Common, load_settings, open_engine};

/// Flags of `candor audit`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the whole log (hash chain, signed head, consent history); exit 1 naming the
    /// first bad position.
    Verify {
        #[command(flatten)]
        common: Common,
    },
    /// Verify the log and print its signed tree head (JSON): keep it to check later, with a
    /// consistency proof, that the log only grew.
    TreeHead {
        #[command(flatten)]
        common: Common,
    },
    /// Check a proof from GET /v1/audit/... offline against the server's public key; exit 1
    /// if it does not hold.
    CheckProof {
        /// The proof (JSON): an inclusion proof (`candor.inclusion/1`) or a consistency proof
        /// (`candor.consistency/1`).
        file: PathBuf,
        /// The server's public key (hex), from GET /v1/keys/receipts of the server you trust.
        #[arg(long)]
        public_key: String,
        /// With an inclusion proof: the consent receipt (JSON) the logged entry must record.
        #[arg(long)]
        receipt: Option<PathBuf>,
        /// With a consistency proof: the earlier tree head (JSON) you kept.
        #[arg(long)]
        earlier: Option<PathBuf>,
    },
}

fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// Runs the subcommand; a failed check exits 1 saying why.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { common } => {
            let engine = open_engine(&load_settings(&common, None)?).await?;
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
        }
        AuditCommand::TreeHead { common } => {
            let engine = open_engine(&load_settings(&common, None)?).await?;
            let head = engine.tree_head().await?;
            println!("{}", serde_json::to_string_pretty(&head)?);
        }
        AuditCommand::CheckProof {
            file,
            public_key: key,
            receipt,
            earlier,
        } => {
            let key = public_key(&key)?;
            let value: serde_json::Value = read_json(&file, "JSON")?;
            match value.get("version").and_then(|v| v.as_str()) {
                Some(candor_engine::log::INCLUSION_VERSION) => {
                    anyhow::ensure!(earlier.is_none(), "--earlier goes with a consistency proof");
                    let proof: InclusionProof = serde_json::from_value(value)
                        .context("the inclusion proof is malformed")?;
                    match receipt {
                        Some(path) => {
                            let receipt: ConsentReceipt = read_json(&path, "a consent receipt")?;
                            proof
                                .check_receipt(&receipt, &key)
                                .map_err(anyhow::Error::msg)?;
                            println!(
                                "receipt {} is recorded in the audit log at entry {} (tree of {} entries)",
                                receipt.consent_receipt_id,
                                proof.entry.seq,
                                proof.tree_head.tree_size
                            );
                        }
                        None => {
                            proof.check(&key).map_err(anyhow::Error::msg)?;
                            println!(
                                "entry {} is in the audit log (tree of {} entries)",
                                proof.entry.seq, proof.tree_head.tree_size
                            );
                        }
                    }
                }
                Some(candor_engine::log::CONSISTENCY_VERSION) => {
                    anyhow::ensure!(receipt.is_none(), "--receipt goes with an inclusion proof");
                    let earlier = earlier
                        .context("a consistency proof is checked against --earlier HEAD.json")?;
                    let earlier: TreeHead = read_json(&earlier, "a tree head")?;
                    let proof: ConsistencyProof = serde_json::from_value(value)
                        .context("the consistency proof is malformed")?;
                    proof.check(&earlier, &key).map_err(anyhow::Error::msg)?;
                    println!(
                        "the audit log of {} entries extends the one of {} entries: nothing was rewritten",
                        proof.tree_head.tree_size, earlier.tree_size
                    );
                }
                _ => anyhow::bail!(
                    "{} is neither an inclusion nor a consistency proof",
                    file.display()
                ),
            }
        }
    }
    Ok(())
}
