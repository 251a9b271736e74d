//! The differentially private item model: user-level (ε, δ)-DP in the joint-DP sense. Only
//! the item side is released with noise; a user's vector is computed at serving time from
//! that user's own history and is never part of the release.
//!
//! Training, in the spirit of "Analyze Gauss" (Dwork, Talwar, Thakurta and Zhang 2014) and of
//! putting the noise where the signal is low-dimensional (Chien et al. 2021):
//! 1. **Contribution bounding.** Each user keeps at most `max_items_per_user` items (a random
//!    sample if more) and is normalized to unit length, x_u = h_u/√k_u, so every user moves
//!    each released statistic by at most 1 in L2.
//! 2. **DP popularity.** p = Σ_u x_u plus discrete Gaussian noise (a share of the budget
//!    that shrinks as ε times a DP count of users grows; 1% of ρ pays for the count).
//!    It ranks the contextual tier and chooses which items the model covers: the tail whose
//!    noisy popularity is below the noise level is left to popularity (post-processing).
//! 3. **DP co-occurrence, projected.** G = Σ_u x_u x_uᵀ over the covered items, its strictly
//!    upper triangle (sensitivity 1/√2; the diagonal is left at zero) plus discrete Gaussian
//!    noise, then its top eigenvectors by subspace iteration.
//!    Noise spreads over all M² entries but a rank-r projection keeps only r·M of it;
//!    eigenvalues below the noise bulk edge 2σ√M carry no signal and are dropped, so at small
//!    ε the model falls back towards popularity on its own.
//! 4. **Scoring** (post-processing, per user): s = Σᵢ wᵢ vᵢ (vᵢ·h)/|h| over the popularity
//!    direction and the kept eigenvectors, with weights wᵢ = ηᵢ/(ηᵢ + reg) where
//!    ηᵢ = sqrt(yᵢ² − (2σ√M)²) debiases a noisy eigenvalue yᵢ: a low-rank linear autoencoder.
//!
//! Values go through an integer grid before noise: each user's contributions are rounded
//! toward zero to multiples of 1/S, which can only lower the sensitivity (S in grid units),
//! and the integer sums get integer noise from `candor_privacy::fast::DiscreteGaussianTable`.
//! The Gaussian releases (user count, popularity, co-occurrence) compose to ρ = Σ 1/(2σ²) zCDP,
//! converted to (ε, δ) by the accountant.
//!
//! Steps 1 to 3 are `release.rs`, whose `Released::draw` is the one function the privacy
//! argument has to check; this file builds the model from the release alone (step 4, and the
//! eigendecomposition), and `serving.rs` its sparse serving form: post-processing, which
//! cannot weaken the guarantee.

use candor_privacy::rho_for_epsilon;
use faer::{Mat, Side};
use rand::{CryptoRng, Rng, RngCore};
use rayon::prelude::*;

use crate::{Interactions, ModelError, Scorer};

mod release;
mod serving;

use release::{Released, bound_contributions, noise_error, release_popularity};

/// The smallest ε trained for: below it the noise no longer fits the table sampler, and no
/// model would be more than noise.
pub const MIN_EPSILON: f64 = 0.01;

/// Hyperparameters of DP training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpConfig {
    /// ε of the whole release (at least [`MIN_EPSILON`]); `f64::INFINITY` trains the same
    /// model without noise.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Contribution bound: items kept per user.
    pub max_items_per_user: usize,
    /// Most items the co-occurrence model covers (by DP popularity).
    pub max_items: usize,
    /// Largest rank kept.
    pub factors: usize,
    /// Share of the budget (in ρ) spent on popularity; `None` for the default schedule
    /// clamp((reference_users/(ε·users))², 0.05, 0.99) with a DP count of users: when the
    /// co-occurrence noise drowns every component but popularity, popularity gets most of it.
    pub popularity_share: Option<f64>,
    /// The ε·users at which popularity and co-occurrence share the budget about equally.
    pub reference_users: f64,
    /// Eigenvalues must exceed this multiple of the noise bulk edge 2σ√M to be kept.
    pub edge: f64,
    /// Ridge on the eigenvalues, times the square root of the DP count of users.
    pub reg: f64,
    /// Weight of normalized DP popularity in the score.
    pub popularity_weight: f32,
    /// Scale each target item by 1/(1 − leverage), as EASE's zero-diagonal constraint does
    /// in closed form (Steck 2019), here for the low-rank ridge.
    pub leverage: bool,
}

