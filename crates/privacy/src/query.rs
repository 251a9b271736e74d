//! Differentially private aggregate queries, as pure functions. A question is first planned
//! ([`plan`]: validated, and the sensitivity and noise of every released vector fixed before
//! any data is read), then answered over public rows ([`Partitions`]: the catalogue's items or
//! categories, the days of the range, the bins) from each subject's events ([`aggregate`]:
//! contribution bounding and exact sums on an integer grid), noised ([`add_noise`], OpenDP's
//! exact discrete Gaussian), and turned into rows with intervals ([`answer_rows`],
//! post-processing). The engine does the I/O around it: reading consented events, charging
//! the budget, auditing.
//!
//! The privacy argument lives in [`plan`] and [`aggregate`]: each subject adds at most
//! `max_contributions` events (a random sample if more), at most `max_per_partition` to any row,
//! so one subject moves the vector of row counts by at most [`count_sensitivity`] in L2; a mean
//! releases a clamped, grid-rounded sum and a count, each at half the cost, the rounding
//! charged to the sum's sensitivity. Each release is Gaussian with σ = Δ/√(2ρ), so the query
//! is ρ-zCDP. Which rows exist is public, so no partition selection is needed.
//!
//! Over 500 lines because the unit tests of every parameter check are kept beside the checks.

use crate::rho_for_epsilon;

pub use crate::answer::{
    AnswerRow, Contribution, Partitions, add_noise, aggregate, answer_rows, day_label,
};

/// Largest `max_contributions`.
pub const MAX_CONTRIBUTIONS: u32 = 1000;
/// Most histogram bins.
pub const MAX_BINS: u32 = 1000;
/// Most days in a per-day count.
pub const MAX_DAYS: i64 = 366;
/// Most rows of a top-k answer.
pub const MAX_K: usize = 1000;
/// Grid steps per unit of the largest bound in sums of values.
const VALUE_GRID: f64 = 1024.0;
/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;
/// The largest noise σ (grid units) a query may ask for.
pub(crate) const MAX_NOISE_SIGMA: f64 = 1e12;
/// Why a cost too small to answer is refused.
pub(crate) const TOO_LITTLE: &str =
    "the cost is so small that the noise would swamp any answer; ask for more";

/// The kinds of question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(rename_all = "snake_case"))]
pub enum QueryKind {
    /// Events per catalogue item.
    CountByItem,
    /// Events per catalogue category.
    CountByCategory,
    /// Events per UTC day of a range.
    CountByDay,
    /// Events per bin of their value.
    Histogram,
    /// The k items with the most events (noisy counts of every item, then the top k).
    TopK,
    /// The mean of event values clamped to bounds.
    Mean,
}

impl QueryKind {
    /// Every kind.
    pub const ALL: [QueryKind; 6] = [
        Self::CountByItem,
        Self::CountByCategory,
        Self::CountByDay,
        Self::Histogram,
        Self::TopK,
        Self::Mean,
    ];

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CountByItem => "count_by_item",
            Self::CountByCategory => "count_by_category",
            Self::CountByDay => "count_by_day",
            Self::Histogram => "histogram",
            Self::TopK => "top_k",
            Self::Mean => "mean",
        }
    }

    /// The kind with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Every name, comma-separated, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

/// A question, as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// What is asked.
    pub kind: QueryKind,
    /// The cost as ε at the budget's δ; give this or `rho`.
    pub epsilon: Option<f64>,
    /// The cost as zCDP ρ.
    pub rho: Option<f64>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events at or after this time (ms); required by `count_by_day`.
    pub from: Option<i64>,
    /// Only events before this time (ms); required by `count_by_day`.
    pub to: Option<i64>,
    /// Most events counted per subject (default 10).
    pub max_contributions: Option<u32>,
    /// Most events per subject in any one row (default 1).
    pub max_per_partition: Option<u32>,
    /// Rows of a `top_k` answer (default 10).
    pub k: Option<usize>,
    /// Lower bound of values (histogram, mean).
    pub lower: Option<f64>,
    /// Upper bound of values (histogram, mean).
    pub upper: Option<f64>,
    /// Histogram bins (default 10).
    pub bins: Option<u32>,
    /// Preview the cost only: nothing is read or charged.
    pub dry_run: bool,
}

impl Query {
    /// A question of `kind` with every parameter at its default (the cost must still be set).
    pub fn new(kind: QueryKind) -> Self {
        Self {
            kind,
            epsilon: None,
            rho: None,
            event_type: None,
            from: None,
            to: None,
            max_contributions: None,
            max_per_partition: None,
            k: None,
            lower: None,
            upper: None,
            bins: None,
            dry_run: false,
        }
    }
}

