//! Item-kNN: cosine similarity between item columns, shrunk towards zero for items with
//! little support, keeping the `k` nearest neighbours of each item.

use rayon::prelude::*;

use crate::{Interactions, ModelError, Scorer};

/// Item-kNN hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Neighbours kept per item.
    pub neighbours: usize,
    /// Shrinkage added to the cosine's denominator.
    pub shrink: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            neighbours: 100,
            shrink: 10.0,
        }
    }
}

/// A fitted item-kNN model: per item, its neighbours and similarities.
#[derive(Debug, Clone)]
pub struct ItemKnn {
    neighbours: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// Fits the model.
    pub fn fit(data: &Interactions, config: KnnConfig) -> Result<Self, ModelError> {
        if config.neighbours == 0 || !(config.shrink.is_finite() && config.shrink >= 0.0) {
            return Err(ModelError::Hyperparameter(
                "neighbours must be > 0 and shrink >= 0".into(),
            ));
        }
        let n = data.n_items();
        let counts = data.item_counts();
        let neighbours = (0..n)
            .into_par_iter()
            .map_init(
                || (vec![0u32; n], Vec::new()),
                |(co, touched), i| {
                    for &u in data.item(i) {
                        for &j in data.user(u as usize) {
                            if j as usize != i {
                                if co[j as usize] == 0 {
                                    touched.push(j);
                                }
                                co[j as usize] += 1;
                            }
                        }
                    }
                    let ni = counts[i] as f32;
                    let mut sims: Vec<(u32, f32)> = touched
                        .iter()
                        .map(|&j| {
                            let nj = counts[j as usize] as f32;
                            (
                                j,
                                co[j as usize] as f32 / ((ni * nj).sqrt() + config.shrink),
                            )
                        })
                        .collect();
                    for &j in touched.iter() {
                        co[j as usize] = 0;
                    }
                    touched.clear();
                    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    sims.truncate(config.neighbours);
                    sims
                },
            )
            .collect();
        Ok(Self { neighbours })
    }

    /// An item's neighbours, most similar first.
    pub fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        &self.neighbours[item as usize]
    }
}

impl Scorer for ItemKnn {
    fn name(&self) -> &'static str {
        "knn"
    }
    fn score(&self, history: &[u32], scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        for &j in history {
            for &(i, s) in &self.neighbours[j as usize] {
                scores[i as usize] += s;
            }
        }
    }
}
