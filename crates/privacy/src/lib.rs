//! Differential privacy for Candor, all pure:
//!
//! - `noise`: exact discrete Laplace and Gaussian noise from OpenDP's vetted samplers;
//!   `fast`: a table sampler for the millions of draws training needs, tested against them;
//! - `accountant`: the privacy accountant in Rényi DP (Mironov 2017): the Gaussian mechanism,
//!   the Poisson-subsampled Gaussian at integer orders (Mironov, Talwar and Zhang 2019),
//!   composition, conversion to (ε, δ) with the improved bound, pure-ε Laplace, and the budget
//!   planner's one parser ([`PlanRequest`]); no established Rust crate does this, so it is
//!   written here, small and tested against published values;
//! - `query` and `answer`: DP aggregate queries, planned (cost, sensitivity, noise fixed up
//!   front) and answered (contribution bounding, exact grid sums, intervals), without I/O.

pub mod accountant;
pub mod answer;
pub mod fast;
pub mod noise;
pub mod query;

pub use accountant::{
    Accountant, AccountantError, EpsilonBound, Plan, PlanRequest, rho_for_epsilon,
};
