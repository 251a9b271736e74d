//! Route handlers. Each one authorizes its caller, converts the wire body to engine types,
//! calls the engine and converts back; none reaches the store or holds business rules.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_domain::{ConsentMethod, ErrorCode, RefusalReason, SubjectId};
use candor_engine::{
    ConsentUpdate, EventDraft, IngestReport, PurposeChoice, RecommendRequest, Refusal, Role,
};
use serde_json::value::RawValue;

use crate::AppState;
use crate::auth::authorize;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, gpc};
use crate::wire::*;

const SUBJECT_READERS: &[Role] = &[Role::Service, Role::Dpo];
const CATALOGUE_READERS: &[Role] = &[Role::Service, Role::Analyst, Role::Dpo];

fn subject_id(raw: &str) -> Result<SubjectId, ApiError> {
    SubjectId::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidId, e.to_string()))
}

/// Liveness and the store backend in use.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The server is up", body = HealthResponse)))]
pub async fn healthz(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        store: state.engine.backend().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Prometheus metrics in text format (admin key: exact counts of events by refusal reason are
/// statistics about people, so they are not public; configure the scraper with the key as a
/// bearer token).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
              (status = 401, body = ErrorBody, description = "No key")),
    security(("api_key" = [])))]
pub async fn metrics_text(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Admin]).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response())
}

/// The policy in force: categories, purposes and event types. Public.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, description = "The policy in force", body = Object)))]
pub async fn get_policy(State(state): State<AppState>) -> Response {
    Json(state.engine.policy()).into_response()
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
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Role not allowed", body = ErrorBody),
        (status = 413, description = "Batch or body too large", body = ErrorBody),
        (status = 422, description = "The single event was refused", body = ErrorBody),
    ),
    params(("Sec-GPC" = Option<String>, Header, description = "`1` withdraws sale/sharing and cross-context purposes for the batch's subjects")),
    security(("api_key" = [])))]
pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service]).await?;
    // The body is already known to be JSON; split it into events without building a tree,
    // then read each event on its own so that one bad event is refused alone.
    let text = body.get();
    let (values, single): (Vec<&RawValue>, bool) = match text.trim_start().as_bytes().first() {
        Some(b'[') => (
            serde_json::from_str(text).map_err(|_| invalid_body())?,
            false,
        ),
        Some(b'{') => (vec![&*body], true),
        _ => return Err(invalid_body()),
    };
    state.engine.check_batch(values.len())?;
    let mut refused = Vec::new();
    let mut positions = Vec::with_capacity(values.len());
    let mut drafts: Vec<EventDraft> = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        match serde_json::from_str::<EventBody>(value.get()) {
            Ok(body) => {
                positions.push(index);
                drafts.push(body.into());
            }
            Err(e) => refused.push(Refusal {
                index,
                reason: RefusalReason::InvalidField,
                message: format!("the event does not have the expected fields: {e}"),
            }),
        }
    }
    let mut report = state
        .engine
        .ingest(&principal.actor(), &drafts, gpc(&headers))
        .await?;
    for r in &mut report.refused {
        r.index = positions[r.index];
    }
    report.refused.extend(refused);
    report.refused.sort_by_key(|r| r.index);
    state
        .metrics
        .record_events(report.accepted, report.refused.iter().map(|r| r.reason));
    if single {
        return Ok(single_event_response(report));
    }
    Ok((StatusCode::OK, Json(IngestResponse::from(report))).into_response())
}

fn invalid_body() -> ApiError {
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

/// A subject's consent per purpose and category.
#[utoipa::path(get, path = "/v1/subjects/{id}/consent", tag = "consent",
    params(("id" = String, Path, description = "Subject id"),
           ("Sec-GPC" = Option<String>, Header, description = "`1` withdraws sale/sharing and cross-context purposes")),
    responses(
        (status = 200, body = ConsentResponse, description = "Consent now"),
        (status = 400, body = ErrorBody, description = "Invalid id"),
        (status = 404, body = ErrorBody, description = "Unknown subject"),
    ),
    security(("api_key" = [])))]
pub async fn get_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentResponse>, ApiError> {
    let principal = authorize(&state, &headers, SUBJECT_READERS).await?;
    let subject = subject_id(&id)?;
    let view = state
        .engine
        .consent(&principal.actor(), &subject, gpc(&headers))
        .await?;
    Ok(Json(view.into()))
}

