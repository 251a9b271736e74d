//! Ranking and beyond-accuracy metrics, and the evaluation protocol of DESIGN §7: rank the
//! whole catalogue minus the user's training items, average over users with a test item.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::topk::top_k;
use crate::{Interactions, Scorer};

/// NDCG@k with binary gains; the ideal DCG puts min(|relevant|, k) hits first.
pub fn ndcg_at(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, i)| relevant.contains(i))
        .map(|(r, _)| 1.0 / (r as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(k))
        .map(|r| 1.0 / (r as f64 + 2.0).log2())
        .sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

fn hits_at(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> usize {
    ranked
        .iter()
        .take(k)
        .filter(|i| relevant.contains(i))
        .count()
}

/// Recall@k = hits in the top k / |relevant|.
pub fn recall_at(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    if relevant.is_empty() {
        0.0
    } else {
        hits_at(ranked, relevant, k) as f64 / relevant.len() as f64
    }
}

/// Precision@k = hits in the top k / k.
pub fn precision_at(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    hits_at(ranked, relevant, k) as f64 / k as f64
}

/// HR@k = 1 if any relevant item is in the top k.
pub fn hit_rate_at(ranked: &[u32], relevant: &HashSet<u32>, k: usize) -> f64 {
    (hits_at(ranked, relevant, k) > 0) as u8 as f64
}

/// Catalogue coverage: distinct recommended items / catalogue size.
pub fn coverage(lists: &[Vec<u32>], n_items: usize) -> f64 {
    let distinct: HashSet<u32> = lists.iter().flatten().copied().collect();
    distinct.len() as f64 / n_items.max(1) as f64
}

/// The Gini coefficient of exposure over the whole catalogue: 0 when every item is shown
/// equally often, approaching 1 when a few items take all exposure.
pub fn exposure_gini(lists: &[Vec<u32>], n_items: usize) -> f64 {
    let mut exposure = vec![0f64; n_items];
    for &i in lists.iter().flatten() {
        exposure[i as usize] += 1.0;
    }
    gini(&mut exposure)
}

/// The Lorenz curve of exposure over the whole catalogue, at `points + 1` evenly spaced
/// shares of the items (least exposed first): the share of all exposure the least exposed
/// fraction of items gets. The diagonal is perfect equality.
pub fn exposure_lorenz(lists: &[Vec<u32>], n_items: usize, points: usize) -> Vec<f64> {
    let mut exposure = vec![0f64; n_items];
    for &i in lists.iter().flatten() {
        exposure[i as usize] += 1.0;
    }
    exposure.sort_by(f64::total_cmp);
    let total: f64 = exposure.iter().sum();
    let mut cumulative = Vec::with_capacity(n_items + 1);
    cumulative.push(0.0);
    for x in &exposure {
        cumulative.push(cumulative.last().copied().unwrap_or(0.0) + x);
    }
    (0..=points)
        .map(|p| {
            if total == 0.0 || n_items == 0 {
                return p as f64 / points.max(1) as f64;
            }
            let at = (p * n_items) / points.max(1);
            cumulative[at.min(n_items)] / total
        })
        .collect()
}

/// The Gini coefficient of non-negative values (sorted in place).
pub fn gini(values: &mut [f64]) -> f64 {
    let n = values.len();
    let total: f64 = values.iter().sum();
    if n == 0 || total == 0.0 {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let weighted: f64 = values
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n as f64 - 1.0) * x)
        .sum();
    weighted / (n as f64 * total)
}

/// The mean popularity (training interactions) of recommended items.
pub fn mean_popularity(lists: &[Vec<u32>], item_counts: &[u32]) -> f64 {
    let n: usize = lists.iter().map(Vec::len).sum();
    if n == 0 {
        return 0.0;
    }
    lists
        .iter()
        .flatten()
        .map(|&i| item_counts[i as usize] as f64)
        .sum::<f64>()
        / n as f64
}

/// Intra-list diversity: the share of pairs in a list whose categories differ.
pub fn intra_list_diversity(list: &[u32], category_of: impl Fn(u32) -> Option<u32>) -> f64 {
    let mut pairs = 0usize;
    let mut differ = 0usize;
    for a in 0..list.len() {
        for b in a + 1..list.len() {
            pairs += 1;
            if category_of(list[a]) != category_of(list[b]) {
                differ += 1;
            }
        }
    }
    if pairs == 0 {
        0.0
    } else {
        differ as f64 / pairs as f64
    }
}

/// Mean figures of one model on one split.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EvalReport {
    /// Users with at least one test item.
    pub users: usize,
    /// NDCG@10.
    pub ndcg_10: f64,
    /// Recall@20.
    pub recall_20: f64,
    /// Precision@10.
    pub precision_10: f64,
    /// HR@10.
    pub hr_10: f64,
    /// Coverage@10.
    pub coverage_10: f64,
    /// Gini of exposure in the top-10 lists.
    pub gini_10: f64,
    /// The Lorenz curve of exposure in the top-10 lists, at 21 shares of the catalogue.
    pub lorenz_10: [f64; 21],
    /// Mean training popularity of the top-10 items.
    pub popularity_10: f64,
    /// Mean intra-list diversity of the top-10 lists (when item categories are known).
    pub ild_10: Option<f64>,
}

