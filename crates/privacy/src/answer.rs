//! Answering a planned query (see [`crate::query`]): the public rows of the answer, each
//! subject's bounded contribution summed exactly on the grid, the noise, and the answer rows
//! with their intervals (post-processing of the release).

use std::collections::HashMap;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::AccountantError;
use crate::query::{Bounds, DAY_MS, Plan, Release, Shape};

/// What one event contributes to an answer: its item, type, time and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The item.
    pub item: String,
    /// The event type.
    pub event_type: String,
    /// When (ms).
    pub occurred_at: i64,
    /// The value, if any.
    pub value: Option<f64>,
}

/// The public rows of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Partitions {
    keys: Vec<String>,
    /// Row of each catalogue item (item and top-k counts) or of its category.
    by_item: HashMap<String, usize>,
    /// The first day of a per-day count (days since the epoch).
    first_day: i64,
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (the proleptic Gregorian calendar).
pub fn day_label(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Partitions {
    /// The rows of `plan` over a catalogue of `(item, category)`: its items, its categories,
    /// the days of the range, the bins, or a mean's sum and count.
    pub fn new<'a>(
        plan: &Plan,
        catalogue: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Self {
        let mut by_item = HashMap::new();
        let mut first_day = 0;
        let keys = match plan.shape {
            Shape::CountByItem | Shape::TopK { .. } => {
                let mut items: Vec<&str> = catalogue.into_iter().map(|(id, _)| id).collect();
                items.sort_unstable();
                items.dedup();
                by_item = items
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.to_string(), i))
                    .collect();
                items.into_iter().map(str::to_owned).collect()
            }
            Shape::CountByCategory => {
                let labelled: Vec<(&str, &str)> = catalogue
                    .into_iter()
                    .filter_map(|(id, category)| Some((id, category?)))
                    .collect();
                let mut categories: Vec<&str> = labelled.iter().map(|(_, c)| *c).collect();
                categories.sort_unstable();
                categories.dedup();
                let row: HashMap<&str, usize> = categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (*c, i))
                    .collect();
                by_item = labelled
                    .iter()
                    .map(|(id, c)| (id.to_string(), row[c]))
                    .collect();
                categories.into_iter().map(str::to_owned).collect()
            }
            Shape::CountByDay { from, to } => {
                first_day = from.div_euclid(DAY_MS);
                let last = (to - 1).div_euclid(DAY_MS);
                (first_day..=last).map(day_label).collect()
            }
            Shape::Histogram { bounds, bins } => {
                let width = (bounds.upper - bounds.lower) / bins as f64;
                (0..bins)
                    .map(|b| {
                        let low = bounds.lower + width * b as f64;
                        format!("[{}, {})", low, bounds.lower + width * (b + 1) as f64)
                    })
                    .collect()
            }
            Shape::Mean { .. } => vec!["sum".into(), "count".into()],
        };
        Self {
            keys,
            by_item,
            first_day,
        }
    }

    /// The rows' keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The row an event falls in, if any.
    fn row_of(&self, shape: Shape, e: &Contribution) -> Option<usize> {
        match shape {
            Shape::CountByItem | Shape::TopK { .. } | Shape::CountByCategory => {
                self.by_item.get(&e.item).copied()
            }
            Shape::CountByDay { .. } => {
                let day = e.occurred_at.div_euclid(DAY_MS) - self.first_day;
                usize::try_from(day).ok().filter(|&d| d < self.keys.len())
            }
            Shape::Histogram { bounds, bins } => {
                let v = bounds.clamp(e.value?);
                let bin =
                    ((v - bounds.lower) / (bounds.upper - bounds.lower) * bins as f64).floor();
                Some((bin as usize).min(bins as usize - 1))
            }
            Shape::Mean { .. } => Some(0),
        }
    }
}

