//! Differentially private analytics (DESIGN invariant 6): aggregate questions over events
//! consented for `analytics.reporting`, answered with exact discrete Gaussian noise and charged
//! atomically to the dataset's budget.
//!
//! Every query bounds each subject's contribution (at most `max_contributions` events in all,
//! a random sample if more, and at most `max_per_partition` in any one answer row), states its
//! cost in zCDP ρ and in ε at the budget's δ before anything runs, and is answered over a
//! public set of rows — the catalogue's items or categories, the days of the requested range,
//! the requested histogram bins — so which rows exist reveals nothing about anyone. Values are
//! rounded onto an integer grid before noise, and the rounding is charged to the sensitivity.
//! A query that fails is not charged; a charge is written with its audit entry in one
//! transaction and never lets the period's total exceed the budget.

use std::collections::HashMap;

use candor_domain::ErrorCode;
use candor_domain::{AuditAction, Pseudonym, Timestamp};
use candor_privacy::{Accountant, rho_for_epsilon};
use candor_store::{BudgetCharge, BudgetState};
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::read::Event;
use crate::{Actor, Engine, EngineError, Result};

/// The purpose analytics reads events for.
pub const ANALYTICS_PURPOSE: &str = "analytics.reporting";
/// The one dataset analysts query: consented events.
pub const DATASET: &str = "events";
/// The ledger of DP item model releases (accounted; capped if settings say so).
pub const MODEL_RELEASES: &str = "model_releases";
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
const DAY_MS: i64 = 86_400_000;
/// The largest noise σ (grid units) a query may ask for.
const MAX_NOISE_SIGMA: f64 = 1e12;

/// The analytics budget of the dataset, from settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalyticsBudget {
    /// ε the period may spend.
    pub epsilon: f64,
    /// δ of the whole budget.
    pub delta: f64,
    /// The budget starts afresh this long after its period began; `None`: never.
    pub refill_ms: Option<i64>,
}

impl Default for AnalyticsBudget {
    fn default() -> Self {
        Self {
            epsilon: 4.0,
            delta: 1e-6,
            refill_ms: None,
        }
    }
}

/// The kinds of question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Parses a kind's name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "count_by_item" => Self::CountByItem,
            "count_by_category" => Self::CountByCategory,
            "count_by_day" => Self::CountByDay,
            "histogram" => Self::Histogram,
            "top_k" => Self::TopK,
            "mean" => Self::Mean,
            other => {
                return Err(EngineError::refused(
                    ErrorCode::UnknownQueryKind,
                    format!(
                        "`{other}` is not a query kind; use count_by_item, count_by_category, \
                         count_by_day, histogram, top_k or mean"
                    ),
                ));
            }
        })
    }

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
}

/// A question, as asked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalyticsQuery {
    /// The kind's name (see [`QueryKind`]).
    pub kind: String,
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

/// What a query costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueryCost {
    /// zCDP ρ.
    pub rho: f64,
    /// ε of this query alone at `delta`.
    pub epsilon: f64,
    /// The budget's δ.
    pub delta: f64,
}

/// One row of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// A budget's state, for people.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    /// The dataset.
    pub dataset: &'static str,
    /// ε the period may spend.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// The period's limit in zCDP ρ (the largest ρ whose ε at δ is within the budget).
    pub limit_rho: f64,
    /// ρ spent this period.
    pub spent_rho: f64,
    /// ρ left.
    pub remaining_rho: f64,
    /// ε of what was spent, at δ.
    pub spent_epsilon: f64,
    /// When this period began (RFC 3339), if anything was charged.
    pub period_start: Option<String>,
    /// When the budget refills (RFC 3339), if it does.
    pub refills_at: Option<String>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalyticsAnswer {
    /// The kind.
    pub kind: &'static str,
    /// The dataset.
    pub dataset: &'static str,
    /// True when only the cost was previewed.
    pub dry_run: bool,
    /// The cost (charged unless a dry run).
    pub cost: QueryCost,
    /// `discrete_gaussian`.
    pub mechanism: &'static str,
    /// L2 sensitivity of the released vector, in its own units.
    pub sensitivity: f64,
    /// Most events counted per subject.
    pub max_contributions: u32,
    /// Most events per subject in one row.
    pub max_per_partition: u32,
    /// The rows (empty in a dry run).
    pub rows: Vec<AnswerRow>,
    /// The budget after this query.
    pub budget: BudgetStatus,
}

