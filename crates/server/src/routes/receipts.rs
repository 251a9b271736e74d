//! `rights` (receipts): the key that signs consent receipts and erasure certificates, and
//! verification of a receipt.

use axum::Json;
use axum::response::{IntoResponse, Response};
use candor_engine::{ConsentReceipt, SignedDocument};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, Public, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::extract::ApiPath;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_receipt_key))
        .routes(routes!(verify_receipt))
        .routes(routes!(subject_receipts))
}

/// The key that signs receipts and certificates.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptKey {
    /// `Ed25519`.
    pub algorithm: String,
    /// The public key, hex.
    pub public_key: String,
}

/// A receipt's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    /// Whether the signature is valid and this server made it.
    pub valid: bool,
}

/// The public key that signs consent receipts and erasure certificates. Public.
#[utoipa::path(get, path = "/v1/keys/receipts", tag = "rights",
    responses((status = 200, body = ReceiptKey, description = "The signing key")),
    security(()))]
pub async fn get_receipt_key(public: Public) -> Response {
    Json(ReceiptKey {
        algorithm: "Ed25519".into(),
        public_key: candor_engine::signing::hex(&public.engine().verifying_key()),
    })
    .into_response()
}

/// Verify a consent receipt: its signature, and that this server signed it. Public.
#[utoipa::path(post, path = "/v1/receipts/verify", tag = "rights",
    request_body(content = ConsentReceipt, description = "A consent receipt as returned by PUT /v1/subjects/{id}/consent"),
    responses((status = 200, body = Verification, description = "Whether it is valid"),
              (status = 422, body = ErrorBody, description = "Not shaped like a receipt")),
    security(()))]
pub async fn verify_receipt(public: Public, ApiJson(receipt): ApiJson<ConsentReceipt>) -> Response {
    let valid = receipt.verify(Some(&public.engine().verifying_key()));
    Json(Verification { valid }).into_response()
}

/// A subject's stored consent receipts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptList {
    /// Newest first, each exactly as issued (signed).
    pub receipts: Vec<ConsentReceipt>,
}

/// Every consent receipt issued for a subject, newest first, each as signed when issued
/// (dpo, or the person's own session). Audited as a consent read.
#[utoipa::path(get, path = "/v1/subjects/{id}/receipts", tag = "rights",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = ReceiptList, description = "The receipts")),
    security(("api_key" = ["dpo"]), ("subject_session" = [])))]
pub async fn subject_receipts(
    auth: Authorized<{ roles::DPO | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReceiptList>, ApiError> {
    let subject = auth.subject(&id)?;
    let receipts = auth
        .engine()
        .consent_receipts(&auth.actor(), &subject)
        .await?;
    Ok(Json(ReceiptList { receipts }))
}
