//! The serving form of an item model: for each item, its strongest weights towards other
//! items (a sparsified EASE/EDLAE matrix, or item-kNN neighbours). Scores are additive over a
//! history, so every recommendation decomposes exactly into the history items behind it:
//! explanations are the model, not a guess about it. Encodes to bytes for model artifacts.

use crate::ease::Ease;
use crate::knn::ItemKnn;
use crate::topk::top_k;

/// Per item, `(other item, weight)` pairs, strongest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseItemModel {
    rows: Vec<Vec<(u32, f32)>>,
    popularity: Vec<f32>,
}

/// Why model bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the model artifact is corrupt")]
pub struct CorruptModel;

impl SparseItemModel {
    /// Keeps the `keep` largest positive weights of each row of an EASE/EDLAE model.
    pub fn from_ease(model: &Ease, n_items: usize, keep: usize, popularity: Vec<f32>) -> Self {
        let rows = (0..n_items as u32)
            .map(|i| {
                let row: Vec<f32> = (0..n_items as u32).map(|j| model.weight(i, j)).collect();
                top_k(&row, keep, |j| j == i || row[j as usize] <= 0.0)
            })
            .collect();
        Self { rows, popularity }
    }

    /// Takes rows as they are (each strongest first); used by the DP item model.
    pub fn from_rows(rows: Vec<Vec<(u32, f32)>>, popularity: Vec<f32>) -> Self {
        Self { rows, popularity }
    }

    /// Uses item-kNN neighbours as they are.
    pub fn from_knn(model: &ItemKnn, n_items: usize, popularity: Vec<f32>) -> Self {
        let rows = (0..n_items as u32)
            .map(|i| model.neighbours(i).to_vec())
            .collect();
        Self { rows, popularity }
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.rows.len()
    }

    /// Interaction counts per item in the training data.
    pub fn popularity(&self) -> &[f32] {
        &self.popularity
    }

    /// The items an item points to, strongest (largest magnitude) first.
    pub fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        &self.rows[item as usize]
    }

    /// Scores every item for a history (additive over history items).
    pub fn score(&self, history: &[u32], scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        for &h in history {
            if let Some(row) = self.rows.get(h as usize) {
                for &(j, w) in row {
                    scores[j as usize] += w;
                }
            }
        }
    }

    /// The history items that contributed to `item`'s score, largest first, with weights.
    pub fn explain(&self, history: &[u32], item: u32) -> Vec<(u32, f32)> {
        let mut parts: Vec<(u32, f32)> = history
            .iter()
            .filter_map(|&h| {
                self.rows
                    .get(h as usize)?
                    .iter()
                    .find(|(j, _)| *j == item)
                    .map(|&(_, w)| (h, w))
            })
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        parts
    }

    /// Little-endian encoding: item count, popularity, then each row's length and pairs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for p in &self.popularity {
            out.extend_from_slice(&p.to_le_bytes());
        }
        for row in &self.rows {
            out.extend_from_slice(&(row.len() as u32).to_le_bytes());
            for &(j, w) in row {
                out.extend_from_slice(&j.to_le_bytes());
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`SparseItemModel::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CorruptModel> {
        let mut at = 0usize;
        let mut u32_at = |bytes: &[u8]| -> Result<u32, CorruptModel> {
            let v = u32::from_le_bytes(
                bytes
                    .get(at..at + 4)
                    .ok_or(CorruptModel)?
                    .try_into()
                    .map_err(|_| CorruptModel)?,
            );
            at += 4;
            Ok(v)
        };
        let n = u32_at(bytes)? as usize;
        if n > bytes.len() {
            return Err(CorruptModel);
        }
        let popularity = (0..n)
            .map(|_| u32_at(bytes).map(f32::from_bits))
            .collect::<Result<_, _>>()?;
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(bytes)? as usize;
            if len > n {
                return Err(CorruptModel);
            }
            let mut row = Vec::with_capacity(len);
            for _ in 0..len {
                let j = u32_at(bytes)?;
                let w = f32::from_bits(u32_at(bytes)?);
                if j as usize >= n {
                    return Err(CorruptModel);
                }
                row.push((j, w));
            }
            rows.push(row);
        }
        Ok(Self { rows, popularity })
    }
}

impl crate::Scorer for SparseItemModel {
    fn name(&self) -> &'static str {
        "sparse_item_model"
    }
    fn score(&self, history: &[u32], scores: &mut [f32]) {
        SparseItemModel::score(self, history, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Interactions;
    use crate::ease::EaseConfig;

    #[test]
    fn explanations_add_up_and_bytes_round_trip() {
        let data = Interactions::from_pairs(
            4,
            5,
            &[
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1),
                (1, 2),
                (2, 2),
                (2, 3),
                (3, 3),
                (3, 4),
            ],
        );
        let ease = Ease::fit(
            &data,
            EaseConfig {
                lambda: 1.0,
                dropout: 0.0,
            },
        )
        .unwrap();
        let model = SparseItemModel::from_ease(&ease, 5, 3, vec![2.0, 2.0, 2.0, 2.0, 1.0]);
        let history = [0u32, 2];
        let mut scores = vec![0f32; 5];
        model.score(&history, &mut scores);
        for item in 0..5u32 {
            let parts = model.explain(&history, item);
            assert!(parts.iter().all(|(h, _)| history.contains(h)));
            let sum: f32 = parts.iter().map(|(_, w)| w).sum();
            assert!((sum - scores[item as usize]).abs() < 1e-5, "item {item}");
        }
        let back = SparseItemModel::from_bytes(&model.to_bytes()).unwrap();
        assert_eq!(back, model);
        assert!(SparseItemModel::from_bytes(&model.to_bytes()[..7]).is_err());
        assert!(SparseItemModel::from_bytes(&[255, 255, 255, 255]).is_err());
    }
}
