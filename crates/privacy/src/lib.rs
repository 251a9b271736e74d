//! Differential privacy for Candor: exact discrete noise from OpenDP's vetted samplers, a
//! fast table sampler tested against them for training, and the privacy accountant, in Rényi DP (Mironov
//! 2017), covering the Gaussian mechanism, the Poisson-subsampled Gaussian at integer orders
//! (Mironov, Talwar and Zhang 2019), composition, conversion to (ε, δ) with the improved
//! bound ε = r + log1p(−1/α) − log(δ·α)/(α−1) minimized over orders, and pure-ε Laplace.
//! No established Rust crate does this, so it is written here, small and tested against
//! published values.

pub mod accountant;
pub mod fast;
pub mod noise;

pub use accountant::{
    Accountant, AccountantError, EpsilonBound, Plan, PlanRequest, rho_for_epsilon,
};
