//! Authentication and role checks: a bearer API key is resolved by the engine (hashed lookup,
//! constant-time comparison) and the route names the roles it admits. `admin` is admitted
//! everywhere. Keys never reach logs: only the key id is recorded, in the audit log.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use candor_engine::{Principal, Role};

use crate::AppState;
use crate::error::ApiError;

/// Resolves the caller and checks that its role is one of `allowed` (or admin).
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    allowed: &[Role],
) -> Result<Principal, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    let principal = state
        .engine
        .authenticate(token.trim())
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if principal.role != Role::Admin && !allowed.contains(&principal.role) {
        return Err(ApiError::forbidden(principal.role.as_str()));
    }
    Ok(principal)
}
