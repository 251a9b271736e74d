//! `recommendations`: tiered, explained recommendations, similar items, and the item model
//! (training and its card).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_engine::RecommendRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalogue::CATALOGUE_READERS;
use crate::auth::{AppState, Authorized, MaybeAuthorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Gpc};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_recommendations))
        .routes(routes!(post_contextual))
        .routes(routes!(get_similar))
        .routes(routes!(post_train))
        .routes(routes!(get_model_card))
}

/// Query of a recommendation request.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecommendParams {
    /// How many items, 1 to 1,000 (default 10).
    pub n: Option<usize>,
    /// Comma-separated item ids not to recommend.
    pub exclude: Option<String>,
    /// Only items of this catalogue category.
    pub category: Option<String>,
    /// 0 (default) to 1: how strongly to favour categories not yet in the list.
    pub diversity: Option<f32>,
    /// 0 (default) to 1: how strongly to favour less popular items and providers not yet in
    /// the list.
    pub fairness: Option<f32>,
    /// Comma-separated item ids the person is looking at now.
    pub context: Option<String>,
}

/// Splits a comma-separated list, ignoring empty parts.
pub fn id_list(raw: Option<&str>) -> Vec<String> {
    raw.map(|r| {
        r.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// A contextual request: no identity at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextualRequest {
    /// Items in the current session.
    #[serde(default)]
    pub items: Vec<String>,
    /// How many items, 1 to 1,000 (default 10).
    #[serde(default)]
    pub n: Option<usize>,
    /// Only items of this category.
    #[serde(default)]
    pub category: Option<String>,
    /// 0 to 1: category diversity.
    #[serde(default)]
    pub diversity: Option<f32>,
    /// 0 to 1: popularity and provider fairness.
    #[serde(default)]
    pub fairness: Option<f32>,
}

/// A history item behind a recommendation.
#[derive(Debug, Serialize, ToSchema)]
pub struct BecauseBody {
    /// The history item.
    pub item: String,
    /// Its weight in the score.
    pub weight: f32,
}

/// Why an item was recommended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    /// The subject's history items that contributed most.
    pub because: Vec<BecauseBody>,
    /// The data categories that history came from.
    pub data_categories: Vec<String>,
}

/// A recommended item.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendedBody {
    /// Item id.
    pub item: String,
    /// Score, comparable within one response.
    pub score: f32,
    /// Present in the `server` tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<ExplanationBody>,
}

/// Recommendations and the tier they were made at.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationsResponse {
    /// `server` (personalized, explained) or `contextual` (no profile used).
    pub tier: String,
    /// Why this tier.
    pub reason: String,
    /// The item model version.
    pub model_version: i64,
    /// Best first.
    pub items: Vec<RecommendedBody>,
}

impl From<candor_engine::Recommendations> for RecommendationsResponse {
    fn from(r: candor_engine::Recommendations) -> Self {
        Self {
            tier: r.tier.into(),
            reason: r.reason,
            model_version: r.model_version,
            items: r
                .items
                .into_iter()
                .map(|i| RecommendedBody {
                    item: i.item,
                    score: i.score,
                    explanation: i.explanation.map(|e| ExplanationBody {
                        because: e
                            .because
                            .into_iter()
                            .map(|(item, weight)| BecauseBody { item, weight })
                            .collect(),
                        data_categories: e.categories,
                    }),
                })
                .collect(),
        }
    }
}

/// Paging-free `n` parameter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    /// How many, 1 to 1,000 (default 10).
    pub n: Option<usize>,
}

/// Similar items.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarResponse {
    /// Most similar first.
    pub items: Vec<BecauseBody>,
}

/// Training options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Wait for training to finish and return the model card (default: run in background).
    pub wait: Option<bool>,
}

/// Training started in the background.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainStarted {
    /// `started`.
    pub status: String,
}

fn recommend_request(
    n: Option<usize>,
    exclude: Vec<String>,
    category: Option<String>,
    (diversity, fairness): (Option<f32>, Option<f32>),
    context: Vec<String>,
) -> RecommendRequest {
    RecommendRequest {
        n: n.unwrap_or(10),
        exclude,
        category,
        context,
        diversity: diversity.unwrap_or(0.0),
        fairness: fairness.unwrap_or(0.0),
    }
}

