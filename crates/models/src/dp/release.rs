//! What a DP training releases, and the one place its privacy is argued ([`Released::draw`]):
//! the budget split with its DP user count, contribution bounding, DP popularity, the covered
//! items (post-processing of the popularity), and DP co-occurrence of distinct covered pairs,
//! each released sum on an integer grid with discrete Gaussian noise.

use candor_privacy::fast::DiscreteGaussianTable;
use candor_privacy::{Accountant, AccountantError, rho_for_epsilon};
use faer::Mat;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{CryptoRng, RngCore, SeedableRng};
use rayon::prelude::*;

use super::{DpConfig, DpGuarantee};
use crate::{Interactions, ModelError};

/// Share of ρ spent counting users.
const USER_COUNT_SHARE: f64 = 0.01;

fn split_rng<R: RngCore + CryptoRng>(rng: &mut R, n: usize) -> Vec<StdRng> {
    (0..n)
        .map(|_| {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            StdRng::from_seed(seed)
        })
        .collect()
}

/// Adds discrete Gaussian noise of scale `sigma_grid` to integer sums, in parallel chunks each
/// with its own generator seeded from `rng`.
fn add_noise<R: RngCore + CryptoRng>(
    values: &mut [i64],
    sigma_grid: f64,
    rng: &mut R,
) -> Result<(), ModelError> {
    let table = DiscreteGaussianTable::new(sigma_grid).map_err(noise_error)?;
    const CHUNK: usize = 1 << 16;
    let rngs = split_rng(rng, values.len().div_ceil(CHUNK));
    values
        .par_chunks_mut(CHUNK)
        .zip(rngs)
        .for_each(|(chunk, mut r)| {
            for v in chunk {
                *v += table.sample(&mut r);
            }
        });
    Ok(())
}

pub(super) fn noise_error(e: AccountantError) -> ModelError {
    ModelError::Hyperparameter(e.to_string())
}

/// The finest grid: 1/4096 of one user's contribution.
const FINEST_GRID: f64 = 4096.0;

/// The grid scale S for a noise σ (in contribution units; `None`: no noise): fine enough that
/// rounding each contribution costs little signal, coarse enough that the sampler's table
/// stays small.
fn grid_scale(sigma: Option<f64>) -> f64 {
    sigma.map_or(FINEST_GRID, |sigma| {
        (candor_privacy::fast::MAX_SIGMA / sigma / 1.01)
            .clamp(1.0, FINEST_GRID)
            .floor()
    })
}

/// Contribution bounding: each user's items, a random sample of at most `k` if more.
pub(super) fn bound_contributions<R: RngCore + CryptoRng>(
    data: &Interactions,
    k: usize,
    rng: &mut R,
) -> Vec<Vec<u32>> {
    (0..data.n_users())
        .map(|u| {
            let h = data.user(u);
            if h.len() <= k {
                h.to_vec()
            } else {
                let mut s: Vec<u32> = h.choose_multiple(rng, k).copied().collect();
                s.sort_unstable();
                s
            }
        })
        .collect()
}

/// DP popularity Σ_u h_u/√k_u on the grid (each user adds floor(S/√k_u) to each kept item,
/// so one user moves the vector by at most 1 in L2), plus discrete Gaussian noise of σ in
/// those units; `None`: exact.
pub(super) fn release_popularity<R: RngCore + CryptoRng>(
    kept: &[Vec<u32>],
    n_items: usize,
    sigma: Option<f64>,
    rng: &mut R,
) -> Result<Vec<f32>, ModelError> {
    let scale = grid_scale(sigma);
    let mut pop = vec![0i64; n_items];
    for h in kept.iter().filter(|h| !h.is_empty()) {
        let w = (scale / (h.len() as f64).sqrt()).floor() as i64;
        for &i in h {
            pop[i as usize] += w;
        }
    }
    if let Some(sigma) = sigma {
        add_noise(&mut pop, sigma * scale, rng)?;
    }
    Ok(pop.iter().map(|&c| (c as f64 / scale) as f32).collect())
}

