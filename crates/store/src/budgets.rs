//! `privacy_budgets`: differential-privacy budgets (the analytics dataset, the ledger of model
//! releases), charged atomically so concurrent queries on any number of servers cannot
//! overspend.

use async_trait::async_trait;
use candor_domain::{AuditDraft, Timestamp};

use crate::Result;
use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};

/// A charge against a dataset's differential-privacy budget.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCharge<'a> {
    /// The dataset.
    pub dataset: &'a str,
    /// The cost, in zCDP ρ.
    pub rho: f64,
    /// The most ρ the period may spend.
    pub limit_rho: f64,
    /// Now.
    pub at: Timestamp,
    /// The budget starts afresh this many milliseconds after its period began, if set.
    pub refill_ms: Option<i64>,
}

/// A dataset's budget state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetState {
    /// ρ spent in this period.
    pub spent_rho: f64,
    /// When this period began.
    pub period_start: Timestamp,
}

/// Privacy budgets.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// Charges a budget atomically with its audit entries: refills it first if its period
    /// has passed, then adds the cost only if the total stays within the limit. `None` means
    /// it would overspend, and nothing was written.
    async fn charge_budget(
        &self,
        charge: &BudgetCharge<'_>,
        audit: &[AuditDraft],
    ) -> Result<Option<BudgetState>>;
    /// A dataset's budget state (`None` before its first charge).
    async fn budget(&self, dataset: &str) -> Result<Option<BudgetState>>;
}

fn state(r: &impl Get) -> Result<BudgetState> {
    Ok(BudgetState {
        spent_rho: r.real("spent_rho")?,
        period_start: Timestamp(r.int("period_start")?),
    })
}

#[async_trait]
impl<D: Dialect> BudgetStore for SqlStore<D> {
    async fn charge_budget(
        &self,
        c: &BudgetCharge<'_>,
        audit: &[AuditDraft],
    ) -> Result<Option<BudgetState>> {
        let mut tx = self.begin().await?;
        let create = Sql::new(
            "INSERT INTO privacy_budgets (dataset, spent_rho, period_start) VALUES ($1, 0, $2) \
             ON CONFLICT (dataset) DO NOTHING",
        )
        .arg(c.dataset)
        .arg(c.at.0);
        D::execute(&mut tx, create).await?;
        if let Some(refill) = c.refill_ms {
            let refill = Sql::new(
                "UPDATE privacy_budgets SET spent_rho = 0, period_start = $2 \
                 WHERE dataset = $1 AND period_start + $3 <= $2",
            )
            .arg(c.dataset)
            .arg(c.at.0)
            .arg(refill);
            D::execute(&mut tx, refill).await?;
        }
        let spend = Sql::new(
            "UPDATE privacy_budgets SET spent_rho = spent_rho + $2 \
             WHERE dataset = $1 AND spent_rho + $2 <= $3 RETURNING spent_rho, period_start",
        )
        .arg(c.dataset)
        .arg(c.rho)
        .arg(c.limit_rho);
        let Some(row) = D::fetch_all(&mut tx, spend).await?.into_iter().next() else {
            tx.rollback().await?;
            return Ok(None);
        };
        let charged = state(&row)?;
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some(charged))
    }

    async fn budget(&self, dataset: &str) -> Result<Option<BudgetState>> {
        let q = Sql::new("SELECT spent_rho, period_start FROM privacy_budgets WHERE dataset = $1")
            .arg(dataset);
        self.fetch_one(q).await?.as_ref().map(state).transpose()
    }
}
