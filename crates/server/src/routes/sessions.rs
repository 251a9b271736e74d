//! `sessions`: opening and revoking a person's own session, the credential of the privacy
//! center and of apps acting for that one person.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use candor_domain::ErrorCode;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_session, revoke_sessions))
        .routes(routes!(current_session))
}

/// A session to open.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSessionRequest {
    /// How long the session lasts, in seconds: 60 up to the server's `[sessions] ttl_secs`
    /// (900 by default), which is also the default.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A new session, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenedSession {
    /// The bearer token (`cs1.…`): sealed, it names the session, the subject's pseudonym and
    /// the expiry, and shows none of them. It is not stored and cannot be shown again.
    pub token: String,
    /// The session's public id (as the audit log names it).
    pub session_id: String,
    /// When it stops admitting anything (RFC 3339).
    pub expires_at: String,
    /// The privacy center for this person: the page exchanges the token for a cookie and
    /// drops it from the address bar.
    pub link: String,
}

/// Sessions revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    /// How many live sessions were revoked.
    pub revoked: u64,
}

/// Open a session for a person (service): the business's backend calls it after its own
/// login and hands the token or the link to that person. Audited.
#[utoipa::path(post, path = "/v1/subjects/{id}/sessions", tag = "sessions",
    params(("id" = String, Path, description = "Subject id")),
    request_body = OpenSessionRequest,
    responses((status = 201, body = OpenedSession, description = "The session, shown once"),
              (status = 400, body = ErrorBody, description = "A length outside what the server allows")),
    security(("api_key" = ["service"])))]
pub async fn open_session(
    auth: Authorized<{ roles::SERVICE }>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<OpenSessionRequest>,
) -> Result<Response, ApiError> {
    let subject = auth.subject(&id)?;
    let session = auth
        .engine()
        .open_session(&auth.actor(), &subject, body.ttl_seconds)
        .await?;
    let opened = OpenedSession {
        link: format!("/privacy?session={}", session.token.as_str()),
        token: session.token.to_string(),
        session_id: session.id,
        expires_at: session.expires_at.to_rfc3339(),
    };
    Ok((StatusCode::CREATED, Json(opened)).into_response())
}

/// Revoke every session of a person (service, or the session itself: signing out). Audited;
/// every server stops admitting them within a second. Erasure revokes them too.
#[utoipa::path(delete, path = "/v1/subjects/{id}/sessions", tag = "sessions",
    params(("id" = String, Path, description = "Subject id")),
    responses((status = 200, body = RevokedSessions, description = "How many were revoked")),
    security(("api_key" = ["service"]), ("subject_session" = [])))]
pub async fn revoke_sessions(
    auth: Authorized<{ roles::SERVICE | roles::SUBJECT }>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RevokedSessions>, ApiError> {
    let subject = auth.subject(&id)?;
    let revoked = auth
        .engine()
        .revoke_sessions(&auth.actor(), &subject)
        .await?;
    Ok(Json(RevokedSessions { revoked }))
}

/// Whom a session acts for.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSubject {
    /// The subject id (the holder's own).
    pub subject: String,
}

/// The subject a session token acts for (the session itself): lets a page that holds only the
/// token (the consent banner, an app) find the person's own paths.
#[utoipa::path(get, path = "/v1/session", tag = "sessions",
    responses((status = 200, body = SessionSubject, description = "The session's subject"),
              (status = 404, body = ErrorBody, description = "The caller is an API key, not a session")),
    security(("subject_session" = [])))]
pub async fn current_session(
    auth: Authorized<{ roles::SUBJECT }>,
) -> Result<Json<SessionSubject>, ApiError> {
    match auth.session_subject() {
        Some(subject) => Ok(Json(SessionSubject {
            subject: subject.as_str().to_owned(),
        })),
        None => Err(ApiError::new(
            ErrorCode::UnknownSubject,
            "the caller is an API key, not a subject session",
        )),
    }
}