/// Grant or withdraw consent per purpose, optionally narrowed per category.
///
/// Body: `{"purposes": {"personalize.content.profiling": true, "analytics.reporting": false}}`;
/// a purpose may instead take `{"granted": true, "categories": [...]}`. With `Sec-GPC: 1` the
/// GPC purposes end withdrawn whatever the body says.
#[utoipa::path(put, path = "/v1/subjects/{id}/consent", tag = "consent",
    params(("id" = String, Path, description = "Subject id"),
           ("Sec-GPC" = Option<String>, Header, description = "`1` withdraws sale/sharing and cross-context purposes")),
    request_body = ConsentRequest,
    responses(
        (status = 200, body = ConsentResponse, description = "Consent after the change"),
        (status = 400, body = ErrorBody, description = "Unknown purpose or category, bad method or id"),
        (status = 422, body = ErrorBody, description = "Body of the wrong shape"),
    ),
    security(("api_key" = [])))]
pub async fn put_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ConsentRequest>,
) -> Result<Json<ConsentResponse>, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service]).await?;
    let subject = subject_id(&id)?;
    if let Some(tc_string) = &body.tc_string {
        if !body.purposes.is_empty() || body.method.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "send either purposes or a tc_string, not both",
            ));
        }
        let view = state
            .engine
            .set_consent_tcf(&principal.actor(), &subject, tc_string, gpc(&headers))
            .await?;
        return Ok(Json(view.into()));
    }
    let method = match body.method.as_deref() {
        None => ConsentMethod::Api,
        Some(raw) => match ConsentMethod::parse(raw) {
            Some(
                m @ (ConsentMethod::Api
                | ConsentMethod::Banner
                | ConsentMethod::Form
                | ConsentMethod::Import),
            ) => m,
            _ => {
                return Err(ApiError::new(
                    ErrorCode::InvalidField,
                    "method must be one of api, banner, form, import",
                ));
            }
        },
    };
    let purposes = body
        .purposes
        .into_iter()
        .map(|(name, choice)| {
            let choice = match choice {
                ChoiceBody::Plain(granted) => PurposeChoice {
                    granted,
                    categories: None,
                },
                ChoiceBody::Narrowed {
                    granted,
                    categories,
                } => PurposeChoice {
                    granted,
                    categories,
                },
            };
            (name, choice)
        })
        .collect();
    let update = ConsentUpdate {
        purposes,
        method,
        recorded_at: None,
    };
    let (view, receipt) = state
        .engine
        .set_consent_with_receipt(&principal.actor(), &subject, &update, gpc(&headers))
        .await?;
    let mut response = ConsentResponse::from(view);
    response.receipt = serde_json::to_value(&receipt).ok();
    Ok(Json(response))
}

/// Every consent change ever recorded for a subject, oldest first.
#[utoipa::path(get, path = "/v1/subjects/{id}/consent/history", tag = "consent",
    params(("id" = String, Path, description = "Subject id"),
           ("Sec-GPC" = Option<String>, Header, description = "`1` withdraws sale/sharing and cross-context purposes")),
    responses(
        (status = 200, body = ConsentHistoryResponse, description = "The history"),
        (status = 404, body = ErrorBody, description = "Unknown subject"),
    ),
    security(("api_key" = [])))]
pub async fn get_consent_history(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentHistoryResponse>, ApiError> {
    let principal = authorize(&state, &headers, SUBJECT_READERS).await?;
    let subject = subject_id(&id)?;
    let history = state
        .engine
        .consent_history(&principal.actor(), &subject, gpc(&headers))
        .await?;
    Ok(Json(history.into()))
}

/// Insert or replace one catalogue item.
#[utoipa::path(put, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "Item id")),
    request_body = ItemFields,
    responses((status = 200, body = ItemBody, description = "Stored"), (status = 400, body = ErrorBody, description = "Invalid item")),
    security(("api_key" = [])))]
pub async fn put_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(fields): ApiJson<ItemFields>,
) -> Result<Json<ItemBody>, ApiError> {
    authorize(&state, &headers, &[Role::Service]).await?;
    let item = candor_domain::Item {
        id,
        title: fields.title,
        category: fields.category,
        provider: fields.provider,
        attributes: fields.attributes.unwrap_or_default(),
    };
    state.engine.put_items(std::slice::from_ref(&item)).await?;
    Ok(Json(item.into()))
}

