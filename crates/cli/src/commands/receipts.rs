//! `candor receipts verify`: check a consent receipt's signature offline.

use std::path::PathBuf;

use anyhow::Context;
use candor_engine::{ConsentReceipt, SignedDocument};
use clap::{Args as ClapArgs, Subcommand};

/// Flags of `candor receipts`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: ReceiptsCommand,
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Check a receipt's signature; exit 1 if any byte was changed.
    Verify {
        /// The receipt (JSON).
        file: PathBuf,
        /// The signer's expected public key (hex), from GET /v1/keys/receipts.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// The 32 bytes of a hex public key.
fn public_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    <[u8; 32]>::try_from(bytes.as_slice())
        .ok()
        .filter(|_| hex.len() == 64)
        .context("--public-key must be 64 hex digits")
}

/// Verifies the receipt, or exits 1 saying why not.
pub fn run(args: Args) -> anyhow::Result<()> {
    let ReceiptsCommand::Verify {
        file,
        public_key: expected,
    } = args.command;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let receipt: ConsentReceipt = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a consent receipt", file.display()))?;
    let expected = expected.as_deref().map(public_key).transpose()?;
    anyhow::ensure!(
        receipt.verify(expected.as_ref()),
        "the receipt's signature does not verify: it was changed, or signed by another key"
    );
    println!(
        "receipt {} is valid (signed by {})",
        receipt.consent_receipt_id, receipt.public_key
    );
    Ok(())
}