/// Why a question cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// A parameter is missing, out of range, or not allowed with the kind.
    #[error("{0}")]
    Invalid(String),
    /// A lower bound or start is not below its upper bound or end.
    #[error("{0}")]
    BoundsOutOfOrder(&'static str),
}

fn invalid(message: impl Into<String>) -> QueryError {
    QueryError::Invalid(message.into())
}

/// The largest magnitude of a value bound: every sum, width, noise scale and interval
/// computed from bounds this size stays a finite number.
pub const MAX_BOUND: f64 = 1e12;

/// Finite bounds on values, lower below upper, each at most [`MAX_BOUND`] in magnitude.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub(crate) lower: f64,
    pub(crate) upper: f64,
}

impl Bounds {
    /// Checks the bounds.
    pub fn new(lower: f64, upper: f64) -> Result<Self, QueryError> {
        if !(lower.is_finite() && upper.is_finite()) {
            return Err(invalid("lower and upper must be finite numbers"));
        }
        if lower.abs() > MAX_BOUND || upper.abs() > MAX_BOUND {
            return Err(invalid(
                "lower and upper must each be between -1e12 and 1e12, so that sums and widths stay finite",
            ));
        }
        if lower >= upper {
            return Err(QueryError::BoundsOutOfOrder(
                "lower must be smaller than upper",
            ));
        }
        Ok(Self { lower, upper })
    }

    /// The lower bound.
    pub fn lower(self) -> f64 {
        self.lower
    }

    /// The upper bound.
    pub fn upper(self) -> f64 {
        self.upper
    }

    pub(crate) fn clamp(self, v: f64) -> f64 {
        v.clamp(self.lower, self.upper)
    }
}

/// What a planned question releases rows over: its kind with the parameters that kind needs,
/// checked (so no later step has to assume them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Events per catalogue item.
    CountByItem,
    /// Events per catalogue category.
    CountByCategory,
    /// The `k` items with the most events.
    TopK {
        /// Rows kept.
        k: usize,
    },
    /// Events per UTC day from `from` to `to` (ms).
    CountByDay {
        /// Start (inclusive).
        from: i64,
        /// End (exclusive).
        to: i64,
    },
    /// Events per value bin.
    Histogram {
        /// The values' range.
        bounds: Bounds,
        /// Bins.
        bins: u32,
    },
    /// The mean of clamped values.
    Mean {
        /// The values' range.
        bounds: Bounds,
    },
}

impl Shape {
    /// The kind this shape answers.
    pub fn kind(self) -> QueryKind {
        match self {
            Self::CountByItem => QueryKind::CountByItem,
            Self::CountByCategory => QueryKind::CountByCategory,
            Self::TopK { .. } => QueryKind::TopK,
            Self::CountByDay { .. } => QueryKind::CountByDay,
            Self::Histogram { .. } => QueryKind::Histogram,
            Self::Mean { .. } => QueryKind::Mean,
        }
    }

    pub(crate) fn bounds(self) -> Option<Bounds> {
        match self {
            Self::Histogram { bounds, .. } | Self::Mean { bounds } => Some(bounds),
            _ => None,
        }
    }
}

/// One noisy vector of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Release {
    /// L2 sensitivity in grid units.
    pub sensitivity: f64,
    /// Size of a grid unit in the answer's units.
    pub unit: f64,
    /// Noise σ in grid units.
    pub sigma: f64,
}

/// A planned question: what it releases, at what cost, bounding what.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The rows and the parameters of the kind.
    pub shape: Shape,
    /// The cost in zCDP ρ.
    pub rho: f64,
    /// Most events counted per subject.
    pub max_contributions: u32,
    /// Most events per subject in one row.
    pub max_per_partition: u32,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events at or after this time (ms).
    pub from: Option<i64>,
    /// Only events before this time (ms).
    pub to: Option<i64>,
    /// The released vectors: one, or a mean's sum then count.
    pub releases: Vec<Release>,
}

/// L2 sensitivity of per-row counts when a subject adds at most `total` events, at most
/// `per_row` to any row: ⌊total/per_row⌋ rows of `per_row` and one of the rest.
pub fn count_sensitivity(total: u32, per_row: u32) -> f64 {
    let (q, r) = (total / per_row, total % per_row);
    ((q as f64) * (per_row as f64).powi(2) + (r as f64).powi(2)).sqrt()
}

