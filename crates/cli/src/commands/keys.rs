//! `candor keys`: mint, list and revoke API keys, and rotate the master key, from the
//! command line.

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
        /// Days until the key expires (1 to 3650); without it, it lives until revoked.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List every key: id, role, label, created, expires, revoked (never a secret).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Rotate the master key: re-wrap every subject data key under a new one (no data is
    /// rewritten); safe to run again after an interruption. Stop the servers first.
    RotateMaster {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key by its id; every server refuses it within a second.
    Revoke {
        #[command(flatten)]
        common: Common,
        /// The key's public id (from `candor keys list`).
        id: String,
    },
}

/// Runs the subcommand; `create` prints the key and nothing else.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Create {
            common,
            role,
            label,
            expires_in_days,
        } => {
            let settings = load_settings(&common, None)?;
            let role =
                Role::parse(&role).context("--role must be one of admin, service, analyst, dpo")?;
            let engine = open_engine(&settings).await?;
            let expires_at = expires_in_days.map(|days| engine.now().plus_days(days));
            let key = engine
                .create_api_key(&Actor::cli(), role, &label, expires_at)
                .await?;
            println!("{}", key.as_str());
        }
        KeysCommand::List { common } => {
            let engine = open_engine(&load_settings(&common, None)?).await?;
            println!(
                "{:<24}  {:<8}  {:<7}  {:<25}  {:<25}  label",
                "id", "role", "state", "created", "expires"
            );
            for k in engine.list_api_keys().await? {
                let state = match (&k.revoked_at, k.live) {
                    (Some(_), _) => "revoked",
                    (None, true) => "live",
                    (None, false) => "expired",
                };
                println!(
                    "{:<24}  {:<8}  {:<7}  {:<25}  {:<25}  {}",
                    k.id,
                    k.role,
                    state,
                    k.created_at,
                    k.expires_at.as_deref().unwrap_or("never"),
                    k.label
                );
            }
        }
        KeysCommand::RotateMaster { common } => {
            let settings = load_settings(&common, None)?;
            let config = settings.engine_config()?;
            let data_dir = config.data_dir.clone();
            let rewrapped = candor_engine::keys::rotate_master(&data_dir, |ring| {
                candor_engine::Engine::open_with_keys(config, ring)
            })
            .await?;
            println!("rotated the master key: {rewrapped} data keys re-wrapped, no data rewritten");
        }
        KeysCommand::Revoke { common, id } => {
            let engine = open_engine(&load_settings(&common, None)?).await?;
            engine.revoke_api_key(&Actor::cli(), &id).await?;
            println!("revoked key {id}");
        }
    }
    Ok(())
}