impl Default for DpConfig {
    fn default() -> Self {
        Self {
            epsilon: 8.0,
            delta: 1e-5,
            max_items_per_user: 100,
            max_items: 5000,
            factors: 64,
            popularity_share: None,
            reference_users: 1500.0,
            edge: 1.0,
            reg: 0.1,
            popularity_weight: 1.0,
            leverage: true,
        }
    }
}

impl DpConfig {
    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: &str| Err(ModelError::Hyperparameter(m.into()));
        if self.epsilon.is_nan() || self.epsilon < MIN_EPSILON {
            return bad("epsilon must be at least 0.01 (infinity for no noise)");
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad("delta must be in (0, 1)");
        }
        if self.max_items_per_user == 0 || self.max_items == 0 || self.factors == 0 {
            return bad("max_items_per_user, max_items and factors must be > 0");
        }
        if !self.popularity_share.is_none_or(|s| s > 0.0 && s < 1.0) {
            return bad("popularity_share must be in (0, 1)");
        }
        if !(self.edge >= 0.0 && self.reg >= 0.0 && self.popularity_weight >= 0.0) {
            return bad("edge, reg and popularity_weight must be >= 0");
        }
        Ok(())
    }
}

/// What the release spent and how noisy it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpGuarantee {
    /// ε at `delta` (infinite without noise).
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// zCDP ρ of the release (infinite without noise).
    pub rho: f64,
    /// Noise σ on the popularity, in units of one user's contribution.
    pub popularity_sigma: f64,
    /// Noise σ on each co-occurrence entry, in the same units.
    pub cooccurrence_sigma: f64,
}

/// The DP item model: covered items, their eigenvectors and weights, and DP popularity.
#[derive(Debug, Clone)]
pub struct DpItemModel {
    n_items: usize,
    /// Global index of each covered item.
    covered: Vec<u32>,
    /// Position in `covered` of each global item, or u32::MAX.
    position: Vec<u32>,
    /// Covered × rank, row-major, each column scaled by √wᵢ.
    factors: Vec<f32>,
    rank: usize,
    popularity: Vec<f32>,
    /// Weight of the popularity component.
    pop_component: f32,
    /// Per covered item, the EASE-style column scale 1/(1 − hⱼⱼ) of the low-rank ridge
    /// (hⱼⱼ its leverage), or all ones.
    item_scale: Vec<f32>,
    guarantee: DpGuarantee,
}

/// The squared overlap of a noisy eigenvector with the true one under the spiked Wigner model,
/// 1 − 1/θ² with y/(σ√M) = θ + 1/θ: how much of its leverage is real.
fn overlap(y: f64, sigma: f64, m: usize) -> f64 {
    if sigma == 0.0 {
        return 1.0;
    }
    let units = y / (sigma * (m as f64).sqrt());
    let theta = (units + (units * units - 4.0).max(0.0).sqrt()) / 2.0;
    (1.0 - 1.0 / (theta * theta).max(1.0)).max(0.0)
}

impl DpItemModel {
    /// Trains with noise drawn from `rng` (a CSPRNG: seed it from the OS in production): the
    /// release ([`Released::draw`]), then post-processing of it alone.
    pub fn fit<R: RngCore + CryptoRng>(
        data: &Interactions,
        config: DpConfig,
        rng: &mut R,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        if data.n_users() == 0 || data.n_items() == 0 {
            return Err(ModelError::Empty);
        }
        let released = Released::draw(data, &config, rng)?;
        Ok(Self::from_release(released, &config, rng))
    }