/// A validated query: rows, bounds and noise.
struct Plan {
    kind: QueryKind,
    rho: f64,
    max_contributions: u32,
    max_per_partition: u32,
    /// For value queries: lower, upper and (bins).
    bounds: Option<(f64, f64)>,
    bins: u32,
    k: usize,
    event_type: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    /// L2 sensitivity in grid units and the grid step (1 for counts), per release.
    releases: Vec<Release>,
}

/// The public rows of a query, and for `count_by_category` each catalogue item's category.
struct Partitions {
    keys: Vec<String>,
    category_of: HashMap<String, String>,
}

/// One noisy vector of a query.
#[derive(Debug, Clone, Copy)]
struct Release {
    /// L2 sensitivity in grid units.
    sensitivity: f64,
    /// Size of a grid unit in the answer's units.
    unit: f64,
    /// Noise σ in grid units.
    sigma: f64,
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::refused(ErrorCode::InvalidField, message)
}

/// L2 sensitivity of per-row counts when a subject adds at most `total` events, at most
/// `per_row` to any row: ⌊total/per_row⌋ rows of `per_row` and one of the rest.
fn count_sensitivity(total: u32, per_row: u32) -> f64 {
    let (q, r) = (total / per_row, total % per_row);
    ((q as f64) * (per_row as f64).powi(2) + (r as f64).powi(2)).sqrt()
}

/// Half-width, in grid units, of the central 95% interval of N_ℤ(0, σ²).
fn half_width(sigma: f64) -> f64 {
    if sigma <= 1000.0 {
        candor_privacy::fast::interval_95(sigma) as f64
    } else {
        (1.96 * sigma).ceil()
    }
}

fn day_string(ms: i64) -> String {
    Timestamp(ms).to_rfc3339()[..10].to_string()
}

impl Engine {
    fn budget_limit(&self) -> Result<f64> {
        let b = self.config.analytics;
        rho_for_epsilon(b.epsilon, b.delta)
            .map_err(|e| EngineError::Setup(format!("the analytics budget is misconfigured: {e}")))
    }

    fn budget_status(&self, state: Option<BudgetState>, now: Timestamp) -> Result<BudgetStatus> {
        let b = self.config.analytics;
        let limit = self.budget_limit()?;
        // A period that has run out counts as refilled (the next charge resets it).
        let state = state.filter(|s| b.refill_ms.is_none_or(|r| s.period_start.0 + r > now.0));
        let spent = state.map_or(0.0, |s| s.spent_rho);
        let spent_epsilon = if spent > 0.0 {
            Accountant::new()
                .zcdp(spent)
                .and_then(|a| a.epsilon(b.delta))
                .map(|e| e.epsilon)
                .unwrap_or(f64::INFINITY)
        } else {
            0.0
        };
        Ok(BudgetStatus {
            dataset: DATASET,
            epsilon: b.epsilon,
            delta: b.delta,
            limit_rho: limit,
            spent_rho: spent,
            remaining_rho: (limit - spent).max(0.0),
            spent_epsilon,
            period_start: state.map(|s| s.period_start.to_rfc3339()),
            refills_at: match (state, b.refill_ms) {
                (Some(s), Some(r)) => Some(Timestamp(s.period_start.0 + r).to_rfc3339()),
                _ => None,
            },
        })
    }

    /// The analytics budget: spent and remaining.
    pub async fn analytics_budget(&self) -> Result<BudgetStatus> {
        let state = self.store.budget(DATASET).await?;
        self.budget_status(state, self.now())
    }

