//! Property test of DP training on tiny and degenerate stores: for thousands of random small
//! interaction matrices (no users with history, one item, every user on one item, more
//! factors than items, the smallest ε) training either refuses with an error or yields a
//! model whose dense and sparse forms score and explain every history with finite numbers.
//! A store of 10–20 subjects once made scoring index past the end of a per-item table.

use candor_models::Interactions;
use candor_models::Scorer;
use candor_models::dp::{DpConfig, DpItemModel, DpPopularity};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A random small matrix: 0–20 users over 1–12 items, each user holding 0 to all items,
/// skewed so that a few items dominate (the case where exactly one item clears the noise).
fn tiny(rng: &mut StdRng) -> Interactions {
    let users = rng.gen_range(0..=20);
    let items = rng.gen_range(1..=12);
    let mut pairs = Vec::new();
    for u in 0..users {
        let k = match rng.gen_range(0..4) {
            0 => 0,
            1 => 1,
            2 => items,
            _ => rng.gen_range(0..=items),
        };
        let mut all: Vec<u32> = (0..items as u32).collect();
        if rng.gen_bool(0.5) {
            // Concentrate on the first items.
            all.truncate(k.max(1).min(items));
        }
        all.shuffle(rng);
        for &i in all.iter().take(k) {
            pairs.push((u as u32, i));
        }
    }
    Interactions::from_pairs(users, items, &pairs)
}

fn config(rng: &mut StdRng) -> DpConfig {
    let epsilon = *[0.05, 0.5, 1.0, 8.0, 50.0, f64::INFINITY]
        .choose(rng)
        .expect("non-empty");
    DpConfig {
        epsilon,
        max_items_per_user: rng.gen_range(1..=4),
        max_items: rng.gen_range(1..=6),
        factors: rng.gen_range(1..=8),
        ..DpConfig::default()
    }
}

/// Random stores tried (each trained once at a random ε).
const CASES: usize = 300;

fn finite(scores: &[f32]) -> bool {
    scores.iter().all(|s| s.is_finite())
}

#[test]
fn dp_training_never_panics_on_tiny_or_degenerate_stores() {
    // Two seeded halves on two threads: the smallest ε builds the largest noise tables.
    let trained: usize = std::thread::scope(|scope| {
        let halves: Vec<_> = (0..2u64)
            .map(|half| scope.spawn(move || run_cases(0x5eed + half, CASES / 2)))
            .collect();
        halves
            .into_iter()
            .map(|h| h.join().expect("no case panics"))
            .sum()
    });
    assert!(
        trained > CASES * 2 / 3,
        "only {trained} of {CASES} cases trained"
    );
}

/// Trains `cases` random stores from `seed`; returns how many trained.
fn run_cases(seed: u64, cases: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut trained = 0;
    for case in 0..cases {
        let data = tiny(&mut rng);
        let config = config(&mut rng);
        let fitted = DpItemModel::fit(&data, config, &mut rng);
        let Ok(model) = fitted else {
            assert!(
                data.n_users() == 0 || data.nnz() == 0,
                "case {case}: training refused a non-empty store: {fitted:?}"
            );
            continue;
        };
        trained += 1;
        let n = data.n_items();
        let sparse = model.to_sparse(rng.gen_range(0..=5));
        for _ in 0..4 {
            let len = rng.gen_range(0..=n);
            let history: Vec<u32> = (0..len).map(|_| rng.gen_range(0..n as u32)).collect();
            let mut scores = vec![0f32; n];
            model.score(&history, &mut scores);
            assert!(finite(&scores), "case {case}: dense scores {scores:?}");
            sparse.score(&history, &mut scores);
            assert!(finite(&scores), "case {case}: sparse scores {scores:?}");
            for item in 0..n as u32 {
                for (_, w) in sparse.explain(&history, item) {
                    assert!(w.is_finite(), "case {case}: explanation weight {w}");
                }
            }
        }
        let popularity = DpPopularity::fit(&data, config, &mut rng).expect("popularity fits");
        let mut scores = vec![0f32; n];
        popularity.score(&[], &mut scores);
        assert!(finite(&scores));
    }
    trained
}
