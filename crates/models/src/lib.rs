//! Recommendation models for Candor, pure and deterministic: popularity, item-kNN, an
//! EASE-class closed-form model (EASE and its dropout-regularized variant EDLAE), implicit
//! ALS, a standardized blend, a user-level differentially private item model, plus top-k selection and the ranking metrics of the evaluation protocol. Nothing here
//! does I/O; training data arrives as an [`Interactions`] matrix of dense indices.

pub mod als;
pub mod blend;
pub mod data;
pub mod dp;
pub mod ease;
pub mod knn;
pub mod metrics;
pub mod popularity;
pub mod sparse;
pub mod topk;

pub use data::{Interactions, holdout};

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The interaction matrix has no items or no users.
    #[error("there is nothing to train on")]
    Empty,
    /// A hyperparameter is out of range.
    #[error("invalid hyperparameter: {0}")]
    Hyperparameter(String),
    /// A linear system could not be solved (the regularization is too small).
    #[error("the model's linear system is singular; raise the regularization")]
    Singular,
}

/// A fitted model that scores every item for a user given the user's history (item indices).
pub trait Scorer: Send + Sync {
    /// A short name, e.g. `ease`.
    fn name(&self) -> &'static str;
    /// Writes one score per item into `scores` (length = number of items). Items in the
    /// history may get any score; callers exclude them.
    fn score(&self, history: &[u32], scores: &mut [f32]);
}