    /// The model from a release (post-processing: no data is read, no budget spent). The
    /// popularity direction û is the first component, weighted by its Rayleigh quotient ûᵀGû;
    /// the rest of G is deflated against it, and only eigenvalues above the noise bulk edge
    /// 2σ√M are kept, weighted by a ridge on their debiased strength, with EASE-style leverage
    /// scaling.
    fn from_release<R: RngCore>(released: Released, config: &DpConfig, rng: &mut R) -> Self {
        let Released {
            budget,
            guarantee,
            popularity,
            covered,
            position,
            gram,
        } = released;
        // Every per-covered-item table has one entry per covered item from the start, even
        // when no co-occurrence was released (one item covered): rank 0, unit scale.
        let item_scale = vec![1.0; covered.len()];
        let mut model = Self {
            n_items: popularity.len(),
            covered,
            position,
            factors: Vec::new(),
            rank: 0,
            popularity,
            pop_component: config.popularity_weight,
            item_scale,
            guarantee,
        };
        let Some(mut gram) = gram else {
            return model;
        };
        let m = model.covered.len();
        let sigma = budget.sigma_gram;
        let bulk = 2.0 * sigma * (m as f64).sqrt();
        // The ridge grows with the square root of the (DP) number of users: sampling noise in
        // the small components shrinks relative to the signal as data grow.
        let reg = config.reg * budget.noisy_users.sqrt();
        // The signal strength of a component whose noisy eigenvalue is y: the spiked-Wigner
        // estimate sqrt(y² − (2σ√M)²) (the Frobenius-optimal shrinker), then a ridge weight.
        let weight = |y: f64| {
            let signal = (y * y - bulk * bulk).max(0.0).sqrt();
            signal / (signal + reg)
        };
        let mut u_hat: Vec<f64> = model
            .covered
            .iter()
            .map(|&i| model.popularity[i as usize].max(0.0) as f64)
            .collect();
        let norm = u_hat.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut pop_lambda = 0.0;
        if norm > 0.0 {
            u_hat.iter_mut().for_each(|x| *x /= norm);
            // Popularity's weight comes from its Rayleigh quotient like any eigenvalue, but
            // never vanishes: it is what remains when nothing else clears the noise.
            pop_lambda = deflate(&mut gram, &u_hat);
            model.pop_component = config.popularity_weight * weight(pop_lambda).max(1e-3) as f32;
        }
        let threshold = config.edge * bulk;
        let (values, vectors) = top_eigen(&gram, config.factors.min(m), rng);
        // Popularity is the strongest direction of real data. If even it does not clear the
        // noise, nothing else can be trusted to: the model is popularity alone.
        let keep: Vec<usize> = (0..values.len())
            .filter(|&c| values[c] > threshold && values[c] > 0.0 && pop_lambda > threshold)
            .collect();
        model.rank = keep.len();
        model.factors = vec![0f32; m * model.rank];
        let mut leverage = vec![0f64; m];
        for (slot, &c) in keep.iter().enumerate() {
            let w = weight(values[c]);
            let real = w * overlap(values[c], sigma, m);
            for r in 0..m {
                let v = vectors[(r, c)];
                model.factors[r * model.rank + slot] = (v * w.sqrt()) as f32;
                leverage[r] += real * v * v;
            }
        }
        if config.leverage {
            let norm = model.pop_norm();
            for (q, &i) in model.covered.iter().enumerate() {
                let u = model.popularity[i as usize].max(0.0) / norm;
                let own = leverage[q] as f32;
                let leverage = (own + model.pop_component * u * u).min(0.95);
                model.item_scale[q] = 1.0 / (1.0 - leverage);
            }
        }
        model
    }

    /// ‖max(p, 0)‖ of the DP popularity.
    fn pop_norm(&self) -> f32 {
        self.popularity
            .iter()
            .map(|p| p.max(0.0).powi(2))
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE)
    }

    /// The privacy guarantee of the release.
    pub fn guarantee(&self) -> DpGuarantee {
        self.guarantee
    }

    /// The rank kept (0 means popularity only).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of items the co-occurrence model covers.
    pub fn covered(&self) -> usize {
        self.covered.len()
    }

    /// DP popularity of every item, in users (each contributing unit length).
    pub fn popularity(&self) -> &[f32] {
        &self.popularity
    }

    /// The user's vector in factor space, from their own history only (joint DP).
    fn user_vector(&self, history: &[u32]) -> Vec<f32> {
        let r = self.rank;
        let mut x = vec![0f32; r];
        for &h in history {
            let p = self.position.get(h as usize).copied().unwrap_or(u32::MAX);
            if p != u32::MAX {
                let row = &self.factors[p as usize * r..(p as usize + 1) * r];
                x.iter_mut().zip(row).for_each(|(x, v)| *x += v);
            }
        }
        let n = history.len().max(1) as f32;
        x.iter_mut().for_each(|v| *v /= n);
        x
    }
}