/// One catalogue item.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "Item id")),
    responses((status = 200, body = ItemBody, description = "The item"), (status = 404, body = ErrorBody, description = "Unknown item")),
    security(("api_key" = [])))]
pub async fn get_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ItemBody>, ApiError> {
    authorize(&state, &headers, CATALOGUE_READERS).await?;
    Ok(Json(state.engine.get_item(&id).await?.into()))
}

/// Delete a catalogue item.
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "Item id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody, description = "Unknown item")),
    security(("api_key" = [])))]
pub async fn delete_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers, &[Role::Service]).await?;
    state.engine.delete_item(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Import up to 10,000 items at once, all or none.
#[utoipa::path(post, path = "/v1/items", tag = "catalogue",
    request_body = ItemImport,
    responses((status = 200, body = ImportResponse, description = "Imported"), (status = 400, body = ErrorBody, description = "An item is invalid; nothing was imported")),
    security(("api_key" = [])))]
pub async fn import_items(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ItemImport>,
) -> Result<Json<ImportResponse>, ApiError> {
    authorize(&state, &headers, &[Role::Service]).await?;
    let items: Vec<candor_domain::Item> = body.items.into_iter().map(Into::into).collect();
    state.engine.put_items(&items).await?;
    Ok(Json(ImportResponse {
        imported: items.len(),
    }))
}

/// A page of the catalogue, in id order.
#[utoipa::path(get, path = "/v1/items", tag = "catalogue",
    params(PageParams),
    responses((status = 200, body = ItemsPage, description = "A page")),
    security(("api_key" = [])))]
pub async fn list_items(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ItemsPage>, ApiError> {
    authorize(&state, &headers, CATALOGUE_READERS).await?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .engine
        .list_items(page.after.as_deref(), limit)
        .await?;
    let next_after = (items.len() as u32 == limit)
        .then(|| items.last().map(|i| i.id.clone()))
        .flatten();
    Ok(Json(ItemsPage {
        items: items.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

/// Verify the audit chain: every entry's hash, MAC, position and link, and the signed head.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerifyResponse, description = "The verification (check `ok`)")),
    security(("api_key" = [])))]
pub async fn verify_audit(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<AuditVerifyResponse>, ApiError> {
    authorize(&state, &headers, &[Role::Dpo]).await?;
    Ok(Json(state.engine.verify_audit().await?.into()))
}

/// Create an API key (admin only). The key is shown once.
#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreateKeyResponse, description = "Created"), (status = 400, body = ErrorBody, description = "Unknown role")),
    security(("api_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[]).await?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidField,
            "role must be one of admin, service, analyst, dpo",
        )
    })?;
    let key = state
        .engine
        .create_api_key(
            &principal.actor(),
            role,
            body.label.as_deref().unwrap_or(""),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateKeyResponse {
            key: key.to_string(),
            role: role.as_str().into(),
        }),
    )
        .into_response())
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
    security(("api_key" = [])))]
pub async fn get_recommendations(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecommendParams>,
) -> Result<Json<RecommendationsResponse>, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service]).await?;
    let subject = subject_id(&id)?;
    let request = recommend_request(
        q.n,
        id_list(q.exclude.as_deref()),
        q.category,
        (q.diversity, q.fairness),
        id_list(q.context.as_deref()),
    );
    let recs = state
        .engine
        .recommend(&principal.actor(), &subject, &request, gpc(&headers))
        .await?;
    Ok(Json(recs.into()))
}

/// Recommendations from session items alone, with no identity at all.
#[utoipa::path(post, path = "/v1/recommendations/contextual", tag = "recommendations",
    request_body = ContextualRequest,
    responses((status = 200, body = RecommendationsResponse, description = "Contextual recommendations"),
              (status = 400, body = ErrorBody, description = "Bad n or ids")),
    security(("api_key" = [])))]
pub async fn post_contextual(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContextualRequest>,
) -> Result<Json<RecommendationsResponse>, ApiError> {
    authorize(&state, &headers, &[Role::Service]).await?;
    let request = recommend_request(
        body.n,
        Vec::new(),
        body.category,
        (body.diversity, body.fairness),
        body.items,
    );
    Ok(Json(state.engine.recommend_contextual(&request)?.into()))
}

/// Items most similar to an item.
#[utoipa::path(get, path = "/v1/items/{id}/similar", tag = "recommendations",
    params(("id" = String, Path, description = "Item id"), CountParams),
    responses((status = 200, body = SimilarResponse, description = "Similar items"),
              (status = 404, body = ErrorBody, description = "The model does not know the item")),
    security(("api_key" = [])))]
