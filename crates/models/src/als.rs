//! Implicit-feedback ALS (Hu, Koren and Volinsky 2008): every unobserved pair is a weak zero
//! and every observed one a positive with confidence 1 + α. Each half-step solves, per user
//! (or item), (YᵀY + Yᵀ(Cᵤ − I)Y + λI) x = YᵀCᵤpᵤ with a few conjugate-gradient steps warm
//! started from the previous solution (Takács, Pilászy and Tikk 2011), in parallel with
//! rayon. YᵀY comes from faer. Fold-in solves the same system for a new history.

use faer::MatRef;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::{Interactions, ModelError, Scorer};

/// ALS hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlsConfig {
    /// Latent factors.
    pub factors: usize,
    /// L2 regularization λ.
    pub lambda: f32,
    /// Confidence weight α of an observed interaction.
    pub alpha: f32,
    /// Alternating iterations.
    pub iterations: usize,
    /// Conjugate-gradient steps per solve.
    pub cg_steps: usize,
    /// RNG seed for the initial factors.
    pub seed: u64,
}

impl Default for AlsConfig {
    fn default() -> Self {
        Self {
            factors: 64,
            lambda: 10.0,
            alpha: 1.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
        }
    }
}

/// Fitted user and item factors, row-major.
#[derive(Debug, Clone)]
pub struct Als {
    config: AlsConfig,
    users: Vec<f32>,
    items: Vec<f32>,
    gram: Vec<f32>,
}

/// Dot product with eight independent accumulators, so the compiler can vectorize it (a
/// single running sum of floats may not be reordered).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, a_rest) = a.split_at(a.len() / 8 * 8);
    let (b8, b_rest) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// YᵀY for row-major factors.
fn gram(factors: &[f32], f: usize) -> Vec<f32> {
    let y = MatRef::from_row_major_slice(factors, factors.len() / f, f);
    let g = y.transpose() * y;
    let mut out = vec![0f32; f * f];
    for r in 0..f {
        for c in 0..f {
            out[r * f + c] = g[(r, c)];
        }
    }
    out
}

struct Solver<'a> {
    other: &'a [f32],
    gram: &'a [f32],
    f: usize,
    lambda: f32,
    alpha: f32,
    steps: usize,
}

impl Solver<'_> {
    /// A·v for the system of one row with the given observed columns.
    fn apply(&self, observed: &[u32], v: &[f32], out: &mut [f32]) {
        let f = self.f;
        for (r, o) in out.iter_mut().enumerate() {
            *o = dot(&self.gram[r * f..(r + 1) * f], v) + self.lambda * v[r];
        }
        for &j in observed {
            let y = &self.other[j as usize * f..(j as usize + 1) * f];
            axpy(self.alpha * dot(y, v), y, out);
        }
    }

    /// Improves `x` towards the solution with conjugate-gradient steps.
    fn solve(&self, observed: &[u32], x: &mut [f32]) {
        let f = self.f;
        let mut ax = vec![0f32; f];
        self.apply(observed, x, &mut ax);
        // b = Σ (1 + α) y_j for the observed j.
        let mut r = vec![0f32; f];
        for &j in observed {
            axpy(
                1.0 + self.alpha,
                &self.other[j as usize * f..(j as usize + 1) * f],
                &mut r,
            );
        }
        for (r, a) in r.iter_mut().zip(&ax) {
            *r -= a;
        }
        let mut p = r.clone();
        let mut rs_old = dot(&r, &r);
        let mut ap = vec![0f32; f];
        for _ in 0..self.steps {
            if rs_old < 1e-12 {
                break;
            }
            self.apply(observed, &p, &mut ap);
            let step = rs_old / dot(&p, &ap);
            axpy(step, &p, x);
            axpy(-step, &ap, &mut r);
            let rs_new = dot(&r, &r);
            let beta = rs_new / rs_old;
            for (p, r) in p.iter_mut().zip(&r) {
                *p = r + beta * *p;
            }
            rs_old = rs_new;
        }
    }
}

impl Als {
    /// Fits user and item factors.
    pub fn fit(data: &Interactions, config: AlsConfig) -> Result<Self, ModelError> {
        if data.n_items() == 0 || data.n_users() == 0 {
            return Err(ModelError::Empty);
        }
        if config.factors == 0
            || !(config.lambda.is_finite() && config.lambda > 0.0)
            || !(config.alpha.is_finite() && config.alpha >= 0.0)
            || config.cg_steps == 0
        {
            return Err(ModelError::Hyperparameter(
                "factors and cg_steps must be > 0, lambda > 0, alpha >= 0".into(),
            ));
        }
        let f = config.factors;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let scale = 0.01 / (f as f32).sqrt();
        let mut init = |n: usize| {
            (0..n * f)
                .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
                .collect::<Vec<f32>>()
        };
        let mut users = init(data.n_users());
        let mut items = init(data.n_items());
        for _ in 0..config.iterations {
            Self::half_step(&mut users, &items, |u| data.user(u), config);
            Self::half_step(&mut items, &users, |i| data.item(i), config);
        }
        let gram = gram(&items, f);
        Ok(Self {
            config,
            users,
            items,
            gram,
        })
    }

    fn half_step<'a>(
        solve_for: &mut [f32],
        fixed: &[f32],
        observed: impl Fn(usize) -> &'a [u32] + Sync,
        config: AlsConfig,
    ) {
        let f = config.factors;
        let g = gram(fixed, f);
        let solver = Solver {
            other: fixed,
            gram: &g,
            f,
            lambda: config.lambda,
            alpha: config.alpha,
            steps: config.cg_steps,
        };
        solve_for
            .par_chunks_mut(f)
            .enumerate()
            .for_each(|(row, x)| solver.solve(observed(row), x));
    }

    /// A user vector for a history, solved against the item factors (fold-in): no retraining.
    pub fn fold_in(&self, history: &[u32]) -> Vec<f32> {
        let f = self.config.factors;
        let solver = Solver {
            other: &self.items,
            gram: &self.gram,
            f,
            lambda: self.config.lambda,
            alpha: self.config.alpha,
            steps: f.min(4 * self.config.cg_steps.max(3)),
        };
        let mut x = vec![0f32; f];
        solver.solve(history, &mut x);
        x
    }

    /// Item factors, row-major.
    pub fn item_factors(&self) -> &[f32] {
        &self.items
    }

    /// User factors from training, row-major.
    pub fn user_factors(&self) -> &[f32] {
        &self.users
    }

    /// The hyperparameters.
    pub fn config(&self) -> AlsConfig {
        self.config
    }
}

impl Scorer for Als {
    fn name(&self) -> &'static str {
        "als"
    }
    fn score(&self, history: &[u32], scores: &mut [f32]) {
        let f = self.config.factors;
        let x = self.fold_in(history);
        for (s, y) in scores.iter_mut().zip(self.items.chunks(f)) {
            *s = dot(&x, y);
        }
    }
}