/// Recommendations for a subject: `server` tier (personalized from their consented history,
/// each item explained) with personalization consent, else `contextual`.
#[utoipa::path(get, path = "/v1/subjects/{id}/recommendations", tag = "recommendations",
    params(("id" = String, Path, description = "Subject id"), RecommendParams,
           ("Sec-GPC" = Option<String>, Header, description = "`1` withdraws sale/sharing and cross-context purposes")),
    responses(
        (status = 200, body = RecommendationsResponse, description = "Recommendations"),
        (status = 400, body = ErrorBody, description = "Bad n, ids or diversity"),
        (status = 409, body = ErrorBody, description = "No model trained yet"),
    ),
    security(("api_key" = ["service"]), ("subject_session" = [])))]
pub async fn get_recommendations(
    auth: Authorized<{ roles::SERVICE | roles::SUBJECT }>,
    Gpc(gpc): Gpc,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecommendParams>,
) -> Result<Json<RecommendationsResponse>, ApiError> {
    let subject = auth.subject(&id)?;
    let request = recommend_request(
        q.n,
        id_list(q.exclude.as_deref()),
        q.category,
        (q.diversity, q.fairness),
        id_list(q.context.as_deref()),
    );
    let recs = auth
        .engine()
        .recommend(&auth.actor(), &subject, &request, gpc)
        .await?;
    Ok(Json(recs.into()))
}

/// Recommendations from session items alone, with no identity at all.
#[utoipa::path(post, path = "/v1/recommendations/contextual", tag = "recommendations",
    request_body = ContextualRequest,
    responses((status = 200, body = RecommendationsResponse, description = "Contextual recommendations"),
              (status = 400, body = ErrorBody, description = "Bad n or ids")),
    security(("api_key" = ["service"])))]
pub async fn post_contextual(
    auth: Authorized<{ roles::SERVICE }>,
    ApiJson(body): ApiJson<ContextualRequest>,
) -> Result<Json<RecommendationsResponse>, ApiError> {
    let request = recommend_request(
        body.n,
        Vec::new(),
        body.category,
        (body.diversity, body.fairness),
        body.items,
    );
    Ok(Json(auth.engine().recommend_contextual(&request)?.into()))
}

/// Items most similar to an item.
#[utoipa::path(get, path = "/v1/items/{id}/similar", tag = "recommendations",
    params(("id" = String, Path, description = "Item id"), CountParams),
    responses((status = 200, body = SimilarResponse, description = "Similar items"),
              (status = 404, body = ErrorBody, description = "The model does not know the item")),
    security(("api_key" = ["service", "analyst", "dpo"])))]
pub async fn get_similar(
    auth: Authorized<CATALOGUE_READERS>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CountParams>,
) -> Result<Json<SimilarResponse>, ApiError> {
    let items = auth.engine().similar_items(&id, q.n.unwrap_or(10))?;
    Ok(Json(SimilarResponse {
        items: items
            .into_iter()
            .map(|(item, weight)| BecauseBody { item, weight })
            .collect(),
    }))
}

/// Train the item model on events consented for personalization (admin).
#[utoipa::path(post, path = "/v1/models/train", tag = "recommendations",
    params(TrainParams),
    responses((status = 200, body = candor_engine::ModelCardView, description = "Trained (with wait=true)"),
              (status = 202, body = TrainStarted, description = "Training started"),
              (status = 409, body = ErrorBody, description = "Nothing to train on")),
    security(("api_key" = ["admin"])))]
pub async fn post_train(
    auth: Authorized<{ roles::ADMIN }>,
    ApiQuery(q): ApiQuery<TrainParams>,
) -> Result<Response, ApiError> {
    if q.wait.unwrap_or(false) {
        let card = auth.engine().train(&auth.actor()).await?;
        return Ok(Json(card.view(true)).into_response());
    }
    let (engine, actor) = (auth.engine().clone(), auth.actor());
    tokio::spawn(async move {
        if let Err(error) = engine.train(&actor).await {
            tracing::warn!(%error, "training failed");
        }
    });
    let started = TrainStarted {
        status: "started".into(),
    };
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// The card of the model being served: algorithm, hyperparameters, data used, and its
/// differential-privacy guarantee. Public; exact counts and held-out figures (statistics of
/// the training data that are not differentially private) only for admin and dpo keys.
#[utoipa::path(get, path = "/v1/models/current", tag = "recommendations",
    responses((status = 200, body = candor_engine::ModelCardView, description = "The model card"),
              (status = 409, body = ErrorBody, description = "No model trained yet")),
    security((), ("api_key" = ["dpo"])))]
pub async fn get_model_card(
    caller: MaybeAuthorized<{ roles::DPO }>,
) -> Result<Json<candor_engine::ModelCardView>, ApiError> {
    let card = caller.engine().model_card()?;
    Ok(Json(card.view(caller.admitted())))
}
