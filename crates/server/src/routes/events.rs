//! `events`: consent-gated ingestion, one event or a batch.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_domain::{ErrorCode, RefusalReason};
use candor_engine::{EventDraft, IngestReport, Refusal};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Gpc};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_events))
}

/// One event on the wire: the domain's own type, so the parser the fuzzer runs is this one.
pub use candor_domain::event::WireEvent as EventBody;

fn draft(body: EventBody) -> EventDraft {
    EventDraft {
        subject: body.subject,
        item: body.item,
        event_type: body.event_type,
        value: body.value,
        timestamp: body.timestamp,
        context: body.context.unwrap_or_default(),
    }
}

/// A refused event.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedEvent {
    /// Position in the batch (0 for a single event).
    pub index: usize,
    /// The refusal reason (see `docs/errors.md`).
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
}

/// The outcome of an ingestion request.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Events stored.
    pub accepted: usize,
    /// Events refused; nothing about them was stored.
    pub refused: Vec<RefusedEvent>,
}

impl From<IngestReport> for IngestResponse {
    fn from(report: IngestReport) -> Self {
        Self {
            accepted: report.accepted,
            refused: report
                .refused
                .into_iter()
                .map(|r| RefusedEvent {
                    index: r.index,
                    code: r.reason.code().to_owned(),
                    message: r.message,
                })
                .collect(),
        }
    }
}

/// Ingest one event or a batch of up to 10,000.
///
/// Each event is accepted or refused with a reason code. Refused events leave no trace. The
/// accepted events of one request are committed together in one transaction: if storage
/// fails, none is stored and the response is a 500. A single event (a JSON object) answers
/// 202 when stored and 422 with the reason code when refused; a batch (an array) answers 200
/// with the per-event report.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Vec<EventBody>, description = "An event object, or an array of up to 10,000 events"),
    responses(
        (status = 200, description = "Batch processed", body = IngestResponse),
        (status = 202, description = "The single event was stored", body = IngestResponse),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Role not allowed", body = ErrorBody),
        (status = 413, description = "Batch or body too large", body = ErrorBody),
        (status = 422, description = "Neither an event nor an array of events, or the single event was refused", body = ErrorBody),
    ),
    params(("Sec-GPC" = Option<String>, Header, description = "`1` withdraws sale/sharing and cross-context purposes for the batch's subjects")),
    security(("api_key" = ["service"])))]
pub async fn post_events(
    auth: Authorized<{ roles::SERVICE }>,
    Gpc(gpc): Gpc,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> Result<Response, ApiError> {
    // The body is already known to be JSON; split it into events without building a tree,
    // then read each event on its own so that one bad event is refused alone.
    let batch = candor_domain::event::split_batch(body.get()).ok_or_else(not_events)?;
    let single = batch.single;
    auth.engine().check_batch(batch.events.len())?;
    let mut refused = Vec::new();
    let mut positions = Vec::with_capacity(batch.events.len());
    let mut drafts: Vec<EventDraft> = Vec::with_capacity(batch.events.len());
    for (index, event) in batch.events.into_iter().enumerate() {
        match event {
            Ok(body) => {
                positions.push(index);
                drafts.push(draft(body));
            }
            Err(message) => refused.push(Refusal {
                index,
                reason: RefusalReason::InvalidField,
                message,
            }),
        }
    }
    let mut report = auth.engine().ingest(&auth.actor(), &drafts, gpc).await?;
    for r in &mut report.refused {
        r.index = positions[r.index];
    }
    report.refused.extend(refused);
    report.refused.sort_by_key(|r| r.index);
    auth.metrics()
        .record_events(report.accepted, report.refused.iter().map(|r| r.reason));
    if single {
        return Ok(single_event_response(report));
    }
    Ok((StatusCode::OK, Json(IngestResponse::from(report))).into_response())
}

fn not_events() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidBody,
        "the body must be an event object or an array of events",
    )
}

fn single_event_response(report: IngestReport) -> Response {
    match report.refused.into_iter().next() {
        None => (
            StatusCode::ACCEPTED,
            Json(IngestResponse {
                accepted: report.accepted,
                refused: vec![],
            }),
        )
            .into_response(),
        Some(r) => ApiError::event_refused(r.reason, r.message).into_response(),
    }
}
