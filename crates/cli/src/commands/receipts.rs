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
    /// Check a receipt's signature against a key you trust; exit 1 if any byte was changed
    /// or another key signed it.
    Verify {
        /// The receipt (JSON).
        file: PathBuf,
        /// The signer's public key (hex), from GET /v1/keys/receipts of the server you trust.
        #[arg(long, required_unless_present = "trust_embedded_key")]
        public_key: Option<String>,
        /// Check against the key the receipt names itself. That proves the receipt was not
        /// changed since it was signed, not who signed it: anyone can sign a receipt with a
        /// key of their own.
        #[arg(long, conflicts_with = "public_key")]
        trust_embedded_key: bool,
    },
}

/// The 32 bytes of a hex public key.
pub(crate) fn public_key(hex: &str) -> anyhow::Result<[u8; 32]> {
    candor_engine::signing::hex_decode(hex)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .context("--public-key must be 64 lower-case hex digits")
}

/// Verifies the receipt, or exits 1 saying why not.
pub fn run(args: Args) -> anyhow::Result<()> {
    let ReceiptsCommand::Verify {
        file,
        public_key: expected,
        trust_embedded_key,
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
    if trust_embedded_key {
        eprintln!(
            "WARNING: checked only against the key named in the receipt itself ({}). This \
             proves the receipt is unchanged since that key signed it, not that the controller \
             signed it: compare the key with GET /v1/keys/receipts, or pass --public-key.",
            receipt.public_key
        );
        println!(
            "receipt {} is intact (signed by the key it names, {})",
            receipt.consent_receipt_id, receipt.public_key
        );
    } else {
        println!(
            "receipt {} is valid (signed by the trusted key {})",
            receipt.consent_receipt_id, receipt.public_key
        );
    }
    Ok(())
}
