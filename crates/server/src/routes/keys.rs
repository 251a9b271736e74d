//! `keys`: minting, listing and revoking API keys.

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
use crate::extract::{ApiJson, ApiPath};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
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
    /// Days until the key expires (1 to 3,650); without it the key lives until revoked.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateKeyResponse {
    /// The bearer token. It is not stored and cannot be shown again.
    pub key: String,
    /// Its role.
    pub role: String,
    /// Its public id, for listing and revoking.
    pub id: String,
    /// When it expires (RFC 3339), if it does.
    pub expires_at: Option<String>,
}

/// Every API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Oldest first, revoked and expired ones too.
    pub keys: Vec<candor_engine::ApiKeyView>,
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
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days @ 1..=3650) => Some(auth.engine().now().plus_days(days)),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "expires_in_days must be between 1 and 3650",
            ));
        }
    };
    let key = auth
        .engine()
        .create_api_key(
            &auth.actor(),
            role,
            body.label.as_deref().unwrap_or(""),
            expires_at,
        )
        .await?;
    let created = CreateKeyResponse {
        id: candor_engine::key_id_of(&key)
            .unwrap_or_default()
            .to_owned(),
        key: key.to_string(),
        role: role.as_str().into(),
        expires_at: expires_at.map(|t| t.to_rfc3339()),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// List every API key (admin only): id, role, label, creation, expiry, revocation. Never a
/// secret.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = KeyList, description = "The keys")),
    security(("api_key" = ["admin"])))]
pub async fn list_keys(auth: Authorized<{ roles::ADMIN }>) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        keys: auth.engine().list_api_keys().await?,
    }))
}

/// Revoke an API key (admin only), audited: it stops admitting anything on this server at
/// once and on every server within a second.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's public id")),
    responses((status = 204, description = "Revoked"),
              (status = 404, body = ErrorBody, description = "No live key with this id")),
    security(("api_key" = ["admin"])))]
pub async fn revoke_key(
    auth: Authorized<{ roles::ADMIN }>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.engine().revoke_api_key(&auth.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
