//! Popularity: items scored by how many users interacted with them.

use crate::{Interactions, Scorer};

/// Scores every item by its interaction count.
#[derive(Debug, Clone)]
pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    /// Counts interactions per item.
    pub fn fit(data: &Interactions) -> Self {
        Self {
            counts: data.item_counts().into_iter().map(|c| c as f32).collect(),
        }
    }
    /// Interaction count per item.
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }
}

impl Scorer for Popularity {
    fn name(&self) -> &'static str {
        "popularity"
    }
    fn score(&self, _history: &[u32], scores: &mut [f32]) {
        scores.copy_from_slice(&self.counts);
    }
}
