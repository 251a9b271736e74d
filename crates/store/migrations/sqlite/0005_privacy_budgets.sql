-- Differential-privacy budgets: per dataset, the zCDP ρ spent in the current period. A charge
-- is one conditional UPDATE (spent + cost <= limit), so concurrent queries cannot overspend.
CREATE TABLE privacy_budgets (
    dataset TEXT PRIMARY KEY,
    spent_rho REAL NOT NULL,
    period_start INTEGER NOT NULL
);