/// Evaluates a fitted scorer: for every user with a test item, ranks all items but the
/// user's training items and scores the top lists.
pub fn evaluate(scorer: &dyn Scorer, train: &Interactions, test: &Interactions) -> EvalReport {
    evaluate_with_categories(scorer, train, test, None)
}

/// [`evaluate`], also measuring intra-list diversity over the given item categories.
pub fn evaluate_with_categories(
    scorer: &dyn Scorer,
    train: &Interactions,
    test: &Interactions,
    categories: Option<&[Option<u32>]>,
) -> EvalReport {
    let n_items = train.n_items();
    let users: Vec<usize> = (0..test.n_users())
        .filter(|&u| !test.user(u).is_empty())
        .collect();
    let per_user: Vec<(Vec<u32>, [f64; 4])> = users
        .par_iter()
        .map_init(
            || vec![0f32; n_items],
            |scores, &u| {
                let history = if u < train.n_users() {
                    train.user(u)
                } else {
                    &[]
                };
                scores.iter_mut().for_each(|s| *s = 0.0);
                scorer.score(history, scores);
                let ranked: Vec<u32> = top_k(scores, 20, |i| history.binary_search(&i).is_ok())
                    .into_iter()
                    .map(|(i, _)| i)
                    .collect();
                let relevant: HashSet<u32> = test.user(u).iter().copied().collect();
                let figures = [
                    ndcg_at(&ranked, &relevant, 10),
                    recall_at(&ranked, &relevant, 20),
                    precision_at(&ranked, &relevant, 10),
                    hit_rate_at(&ranked, &relevant, 10),
                ];
                (ranked.into_iter().take(10).collect(), figures)
            },
        )
        .collect();
    let n = per_user.len().max(1) as f64;
    let mean = |k: usize| per_user.iter().map(|(_, f)| f[k]).sum::<f64>() / n;
    let lists: Vec<Vec<u32>> = per_user.iter().map(|(l, _)| l.clone()).collect();
    EvalReport {
        users: per_user.len(),
        ndcg_10: mean(0),
        recall_20: mean(1),
        precision_10: mean(2),
        hr_10: mean(3),
        coverage_10: coverage(&lists, n_items),
        gini_10: exposure_gini(&lists, n_items),
        lorenz_10: exposure_lorenz(&lists, n_items, 20)
            .try_into()
            .unwrap_or([0.0; 21]),
        popularity_10: mean_popularity(&lists, &train.item_counts()),
        ild_10: categories.map(|cats| {
            lists
                .iter()
                .map(|l| intra_list_diversity(l, |i| cats.get(i as usize).copied().flatten()))
                .sum::<f64>()
                / lists.len().max(1) as f64
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u32]) -> HashSet<u32> {
        items.iter().copied().collect()
    }

    #[test]
    fn hand_computed_examples() {
        // Hits at ranks 1 and 3 of 3 relevant items.
        let ranked = [5, 9, 7, 1];
        let relevant = set(&[5, 7, 2]);
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((ndcg_at(&ranked, &relevant, 10) - dcg / idcg).abs() < 1e-12);
        assert!((ndcg_at(&ranked, &relevant, 1) - 1.0).abs() < 1e-12);
        assert_eq!(recall_at(&ranked, &relevant, 2), 1.0 / 3.0);
        assert_eq!(recall_at(&ranked, &relevant, 20), 2.0 / 3.0);
        assert_eq!(precision_at(&ranked, &relevant, 10), 0.2);
        assert_eq!(hit_rate_at(&ranked, &relevant, 1), 1.0);
        assert_eq!(hit_rate_at(&[9], &relevant, 1), 0.0);
        assert_eq!(ndcg_at(&[9], &set(&[]), 10), 0.0);
    }

    #[test]
    fn beyond_accuracy() {
        assert_eq!(coverage(&[vec![0, 1], vec![1, 2]], 6), 0.5);
        let equal = exposure_lorenz(&[vec![0, 1], vec![2, 3]], 4, 4);
        assert_eq!(equal, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let one = exposure_lorenz(&[vec![3], vec![3]], 4, 4);
        assert_eq!(one, vec![0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(gini(&mut [1.0, 1.0, 1.0, 1.0]), 0.0);
        // One of four items takes everything: G = (n - 1) / n.
        assert!((gini(&mut [0.0, 0.0, 0.0, 5.0]) - 0.75).abs() < 1e-12);
        assert!((gini(&mut [1.0, 2.0, 3.0]) - 2.0 / 9.0).abs() < 1e-12);
        assert_eq!(mean_popularity(&[vec![0, 1]], &[10, 20]), 15.0);
        let category = |i: u32| Some(i / 2);
        assert_eq!(intra_list_diversity(&[0, 1, 2], category), 2.0 / 3.0);
        assert_eq!(intra_list_diversity(&[0], category), 0.0);
    }
}
