//! The `candor` binary: parse the flags and run the command's `run`; each command lives in
//! `commands/` with its own flags.

mod benchmarks;
mod commands;
mod protocol;
mod settings;
mod shop;

use clap::{Parser, Subcommand};
use commands::*;

/// Candor: a personalization engine that keeps its privacy promises in code.
#[derive(Parser)]
#[command(name = "candor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(serve::Args),
    /// Generate a synthetic shop, load it through the engine, and serve it.
    Demo(demo::Args),
    /// Manage API keys.
    Keys(keys::Args),
    /// Check policy files.
    Policy(policy::Args),
    /// Differential-privacy budget planning.
    Privacy(privacy::Args),
    /// Verify consent receipts offline.
    Receipts(receipts::Args),
    /// Verify the audit log.
    Audit(audit::Args),
    /// Train the item model on events consented for personalization and print its card.
    Train(train::Args),
    /// Delete events past their retention now.
    Sweep(sweep::Args),
    /// Offline evaluation on user<TAB>item files (DESIGN §7 protocol).
    Eval(eval::Args),
    /// Benchmarks.
    Bench(bench::Args),
}

#[tokio::main]
async fn main() {
    let result = match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Keys(args) => keys::run(args).await,
        Command::Policy(args) => policy::run(args),
        Command::Privacy(args) => privacy::run(args),
        Command::Receipts(args) => receipts::run(args),
        Command::Audit(args) => audit::run(args).await,
        Command::Train(args) => train::run(args).await,
        Command::Sweep(args) => sweep::run(args).await,
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args).await,
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