pub async fn get_similar(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CountParams>,
) -> Result<Json<SimilarResponse>, ApiError> {
    authorize(&state, &headers, CATALOGUE_READERS).await?;
    let items = state.engine.similar_items(&id, q.n.unwrap_or(10))?;
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
    responses((status = 200, body = ModelCardBody, description = "Trained (with wait=true)"),
              (status = 202, body = TrainStarted, description = "Training started"),
              (status = 409, body = ErrorBody, description = "Nothing to train on")),
    security(("api_key" = [])))]
pub async fn post_train(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TrainParams>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[]).await?;
    if q.wait.unwrap_or(false) {
        let card = state.engine.train(&principal.actor()).await?;
        return Ok(Json(ModelCardBody::from(card)).into_response());
    }
    let engine = state.engine.clone();
    tokio::spawn(async move {
        if let Err(error) = engine.train(&principal.actor()).await {
            tracing::warn!(%error, "training failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(TrainStarted {
            status: "started".into(),
        }),
    )
        .into_response())
}

/// The card of the model being served: algorithm, hyperparameters, data used, and its
/// differential-privacy guarantee. Public; exact counts and held-out figures (statistics of
/// the training data that are not differentially private) only for admin and dpo keys.
#[utoipa::path(get, path = "/v1/models/current", tag = "recommendations",
    responses((status = 200, body = ModelCardBody, description = "The model card"),
              (status = 409, body = ErrorBody, description = "No model trained yet")))]
pub async fn get_model_card(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ModelCardBody>, ApiError> {
    let card: ModelCardBody = state.engine.model_card()?.into();
    let trusted = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(_) => authorize(&state, &headers, &[Role::Dpo]).await.is_ok(),
        None => false,
    };
    Ok(Json(if trusted { card } else { card.public() }))
}

/// Erase a subject (GDPR Art. 17, CCPA delete): their data key is destroyed, their events and
/// consent records deleted, the item model retrained without them, and a signed certificate
/// returned that holds no personal data. Erasing again changes nothing and answers 404
/// `nothing_held`.
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = Object, description = "The signed erasure certificate"),
              (status = 404, body = ErrorBody, description = "Nothing is held (never known, or already erased)")),
    security(("api_key" = [])))]
pub async fn erase_subject(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Dpo]).await?;
    let subject = subject_id(&id)?;
    let certificate = state.engine.erase(&principal.actor(), &subject).await?;
    Ok(Json(certificate).into_response())
}

/// Export parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
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

/// Everything held about a subject (GDPR Art. 15 and 20, CCPA right to know): events, consent
/// and its history, purposes, recipients and retention per category, the data's source, and
/// the recommender's model card with the subject's current explanations.
#[utoipa::path(get, path = "/v1/subjects/{id}/export", tag = "rights",
    params(("id" = String, Path, description = "Subject id"), ExportParams),
    responses((status = 200, body = Object, description = "The export (JSON), or the events as CSV"),
              (status = 404, body = ErrorBody, description = "Nothing is held for this subject")),
    security(("api_key" = [])))]
pub async fn export_subject(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service, Role::Dpo]).await?;
    let subject = subject_id(&id)?;
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
    let export = state.engine.export(&principal.actor(), &subject).await?;
    if !csv {
        return Ok(Json(export).into_response());
    }
    let mut out = String::from("timestamp,type,item,value,category,context\n");
    for e in &export.events {
        let context = serde_json::to_string(&e.context).unwrap_or_default();
        let value = e.value.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(
            &[
                e.timestamp.as_str(),
                &e.event_type,
                &e.item,
                &value,
                &e.category,
                &context,
            ]
            .map(csv_field)
            .join(","),
        );
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

/// A restriction change.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
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
    responses((status = 200, body = Object, description = "The new state"),
              (status = 404, body = ErrorBody, description = "Unknown subject")),
    security(("api_key" = [])))]
pub async fn put_restriction(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RestrictionBody>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service, Role::Dpo]).await?;
    let subject = subject_id(&id)?;
    state
        .engine
        .restrict(&principal.actor(), &subject, body.restricted)
        .await?;
    Ok(Json(serde_json::json!({ "restricted": body.restricted })).into_response())
}

