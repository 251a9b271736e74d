//! EASE and EDLAE: closed-form linear item-item autoencoders (Steck 2019; Steck 2020,
//! "Autoencoders that don't overfit towards the identity"). With G = XᵀX and
//! Λ = λI + p/(1−p)·diag(G), P = (G + Λ)⁻¹ and B = I − P·diag(1/diag(P)), so B has a zero
//! diagonal. `dropout = 0` is EASE; `dropout > 0` is EDLAE, whose penalty on each item grows
//! with the item's own popularity, as emphasized dropout would. Cost: O(n³) time and O(n²)
//! memory in the number of items, so it is for catalogues of at most [`MAX_ITEMS`] items.

use faer::Mat;
use faer::linalg::solvers::DenseSolveCore;

use crate::{Interactions, ModelError, Scorer};

/// The largest catalogue the closed form is attempted on (the dense n × n inverse).
pub const MAX_ITEMS: usize = 12_000;

/// EASE/EDLAE hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EaseConfig {
    /// L2 regularization λ.
    pub lambda: f64,
    /// Dropout probability p in [0, 1).
    pub dropout: f64,
}

impl Default for EaseConfig {
    fn default() -> Self {
        Self {
            lambda: 500.0,
            dropout: 0.0,
        }
    }
}

/// A fitted item-item weight matrix, stored row-major in f32.
#[derive(Debug, Clone)]
pub struct Ease {
    n: usize,
    weights: Vec<f32>,
}

impl Ease {
    /// Fits B in closed form.
    pub fn fit(data: &Interactions, config: EaseConfig) -> Result<Self, ModelError> {
        let n = data.n_items();
        if n == 0 {
            return Err(ModelError::Empty);
        }
        if n > MAX_ITEMS {
            return Err(ModelError::Hyperparameter(format!(
                "EASE needs a dense {n} x {n} inverse; use ALS above {MAX_ITEMS} items"
            )));
        }
        let valid = config.lambda.is_finite()
            && config.lambda > 0.0
            && (0.0..1.0).contains(&config.dropout);
        if !valid {
            return Err(ModelError::Hyperparameter(
                "lambda must be > 0 and dropout in [0, 1)".into(),
            ));
        }
        let mut gram = Mat::<f64>::zeros(n, n);
        for u in 0..data.n_users() {
            let items = data.user(u);
            for &i in items {
                let col = gram.col_as_slice_mut(i as usize);
                for &j in items {
                    col[j as usize] += 1.0;
                }
            }
        }
        let scale = config.dropout / (1.0 - config.dropout);
        for i in 0..n {
            let g = gram[(i, i)];
            gram[(i, i)] = g + config.lambda + scale * g;
        }
        let p = gram
            .llt(faer::Side::Lower)
            .map_err(|_| ModelError::Singular)?
            .inverse();
        let mut weights = vec![0f32; n * n];
        for j in 0..n {
            let pjj = p[(j, j)];
            let col = p.col_as_slice(j);
            for i in 0..n {
                if i != j {
                    weights[i * n + j] = (-col[i] / pjj) as f32;
                }
            }
        }
        Ok(Self { n, weights })
    }

    /// The weight of item `from` in the score of item `to`.
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        self.weights[from as usize * self.n + to as usize]
    }
}

impl Scorer for Ease {
    fn name(&self) -> &'static str {
        "ease"
    }
    fn score(&self, history: &[u32], scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        for &i in history {
            let row = &self.weights[i as usize * self.n..(i as usize + 1) * self.n];
            for (s, w) in scores.iter_mut().zip(row) {
                *s += w;
            }
        }
    }
}