/// The cost in ρ: ε at the budget's `delta`, or ρ directly.
fn cost(q: &Query, delta: f64) -> Result<f64, QueryError> {
    match (q.epsilon, q.rho) {
        (Some(e), None) => {
            if !(e.is_finite() && e > 0.0) {
                return Err(invalid("epsilon must be a number greater than 0"));
            }
            rho_for_epsilon(e, delta).map_err(|e| invalid(e.to_string()))
        }
        (None, Some(r)) => {
            if !(r.is_finite() && r > 0.0) {
                return Err(invalid("rho must be a number greater than 0"));
            }
            Ok(r)
        }
        _ => Err(invalid("give the query's cost as either epsilon or rho")),
    }
}

/// The shape of the question, from its kind and the parameters that kind takes.
fn shape(q: &Query) -> Result<Shape, QueryError> {
    let value_query = matches!(q.kind, QueryKind::Histogram | QueryKind::Mean);
    let bounds = match (q.lower, q.upper) {
        (Some(lo), Some(hi)) if value_query => Some(Bounds::new(lo, hi)?),
        (None, None) if !value_query => None,
        _ if value_query => {
            return Err(invalid(format!(
                "{} needs lower and upper bounds on the values",
                q.kind.as_str()
            )));
        }
        _ => {
            return Err(invalid(format!(
                "{} takes no lower or upper bounds",
                q.kind.as_str()
            )));
        }
    };
    Ok(match (q.kind, bounds) {
        (QueryKind::CountByItem, _) => Shape::CountByItem,
        (QueryKind::CountByCategory, _) => Shape::CountByCategory,
        (QueryKind::TopK, _) => {
            let k = q.k.unwrap_or(10);
            if !(1..=MAX_K).contains(&k) {
                return Err(invalid(format!("k must be between 1 and {MAX_K}")));
            }
            Shape::TopK { k }
        }
        (QueryKind::CountByDay, _) => {
            let (Some(from), Some(to)) = (q.from, q.to) else {
                return Err(invalid("count_by_day needs from and to (milliseconds)"));
            };
            let days = (to as i128 - from as i128 + DAY_MS as i128 - 1) / DAY_MS as i128;
            if days > MAX_DAYS as i128 {
                return Err(invalid(format!(
                    "count_by_day covers at most {MAX_DAYS} days"
                )));
            }
            Shape::CountByDay { from, to }
        }
        (QueryKind::Histogram, Some(bounds)) => {
            let bins = q.bins.unwrap_or(10);
            if !(1..=MAX_BINS).contains(&bins) {
                return Err(invalid(format!("bins must be between 1 and {MAX_BINS}")));
            }
            Shape::Histogram { bounds, bins }
        }
        (QueryKind::Mean, Some(bounds)) => Shape::Mean { bounds },
        (QueryKind::Histogram | QueryKind::Mean, None) => unreachable!("bounds checked above"),
    })
}

/// The released vectors of a shape at cost `rho`, with `max_contributions` per subject.
fn releases(
    shape: Shape,
    rho: f64,
    max_contributions: u32,
    max_per_partition: u32,
) -> Vec<Release> {
    let Shape::Mean { bounds } = shape else {
        let s = count_sensitivity(max_contributions, max_per_partition);
        return vec![Release {
            sensitivity: s,
            unit: 1.0,
            sigma: s / (2.0 * rho).sqrt(),
        }];
    };
    // Sum and count, each at half the cost. Each value is clamped, then rounded to the grid:
    // |round(v/g)| ≤ B/g + ½, so the rounding is charged to the sensitivity.
    let b = bounds.lower.abs().max(bounds.upper.abs());
    let unit = b / VALUE_GRID;
    let per_value = (b / unit + 0.5).ceil();
    let half = rho / 2.0;
    let sum = max_contributions as f64 * per_value;
    let count = max_contributions as f64;
    vec![
        Release {
            sensitivity: sum,
            unit,
            sigma: sum / (2.0 * half).sqrt(),
        },
        Release {
            sensitivity: count,
            unit: 1.0,
            sigma: count / (2.0 * half).sqrt(),
        },
    ]
}

