//! `keys`: minting API keys.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_domain::ErrorCode;
use candor_engine::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_key))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// `admin`, `service`, `analyst` or `dpo`.
    pub role: String,
    /// A label for people.
    #[serde(default)]
    pub label: Option<String>,
}

/// A new key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateKeyResponse {
    /// The bearer token. It is not stored and cannot be shown again.
    pub key: String,
    /// Its role.
    pub role: String,
}

/// Create an API key (admin only). The key is shown once.
#[utoipa::path(post, path = "/v1/keys", tag = "keys",
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreateKeyResponse, description = "Created"), (status = 400, body = ErrorBody, description = "Unknown role")),
    security(("api_key" = ["admin"])))]
pub async fn create_key(
    auth: Authorized<{ roles::ADMIN }>,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidField,
            "role must be one of admin, service, analyst, dpo",
        )
    })?;
    let key = auth
        .engine()
        .create_api_key(&auth.actor(), role, body.label.as_deref().unwrap_or(""))
        .await?;
    let created = CreateKeyResponse {
        key: key.to_string(),
        role: role.as_str().into(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}
