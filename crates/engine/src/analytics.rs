//! Differentially private analytics (DESIGN invariant 6): aggregate questions over events
//! consented for `analytics.reporting`, answered with exact discrete Gaussian noise and charged
//! atomically to the dataset's budget. The planning, the contribution bounding, the sums and
//! the answer rows are pure code in `candor_privacy::query`; this module does the I/O around
//! them: it reads the consented events (audited), charges the budget with its audit entry in
//! one transaction, and releases the noisy answer only after the charge. A query that fails is
//! not charged, and no charge lets the period's total exceed the budget.

use candor_domain::{AuditAction, ErrorCode, Timestamp};
use candor_privacy::query::{self, Contribution, Partitions, QueryError};
use candor_privacy::{Accountant, rho_for_epsilon};
use candor_store::{BudgetCharge, BudgetState};
use serde::Serialize;

use crate::{Actor, Engine, EngineError, Result};

pub use candor_privacy::query::{AnswerRow, Query as AnalyticsQuery, QueryKind};

/// The purpose analytics reads events for.
pub const ANALYTICS_PURPOSE: &str = "analytics.reporting";
/// The one dataset analysts query: consented events.
pub const DATASET: &str = "events";
/// The kind of [`Engine::analytics_consent_counts`] answers.
pub const CONSENT_COUNTS: &str = "consent_by_purpose";
/// The ledger of DP item model releases (accounted; capped if settings say so).
pub const MODEL_RELEASES: &str = "model_releases";

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

/// What a query costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueryCost {
    /// zCDP ρ.
    pub rho: f64,
    /// ε of this query alone at `delta`.
    pub epsilon: f64,
    /// The budget's δ.
    pub delta: f64,
}

fn refused(e: QueryError) -> EngineError {
    match e {
        QueryError::Invalid(message) => EngineError::refused(ErrorCode::InvalidField, message),
        QueryError::BoundsOutOfOrder(message) => {
            EngineError::refused(ErrorCode::BoundsOutOfOrder, message)
        }
    }
}

fn exhausted() -> EngineError {
    EngineError::refused(
        ErrorCode::BudgetExhausted,
        "the privacy budget of this dataset cannot pay for this query; \
         wait for it to refill or ask for less (a smaller epsilon)",
    )
}

