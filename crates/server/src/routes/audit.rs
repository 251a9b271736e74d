//! `audit`: verification of the tamper-evident audit chain.

use axum::Json;
use candor_engine::AuditReport;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::ApiError;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify_audit))
}

/// The audit chain's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerifyResponse {
    /// Whether every entry and the signed head check out.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first broken position, if any.
    pub first_bad_position: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

impl From<AuditReport> for AuditVerifyResponse {
    fn from(r: AuditReport) -> Self {
        Self {
            ok: r.ok,
            entries: r.entries,
            first_bad_position: r.first_bad_position,
            problem: r.problem,
        }
    }
}

/// Verify the audit chain: every entry's hash, MAC, position and link, and the signed head.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerifyResponse, description = "The verification (check `ok`)")),
    security(("api_key" = ["dpo"])))]
pub async fn verify_audit(
    auth: Authorized<{ roles::DPO }>,
) -> Result<Json<AuditVerifyResponse>, ApiError> {
    Ok(Json(auth.engine().verify_audit().await?.into()))
}