/// Object to profiling and direct marketing (GDPR Art. 21): every personalization and
/// marketing purpose is withdrawn until the subject grants it again.
#[utoipa::path(post, path = "/v1/subjects/{id}/objection", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = ConsentResponse, description = "Consent after the objection"),
              (status = 404, body = ErrorBody, description = "Unknown subject")),
    security(("api_key" = [])))]
pub async fn post_objection(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentResponse>, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service, Role::Dpo]).await?;
    let subject = subject_id(&id)?;
    Ok(Json(
        state
            .engine
            .object(&principal.actor(), &subject)
            .await?
            .into(),
    ))
}

/// Rectification (GDPR Art. 16): delete one of the subject's events (ids come from the
/// export). To correct an event, delete it and send the corrected one.
#[utoipa::path(delete, path = "/v1/subjects/{id}/events/{event}", tag = "rights",
    params(("id" = String, Path, description = "Subject id"), ("event" = i64, Path, description = "Event id from the export")),
    responses((status = 204, description = "Deleted"),
              (status = 404, body = ErrorBody, description = "The subject has no such event")),
    security(("api_key" = [])))]
pub async fn delete_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, event)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service, Role::Dpo]).await?;
    let subject = subject_id(&id)?;
    let event: i64 = event.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidId,
            "the event id is a number from the export",
        )
    })?;
    state
        .engine
        .delete_event(&principal.actor(), &subject, event)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The Art. 13 privacy notice, generated from the policy in force. Public.
#[utoipa::path(get, path = "/v1/privacy/notice", tag = "transparency",
    responses((status = 200, body = Object, description = "The notice: controller, purposes, legal bases, recipients, retention, rights, profiling logic")))]
pub async fn get_privacy_notice(State(state): State<AppState>) -> Response {
    Json(state.engine.privacy_notice()).into_response()
}

/// The GDPR Art. 30 record of processing, generated from the policy (dpo).
#[utoipa::path(get, path = "/v1/reports/processing-record", tag = "transparency",
    responses((status = 200, body = Object, description = "The record of processing")),
    security(("api_key" = [])))]
pub async fn get_processing_record(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Dpo]).await?;
    Ok(Json(state.engine.processing_record()).into_response())
}

/// What is held about a subject, per category, with counts, purposes, recipients, retention
/// and consent expiry: for the subject, or a `service` key on their behalf.
#[utoipa::path(get, path = "/v1/subjects/{id}/transparency", tag = "transparency",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = Object, description = "The transparency report"),
              (status = 404, body = ErrorBody, description = "Unknown subject")),
    security(("api_key" = [])))]
pub async fn get_transparency(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service, Role::Dpo]).await?;
    let subject = subject_id(&id)?;
    Ok(Json(
        state
            .engine
            .transparency(&principal.actor(), &subject)
            .await?,
    )
    .into_response())
}

/// The Global Privacy Control support resource (`/.well-known/gpc.json`). Public.
#[utoipa::path(get, path = "/.well-known/gpc.json", tag = "transparency",
    responses((status = 200, body = Object, description = "`{\"gpc\": true, \"lastUpdate\": ...}`")))]
pub async fn get_gpc_json(State(state): State<AppState>) -> Response {
    // The policy version is a date in the shipped policy; fall back to no date otherwise.
    let version = &state.engine.policy().version;
    let last_update =
        (version.len() == 10 && version.as_bytes()[4] == b'-').then_some(version.as_str());
    Json(serde_json::json!({ "gpc": true, "lastUpdate": last_update })).into_response()
}

/// A new data subject's request.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// `access`, `erasure`, `restriction`, `objection` or `do_not_sell`.
    pub kind: String,
    /// The subject's id (stored only as a pseudonym).
    pub subject: String,
    /// `gdpr` or `ccpa`.
    pub jurisdiction: String,
    /// When the request was received, if not now (RFC 3339).
    #[serde(default)]
    pub received_at: Option<String>,
}

/// Filters of the request list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestListParams {
    /// Only requests past their deadline and not completed.
    pub overdue: Option<bool>,
}

/// An extension.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// Why the deadline is extended (recorded).
    pub reason: String,
}

/// The subject a request is fulfilled for.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfilBody {
    /// The subject's id; it must match the request.
    pub subject: String,
}

/// Record a data subject's request; its deadline is computed (GDPR one month, CCPA 45 days
/// with an acknowledgement within 10 business days).
#[utoipa::path(post, path = "/v1/requests", tag = "rights",
    request_body = NewRequestBody,
    responses((status = 201, body = Object, description = "The request with its deadlines"),
              (status = 400, body = ErrorBody, description = "Unknown kind or jurisdiction")),
    security(("api_key" = [])))]