/// Plans a question: checks every parameter, and fixes its cost (ρ, with ε given at the
/// budget's `delta`) and the sensitivity and noise of what it releases. Event types are the
/// policy's, so the caller checks `event_type`.
pub fn plan(q: &Query, delta: f64) -> Result<Plan, QueryError> {
    let rho = cost(q, delta)?;
    let max_contributions = q.max_contributions.unwrap_or(10);
    if !(1..=MAX_CONTRIBUTIONS).contains(&max_contributions) {
        return Err(invalid(format!(
            "max_contributions must be between 1 and {MAX_CONTRIBUTIONS}"
        )));
    }
    let max_per_partition = q.max_per_partition.unwrap_or(1);
    if !(1..=max_contributions).contains(&max_per_partition) {
        return Err(invalid(
            "max_per_partition must be between 1 and max_contributions",
        ));
    }
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(QueryError::BoundsOutOfOrder("from must be earlier than to"));
    }
    let shape = shape(q)?;
    let releases = releases(shape, rho, max_contributions, max_per_partition);
    if releases.iter().any(|r| r.sigma > MAX_NOISE_SIGMA) {
        return Err(invalid(TOO_LITTLE));
    }
    Ok(Plan {
        shape,
        rho,
        max_contributions,
        max_per_partition,
        event_type: q.event_type.clone(),
        from: q.from,
        to: q.to,
        releases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(kind: QueryKind, change: impl FnOnce(&mut Query)) -> Result<Plan, QueryError> {
        let mut q = Query::new(kind);
        q.rho = Some(0.5);
        change(&mut q);
        plan(&q, 1e-6)
    }

    #[test]
    fn kinds_round_trip_and_unknown_ones_are_refused() {
        for kind in QueryKind::ALL {
            assert_eq!(QueryKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(QueryKind::parse("median"), None);
        assert!(QueryKind::names().contains("top_k"));
    }

    #[test]
    fn plans_check_every_parameter() {
        use QueryKind::*;
        type Change = fn(&mut Query);
        let refused: Vec<(QueryKind, Change)> = vec![
            (CountByItem, |q| q.rho = Some(0.0)),
            (CountByItem, |q| q.epsilon = Some(1.0)),
            (CountByItem, |q| {
                q.rho = None;
                q.epsilon = Some(f64::NAN)
            }),
            (CountByItem, |q| q.max_contributions = Some(0)),
            (CountByItem, |q| q.max_per_partition = Some(11)),
            (CountByItem, |q| q.lower = Some(1.0)),
            (Mean, |_| {}),
            (Histogram, |q| {
                q.lower = Some(0.0);
                q.upper = Some(1.0);
                q.bins = Some(0)
            }),
            (CountByDay, |_| {}),
            (CountByDay, |q| {
                q.from = Some(0);
                q.to = Some(400 * DAY_MS)
            }),
            (TopK, |q| q.k = Some(0)),
            (CountByItem, |q| q.rho = Some(1e-300)),
            // Finite bounds whose difference overflows once answered `null` and charged ε.
            (Mean, |q| {
                q.lower = Some(-1e308);
                q.upper = Some(1e308)
            }),
            (Histogram, |q| {
                q.lower = Some(-1e308);
                q.upper = Some(1e308);
                q.bins = Some(4)
            }),
            (Mean, |q| {
                q.lower = Some(0.0);
                q.upper = Some(1.5e12)
            }),
        ];
        for (kind, change) in refused {
            assert!(
                matches!(ask(kind, change), Err(QueryError::Invalid(_))),
                "{kind:?}"
            );
        }
        for (kind, change) in [
            (
                CountByItem,
                (|q: &mut Query| {
                    q.from = Some(10);
                    q.to = Some(5)
                }) as fn(&mut Query),
            ),
            (Mean, |q| {
                q.lower = Some(5.0);
                q.upper = Some(1.0)
            }),
        ] {
            assert!(matches!(
                ask(kind, change),
                Err(QueryError::BoundsOutOfOrder(_))
            ));
        }
    }

    #[test]
    fn sensitivities_and_noise_follow_the_bounds() {
        assert_eq!(count_sensitivity(10, 1), 10f64.sqrt());
        assert_eq!(count_sensitivity(10, 3), (27.0f64 + 1.0).sqrt());
        let p = ask(QueryKind::CountByItem, |q| q.max_contributions = Some(4)).unwrap();
        assert_eq!(p.releases.len(), 1);
        assert_eq!(p.releases[0].sensitivity, 2.0);
        assert!(
            (p.releases[0].sigma - 2.0).abs() < 1e-12,
            "σ = Δ/√(2ρ) = 2/1"
        );
        let mean = ask(QueryKind::Mean, |q| {
            q.lower = Some(-2.0);
            q.upper = Some(4.0);
            q.max_contributions = Some(3)
        })
        .unwrap();
        let [sum, count] = [mean.releases[0], mean.releases[1]];
        assert_eq!(sum.unit, 4.0 / 1024.0);
        assert_eq!(sum.sensitivity, 3.0 * 1025.0, "rounding charged");
        assert_eq!(count.sensitivity, 3.0);
        // Each at half the cost: ρ/2 = 0.25 = Δ²/(2σ²).
        assert!((count.sigma - 3.0 / 0.5f64.sqrt()).abs() < 1e-12);
    }
}
