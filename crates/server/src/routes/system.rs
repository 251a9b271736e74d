//! `system`: liveness and Prometheus metrics.

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, Public, roles};
use crate::error::ErrorBody;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics_text))
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Candor's version.
    pub version: String,
}

/// Liveness and the store backend in use.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The server is up", body = HealthResponse)),
    security(()))]
pub async fn healthz(public: Public) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        store: public.engine().backend().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Prometheus metrics in text format (admin key: exact counts of events by refusal reason are
/// statistics about people, so they are not public; configure the scraper with the key as a
/// bearer token).
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
              (status = 401, body = ErrorBody, description = "No key")),
    security(("api_key" = ["admin"])))]
pub async fn metrics_text(auth: Authorized<{ roles::ADMIN }>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        auth.metrics().render(),
    )
        .into_response()
}
