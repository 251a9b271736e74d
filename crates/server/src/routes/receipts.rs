//! `rights` (receipts): the key that signs consent receipts and erasure certificates, and
//! verification of a receipt.

use axum::Json;
use axum::response::{IntoResponse, Response};
use candor_engine::{ConsentReceipt, SignedDocument};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Public};
use crate::error::ErrorBody;
use crate::extract::ApiJson;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_receipt_key))
        .routes(routes!(verify_receipt))
}

/// The public key that signs consent receipts and erasure certificates. Public.
#[utoipa::path(get, path = "/v1/keys/receipts", tag = "rights",
    responses((status = 200, body = Object, description = "`{\"algorithm\": \"Ed25519\", \"public_key\": hex}`")),
    security(()))]
pub async fn get_receipt_key(public: Public) -> Response {
    let key = candor_engine::signing::hex(&public.engine().verifying_key());
    Json(serde_json::json!({ "algorithm": "Ed25519", "public_key": key })).into_response()
}

/// Verify a consent receipt: its signature, and that this server signed it. Public.
#[utoipa::path(post, path = "/v1/receipts/verify", tag = "rights",
    request_body(content = Object, description = "A consent receipt as returned by PUT /v1/subjects/{id}/consent"),
    responses((status = 200, body = Object, description = "`{\"valid\": bool}`"),
              (status = 422, body = ErrorBody, description = "Not shaped like a receipt")),
    security(()))]
pub async fn verify_receipt(public: Public, ApiJson(receipt): ApiJson<ConsentReceipt>) -> Response {
    let valid = receipt.verify(Some(&public.engine().verifying_key()));
    Json(serde_json::json!({ "valid": valid })).into_response()
}
