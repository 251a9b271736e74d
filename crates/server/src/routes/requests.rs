//! `rights` (requests): data subjects' requests with their legal deadlines; fulfilling one
//! runs the right.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_domain::{ErrorCode, Jurisdiction, RequestKind, Timestamp};
use candor_engine::requests::RequestView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_request, list_requests))
        .routes(routes!(extend_request))
        .routes(routes!(fulfil_request))
        .routes(routes!(acknowledge_request))
        .routes(routes!(subject_requests))
}

/// A new data subject's request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// What the subject asks for.
    #[schema(value_type = RequestKind)]
    pub kind: String,
    /// The subject's id (stored only as a pseudonym).
    pub subject: String,
    /// The law whose deadlines apply.
    #[schema(value_type = Jurisdiction)]
    pub jurisdiction: String,
    /// When the request was received, if not now (RFC 3339).
    #[serde(default)]
    pub received_at: Option<String>,
}

/// Filters of the request list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestListParams {
    /// Only requests past their deadline and not completed.
    pub overdue: Option<bool>,
}

/// An extension.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// Why the deadline is extended (recorded).
    pub reason: String,
}

/// The subject a request is fulfilled for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfilBody {
    /// The subject's id; it must match the request.
    pub subject: String,
}

/// Requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    /// The requests.
    pub requests: Vec<RequestView>,
}

/// A fulfilled request and what running the right produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct Fulfilment {
    /// The request, now completed.
    pub request: RequestView,
    /// The export (access), the erasure certificate (or `{"nothing_held": true}`), or the
    /// consent state after a restriction, objection or opt-out of sale.
    #[schema(value_type = Object)]
    pub outcome: serde_json::Value,
}

/// Record a data subject's request; its deadline is computed (GDPR one month, CCPA 45 days
/// with an acknowledgement within 10 business days).
#[utoipa::path(post, path = "/v1/requests", tag = "rights",
    request_body = NewRequestBody,
    responses((status = 201, body = RequestView, description = "The request with its deadlines"),
              (status = 400, body = ErrorBody, description = "Unknown kind or jurisdiction")),
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn create_request(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    ApiJson(body): ApiJson<NewRequestBody>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&body.subject)?;
    let kind = RequestKind::parse(&body.kind).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownKind,
            format!("kind must be one of {}", RequestKind::names()),
        )
    })?;
    let jurisdiction = Jurisdiction::parse(&body.jurisdiction).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownJurisdiction,
            format!("jurisdiction must be one of {}", Jurisdiction::names()),
        )
    })?;
    let received_at = match body.received_at.as_deref() {
        None => None,
        // A person files as of now; only the business records a request it received earlier.
        Some(_) if auth.is_session() => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "received_at is set by the business; a request filed in a session is received now",
            ));
        }
        Some(raw) => Some(Timestamp::parse_rfc3339(raw).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                "received_at is not an RFC 3339 date-time",
            )
        })?),
    };
    let view = auth
        .engine()
        .create_request(&auth.actor(), kind, &subject, jurisdiction, received_at)
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Requests, newest first; `?overdue=true` lists those past their deadline (dpo).
#[utoipa::path(get, path = "/v1/requests", tag = "rights",
    params(RequestListParams),
    responses((status = 200, body = RequestList, description = "The requests")),
    security(("api_key" = ["dpo"])))]
pub async fn list_requests(
    auth: Authorized<{ roles::DPO }>,
    ApiQuery(q): ApiQuery<RequestListParams>,
) -> Result<Response, ApiError> {
    let requests = auth
        .engine()
        .list_requests(q.overdue.unwrap_or(false))
        .await?;
    Ok(Json(RequestList { requests }).into_response())
}

/// Extend a request's deadline once, with a recorded reason (dpo).
#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "rights",
    params(("id" = String, Path, description = "Request id")),
    request_body = ExtendBody,
    responses((status = 200, body = RequestView, description = "The request"),
              (status = 400, body = ErrorBody, description = "Already extended or completed")),
    security(("api_key" = ["dpo"])))]
pub async fn extend_request(
    auth: Authorized<{ roles::DPO }>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Result<Response, ApiError> {
    let view = auth
        .engine()
        .extend_request(&auth.actor(), &id, &body.reason)
        .await?;
    Ok(Json(view).into_response())
}

/// Fulfil a request: runs the right (export, erasure, restriction, objection, do-not-sell) and
/// returns its outcome (dpo).
#[utoipa::path(post, path = "/v1/requests/{id}/fulfil", tag = "rights",
    params(("id" = String, Path, description = "Request id")),
    request_body = FulfilBody,
    responses((status = 200, body = Fulfilment, description = "The completed request and its outcome"),
              (status = 400, body = ErrorBody, description = "Subject mismatch or already completed")),
    security(("api_key" = ["dpo"])))]
pub async fn fulfil_request(
    auth: Authorized<{ roles::DPO }>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FulfilBody>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&body.subject)?;
    let (request, outcome) = auth
        .engine()
        .fulfil_request(&auth.actor(), &id, &subject)
        .await?;
    Ok(Json(Fulfilment { request, outcome }).into_response())
}

/// Acknowledge a request to the subject (CCPA: within 10 business days) (dpo).
#[utoipa::path(post, path = "/v1/requests/{id}/acknowledge", tag = "rights",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView, description = "The request"),
              (status = 400, body = ErrorBody, description = "Already acknowledged or completed")),
    security(("api_key" = ["dpo"])))]
pub async fn acknowledge_request(
    auth: Authorized<{ roles::DPO }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = auth
        .engine()
        .acknowledge_request(&auth.actor(), &id)
        .await?;
    Ok(Json(view).into_response())
}

/// One subject's requests, newest first, with their deadlines and status: what a person filed
/// and where each stands.
#[utoipa::path(get, path = "/v1/subjects/{id}/requests", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = RequestList, description = "The subject's requests")),
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn subject_requests(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RequestList>, ApiError> {
    let subject = auth.subject(&id)?;
    let requests = auth.engine().subject_requests(&subject).await?;
    Ok(Json(RequestList { requests }))
}