    fn plan(&self, q: &AnalyticsQuery) -> Result<Plan> {
        let kind = QueryKind::parse(&q.kind)?;
        let delta = self.config.analytics.delta;
        let rho = match (q.epsilon, q.rho) {
            (Some(e), None) => {
                if !(e.is_finite() && e > 0.0) {
                    return Err(invalid("epsilon must be a number greater than 0"));
                }
                rho_for_epsilon(e, delta).map_err(|e| invalid(e.to_string()))?
            }
            (None, Some(r)) => {
                if !(r.is_finite() && r > 0.0) {
                    return Err(invalid("rho must be a number greater than 0"));
                }
                r
            }
            _ => return Err(invalid("give the query's cost as either epsilon or rho")),
        };
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
        if let Some(t) = &q.event_type
            && !self.policy.event_types.contains_key(t)
        {
            return Err(EngineError::refused(
                ErrorCode::UnknownEventType,
                format!("the policy declares no event type `{t}`"),
            ));
        }
        if let (Some(from), Some(to)) = (q.from, q.to)
            && from >= to
        {
            return Err(EngineError::refused(
                ErrorCode::BoundsOutOfOrder,
                "from must be earlier than to",
            ));
        }
        let value_query = matches!(kind, QueryKind::Histogram | QueryKind::Mean);
        let bounds = match (q.lower, q.upper) {
            (Some(lo), Some(hi)) if value_query => {
                if !(lo.is_finite() && hi.is_finite()) {
                    return Err(invalid("lower and upper must be finite numbers"));
                }
                if lo >= hi {
                    return Err(EngineError::refused(
                        ErrorCode::BoundsOutOfOrder,
                        "lower must be smaller than upper",
                    ));
                }
                Some((lo, hi))
            }
            (None, None) if !value_query => None,
            _ if value_query => {
                return Err(invalid(format!(
                    "{} needs lower and upper bounds on the values",
                    kind.as_str()
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "{} takes no lower or upper bounds",
                    kind.as_str()
                )));
            }
        };
        let bins = q.bins.unwrap_or(10);
        if kind == QueryKind::Histogram && !(1..=MAX_BINS).contains(&bins) {
            return Err(invalid(format!("bins must be between 1 and {MAX_BINS}")));
        }
        let k = q.k.unwrap_or(10);
        if kind == QueryKind::TopK && !(1..=MAX_K).contains(&k) {
            return Err(invalid(format!("k must be between 1 and {MAX_K}")));
        }
        if kind == QueryKind::CountByDay {
            let (Some(from), Some(to)) = (q.from, q.to) else {
                return Err(invalid("count_by_day needs from and to (milliseconds)"));
            };
            let days = (to as i128 - from as i128 + DAY_MS as i128 - 1) / DAY_MS as i128;
            if days > MAX_DAYS as i128 {
                return Err(invalid(format!(
                    "count_by_day covers at most {MAX_DAYS} days"
                )));
            }
        }
        let releases = if kind == QueryKind::Mean {
            // Sum and count, each at half the cost. Each value is clamped, then rounded to the
            // grid: |round(v/g)| ≤ B/g + ½, so the rounding is charged to the sensitivity.
            let (lo, hi) = bounds.expect("checked above");
            let b = lo.abs().max(hi.abs());
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
        } else {
            let s = count_sensitivity(max_contributions, max_per_partition);
            vec![Release {
                sensitivity: s,
                unit: 1.0,
                sigma: s / (2.0 * rho).sqrt(),
            }]
        };
        if releases.iter().any(|r| r.sigma > MAX_NOISE_SIGMA) {
            return Err(invalid(
                "the cost is so small that the noise would swamp any answer; ask for more",
            ));
        }
        Ok(Plan {
            kind,
            rho,
            max_contributions,
            max_per_partition,
            bounds,
            bins,
            k,
            event_type: q.event_type.clone(),
            from: q.from,
            to: q.to,
            releases,
        })
    }

