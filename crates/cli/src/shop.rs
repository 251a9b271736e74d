//! The demo shop: a seeded synthetic catalogue with long-tail popularity and categories, and a
//! population with a few taste clusters, most consenting, some not, some with expired consent.
//! Everything is loaded through the engine, the same path the API uses.

use std::collections::BTreeMap;

use candor_domain::{ConsentMethod, Item, Timestamp};
use candor_engine::{Actor, ConsentUpdate, Engine, EventDraft};
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The shape of the generated shop.
#[derive(Debug, Clone, Copy)]
pub struct DemoShape {
    /// RNG seed.
    pub seed: u64,
    /// Catalogue size.
    pub items: usize,
    /// Population size.
    pub subjects: usize,
}

/// What the demo loaded.
#[derive(Debug, Default)]
pub struct DemoSummary {
    /// Subjects with live consent.
    pub consenting: usize,
    /// Subjects who never consented.
    pub without_consent: usize,
    /// Subjects whose imported consent has expired.
    pub expired: usize,
    /// Events stored.
    pub accepted: usize,
    /// Events refused, by reason code.
    pub refused: BTreeMap<&'static str, usize>,
}

const CATEGORIES: [&str; 8] = [
    "books", "music", "film", "games", "garden", "kitchen", "sports", "toys",
];
const ADJECTIVES: [&str; 12] = [
    "Quiet", "Bright", "Hidden", "Golden", "Wild", "Small", "Electric", "Northern", "Lost",
    "Silver", "Patient", "Urban",
];
const NOUNS: [&str; 12] = [
    "Harbour", "Garden", "Engine", "River", "Lantern", "Orchard", "Signal", "Compass", "Meadow",
    "Atlas", "Kettle", "Bridge",
];
const CLUSTERS: usize = 4;

/// The demo's subject ids: `user-0001` and so on.
pub fn subject_id(n: usize) -> String {
    format!("user-{n:04}")
}

/// The catalogue: ids `item-00001`..., Zipf-like popularity, eight categories.
pub fn catalogue(shape: &DemoShape) -> (Vec<Item>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let mut ranks: Vec<usize> = (0..shape.items).collect();
    ranks.shuffle(&mut rng);
    let mut items = Vec::with_capacity(shape.items);
    let mut popularity = Vec::with_capacity(shape.items);
    for (i, rank) in ranks.into_iter().enumerate() {
        let category = CATEGORIES[i % CATEGORIES.len()];
        let title = format!(
            "{} {} ({})",
            ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())],
            NOUNS[rng.gen_range(0..NOUNS.len())],
            i + 1
        );
        let mut attributes = serde_json::Map::new();
        attributes.insert(
            "price".into(),
            serde_json::json!((rng.gen_range(300..9000) as f64) / 100.0),
        );
        items.push(Item {
            id: format!("item-{:05}", i + 1),
            title,
            category: Some(category.into()),
            provider: Some(format!("provider-{:02}", rng.gen_range(1..=24))),
            attributes,
        });
        popularity.push(1.0 / ((rank + 1) as f64).powf(1.1));
    }
    (items, popularity)
}

/// Loads the demo shop into the engine.
pub async fn load(engine: &Engine, shape: &DemoShape) -> anyhow::Result<DemoSummary> {
    let actor = Actor::system();
    let (items, popularity) = catalogue(shape);
    for chunk in items.chunks(5000) {
        engine.put_items(chunk).await?;
    }
    let mut rng = StdRng::seed_from_u64(shape.seed.wrapping_add(1));
    let mut summary = DemoSummary::default();

    // Per-category popularity samplers.
    let mut by_category: Vec<(Vec<usize>, WeightedIndex<f64>)> = Vec::new();
    for (c, _) in CATEGORIES.iter().enumerate() {
        let members: Vec<usize> = (0..items.len())
            .filter(|i| i % CATEGORIES.len() == c)
            .collect();
        let weights: Vec<f64> = members.iter().map(|&i| popularity[i]).collect();
        by_category.push((members, WeightedIndex::new(weights)?));
    }

    let now = Timestamp::now();
    let personalization = ["personalize.content.profiling", "analytics.reporting"];
    let mut drafts = Vec::new();
    for n in 1..=shape.subjects {
        let subject = subject_id(n);
        let candor_subject = candor_domain::SubjectId::parse(&subject)?;
        match n % 10 {
            8 => summary.without_consent += 1,
            9 => {
                // Imported from an earlier system 400 days ago; the 365-day grant has lapsed.
                let update = ConsentUpdate {
                    recorded_at: Some(Timestamp(now.0 - 400 * candor_domain::timestamp::DAY_MS)),
                    ..ConsentUpdate::whole(&personalization, true, ConsentMethod::Import)
                };
                engine
                    .set_consent(&actor, &candor_subject, &update, false)
                    .await?;
                summary.expired += 1;
            }
            _ => {
                let update = ConsentUpdate::whole(&personalization, true, ConsentMethod::Banner);
                engine
                    .set_consent(&actor, &candor_subject, &update, false)
                    .await?;
                summary.consenting += 1;
            }
        }
        // Taste cluster: two favourite categories get 80% of this subject's attention.
        let cluster = n % CLUSTERS;
        let favourites = [cluster * 2, cluster * 2 + 1];
        let n_events = rng.gen_range(15..65);
        for _ in 0..n_events {
            let category = if rng.gen_bool(0.8) {
                favourites[rng.gen_range(0..2)]
            } else {
                rng.gen_range(0..CATEGORIES.len())
            };
            let (members, sampler) = &by_category[category];
            let item = &items[members[sampler.sample(&mut rng)]];
            let roll: f64 = rng.r#gen();
            let (event_type, value) = match roll {
                r if r < 0.60 => ("view", None),
                r if r < 0.75 => ("click", None),
                r if r < 0.85 => ("add_to_cart", Some(1.0)),
                r if r < 0.93 => ("purchase", Some(rng.gen_range(1..4) as f64)),
                _ => ("rating", Some(rng.gen_range(2..=10) as f64 / 2.0)),
            };
            let at = Timestamp(now.0 - rng.gen_range(0..60 * candor_domain::timestamp::DAY_MS));
            let mut context = BTreeMap::new();
            context.insert(
                "device".to_string(),
                ["mobile", "desktop", "tablet"][rng.gen_range(0..3)].to_string(),
            );
            drafts.push(EventDraft {
                subject: subject.clone(),
                item: item.id.clone(),
                event_type: event_type.into(),
                value,
                timestamp: Some(at.to_rfc3339()),
                context,
            });
        }
    }
    for batch in drafts.chunks(5000) {
        let report = engine.ingest(&actor, batch, false).await?;
        summary.accepted += report.accepted;
        for r in report.refused {
            *summary.refused.entry(r.reason.code()).or_default() += 1;
        }
    }
    Ok(summary)
}
