//! `transparency`: the Art. 13 notice, the Art. 30 record of processing, a subject's
//! transparency report and the GPC support resource, all generated from the policy.

use axum::Json;
use axum::response::{IntoResponse, Response};
use candor_engine::transparency::{PrivacyNotice, ProcessingRecord, TransparencyReport};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, Public, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_privacy_notice))
        .routes(routes!(get_processing_record))
        .routes(routes!(get_transparency))
        .routes(routes!(get_gpc_json))
}

/// The Art. 13 privacy notice, generated from the policy in force. Public.
#[utoipa::path(get, path = "/v1/privacy/notice", tag = "transparency",
    responses((status = 200, body = PrivacyNotice, description = "The notice: controller, purposes, legal bases, recipients, retention, rights, profiling logic")),
    security(()))]
pub async fn get_privacy_notice(public: Public) -> Response {
    Json(public.engine().privacy_notice()).into_response()
}

/// The GDPR Art. 30 record of processing, generated from the policy (dpo).
#[utoipa::path(get, path = "/v1/reports/processing-record", tag = "transparency",
    responses((status = 200, body = ProcessingRecord, description = "The record of processing")),
    security(("api_key" = ["dpo"])))]
pub async fn get_processing_record(auth: Authorized<{ roles::DPO }>) -> Response {
    Json(auth.engine().processing_record()).into_response()
}

/// What is held about a subject, per category, with counts, purposes, recipients, retention
/// and consent expiry: for the subject, or a `service` key on their behalf.
#[utoipa::path(get, path = "/v1/subjects/{id}/transparency", tag = "transparency",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = TransparencyReport, description = "The transparency report"),
              (status = 404, body = ErrorBody, description = "Unknown subject")),
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn get_transparency(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&id)?;
    let report = auth.engine().transparency(&auth.actor(), &subject).await?;
    Ok(Json(report).into_response())
}

/// The GPC support resource, as the GPC specification shapes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GpcSupport {
    /// Whether the site honours GPC signals.
    pub gpc: bool,
    /// When this was last changed (the policy version's date), if known.
    #[serde(rename = "lastUpdate")]
    pub last_update: Option<String>,
}

/// The Global Privacy Control support resource (`/.well-known/gpc.json`). Public.
#[utoipa::path(get, path = "/.well-known/gpc.json", tag = "transparency",
    responses((status = 200, body = GpcSupport, description = "GPC is supported")),
    security(()))]
pub async fn get_gpc_json(public: Public) -> Response {
    // The policy version is a date in the shipped policy; fall back to no date otherwise.
    let version = &public.engine().policy().version;
    let last_update =
        (version.len() == 10 && version.as_bytes()[4] == b'-').then_some(version.as_str());
    let support = GpcSupport {
        gpc: true,
        last_update: last_update.map(str::to_owned),
    };
    Json(support).into_response()
}