    /// The public rows of a query: catalogue items or categories, days, or bins; for
    /// categories also each item's category.
    async fn partitions(&self, plan: &Plan) -> Result<Partitions> {
        let mut category_of = HashMap::new();
        let keys = match plan.kind {
            QueryKind::CountByItem | QueryKind::TopK | QueryKind::CountByCategory => {
                let labels = self.catalogue_labels().await?;
                let mut rows: Vec<String> = if plan.kind == QueryKind::CountByCategory {
                    category_of = labels
                        .into_iter()
                        .filter_map(|(id, (category, _))| Some((id, category?)))
                        .collect();
                    category_of.values().cloned().collect()
                } else {
                    labels.into_keys().collect()
                };
                rows.sort_unstable();
                rows.dedup();
                rows
            }
            QueryKind::CountByDay => {
                let (from, to) = (plan.from.unwrap_or(0), plan.to.unwrap_or(0));
                let first = from.div_euclid(DAY_MS);
                let last = (to - 1).div_euclid(DAY_MS);
                (first..=last).map(|d| day_string(d * DAY_MS)).collect()
            }
            QueryKind::Histogram => {
                let (lo, hi) = plan.bounds.expect("checked");
                let width = (hi - lo) / plan.bins as f64;
                (0..plan.bins)
                    .map(|b| {
                        format!(
                            "[{}, {})",
                            lo + width * b as f64,
                            lo + width * (b + 1) as f64
                        )
                    })
                    .collect()
            }
            QueryKind::Mean => vec!["sum".into(), "count".into()],
        };
        Ok(Partitions { keys, category_of })
    }