pub async fn create_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewRequestBody>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service, Role::Dpo]).await?;
    let subject = subject_id(&body.subject)?;
    let received_at = match body.received_at.as_deref() {
        None => None,
        Some(raw) => Some(candor_domain::Timestamp::parse_rfc3339(raw).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                "received_at is not an RFC 3339 date-time",
            )
        })?),
    };
    let view = state
        .engine
        .create_request(
            &principal.actor(),
            &body.kind,
            &subject,
            &body.jurisdiction,
            received_at,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Requests, newest first; `?overdue=true` lists those past their deadline (dpo).
#[utoipa::path(get, path = "/v1/requests", tag = "rights",
    params(RequestListParams),
    responses((status = 200, body = Object, description = "The requests")),
    security(("api_key" = [])))]
pub async fn list_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RequestListParams>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Dpo]).await?;
    let requests = state
        .engine
        .list_requests(q.overdue.unwrap_or(false))
        .await?;
    Ok(Json(serde_json::json!({ "requests": requests })).into_response())
}

/// Extend a request's deadline once, with a recorded reason (dpo).
#[utoipa::path(post, path = "/v1/requests/{id}/extend", tag = "rights",
    params(("id" = String, Path, description = "Request id")),
    request_body = ExtendBody,
    responses((status = 200, body = Object, description = "The request"),
              (status = 400, body = ErrorBody, description = "Already extended or completed")),
    security(("api_key" = [])))]
pub async fn extend_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ExtendBody>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Dpo]).await?;
    Ok(Json(
        state
            .engine
            .extend_request(&principal.actor(), &id, &body.reason)
            .await?,
    )
    .into_response())
}

/// Fulfil a request: runs the right (export, erasure, restriction, objection, do-not-sell) and
/// returns its outcome (dpo).
#[utoipa::path(post, path = "/v1/requests/{id}/fulfil", tag = "rights",
    params(("id" = String, Path, description = "Request id")),
    request_body = FulfilBody,
    responses((status = 200, body = Object, description = "The completed request and its outcome"),
              (status = 400, body = ErrorBody, description = "Subject mismatch or already completed")),
    security(("api_key" = [])))]
pub async fn fulfil_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FulfilBody>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Dpo]).await?;
    let subject = subject_id(&body.subject)?;
    let (request, outcome) = state
        .engine
        .fulfil_request(&principal.actor(), &id, &subject)
        .await?;
    Ok(Json(serde_json::json!({ "request": request, "outcome": outcome })).into_response())
}

/// The public key that signs consent receipts and erasure certificates. Public.
#[utoipa::path(get, path = "/v1/keys/receipts", tag = "rights",
    responses((status = 200, body = Object, description = "`{\"algorithm\": \"Ed25519\", \"public_key\": hex}`")))]
pub async fn get_receipt_key(State(state): State<AppState>) -> Response {
    let key = candor_engine::signing::hex(&state.engine.verifying_key());
    Json(serde_json::json!({ "algorithm": "Ed25519", "public_key": key })).into_response()
}

/// Verify a consent receipt: its signature, and that this server signed it. Public.
#[utoipa::path(post, path = "/v1/receipts/verify", tag = "rights",
    request_body(content = Object, description = "A consent receipt as returned by PUT /v1/subjects/{id}/consent"),
    responses((status = 200, body = Object, description = "`{\"valid\": bool}`"),
              (status = 422, body = ErrorBody, description = "Not shaped like a receipt")))]
pub async fn verify_receipt(
    State(state): State<AppState>,
    ApiJson(receipt): ApiJson<candor_engine::ConsentReceipt>,
) -> Response {
    use candor_engine::SignedDocument;
    let valid = receipt.verify(Some(&state.engine.verifying_key()));
    Json(serde_json::json!({ "valid": valid })).into_response()
}

/// Share a subject's data with a recipient the policy names: only with a live consent for a
/// sharing purpose that lists the recipient; audited. Returns what is shared.
#[utoipa::path(post, path = "/v1/subjects/{id}/share/{recipient}", tag = "rights",
    params(("id" = String, Path, description = "Subject id"), ("recipient" = String, Path, description = "Recipient, as named in the policy")),
    responses((status = 200, body = Object, description = "The purpose and the events shared"),
              (status = 403, body = ErrorBody, description = "No live consent to share with this recipient"),
              (status = 404, body = ErrorBody, description = "Unknown recipient")),
    security(("api_key" = [])))]
