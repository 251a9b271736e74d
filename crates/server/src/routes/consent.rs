//! `consent`: a subject's per-purpose, expiring, opt-in consent, its history, GPC and TCF.

use std::collections::BTreeMap;

use axum::Json;
use candor_domain::{ConsentMethod, ErrorCode};
use candor_engine::consent::{ConsentHistoryEntry, ConsentView};
use candor_engine::{ConsentUpdate, PurposeChoice};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, Gpc};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_consent, put_consent))
        .routes(routes!(get_consent_history))
}

/// A purpose's choice: `true`/`false`, or a grant narrowed to some of its categories.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ChoiceBody {
    /// Grant or withdraw the whole purpose.
    Plain(bool),
    /// Grant or withdraw, narrowed to categories.
    Narrowed {
        /// Grant or withdraw.
        granted: bool,
        /// The categories of the purpose the grant covers.
        categories: Option<Vec<String>>,
    },
}

impl From<ChoiceBody> for PurposeChoice {
    fn from(choice: ChoiceBody) -> Self {
        match choice {
            ChoiceBody::Plain(granted) => Self {
                granted,
                categories: None,
            },
            ChoiceBody::Narrowed {
                granted,
                categories,
            } => Self {
                granted,
                categories,
            },
        }
    }
}

/// A consent change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// Choices by purpose name.
    #[serde(default)]
    pub purposes: BTreeMap<String, ChoiceBody>,
    /// Instead of `purposes`: an IAB TCF v2.2 TC string (its TCF purposes map to the
    /// policy's purposes).
    #[serde(default)]
    pub tc_string: Option<String>,
    /// How consent was collected: `api` (default), `banner`, `form` or `import`.
    #[serde(default)]
    pub method: Option<String>,
}

/// A subject's consent, and after a change the signed receipt.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentResponse {
    /// Consent by purpose and category.
    #[serde(flatten)]
    pub consent: ConsentView,
    /// After a change: the signed Kantara v1.1 consent receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<candor_engine::ConsentReceipt>,
}

impl From<ConsentView> for ConsentResponse {
    fn from(consent: ConsentView) -> Self {
        Self {
            consent,
            receipt: None,
        }
    }
}

/// A subject's consent history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentHistoryResponse {
    /// Every record; records are never changed or removed.
    pub records: Vec<ConsentHistoryEntry>,
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
    security(("api_key" = ["service", "dpo"]), ("subject_session" = [])))]
pub async fn get_consent(
    auth: Authorized<{ roles::SERVICE | roles::DPO | roles::SUBJECT }>,
    Gpc(gpc): Gpc,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentResponse>, ApiError> {
    let subject = auth.subject(&id)?;
    let view = auth.engine().consent(&auth.actor(), &subject, gpc).await?;
    Ok(Json(view.into()))
}

/// The consent methods a caller may record (the others come from GPC, objections and TCF).
fn requested_method(raw: Option<&str>) -> Result<ConsentMethod, ApiError> {
    match raw.map(ConsentMethod::parse) {
        None => Ok(ConsentMethod::Api),
        Some(Some(
            m @ (ConsentMethod::Api
            | ConsentMethod::Banner
            | ConsentMethod::Form
            | ConsentMethod::Import),
        )) => Ok(m),
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidField,
            "method must be one of api, banner, form, import",
        )),
    }
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
    security(("api_key" = ["service"]), ("subject_session" = [])))]
pub async fn put_consent(
    auth: Authorized<{ roles::SERVICE | roles::SUBJECT }>,
    Gpc(gpc): Gpc,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ConsentRequest>,
) -> Result<Json<ConsentResponse>, ApiError> {
    let subject = auth.subject(&id)?;
    let engine = auth.engine();
    if let Some(tc_string) = &body.tc_string {
        if !body.purposes.is_empty() || body.method.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "send either purposes or a tc_string, not both",
            ));
        }
        let view = engine
            .set_consent_tcf(&auth.actor(), &subject, tc_string, gpc)
            .await?;
        return Ok(Json(view.into()));
    }
    let method = requested_method(body.method.as_deref())?;
    if auth.is_session() && method == ConsentMethod::Import {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "a person's own session records consent as api, banner or form, never as an import",
        ));
    }
    let update = ConsentUpdate {
        method,
        purposes: body
            .purposes
            .into_iter()
            .map(|(name, choice)| (name, choice.into()))
            .collect(),
        recorded_at: None,
    };
    let (view, receipt) = engine
        .set_consent_with_receipt(&auth.actor(), &subject, &update, gpc)
        .await?;
    let mut response = ConsentResponse::from(view);
    response.receipt = Some(receipt);
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
    security(("api_key" = ["dpo"]), ("subject_session" = [])))]
pub async fn get_consent_history(
    auth: Authorized<{ roles::DPO | roles::SUBJECT }>,
    Gpc(gpc): Gpc,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConsentHistoryResponse>, ApiError> {
    let subject = auth.subject(&id)?;
    let history = auth
        .engine()
        .consent_history(&auth.actor(), &subject, gpc)
        .await?;
    Ok(Json(ConsentHistoryResponse { records: history }))
}
