//! The serving form of the DP item model: a sparse item-item matrix whose additive scores
//! make explanations exact. Post-processing of the release, like everything in the model.

use rayon::prelude::*;

use super::DpItemModel;
use crate::sparse::SparseItemModel;
use crate::topk::top_k;

impl DpItemModel {
    /// The serving form: for each item, its `keep` strongest positive weights of the
    /// item-item matrix this model scores with (the popularity component, the kept
    /// eigenvectors and the leverage scaling), so that scores stay additive over a history
    /// and explanations exact; DP popularity rides along for the contextual tier.
    pub fn to_sparse(&self, keep: usize) -> SparseItemModel {
        let r = self.rank;
        let norm = self.pop_norm();
        let unit: Vec<f32> = self.popularity.iter().map(|p| p.max(0.0) / norm).collect();
        // Towards an uncovered item j every row weighs pop·uᵢ·uⱼ ≥ 0, so only the `keep` + 1
        // most popular uncovered items can ever make a row's list: rows are scored over the
        // covered items and those, not the whole catalogue.
        let uncovered: Vec<f32> = (0..self.n_items)
            .map(|j| {
                if self.position[j] == u32::MAX {
                    unit[j]
                } else {
                    0.0
                }
            })
            .collect();
        let candidates: Vec<u32> = self
            .covered
            .iter()
            .copied()
            .chain(
                top_k(&uncovered, keep + 1, |j| uncovered[j as usize] == 0.0)
                    .into_iter()
                    .map(|(j, _)| j),
            )
            .collect();
        // The popularity part of a weight towards j, pop·uⱼ (times j's leverage scale), is
        // the same for every row but for the factor uᵢ.
        let scale = |j: u32| match self.position[j as usize] {
            u32::MAX => 1.0,
            q => self.item_scale[q as usize],
        };
        let base: Vec<f32> = candidates
            .iter()
            .map(|&j| self.pop_component * unit[j as usize] * scale(j))
            .collect();
        // Uncovered rows hold only that part: one ranking serves them all.
        let shared = top_k(&base, keep + 1, |c| base[c as usize] == 0.0);
        let rows: Vec<Vec<(u32, f32)>> = (0..self.n_items)
            .into_par_iter()
            .map(|i| {
                let p = self.position[i];
                if p == u32::MAX {
                    if unit[i] == 0.0 {
                        return Vec::new();
                    }
                    return shared
                        .iter()
                        .map(|&(c, w)| (candidates[c as usize], w * unit[i]))
                        .filter(|&(j, _)| j as usize != i)
                        .take(keep)
                        .collect();
                }
                let a = &self.factors[p as usize * r..(p as usize + 1) * r];
                let row: Vec<f32> = candidates
                    .iter()
                    .zip(&base)
                    .map(|(&j, &b)| {
                        let mut w = b * unit[i];
                        let q = self.position[j as usize];
                        if q != u32::MAX {
                            let b = &self.factors[q as usize * r..(q as usize + 1) * r];
                            w += a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
                                * self.item_scale[q as usize];
                        }
                        w
                    })
                    .collect();
                // Strongest by magnitude: the low-rank matrix's negative weights matter too.
                let magnitude: Vec<f32> = row.iter().map(|w| w.abs()).collect();
                top_k(&magnitude, keep, |c| {
                    candidates[c as usize] as usize == i || row[c as usize] == 0.0
                })
                .into_iter()
                .map(|(c, _)| (candidates[c as usize], row[c as usize]))
                .collect()
            })
            .collect();
        SparseItemModel::from_rows(rows, self.popularity.clone())
    }
}
