//! The implicit-feedback interaction matrix, users × items, as CSR and CSC with unit values.

/// Users × items, binary, stored both by row (user) and by column (item).
#[derive(Debug, Clone, PartialEq)]
pub struct Interactions {
    n_users: usize,
    n_items: usize,
    user_ptr: Vec<usize>,
    user_items: Vec<u32>,
    item_ptr: Vec<usize>,
    item_users: Vec<u32>,
}

impl Interactions {
    /// Builds the matrix from `(user, item)` pairs; duplicates collapse.
    pub fn from_pairs(n_users: usize, n_items: usize, pairs: &[(u32, u32)]) -> Self {
        let mut by_user: Vec<(u32, u32)> = pairs
            .iter()
            .copied()
            .filter(|&(u, i)| (u as usize) < n_users && (i as usize) < n_items)
            .collect();
        by_user.sort_unstable();
        by_user.dedup();
        let mut user_ptr = vec![0usize; n_users + 1];
        for &(u, _) in &by_user {
            user_ptr[u as usize + 1] += 1;
        }
        for u in 0..n_users {
            user_ptr[u + 1] += user_ptr[u];
        }
        let user_items: Vec<u32> = by_user.iter().map(|&(_, i)| i).collect();
        let mut by_item: Vec<(u32, u32)> = by_user.iter().map(|&(u, i)| (i, u)).collect();
        by_item.sort_unstable();
        let mut item_ptr = vec![0usize; n_items + 1];
        for &(i, _) in &by_item {
            item_ptr[i as usize + 1] += 1;
        }
        for i in 0..n_items {
            item_ptr[i + 1] += item_ptr[i];
        }
        let item_users = by_item.iter().map(|&(_, u)| u).collect();
        Self {
            n_users,
            n_items,
            user_ptr,
            user_items,
            item_ptr,
            item_users,
        }
    }

    /// Number of users (rows).
    pub fn n_users(&self) -> usize {
        self.n_users
    }
    /// Number of items (columns).
    pub fn n_items(&self) -> usize {
        self.n_items
    }
    /// Number of stored interactions.
    pub fn nnz(&self) -> usize {
        self.user_items.len()
    }
    /// The items of a user, sorted.
    pub fn user(&self, u: usize) -> &[u32] {
        &self.user_items[self.user_ptr[u]..self.user_ptr[u + 1]]
    }
    /// The users of an item, sorted.
    pub fn item(&self, i: usize) -> &[u32] {
        &self.item_users[self.item_ptr[i]..self.item_ptr[i + 1]]
    }
    /// How many users interacted with each item.
    pub fn item_counts(&self) -> Vec<u32> {
        (0..self.n_items)
            .map(|i| (self.item_ptr[i + 1] - self.item_ptr[i]) as u32)
            .collect()
    }
}

/// Splits interactions per user: a seeded `fraction` of each user's items is held out (for
/// validation), the rest kept (for fitting). Same users and items, so indices agree.
pub fn holdout(data: &Interactions, fraction: f64, seed: u64) -> (Interactions, Interactions) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut keep, mut held) = (Vec::new(), Vec::new());
    for u in 0..data.n_users() {
        let mut items = data.user(u).to_vec();
        items.shuffle(&mut rng);
        let hold = (items.len() as f64 * fraction).round() as usize;
        for (k, i) in items.into_iter().enumerate() {
            if k < hold { &mut held } else { &mut keep }.push((u as u32, i));
        }
    }
    (
        Interactions::from_pairs(data.n_users(), data.n_items(), &keep),
        Interactions::from_pairs(data.n_users(), data.n_items(), &held),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_columns_agree() {
        let m = Interactions::from_pairs(3, 4, &[(0, 1), (0, 3), (2, 1), (0, 1), (1, 0), (9, 9)]);
        assert_eq!(m.nnz(), 4);
        assert_eq!(m.user(0), &[1, 3]);
        assert_eq!(m.user(2), &[1]);
        assert_eq!(m.item(1), &[0, 2]);
        assert_eq!(m.item_counts(), vec![1, 2, 0, 1]);
    }

    #[test]
    fn holdout_partitions_each_user() {
        let pairs: Vec<(u32, u32)> = (0..10).flat_map(|u| (0..10).map(move |i| (u, i))).collect();
        let m = Interactions::from_pairs(10, 10, &pairs);
        let (keep, held) = holdout(&m, 0.2, 1);
        for u in 0..10 {
            assert_eq!(keep.user(u).len(), 8);
            assert_eq!(held.user(u).len(), 2);
            assert!(held.user(u).iter().all(|i| !keep.user(u).contains(i)));
        }
        assert_eq!(holdout(&m, 0.2, 1), (keep, held));
    }
}
