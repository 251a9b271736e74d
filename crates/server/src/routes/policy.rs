//! `policy`: the policy in force.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Public};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_policy))
}

/// The policy in force: categories, purposes and event types. Public.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, description = "The policy in force", body = candor_domain::Policy)),
    security(()))]
pub async fn get_policy(public: Public) -> Response {
    Json(public.engine().policy()).into_response()
}
