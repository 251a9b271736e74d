//! `candor privacy epsilon`: the differential-privacy budget planner (the same accountant and
//! parser as `GET /v1/analytics/plan`).

use clap::{Args as ClapArgs, Subcommand};

/// Flags of `candor privacy`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: PrivacyCommand,
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Print ε (and the best Rényi order) for a mechanism composed T times.
    Epsilon {
        /// gaussian or laplace.
        #[arg(long)]
        mechanism: String,
        /// Gaussian noise multiplier.
        #[arg(long)]
        sigma: Option<f64>,
        /// Laplace scale.
        #[arg(long)]
        scale: Option<f64>,
        /// Laplace L1 sensitivity.
        #[arg(long, default_value_t = 1.0)]
        sensitivity: f64,
        /// Number of compositions (steps).
        #[arg(long, default_value_t = 1)]
        compositions: u64,
        /// Poisson sampling rate (Gaussian only).
        #[arg(long)]
        sampling_rate: Option<f64>,
        /// δ.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
}

/// Prints the plan's ε.
pub fn run(args: Args) -> anyhow::Result<()> {
    let PrivacyCommand::Epsilon {
        mechanism,
        sigma,
        scale,
        sensitivity,
        compositions,
        sampling_rate,
        delta,
    } = args.command;
    let plan = candor_privacy::PlanRequest {
        mechanism: &mechanism,
        sigma,
        scale,
        sensitivity: Some(sensitivity),
        compositions: Some(compositions),
        sampling_rate,
    }
    .plan()?;
    let bound = plan.epsilon(delta)?;
    if bound.order.is_finite() {
        println!(
            "epsilon = {:.4} at delta = {delta:e} (best Renyi order {})",
            bound.epsilon, bound.order
        );
    } else {
        println!("epsilon = {:.4} (pure DP)", bound.epsilon);
    }
    Ok(())
}