pub async fn share_subject(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, recipient)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Service]).await?;
    let subject = subject_id(&id)?;
    let (purpose, events) = state
        .engine
        .share(&principal.actor(), &subject, &recipient)
        .await?;
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| serde_json::json!({ "timestamp": e.occurred_at.to_rfc3339(), "type": e.payload.event_type, "item": e.payload.item, "value": e.payload.value, "category": e.category }))
        .collect();
    Ok(
        Json(serde_json::json!({ "recipient": recipient, "purpose": purpose, "events": events }))
            .into_response(),
    )
}

/// Acknowledge a request to the subject (CCPA: within 10 business days) (dpo).
#[utoipa::path(post, path = "/v1/requests/{id}/acknowledge", tag = "rights",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = Object, description = "The request"),
              (status = 400, body = ErrorBody, description = "Already acknowledged or completed")),
    security(("api_key" = [])))]
pub async fn acknowledge_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Dpo]).await?;
    Ok(Json(
        state
            .engine
            .acknowledge_request(&principal.actor(), &id)
            .await?,
    )
    .into_response())
}

/// Budget-planner parameters: the same as `candor privacy epsilon`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
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

/// The privacy budget planner: ε (and the best Rényi order) of a mechanism composed T times,
/// from the RDP accountant (analyst).
#[utoipa::path(get, path = "/v1/analytics/plan", tag = "analytics",
    params(PlanParams),
    responses((status = 200, body = Object, description = "`{\"epsilon\", \"delta\", \"order\"}`"),
              (status = 400, body = ErrorBody, description = "Bad parameters")),
    security(("api_key" = [])))]
pub async fn get_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PlanParams>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Analyst]).await?;
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidField, m.to_owned());
    let compositions = q.compositions.unwrap_or(1);
    let plan = match q.mechanism.as_str() {
        "gaussian" => candor_privacy::Plan::Gaussian {
            sigma: q
                .sigma
                .ok_or_else(|| bad("sigma is required for gaussian"))?,
            compositions,
            sampling_rate: q.sampling_rate,
        },
        "laplace" => candor_privacy::Plan::Laplace {
            scale: q
                .scale
                .ok_or_else(|| bad("scale is required for laplace"))?,
            sensitivity: q.sensitivity.unwrap_or(1.0),
            compositions,
        },
        _ => return Err(bad("mechanism must be gaussian or laplace")),
    };
    let delta = q.delta.unwrap_or(1e-5);
    let bound = plan.epsilon(delta).map_err(|e| bad(&e.to_string()))?;
    Ok(Json(serde_json::json!({ "epsilon": bound.epsilon, "delta": delta, "order": bound.order.is_finite().then_some(bound.order) })).into_response())
}

/// Answer a differentially private aggregate question (analyst): counts per item, category or
/// day, value histograms, top-k items, bounded means. The cost is stated up front (ε at the
/// budget's δ, and ρ) and charged atomically to the dataset's budget; `dry_run` previews it.
/// Every row carries its noise scale and a 95% interval.
#[utoipa::path(post, path = "/v1/analytics/query", tag = "analytics",
    request_body = AnalyticsQueryBody,
    responses((status = 200, body = Object, description = "The answer, its cost and the budget left"),
              (status = 400, body = ErrorBody, description = "Bad query (unknown kind, bad cost, bounds out of order)"),
              (status = 403, body = ErrorBody, description = "Not an analyst key, or `budget_exhausted`")),
    security(("api_key" = [])))]
pub async fn post_analytics_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AnalyticsQueryBody>,
) -> Result<Response, ApiError> {
    let principal = authorize(&state, &headers, &[Role::Analyst]).await?;
    let answer = state
        .engine
        .analytics_query(&principal.actor(), &body.into())
        .await?;
    Ok(Json(answer).into_response())
}

/// The analytics budget: limit, spent and remaining, in ε and ρ (analyst, dpo).
#[utoipa::path(get, path = "/v1/analytics/budget", tag = "analytics",
    responses((status = 200, body = Object, description = "The budget's state")),
    security(("api_key" = [])))]
pub async fn get_analytics_budget(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &[Role::Analyst, Role::Dpo]).await?;
    Ok(Json(state.engine.analytics_budget().await?).into_response())
}
