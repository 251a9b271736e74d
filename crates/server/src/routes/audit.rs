//! `audit`: verification of the tamper-evident audit log, its signed tree heads (RFC 6962),
//! and inclusion and consistency proofs that verify offline with the server's public key.

use axum::Json;
use candor_engine::{AuditReport, ConsistencyProof, InclusionProof, TreeHead};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify_audit))
        .routes(routes!(get_tree_head))
        .routes(routes!(entry_proof))
        .routes(routes!(receipt_proof))
        .routes(routes!(consistency_proof))
}

/// The audit log's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerifyResponse {
    /// Whether every entry checked, the signed head and the consent history check out.
    pub ok: bool,
    /// Entries checked by this verification.
    pub entries: u64,
    /// Where it started: 0 for the whole log, else the position this server had verified.
    pub checked_from: u64,
    /// Entries verified in all (the log's size when `ok`).
    pub tree_size: u64,
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
            checked_from: r.checked_from,
            tree_size: r.tree_size,
            first_bad_position: r.first_bad_position,
            problem: r.problem,
        }
    }
}

/// How much to verify.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// Verify the whole log rather than what followed this server's last checkpoint.
    pub full: Option<bool>,
}

/// Verify the audit log: each entry's hash, MAC, position and link, the signed head, and the
/// consent history against its commitments. By default only what was appended since this
/// server last verified (and that its checkpoint entry is unchanged); `?full=true` checks
/// everything (dpo).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    params(VerifyParams),
    responses((status = 200, body = AuditVerifyResponse, description = "The verification (check `ok`)")),
    security(("api_key" = ["dpo"])))]
pub async fn verify_audit(
    auth: Authorized<{ roles::DPO }>,
    ApiQuery(q): ApiQuery<VerifyParams>,
) -> Result<Json<AuditVerifyResponse>, ApiError> {
    let engine = auth.engine();
    let report = if q.full.unwrap_or(false) {
        engine.verify_audit().await?
    } else {
        engine.verify_audit_incremental().await?
    };
    Ok(Json(report.into()))
}

/// Which tree head.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TreeHeadParams {
    /// A published head of exactly this many entries; omitted, the head of the log now.
    pub size: Option<u64>,
}

/// The signed tree head of the audit log now (verifying what it gained first), or a head
/// published earlier. Keep heads to check later that the log only grew (service, dpo).
#[utoipa::path(get, path = "/v1/audit/tree-head", tag = "audit",
    params(TreeHeadParams),
    responses((status = 200, body = TreeHead, description = "The signed tree head"),
              (status = 404, body = ErrorBody, description = "No head of that size was published"),
              (status = 409, body = ErrorBody, description = "The log does not verify (`audit_log_broken`)")),
    security(("api_key" = ["service", "dpo"])))]
pub async fn get_tree_head(
    auth: Authorized<{ roles::SERVICE | roles::DPO }>,
    ApiQuery(q): ApiQuery<TreeHeadParams>,
) -> Result<Json<TreeHead>, ApiError> {
    let engine = auth.engine();
    Ok(Json(match q.size {
        Some(size) => engine.tree_head_of(size).await?,
        None => engine.tree_head().await?,
    }))
}

/// Proof that audit entry `seq` is in the log: the entry, the signed head, and the audit
/// path (dpo).
#[utoipa::path(get, path = "/v1/audit/entries/{seq}/proof", tag = "audit",
    params(("seq" = u64, Path, description = "The entry's 1-based position")),
    responses((status = 200, body = InclusionProof, description = "The inclusion proof"),
              (status = 409, body = ErrorBody, description = "The log does not verify (`audit_log_broken`)")),
    security(("api_key" = ["dpo"])))]
pub async fn entry_proof(
    auth: Authorized<{ roles::DPO }>,
    ApiPath(seq): ApiPath<u64>,
) -> Result<Json<InclusionProof>, ApiError> {
    Ok(Json(auth.engine().inclusion_proof(seq).await?))
}

/// Proof that the consent change a receipt was issued for is in the log: check it with
/// `candor audit check-proof --receipt` (service, dpo).
#[utoipa::path(get, path = "/v1/audit/receipts/{receipt_id}/proof", tag = "audit",
    params(("receipt_id" = String, Path, description = "The receipt's `consentReceiptID`")),
    responses((status = 200, body = InclusionProof, description = "The inclusion proof of the receipt's entry"),
              (status = 409, body = ErrorBody, description = "The log does not verify (`audit_log_broken`)")),
    security(("api_key" = ["service", "dpo"])))]
pub async fn receipt_proof(
    auth: Authorized<{ roles::SERVICE | roles::DPO }>,
    ApiPath(receipt_id): ApiPath<String>,
) -> Result<Json<InclusionProof>, ApiError> {
    Ok(Json(auth.engine().receipt_proof(&receipt_id).await?))
}

/// From which head.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The size of the earlier head the caller holds.
    pub first: u64,
}

/// Proof that the log now extends the log of `first` entries only by appending (service,
/// dpo).
#[utoipa::path(get, path = "/v1/audit/consistency", tag = "audit",
    params(ConsistencyParams),
    responses((status = 200, body = ConsistencyProof, description = "The consistency proof to the head now"),
              (status = 409, body = ErrorBody, description = "The log does not verify (`audit_log_broken`)")),
    security(("api_key" = ["service", "dpo"])))]
pub async fn consistency_proof(
    auth: Authorized<{ roles::SERVICE | roles::DPO }>,
    ApiQuery(q): ApiQuery<ConsistencyParams>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    Ok(Json(auth.engine().consistency_proof(q.first).await?))
}