impl Plan {
    /// Whether an event is in the question's range (type, time, and a value for value
    /// questions).
    pub fn admits(&self, e: &Contribution) -> bool {
        self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
            && self.from.is_none_or(|f| e.occurred_at >= f)
            && self.to.is_none_or(|t| e.occurred_at < t)
            && (self.shape.bounds().is_none() || e.value.is_some())
    }
}

/// Exact per-row sums in grid units over the admitted events of each subject (one list per
/// subject), after bounding each subject's contribution: a random sample of at most
/// `max_contributions` events, at most `max_per_partition` in any row.
pub fn aggregate<R: Rng + ?Sized>(
    plan: &Plan,
    partitions: &Partitions,
    subjects: Vec<Vec<Contribution>>,
    rng: &mut R,
) -> Vec<i64> {
    let mut sums = vec![0i64; partitions.keys.len()];
    for mut events in subjects {
        events.retain(|e| plan.admits(e));
        // Sampling within a subject: a random order, then the bounds.
        events.shuffle(rng);
        let mut taken = 0u32;
        let mut per_row: HashMap<usize, u32> = HashMap::new();
        for e in &events {
            if taken == plan.max_contributions {
                break;
            }
            let Some(row) = partitions.row_of(plan.shape, e) else {
                continue;
            };
            let count = per_row.entry(row).or_default();
            match plan.shape {
                // A mean has one row: only max_contributions bounds it (its sensitivity).
                Shape::Mean { bounds } => {
                    let v = bounds.clamp(e.value.unwrap_or(0.0));
                    sums[0] += (v / plan.releases[0].unit).round() as i64;
                    sums[1] += 1;
                }
                _ if *count == plan.max_per_partition => continue,
                _ => sums[row] += 1,
            }
            *count += 1;
            taken += 1;
        }
    }
    sums
}

/// The release each row's noise comes from: a mean's sum and count have their own.
fn release_of(plan: &Plan, row: usize) -> Release {
    match plan.shape {
        Shape::Mean { .. } => plan.releases[row],
        _ => plan.releases[0],
    }
}

/// Adds exact discrete Gaussian noise to every row (OpenDP's sampler).
pub fn add_noise(plan: &Plan, exact: &[i64]) -> Result<Vec<i64>, AccountantError> {
    exact
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let noise = crate::noise::discrete_gaussian(release_of(plan, row).sigma)?;
            Ok(value + noise)
        })
        .collect()
}

/// One row of an answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnswerRow {
    /// The item, category, day (YYYY-MM-DD), bin (`[low, high)`) or `mean`/`sum`/`count`.
    pub key: String,
    /// The noisy value.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Standard deviation of the noise in this row, in the value's units.
    pub noise_scale: f64,
    /// The interval's coverage (0.95; at least 0.90 for a mean, from two 95% intervals).
    pub confidence: f64,
}

/// Noisy counts over public keys where each person adds at most 1 to each count (so the L2
/// sensitivity is √(number of keys)): discrete Gaussian noise calibrated to ρ-zCDP, each row
/// with its 95% interval. The exact counts never leave this function.
pub fn noisy_counts(exact: &[(String, i64)], rho: f64) -> Result<Vec<AnswerRow>, AccountantError> {
    if !(rho.is_finite() && rho > 0.0) {
        return Err(AccountantError::Invalid("rho must be a positive number"));
    }
    let sensitivity = (exact.len().max(1) as f64).sqrt();
    let release = Release {
        sensitivity,
        sigma: sensitivity / (2.0 * rho).sqrt(),
        unit: 1.0,
    };
    if release.sigma > crate::query::MAX_NOISE_SIGMA {
        return Err(AccountantError::Invalid(crate::query::TOO_LITTLE));
    }
    exact
        .iter()
        .map(|(key, value)| {
            let noisy = value + crate::noise::discrete_gaussian(release.sigma)?;
            Ok(row(key, noisy, release))
        })
        .collect()
}

/// Half-width, in grid units, of the central 95% interval of N_ℤ(0, σ²).
fn half_width(sigma: f64) -> f64 {
    if sigma <= 1000.0 {
        crate::fast::interval_95(sigma) as f64
    } else {
        (1.96 * sigma).ceil()
    }
}