    /// Reads the consented events a query ranges over, grouped by subject.
    async fn query_events(
        &self,
        actor: &Actor,
        plan: &Plan,
    ) -> Result<HashMap<Pseudonym, Vec<Event>>> {
        let mut by_subject: HashMap<Pseudonym, Vec<Event>> = HashMap::new();
        let mut after = 0;
        loop {
            let page = self
                .read_events(actor, ANALYTICS_PURPOSE, None, after, 10_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for e in page {
                let keep = plan
                    .event_type
                    .as_ref()
                    .is_none_or(|t| *t == e.payload.event_type)
                    && plan.from.is_none_or(|f| e.occurred_at.0 >= f)
                    && plan.to.is_none_or(|t| e.occurred_at.0 < t)
                    && (plan.bounds.is_none() || e.payload.value.is_some());
                if keep {
                    by_subject.entry(e.subject).or_default().push(e);
                }
            }
        }
        Ok(by_subject)
    }

    /// Answers a DP query (analyst): states the cost, previews it on `dry_run`, otherwise
    /// bounds contributions, adds noise, charges the budget atomically and audits the charge.
    pub async fn analytics_query(
        &self,
        actor: &Actor,
        query: &AnalyticsQuery,
    ) -> Result<AnalyticsAnswer> {
        let plan = self.plan(query)?;
        let delta = self.config.analytics.delta;
        let limit = self.budget_limit()?;
        let epsilon = Accountant::new()
            .zcdp(plan.rho)
            .and_then(|a| a.epsilon(delta))
            .map_err(|e| invalid(e.to_string()))?
            .epsilon;
        let cost = QueryCost {
            rho: plan.rho,
            epsilon,
            delta,
        };
        let answer = |rows, budget| AnalyticsAnswer {
            kind: plan.kind.as_str(),
            dataset: DATASET,
            dry_run: query.dry_run,
            cost,
            mechanism: "discrete_gaussian",
            sensitivity: plan.releases[0].sensitivity * plan.releases[0].unit,
            max_contributions: plan.max_contributions,
            max_per_partition: plan.max_per_partition,
            rows,
            budget,
        };
        if query.dry_run {
            return Ok(answer(Vec::new(), self.analytics_budget().await?));
        }
        if plan.rho > limit {
            return Err(exhausted());
        }
        let partitions = self.partitions(&plan).await?;
        let events = self.query_events(actor, &plan).await?;
        let exact = aggregate(&plan, &partitions, events);
        // Noise first, then the charge: nothing is released unless the charge succeeds, and
        // a failure before the charge costs nothing.
        let mut noisy = Vec::with_capacity(exact.len());
        for (i, value) in exact.iter().enumerate() {
            let release = if plan.kind == QueryKind::Mean {
                plan.releases[i]
            } else {
                plan.releases[0]
            };
            let noise = candor_privacy::noise::discrete_gaussian(release.sigma)
                .map_err(|e| EngineError::Noise(e.to_string()))?;
            noisy.push(value + noise);
        }
        let now = self.now();
        let draft = self.draft(
            actor,
            AuditAction::AnalyticsCharge,
            None,
            Some(ANALYTICS_PURPOSE),
            format!(
                "dataset={DATASET} kind={} rho={:.6} epsilon={:.4}",
                plan.kind.as_str(),
                plan.rho,
                epsilon
            ),
        );
        let charge = BudgetCharge {
            dataset: DATASET,
            rho: plan.rho,
            limit_rho: limit,
            at: now,
            refill_ms: self.config.analytics.refill_ms,
        };
        let Some(state) = self.store.charge_budget(&charge, &[draft]).await? else {
            return Err(exhausted());
        };
        let rows = rows(&plan, &partitions.keys, &noisy);
        Ok(answer(rows, self.budget_status(Some(state), now)?))
    }

    /// Records a DP model release in the model ledger (audited) and returns the ρ and ε of
    /// every release so far, composed.
    pub(crate) async fn account_model_release(
        &self,
        actor: &Actor,
        release: &crate::recommend::ModelPrivacyCard,
    ) -> Result<(f64, f64)> {
        let draft = self.draft(
            actor,
            AuditAction::AnalyticsCharge,
            None,
            Some(crate::recommend::PERSONALIZATION),
            format!(
                "dataset={MODEL_RELEASES} kind=training rho={:.6} epsilon={:.4}",
                release.rho, release.epsilon
            ),
        );
        let privacy = self.config.model_privacy.unwrap_or_default();
        let limit_rho = match privacy.releases_epsilon {
            Some(cap) => rho_for_epsilon(cap, release.delta)
                .map_err(|e| EngineError::Setup(format!("[models] releases_epsilon: {e}")))?,
            None => f64::MAX,
        };
        let charge = BudgetCharge {
            dataset: MODEL_RELEASES,
            rho: release.rho,
            limit_rho,
            at: self.now(),
            refill_ms: privacy.releases_refill_ms,
        };
        let Some(state) = self.store.charge_budget(&charge, &[draft]).await? else {
            return Err(EngineError::refused(
                ErrorCode::BudgetExhausted,
                "the item model's privacy budget for this period is spent: the current model \
                 keeps serving until the budget refills",
            ));
        };
        let epsilon = Accountant::new()
            .zcdp(state.spent_rho)
            .and_then(|a| a.epsilon(release.delta))
            .map_err(|e| EngineError::Setup(e.to_string()))?
            .epsilon;
        Ok((state.spent_rho, epsilon))
    }

    /// When the model releases' cap starts afresh, if a cap with a period is set and anything
    /// was charged.
    pub(crate) async fn model_releases_refill(&self) -> Result<Option<Timestamp>> {
        let refill = self
            .config
            .model_privacy
            .and_then(|p| p.releases_epsilon.and(p.releases_refill_ms));
        let Some(refill) = refill else {
            return Ok(None);
        };
        let state = self.store.budget(MODEL_RELEASES).await?;
        Ok(state.map(|s| Timestamp(s.period_start.0 + refill)))
    }
}

/// Exact per-row sums in grid units, after bounding each subject's contribution.
fn aggregate(
    plan: &Plan,
    partitions: &Partitions,
    events: HashMap<Pseudonym, Vec<Event>>,
) -> Vec<i64> {
    let index: HashMap<&str, usize> = partitions
        .keys
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let categories = &partitions.category_of;
    let row_of = |e: &Event| -> Option<usize> {
        match plan.kind {
            QueryKind::CountByItem | QueryKind::TopK => index.get(e.payload.item.as_str()).copied(),
            QueryKind::CountByCategory => categories
                .get(&e.payload.item)
                .and_then(|c| index.get(c.as_str()).copied()),
            QueryKind::CountByDay => index.get(day_string(e.occurred_at.0).as_str()).copied(),
            QueryKind::Histogram => {
                let (lo, hi) = plan.bounds.expect("checked");
                let v = e.payload.value?.clamp(lo, hi);
                let bin = ((v - lo) / (hi - lo) * plan.bins as f64).floor() as usize;
                Some(bin.min(plan.bins as usize - 1))
            }
            QueryKind::Mean => Some(0),
        }
    };
    let mut sums = vec![0i64; partitions.keys.len()];
    let mut rng = rand::thread_rng();
    for (_, mut list) in events {
        // Sampling within a subject: a random order, then the bounds.
        list.shuffle(&mut rng);
        let mut taken = 0u32;
        let mut per_row: HashMap<usize, u32> = HashMap::new();
        for e in &list {
            if taken == plan.max_contributions {
                break;
            }
            let Some(row) = row_of(e) else { continue };
            // A mean has one row: only max_contributions bounds it (its sensitivity).
            let count = per_row.entry(row).or_default();
            if *count == plan.max_per_partition && plan.kind != QueryKind::Mean {
                continue;
            }
            *count += 1;
            taken += 1;
            if plan.kind == QueryKind::Mean {
                let (lo, hi) = plan.bounds.expect("checked");
                let v = e.payload.value.unwrap_or(0.0).clamp(lo, hi);
                sums[0] += (v / plan.releases[0].unit).round() as i64;
                sums[1] += 1;
            } else {
                sums[row] += 1;
            }
        }
    }
    sums
}

fn exhausted() -> EngineError {
    EngineError::refused(
        ErrorCode::BudgetExhausted,
        "the privacy budget of this dataset cannot pay for this query; \
         wait for it to refill or ask for less (a smaller epsilon)",
    )
}

/// The answer rows from noisy grid sums.
fn rows(plan: &Plan, partitions: &[String], noisy: &[i64]) -> Vec<AnswerRow> {
    let row = |key: &str, value: i64, r: Release| {
        let w = half_width(r.sigma);
        AnswerRow {
            key: key.to_owned(),
            value: value as f64 * r.unit,
            low: (value as f64 - w) * r.unit,
            high: (value as f64 + w) * r.unit,
            noise_scale: r.sigma * r.unit,
            confidence: 0.95,
        }
    };
    match plan.kind {
        QueryKind::Mean => {
            let (lo, hi) = plan.bounds.expect("checked");
            let sum = row("sum", noisy[0], plan.releases[0]);
            let count = row("count", noisy[1], plan.releases[1]);
            // Post-processing: the ratio, clamped to the bounds; its interval from the corners
            // of the two 95% intervals (coverage at least 90%).
            let ratio = |s: f64, c: f64| {
                if c >= 1.0 {
                    (s / c).clamp(lo, hi)
                } else {
                    (lo + hi) / 2.0
                }
            };
            let mean = ratio(sum.value, count.value);
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
            let mean_row = AnswerRow {
                key: "mean".into(),
                value: mean,
                low,
                high,
                // The ratio's noise is not Gaussian: the scale a Gaussian with this 90%
                // interval would have.
                noise_scale: (high - low) / (2.0 * 1.645),
                confidence: 0.90,
            };
            vec![mean_row, sum, count]
        }
        QueryKind::TopK => {
            let mut order: Vec<usize> = (0..noisy.len()).collect();
            order.sort_by(|&a, &b| noisy[b].cmp(&noisy[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(plan.k)
                .map(|i| row(&partitions[i], noisy[i], plan.releases[0]))
                .collect()
        }
        _ => partitions
            .iter()
            .zip(noisy)
            .map(|(p, &v)| row(p, v, plan.releases[0]))
            .collect(),
    }
}
