//! `rights`: erasure, access and portability, restriction, objection, rectification, and
//! sharing with a named recipient.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_domain::ErrorCode;
use candor_engine::SubjectExport;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::consent::ConsentResponse;
use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(erase_subject))
        .routes(routes!(export_subject))
        .routes(routes!(put_restriction))
        .routes(routes!(post_objection))
        .routes(routes!(delete_event))
        .routes(routes!(share_subject))
}

/// Erase a subject (GDPR Art. 17, CCPA delete): their data key is destroyed, their events and
/// consent records deleted, the item model retrained without them, and a signed certificate
/// returned that holds no personal data. Erasing again changes nothing and answers 404
/// `nothing_held`.
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = candor_engine::ErasureCertificate, description = "The signed erasure certificate"),
              (status = 404, body = ErrorBody, description = "Nothing is held (never known, or already erased)")),
    security(("api_key" = ["dpo"]), ("subject_session" = [])))]
pub async fn erase_subject(
    auth: Authorized<{ roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&id)?;
    let certificate = auth.engine().erase(&auth.actor(), &subject).await?;
    Ok(Json(certificate).into_response())
}

/// Export parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `json` (default: everything, schema `candor.export/1`) or `csv` (the events).
    pub format: Option<String>,
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The export's events as CSV, one line each.
pub(crate) fn export_csv(export: &SubjectExport) -> String {
    let mut out = String::from("timestamp,type,item,value,category,context\n");
    for e in &export.events {
        let context = serde_json::to_string(&e.context).unwrap_or_default();
        let value = e.value.map(|v| v.to_string()).unwrap_or_default();
        let fields = [
            e.timestamp.as_str(),
            &e.event_type,
            &e.item,
            &value,
            &e.category,
            &context,
        ];
        out.push_str(&fields.map(csv_field).join(","));
        out.push('\n');
    }
    out
}

/// Everything held about a subject (GDPR Art. 15 and 20, CCPA right to know): events, consent
/// and its history, purposes, recipients and retention per category, the data's source, and
/// the recommender's model card with the subject's current explanations.
#[utoipa::path(get, path = "/v1/subjects/{id}/export", tag = "rights",
    params(("id" = String, Path, description = "Subject id"), ExportParams),
    responses((status = 200, description = "The export (JSON, schema `candor.export/1`), or the events as CSV",
               content((SubjectExport = "application/json"), (String = "text/csv"))),
              (status = 404, body = ErrorBody, description = "Nothing is held for this subject")),
    security(("api_key" = ["dpo"]), ("subject_session" = [])))]
pub async fn export_subject(
    auth: Authorized<{ roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&id)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "format must be json or csv",
            ));
        }
    };
    let export = auth.engine().export(&auth.actor(), &subject).await?;
    if !csv {
        return Ok(Json(export).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        export_csv(&export),
    )
        .into_response())
}

/// A restriction change, or the state after it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictionBody {
    /// `true` restricts processing (Art. 18); `false` lifts the restriction.
    pub restricted: bool,
}

/// Restrict processing of a subject's data, or lift the restriction (GDPR Art. 18): while
/// restricted, data stays stored but is not ingested, profiled, trained on or personalized.
#[utoipa::path(put, path = "/v1/subjects/{id}/restriction", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    request_body = RestrictionBody,
    responses((status = 200, body = RestrictionBody, description = "The new state"),
              (status = 404, body = ErrorBody, description = "Unknown subject")),
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn put_restriction(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RestrictionBody>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&id)?;
    auth.engine()
        .restrict(&auth.actor(), &subject, body.restricted)
        .await?;
    Ok(Json(body).into_response())
}

/// Object to profiling and direct marketing (GDPR Art. 21): every personalization and
/// marketing purpose is withdrawn until the subject grants it again.
#[utoipa::path(post, path = "/v1/subjects/{id}/objection", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = ConsentResponse, description = "Consent after the objection"),
              (status = 404, body = ErrorBody, description = "Unknown subject")),
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn post_objection(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentResponse>, ApiError> {
    let subject = auth.subject(&id)?;
    let view = auth.engine().object(&auth.actor(), &subject).await?;
    Ok(Json(view.into()))
}

/// Rectification (GDPR Art. 16): delete one of the subject's events (ids come from the
/// export). To correct an event, delete it and send the corrected one.
#[utoipa::path(delete, path = "/v1/subjects/{id}/events/{event}", tag = "rights",
    params(("id" = String, Path, description = "Subject id"), ("event" = i64, Path, description = "Event id from the export")),
    responses((status = 204, description = "Deleted"),
              (status = 404, body = ErrorBody, description = "The subject has no such event")),
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn delete_event(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    ApiPath((id, event)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let subject = auth.subject(&id)?;
    let event: i64 = event.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidId,
            "the event id is a number from the export",
        )
    })?;
    auth.engine()
        .delete_event(&auth.actor(), &subject, event)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One event as shared with a recipient.
#[derive(Debug, Serialize, ToSchema)]
pub struct SharedEvent {
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Item id.
    pub item: String,
    /// Value, if any.
    pub value: Option<f64>,
    /// Data category.
    pub category: String,
}

/// What was shared.
#[derive(Debug, Serialize, ToSchema)]
pub struct Shared {
    /// The recipient, as named in the policy.
    pub recipient: String,
    /// The sharing purpose the subject consented to.
    pub purpose: String,
    /// The events shared.
    pub events: Vec<SharedEvent>,
}

/// Share a subject's data with a recipient the policy names: only with a live consent for a
/// sharing purpose that lists the recipient; audited. Returns what is shared.
#[utoipa::path(post, path = "/v1/subjects/{id}/share/{recipient}", tag = "rights",
    params(("id" = String, Path, description = "Subject id"), ("recipient" = String, Path, description = "Recipient, as named in the policy")),
    responses((status = 200, body = Shared, description = "The purpose and the events shared"),
              (status = 403, body = ErrorBody, description = "No live consent to share with this recipient"),
              (status = 404, body = ErrorBody, description = "Unknown recipient")),
    security(("api_key" = ["service"])))]
pub async fn share_subject(
    auth: Authorized<{ roles::SERVICE }>,
    ApiPath((id, recipient)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&id)?;
    let (purpose, events) = auth
        .engine()
        .share(&auth.actor(), &subject, &recipient)
        .await?;
    let events = events
        .into_iter()
        .map(|e| SharedEvent {
            timestamp: e.occurred_at.to_rfc3339(),
            event_type: e.payload.event_type,
            item: e.payload.item,
            value: e.payload.value,
            category: e.category,
        })
        .collect();
    let shared = Shared {
        recipient,
        purpose,
        events,
    };
    Ok(Json(shared).into_response())
}