fn row(key: &str, value: i64, r: Release) -> AnswerRow {
    let w = half_width(r.sigma);
    AnswerRow {
        key: key.to_owned(),
        value: value as f64 * r.unit,
        low: (value as f64 - w) * r.unit,
        high: (value as f64 + w) * r.unit,
        noise_scale: r.sigma * r.unit,
        confidence: 0.95,
    }
}

/// The mean's row from its noisy sum and count (post-processing): the ratio clamped to the
/// bounds, its interval from the corners of the two 95% intervals (coverage at least 90%).
fn mean_row(bounds: Bounds, sum: &AnswerRow, count: &AnswerRow) -> AnswerRow {
    let (lo, hi) = (bounds.lower, bounds.upper);
    let ratio = |s: f64, c: f64| {
        if c >= 1.0 {
            (s / c).clamp(lo, hi)
        } else {
            (lo + hi) / 2.0
        }
    };
    let (low, high) = if count.low >= 1.0 {
        let corners = [
            ratio(sum.low, count.low),
            ratio(sum.low, count.high),
            ratio(sum.high, count.low),
            ratio(sum.high, count.high),
        ];
        (
            corners.iter().copied().fold(f64::INFINITY, f64::min),
            corners.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    } else {
        (lo, hi)
    };
    AnswerRow {
        key: "mean".into(),
        value: ratio(sum.value, count.value),
        low,
        high,
        // The ratio's noise is not Gaussian: the scale a Gaussian with this 90% interval
        // would have.
        noise_scale: (high - low) / (2.0 * 1.645),
        confidence: 0.90,
    }
}

/// The answer rows from the noisy grid sums (post-processing of the release).
pub fn answer_rows(plan: &Plan, partitions: &Partitions, noisy: &[i64]) -> Vec<AnswerRow> {
    let keys = &partitions.keys;
    match plan.shape {
        Shape::Mean { bounds } => {
            let sum = row("sum", noisy[0], plan.releases[0]);
            let count = row("count", noisy[1], plan.releases[1]);
            vec![mean_row(bounds, &sum, &count), sum, count]
        }
        Shape::TopK { k } => {
            let mut order: Vec<usize> = (0..noisy.len()).collect();
            order.sort_by(|&a, &b| noisy[b].cmp(&noisy[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(k)
                .map(|i| row(&keys[i], noisy[i], plan.releases[0]))
                .collect()
        }
        _ => keys
            .iter()
            .zip(noisy)
            .map(|(key, &v)| row(key, v, plan.releases[0]))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Query, QueryError, QueryKind, plan};

    const DAY_MS: i64 = 86_400_000;

    fn ask(kind: QueryKind, change: impl FnOnce(&mut Query)) -> Result<Plan, QueryError> {
        let mut q = Query::new(kind);
        q.rho = Some(0.5);
        change(&mut q);
        plan(&q, 1e-6)
    }

    fn event(item: &str, at: i64, value: Option<f64>) -> Contribution {
        Contribution {
            item: item.into(),
            event_type: "view".into(),
            occurred_at: at,
            value,
        }
    }

    #[test]
    fn contributions_are_bounded_per_subject_and_per_row() {
        let p = ask(QueryKind::CountByItem, |q| {
            q.max_contributions = Some(3);
            q.max_per_partition = Some(2)
        })
        .unwrap();
        let rows = Partitions::new(&p, [("a", None), ("b", None), ("c", None)]);
        assert_eq!(rows.keys(), ["a", "b", "c"]);
        let heavy: Vec<Contribution> = (0..50).map(|t| event("a", t, None)).collect();
        let spread = vec![
            event("a", 0, None),
            event("b", 0, None),
            event("z", 0, None),
        ];
        let sums = aggregate(&p, &rows, vec![heavy, spread], &mut rand::thread_rng());
        // The heavy subject adds at most 2 to row a; the other 1 to a and 1 to b (z is not in
        // the catalogue, so it is no row).
        assert_eq!(sums, vec![3, 1, 0]);
    }

    #[test]
    fn days_bins_and_means_land_in_their_rows() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(20_790), "2026-12-03");
        assert_eq!(day_label(-1), "1969-12-31");
        let days = ask(QueryKind::CountByDay, |q| {
            q.from = Some(DAY_MS / 2);
            q.to = Some(3 * DAY_MS);
            q.max_contributions = Some(5)
        })
        .unwrap();
        let rows = Partitions::new(&days, []);
        assert_eq!(rows.keys(), ["1970-01-01", "1970-01-02", "1970-01-03"]);
        let one = vec![
            event("a", DAY_MS / 2, None),
            event("a", DAY_MS + 5, None),
            event("a", 0, None), // before `from`: not admitted
        ];
        assert_eq!(
            aggregate(&days, &rows, vec![one], &mut rand::thread_rng()),
            [1, 1, 0]
        );
        let hist = ask(QueryKind::Histogram, |q| {
            q.lower = Some(0.0);
            q.upper = Some(10.0);
            q.bins = Some(2);
            q.max_contributions = Some(5);
            q.max_per_partition = Some(5)
        })
        .unwrap();
        let rows = Partitions::new(&hist, []);
        assert_eq!(rows.keys(), ["[0, 5)", "[5, 10)"]);
        let values = vec![
            event("a", 0, Some(-3.0)),
            event("a", 0, Some(4.9)),
            event("a", 0, Some(99.0)),
            event("a", 0, None),
        ];
        assert_eq!(
            aggregate(&hist, &rows, vec![values], &mut rand::thread_rng()),
            [2, 1]
        );
        let mean = ask(QueryKind::Mean, |q| {
            q.lower = Some(0.0);
            q.upper = Some(4.0)
        })
        .unwrap();
        let rows = Partitions::new(&mean, []);
        let sums = aggregate(
            &mean,
            &rows,
            vec![vec![event("a", 0, Some(1.0)), event("a", 0, Some(3.0))]],
            &mut rand::thread_rng(),
        );
        assert_eq!(sums, [1024, 2], "the values 1 and 3 on a grid of 4/1024");
        let answer = answer_rows(&mean, &rows, &sums);
        assert_eq!(answer[0].key, "mean");
        assert!((answer[0].value - 2.0).abs() < 1e-12);
        assert_eq!(answer[0].confidence, 0.90);
        assert!(answer[0].low <= 2.0 && answer[0].high >= 2.0);
    }

    #[test]
    fn noisy_counts_are_calibrated_and_refuse_useless_costs() {
        // Counts over public keys: σ follows √keys / √(2ρ); each interval holds its value.
        let exact = vec![
            ("a".to_string(), 10),
            ("b".to_string(), 0),
            ("c".to_string(), 3),
        ];
        let rows = noisy_counts(&exact, 0.5).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(
            rows.iter()
                .all(|r| (r.noise_scale - 3f64.sqrt()).abs() < 1e-12)
        );
        assert!(rows.iter().all(|r| r.low <= r.value && r.value <= r.high));
        assert!(noisy_counts(&exact, 0.0).is_err());
        assert!(
            noisy_counts(&exact, 1e-300).is_err(),
            "too little to answer"
        );
    }

    #[test]
    fn top_k_keeps_the_largest_noisy_rows() {
        let p = ask(QueryKind::TopK, |q| q.k = Some(2)).unwrap();
        let rows = Partitions::new(&p, [("a", None), ("b", None), ("c", None)]);
        let answer = answer_rows(&p, &rows, &[5, 9, 7]);
        let keys: Vec<&str> = answer.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
        assert!(answer.iter().all(|r| r.low < r.value && r.value < r.high));
        let noisy = add_noise(&p, &[5, 9, 7]).unwrap();
        assert_eq!(noisy.len(), 3);
    }
}