/// The noise scales of one release, from its budget split.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    /// zCDP ρ of the whole release (infinite without noise).
    pub(super) rho: f64,
    /// σ of the popularity release, in contribution units (0 without noise).
    pub(super) sigma_pop: f64,
    /// σ of each co-occurrence entry, same units (0 without noise).
    pub(super) sigma_gram: f64,
    /// The DP count of users (exact without noise).
    pub(super) noisy_users: f64,
}

/// The budget split: 1% of ρ counts the users (sensitivity 1), and the count sets how the rest
/// is shared between popularity and co-occurrence (the co-occurrence signal grows with users,
/// its noise with 1/ε). Draws the user count's noise.
fn split_budget<R: RngCore + CryptoRng>(
    config: &DpConfig,
    users: usize,
    rng: &mut R,
) -> Result<Budget, ModelError> {
    if !config.epsilon.is_finite() {
        return Ok(Budget {
            rho: f64::INFINITY,
            sigma_pop: 0.0,
            sigma_gram: 0.0,
            noisy_users: users.max(1) as f64,
        });
    }
    let rho = rho_for_epsilon(config.epsilon, config.delta).map_err(noise_error)?;
    let rho_users = rho * USER_COUNT_SHARE;
    let table =
        DiscreteGaussianTable::new((1.0 / (2.0 * rho_users)).sqrt()).map_err(noise_error)?;
    let noisy_users = (users as i64 + table.sample(rng)).max(1) as f64;
    let share = config.popularity_share.unwrap_or(
        (config.reference_users / (config.epsilon * noisy_users))
            .powi(2)
            .clamp(0.05, 0.99),
    );
    let rest = rho - rho_users;
    let rho_pop = rest * share;
    let rho_gram = rest - rho_pop;
    Ok(Budget {
        rho,
        sigma_pop: (1.0 / (2.0 * rho_pop)).sqrt(),
        // The off-diagonal upper triangle has L2 sensitivity 1/√2 (see `release_cooccurrence`).
        sigma_gram: (0.5 / (2.0 * rho_gram)).sqrt(),
        noisy_users,
    })
}

/// The items the co-occurrence release covers: the most popular (at most `max_items`) whose
/// noisy popularity clears 3σ of its noise. Post-processing of the popularity release.
fn cover(popularity: &[f32], sigma_pop: f64, max_items: usize) -> Vec<u32> {
    let floor = 3.0 * sigma_pop;
    let mut order: Vec<u32> = (0..popularity.len() as u32)
        .filter(|&i| popularity[i as usize] as f64 > floor)
        .collect();
    order.sort_by(|&a, &b| popularity[b as usize].total_cmp(&popularity[a as usize]));
    order.truncate(max_items);
    order.sort_unstable();
    order
}

/// DP co-occurrence of distinct covered pairs Σ_u x_u x_uᵀ on the grid, plus discrete Gaussian
/// noise of σ per entry (`None`: exact), as a symmetric matrix with a zero diagonal.
///
/// Each user adds floor(S/k_u) to every covered pair they hold (k_u counts all their kept
/// items, so the bound holds whatever is covered). Only pairs of distinct items are released:
/// a user's strictly-upper-triangle contribution has squared norm
/// Σ_{i<j} floor(S/k)² ≤ (k(k−1)/2)(S/k)² < S²/2, so the sensitivity is S/√2, half the variance
/// the diagonal would cost. The diagonal stays zero (as in EASE, an item is not evidence for
/// itself).
fn release_cooccurrence<R: RngCore + CryptoRng>(
    kept: &[Vec<u32>],
    position: &[u32],
    m: usize,
    sigma: Option<f64>,
    rng: &mut R,
) -> Result<Mat<f64>, ModelError> {
    let scale = grid_scale(sigma);
    let mut by_item: Vec<Vec<(u32, i64)>> = vec![Vec::new(); m];
    let local: Vec<Vec<u32>> = kept
        .iter()
        .map(|h| {
            h.iter()
                .filter_map(|&i| {
                    let p = position[i as usize];
                    (p != u32::MAX).then_some(p)
                })
                .collect()
        })
        .collect();
    for (u, h) in kept.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let w = (scale / h.len() as f64).floor() as i64;
        for &p in &local[u] {
            by_item[p as usize].push((u as u32, w));
        }
    }
    // The upper triangle, row-major: row i holds columns i..m.
    let mut offsets = Vec::with_capacity(m + 1);
    offsets.push(0usize);
    for i in 0..m {
        offsets.push(offsets[i] + m - i);
    }
    let mut packed = vec![0i64; offsets[m]];
    let mut rows: Vec<&mut [i64]> = Vec::with_capacity(m);
    let mut rest = packed.as_mut_slice();
    for i in 0..m {
        let (row, tail) = rest.split_at_mut(m - i);
        rows.push(row);
        rest = tail;
    }
    rows.into_par_iter().enumerate().for_each(|(i, row)| {
        for &(u, w) in &by_item[i] {
            for &j in &local[u as usize] {
                if j as usize > i {
                    row[j as usize - i] += w;
                }
            }
        }
    });
    if let Some(sigma) = sigma {
        add_noise(&mut packed, sigma * scale, rng)?;
        for i in 0..m {
            packed[offsets[i]] = 0;
        }
    }
    let mut gram = Mat::<f64>::zeros(m, m);
    for i in 0..m {
        let row = &packed[offsets[i]..offsets[i + 1]];
        for (d, &v) in row.iter().enumerate() {
            let x = v as f64 / scale;
            gram[(i, i + d)] = x;
            gram[(i + d, i)] = x;
        }
    }
    Ok(gram)
}