/// Projects the unit vector `u` out of a symmetric matrix, G ← (I − uuᵀ) G (I − uuᵀ), and
/// returns the Rayleigh quotient uᵀGu it had.
fn deflate(g: &mut Mat<f64>, u: &[f64]) -> f64 {
    let m = u.len();
    let gu: Vec<f64> = (0..m)
        .into_par_iter()
        .map(|r| (0..m).map(|c| g[(r, c)] * u[c]).sum())
        .collect();
    let rayleigh: f64 = gu.iter().zip(u).map(|(a, b)| a * b).sum();
    for c in 0..m {
        for r in 0..m {
            g[(r, c)] += -u[r] * gu[c] - gu[r] * u[c] + u[r] * rayleigh * u[c];
        }
    }
    rayleigh
}

/// The `k` algebraically largest eigenpairs of a symmetric matrix by subspace iteration with
/// a Rayleigh–Ritz step (Halko, Martinsson and Tropp 2011), descending.
fn top_eigen<R: RngCore>(a: &Mat<f64>, k: usize, rng: &mut R) -> (Vec<f64>, Mat<f64>) {
    let m = a.nrows();
    let p = (k + 16).min(m);
    let mut q = Mat::<f64>::from_fn(m, p, |_, _| rng.gen_range(-1.0..1.0));
    for _ in 0..6 {
        let z = a * &q;
        q = z.qr().compute_thin_Q();
    }
    let t = q.transpose() * (a * &q);
    let eig = t
        .self_adjoint_eigen(Side::Lower)
        .expect("a small symmetric eigenproblem converges");
    let s = eig.S().column_vector();
    let mut idx: Vec<usize> = (0..p).collect();
    idx.sort_by(|&x, &y| s[y].total_cmp(&s[x]));
    idx.truncate(k);
    let u = &q * eig.U();
    let values = idx.iter().map(|&c| s[c]).collect();
    let vectors = Mat::<f64>::from_fn(m, idx.len(), |r, c| u[(r, idx[c])]);
    (values, vectors)
}

impl Scorer for DpItemModel {
    fn name(&self) -> &'static str {
        "dp"
    }
    fn score(&self, history: &[u32], scores: &mut [f32]) {
        // DP popularity as one more unit component u = p/‖p‖, weighted like an eigenvector:
        // β·u_j·(u·h)/|h|. It carries users whose history the covered items miss and is what
        // remains when no eigenvalue clears the noise.
        let norm = self.pop_norm();
        let along = history
            .iter()
            .filter_map(|&h| self.popularity.get(h as usize))
            .map(|p| p.max(0.0) / norm)
            .sum::<f32>()
            / history.len().max(1) as f32;
        let weight = self.pop_component * along.max(1e-6);
        for (s, &p) in scores.iter_mut().zip(&self.popularity) {
            *s = weight * p.max(0.0) / norm;
        }
        let r = self.rank;
        let x = self.user_vector(history);
        for (q, &i) in self.covered.iter().enumerate() {
            let v = &self.factors[q * r..(q + 1) * r];
            let s = &mut scores[i as usize];
            *s = (*s + x.iter().zip(v).map(|(a, b)| a * b).sum::<f32>()) * self.item_scale[q];
        }
    }
}

/// DP popularity alone at the whole budget: the baseline DP models must beat.
#[derive(Debug, Clone)]
pub struct DpPopularity {
    counts: Vec<f32>,
}

impl DpPopularity {
    /// Releases per-item popularity with the whole budget (users bounded and normalized as in
    /// [`DpItemModel`]).
    pub fn fit<R: RngCore + CryptoRng>(
        data: &Interactions,
        config: DpConfig,
        rng: &mut R,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let sigma = if config.epsilon.is_finite() {
            let rho = rho_for_epsilon(config.epsilon, config.delta).map_err(noise_error)?;
            Some((1.0 / (2.0 * rho)).sqrt())
        } else {
            None
        };
        let kept = bound_contributions(data, config.max_items_per_user, rng);
        Ok(Self {
            counts: release_popularity(&kept, data.n_items(), sigma, rng)?,
        })
    }
}

impl Scorer for DpPopularity {
    fn name(&self) -> &'static str {
        "dp-popularity"
    }
    fn score(&self, _history: &[u32], scores: &mut [f32]) {
        scores.copy_from_slice(&self.counts);
    }
}
