//! `analytics`: differential privacy — the budget planner, DP queries and the budget.

use axum::Json;
use axum::response::{IntoResponse, Response};
use candor_domain::ErrorCode;
use candor_engine::{AnalyticsQuery, QueryKind};
use candor_privacy::PlanRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_plan))
        .routes(routes!(post_analytics_query))
        .routes(routes!(get_analytics_budget))
        .routes(routes!(post_consent_counts))
}

/// Budget-planner parameters: the same as `candor privacy epsilon`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PlanParams {
    /// `gaussian` or `laplace`.
    pub mechanism: String,
    /// Gaussian noise multiplier.
    pub sigma: Option<f64>,
    /// Laplace scale.
    pub scale: Option<f64>,
    /// Laplace L1 sensitivity (default 1).
    pub sensitivity: Option<f64>,
    /// Compositions (default 1).
    pub compositions: Option<u64>,
    /// Poisson sampling rate (Gaussian).
    pub sampling_rate: Option<f64>,
    /// δ (default 1e-5).
    pub delta: Option<f64>,
}

/// A differentially private query (`POST /v1/analytics/query`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQueryBody {
    /// What is asked.
    #[schema(value_type = QueryKind)]
    pub kind: String,
    /// The cost as ε at the budget's δ (give this or `rho`).
    pub epsilon: Option<f64>,
    /// The cost as zCDP ρ.
    pub rho: Option<f64>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events at or after this time (ms since the epoch); required by `count_by_day`.
    pub from: Option<i64>,
    /// Only events before this time (ms); required by `count_by_day`.
    pub to: Option<i64>,
    /// Most events counted per subject (1 to 1,000; default 10).
    pub max_contributions: Option<u32>,
    /// Most events per subject in any one row (default 1).
    pub max_per_partition: Option<u32>,
    /// Rows of a `top_k` answer (1 to 1,000; default 10).
    pub k: Option<usize>,
    /// Lower bound of values (histogram, mean).
    pub lower: Option<f64>,
    /// Upper bound of values (histogram, mean).
    pub upper: Option<f64>,
    /// Histogram bins (1 to 1,000; default 10).
    pub bins: Option<u32>,
    /// Preview the cost: nothing is read or charged.
    #[serde(default)]
    pub dry_run: bool,
}

impl TryFrom<AnalyticsQueryBody> for AnalyticsQuery {
    type Error = ApiError;

    fn try_from(b: AnalyticsQueryBody) -> Result<Self, ApiError> {
        let kind = QueryKind::parse(&b.kind).ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownQueryKind,
                format!(
                    "`{}` is not a query kind; use {}",
                    b.kind,
                    QueryKind::names()
                ),
            )
        })?;
        Ok(Self {
            kind,
            epsilon: b.epsilon,
            rho: b.rho,
            event_type: b.event_type,
            from: b.from,
            to: b.to,
            max_contributions: b.max_contributions,
            max_per_partition: b.max_per_partition,
            k: b.k,
            lower: b.lower,
            upper: b.upper,
            bins: b.bins,
            dry_run: b.dry_run,
        })
    }
}

/// What a plan costs.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanResponse {
    /// ε of the mechanism composed as planned.
    pub epsilon: f64,
    /// At this δ.
    pub delta: f64,
    /// The Rényi order that gave it (absent for pure DP).
    pub order: Option<f64>,
}

/// The privacy budget planner: ε (and the best Rényi order) of a mechanism composed T times,
/// from the RDP accountant (analyst).
#[utoipa::path(get, path = "/v1/analytics/plan", tag = "analytics",
    params(PlanParams),
    responses((status = 200, body = PlanResponse, description = "ε of the plan"),
              (status = 400, body = ErrorBody, description = "Bad parameters")),
    security(("api_key" = ["analyst"])))]
pub async fn get_plan(
    _auth: Authorized<{ roles::ANALYST }>,
    ApiQuery(q): ApiQuery<PlanParams>,
) -> Result<Response, ApiError> {
    let bad =
        |e: candor_privacy::AccountantError| ApiError::new(ErrorCode::InvalidField, e.to_string());
    let plan = PlanRequest {
        mechanism: &q.mechanism,
        sigma: q.sigma,
        scale: q.scale,
        sensitivity: q.sensitivity,
        compositions: q.compositions,
        sampling_rate: q.sampling_rate,
    }
    .plan()
    .map_err(bad)?;
    let delta = q.delta.unwrap_or(1e-5);
    let bound = plan.epsilon(delta).map_err(bad)?;
    Ok(Json(PlanResponse {
        epsilon: bound.epsilon,
        delta,
        order: bound.order.is_finite().then_some(bound.order),
    })
    .into_response())
}

/// Answer a differentially private aggregate question (analyst): counts per item, category or
/// day, value histograms, top-k items, bounded means. The cost is stated up front (ε at the
/// budget's δ, and ρ) and charged atomically to the dataset's budget; `dry_run` previews it.
/// Every row carries its noise scale and a 95% interval.
#[utoipa::path(post, path = "/v1/analytics/query", tag = "analytics",
    request_body = AnalyticsQueryBody,
    responses((status = 200, body = candor_engine::AnalyticsAnswer, description = "The answer, its cost and the budget left"),
              (status = 400, body = ErrorBody, description = "Bad query (unknown kind, bad cost, bounds out of order)"),
              (status = 403, body = ErrorBody, description = "Not an analyst key, or `budget_exhausted`")),
    security(("api_key" = ["analyst"])))]
pub async fn post_analytics_query(
    auth: Authorized<{ roles::ANALYST }>,
    ApiJson(body): ApiJson<AnalyticsQueryBody>,
) -> Result<Response, ApiError> {
    let answer = auth
        .engine()
        .analytics_query(&auth.actor(), &body.try_into()?)
        .await?;
    Ok(Json(answer).into_response())
}

/// The analytics budget: limit, spent and remaining, in ε and ρ (analyst, dpo).
#[utoipa::path(get, path = "/v1/analytics/budget", tag = "analytics",
    responses((status = 200, body = candor_engine::BudgetStatus, description = "The budget's state")),
    security(("api_key" = ["analyst", "dpo"])))]
pub async fn get_analytics_budget(
    auth: Authorized<{ roles::ANALYST | roles::DPO }>,
) -> Result<Response, ApiError> {
    Ok(Json(auth.engine().analytics_budget().await?).into_response())
}

/// The cost of a question about consent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentCountsBody {
    /// ε of the release, at the budget's δ.
    pub epsilon: f64,
}

/// How many people hold a live grant of each purpose, with differential privacy (analyst):
/// each person adds at most 1 to each count; discrete Gaussian noise at the ε asked, each row
/// with its 95% interval; charged to the analytics budget.
#[utoipa::path(post, path = "/v1/analytics/consent-counts", tag = "analytics",
    request_body = ConsentCountsBody,
    responses((status = 200, body = candor_engine::AnalyticsAnswer, description = "The noisy counts, their cost and the budget left"),
              (status = 400, body = ErrorBody, description = "A cost that is not a positive number"),
              (status = 403, body = ErrorBody, description = "Not an analyst key, or `budget_exhausted`")),
    security(("api_key" = ["analyst"])))]
pub async fn post_consent_counts(
    auth: Authorized<{ roles::ANALYST }>,
    ApiJson(body): ApiJson<ConsentCountsBody>,
) -> Result<Json<candor_engine::AnalyticsAnswer>, ApiError> {
    let answer = auth
        .engine()
        .analytics_consent_counts(&auth.actor(), body.epsilon)
        .await?;
    Ok(Json(answer))
}