/// Everything a DP training releases: the noisy statistics and what they cost. It is computed
/// by [`Released::draw`] alone; the model is post-processing of it.
pub(super) struct Released {
    pub(super) budget: Budget,
    pub(super) guarantee: DpGuarantee,
    /// DP popularity of every item.
    pub(super) popularity: Vec<f32>,
    /// The covered items (post-processing of the popularity).
    pub(super) covered: Vec<u32>,
    /// Position in `covered` of each item, or u32::MAX.
    pub(super) position: Vec<u32>,
    /// DP co-occurrence over the covered items (`None` when fewer than two are covered).
    pub(super) gram: Option<Mat<f64>>,
}

impl Released {
    /// The release, and the one place its privacy is argued. Each user is bounded to
    /// `max_items_per_user` items and normalized to unit length, so each of the three Gaussian
    /// releases moves by at most its stated sensitivity when one user is added or removed:
    /// the user count (1), popularity (1), co-occurrence of distinct pairs (1/√2). Their σ come
    /// from one split of ρ, so together they are ρ-zCDP, stated as (ε, δ) by the accountant.
    /// The covered set is post-processing of the popularity release, so choosing it costs
    /// nothing more.
    pub(super) fn draw<R: RngCore + CryptoRng>(
        data: &Interactions,
        config: &DpConfig,
        rng: &mut R,
    ) -> Result<Self, ModelError> {
        let private = config.epsilon.is_finite();
        let users = (0..data.n_users())
            .filter(|&u| !data.user(u).is_empty())
            .count();
        let budget = split_budget(config, users, rng)?;
        let kept = bound_contributions(data, config.max_items_per_user, rng);
        let sigma_pop = private.then_some(budget.sigma_pop);
        let popularity = release_popularity(&kept, data.n_items(), sigma_pop, rng)?;
        let covered = cover(&popularity, budget.sigma_pop, config.max_items);
        let mut position = vec![u32::MAX; data.n_items()];
        for (p, &i) in covered.iter().enumerate() {
            position[i as usize] = p as u32;
        }
        let gram = if covered.len() < 2 {
            None
        } else {
            let sigma_gram = private.then_some(budget.sigma_gram);
            Some(release_cooccurrence(
                &kept,
                &position,
                covered.len(),
                sigma_gram,
                rng,
            )?)
        };
        let epsilon = if private {
            Accountant::new()
                .zcdp(budget.rho)
                .and_then(|a| a.epsilon(config.delta))
                .map_err(noise_error)?
                .epsilon
        } else {
            f64::INFINITY
        };
        let guarantee = DpGuarantee {
            epsilon,
            delta: config.delta,
            rho: budget.rho,
            popularity_sigma: budget.sigma_pop,
            cooccurrence_sigma: budget.sigma_gram,
        };
        Ok(Self {
            budget,
            guarantee,
            popularity,
            covered,
            position,
            gram,
        })
    }
}
