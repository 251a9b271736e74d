//! Top-k selection: the k best-scoring items, excluding some, without sorting everything.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(PartialEq)]
struct Entry(f32, u32);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed, so the heap's top is the worst kept entry; ties favour the lower item index.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// The indices of the `k` highest scores, best first, skipping indices for which `skip`
/// returns true and non-finite scores. Ties go to the lower index.
pub fn top_k(scores: &[f32], k: usize, skip: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        let i = i as u32;
        if !s.is_finite() || skip(i) {
            continue;
        }
        if heap.len() < k {
            heap.push(Entry(s, i));
        } else if let Some(worst) = heap.peek()
            && (s > worst.0 || (s == worst.0 && i < worst.1))
        {
            heap.pop();
            heap.push(Entry(s, i));
        }
    }
    let mut out: Vec<(u32, f32)> = heap.into_iter().map(|Entry(s, i)| (i, s)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_full_sort() {
        let scores: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        for k in [0, 1, 5, 10, 200, 300] {
            let got = top_k(&scores, k, |i| i % 3 == 0);
            let mut all: Vec<(u32, f32)> = scores
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != 0)
                .map(|(i, &s)| (i as u32, s))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.truncate(k);
            assert_eq!(got, all, "k = {k}");
        }
        assert_eq!(top_k(&[f32::NAN, 1.0], 2, |_| false), vec![(1, 1.0)]);
    }
}