/// A budget's state, for people.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// Plans a query: the pure checks, and the event type against the policy.
    fn plan_query(&self, q: &AnalyticsQuery) -> Result<query::Plan> {
        let plan = query::plan(q, self.config.analytics.delta).map_err(refused)?;
        if let Some(t) = &plan.event_type
            && !self.policy.event_types.contains_key(t)
        {
            return Err(EngineError::refused(
                ErrorCode::UnknownEventType,
                format!("the policy declares no event type `{t}`"),
            ));
        }
        Ok(plan)
    }

    /// The public rows of a query (the catalogue is read only by the kinds whose rows it is).
    async fn partitions(&self, plan: &query::Plan) -> Result<Partitions> {
        let labels = match plan.shape {
            query::Shape::CountByItem
            | query::Shape::TopK { .. }
            | query::Shape::CountByCategory => self.catalogue_labels().await?,
            _ => Default::default(),
        };
        let catalogue = labels
            .iter()
            .map(|(id, (category, _))| (id.as_str(), category.as_deref()));
        Ok(Partitions::new(plan, catalogue))
    }

    /// Reads the consented events a query may count, one list per subject (audited).
    async fn contributions(&self, actor: &Actor) -> Result<Vec<Vec<Contribution>>> {
        let mut by_subject: std::collections::HashMap<_, Vec<Contribution>> = Default::default();
        let mut after = 0;
        loop {
            let page = self
                .read_events(actor, ANALYTICS_PURPOSE, None, after, 10_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for e in page {
                by_subject.entry(e.subject).or_default().push(Contribution {
                    item: e.payload.item,
                    event_type: e.payload.event_type,
                    occurred_at: e.occurred_at.0,
                    value: e.payload.value,
                });
            }
        }
        Ok(by_subject.into_values().collect())
    }

    /// Answers a DP query (analyst): states the cost, previews it on `dry_run`, otherwise
    /// bounds contributions, adds noise, charges the budget atomically and audits the charge.
    pub async fn analytics_query(
        &self,
        actor: &Actor,
        q: &AnalyticsQuery,
    ) -> Result<AnalyticsAnswer> {
        let plan = self.plan_query(q)?;
        let delta = self.config.analytics.delta;
        let epsilon = Accountant::new()
            .zcdp(plan.rho)
            .and_then(|a| a.epsilon(delta))
            .map_err(|e| EngineError::refused(ErrorCode::InvalidField, e.to_string()))?
            .epsilon;
        let cost = QueryCost {
            rho: plan.rho,
            epsilon,
            delta,
        };
        let answer = |rows, budget| AnalyticsAnswer {
            kind: plan.shape.kind().as_str(),
            dataset: DATASET,
            dry_run: q.dry_run,
            cost,
            mechanism: "discrete_gaussian",
            sensitivity: plan.releases[0].sensitivity * plan.releases[0].unit,
            max_contributions: plan.max_contributions,
            max_per_partition: plan.max_per_partition,
            rows,
            budget,
        };
        if q.dry_run {
            return Ok(answer(Vec::new(), self.analytics_budget().await?));
        }
        self.ensure_affordable(plan.rho).await?;
        let partitions = self.partitions(&plan).await?;
        let subjects = self.contributions(actor).await?;
        let exact = query::aggregate(&plan, &partitions, subjects, &mut rand::thread_rng());
        // Noise first, then the charge: nothing is released unless the charge succeeds, and
        // a failure before the charge costs nothing.
        let noisy =
            query::add_noise(&plan, &exact).map_err(|e| EngineError::Noise(e.to_string()))?;
        // The answer is built before the charge: one without values is never paid for.
        let rows = query::answer_rows(&plan, &partitions, &noisy);
        if let Some(bad) = rows
            .iter()
            .find(|r| !(r.value.is_finite() && r.low.is_finite() && r.high.is_finite()))
        {
            return Err(EngineError::Noise(format!(
                "the answer's row `{}` is not a finite number",
                bad.key
            )));
        }
        let budget = self
            .charge(actor, plan.shape.kind().as_str(), plan.rho, epsilon)
            .await?;
        Ok(answer(rows, budget))
    }

    /// A cheap pre-check before the work (reading and aggregating every consented row): a
    /// release the budget cannot pay for now is refused at once. The atomic charge after the
    /// work still decides, so concurrent releases cannot overspend.
    async fn ensure_affordable(&self, rho: f64) -> Result<()> {
        if rho > self.budget_limit()? || rho > self.analytics_budget().await?.remaining_rho {
            return Err(exhausted());
        }
        Ok(())
    }

    /// Charges a release of `rho` to the budget, atomically and audited, and returns the
    /// budget after it; `budget_exhausted` when the budget cannot pay (nothing is charged).
    async fn charge(
        &self,
        actor: &Actor,
        kind: &str,
        rho: f64,
        epsilon: f64,
    ) -> Result<BudgetStatus> {
        let now = self.now();
        let draft = self.draft(
            actor,
            AuditAction::AnalyticsCharge,
            None,
            Some(ANALYTICS_PURPOSE),
            format!("dataset={DATASET} kind={kind} rho={rho:.6} epsilon={epsilon:.4}"),
        );
        let charge = BudgetCharge {
            dataset: DATASET,
            rho,
            limit_rho: self.budget_limit()?,
            at: now,
            refill_ms: self.config.analytics.refill_ms,
        };
        let Some(state) = self.store.charge_budget(&charge, &[draft]).await? else {
            return Err(exhausted());
        };
        self.budget_status(Some(state), now)
    }

    /// How many subjects hold a live grant of each purpose of the policy, with differential
    /// privacy (analyst): each person adds at most 1 to each purpose's count, so the counts
    /// have L2 sensitivity √(purposes); discrete Gaussian noise at the ε asked (at the
    /// budget's δ), each row with its 95% interval. It is charged to the same per-person
    /// budget as the event queries: a person's consent and events are released together.
    pub async fn analytics_consent_counts(
        &self,
        actor: &Actor,
        epsilon: f64,
    ) -> Result<AnalyticsAnswer> {
        let delta = self.config.analytics.delta;
        let rho = candor_privacy::accountant::rho_for_epsilon(epsilon, delta)
            .map_err(|e| EngineError::refused(ErrorCode::InvalidField, e.to_string()))?;
        self.ensure_affordable(rho).await?;
        let exact: Vec<(String, i64)> = self
            .granted_counts()
            .await?
            .into_iter()
            .map(|(purpose, n)| (purpose, n as i64))
            .collect();
        // The parameters are checked before any noise is drawn, so an error here is the
        // caller's (a cost too small to answer), not a fault.
        let rows = candor_privacy::answer::noisy_counts(&exact, rho)
            .map_err(|e| EngineError::refused(ErrorCode::InvalidField, e.to_string()))?;
        let budget = self.charge(actor, CONSENT_COUNTS, rho, epsilon).await?;
        Ok(AnalyticsAnswer {
            kind: CONSENT_COUNTS,
            dataset: DATASET,
            dry_run: false,
            cost: QueryCost {
                rho,
                epsilon,
                delta,
            },
            mechanism: "discrete_gaussian",
            sensitivity: (exact.len().max(1) as f64).sqrt(),
            max_contributions: exact.len() as u32,
            max_per_partition: 1,
            rows,
            budget,
        })
    }

    /// Records a DP model release in the model ledger (audited) and returns the ρ and ε of
    /// every release so far, composed.
    pub(crate) async fn account_model_release(
        &self,
        actor: &Actor,
        release: &crate::model::ModelPrivacyCard,
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
