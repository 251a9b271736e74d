//! Candor's HTTP API. [`app`] builds the axum router (the tests call it too); routes and their
//! OpenAPI descriptions are registered together so the document served at `/openapi.json`
//! cannot drift from the code. This is the only crate that knows HTTP and JSON wire types; it
//! reaches personal data only through `candor-engine`.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::MatchedPath;
use axum::http::Request;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use candor_engine::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routes;
pub mod wire;

pub use metrics::Metrics;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The engine: the only way to personal data.
    pub engine: Arc<Engine>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl AppState {
    /// State over an engine, with fresh metrics.
    pub fn new(engine: Arc<Engine>, max_body_bytes: usize) -> Self {
        Self {
            engine,
            metrics: Arc::new(Metrics::default()),
            max_body_bytes,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Candor",
        description = "A self-hosted personalization engine that enforces its privacy policy in code. \
            Errors are `{\"error\": {\"code\", \"message\"}}`. Authenticate with `Authorization: Bearer <key>`.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Consent-gated ingestion"),
        (name = "consent", description = "Per-purpose, expiring, opt-in consent"),
        (name = "catalogue", description = "Items (not personal data)"),
        (name = "policy", description = "The policy in force"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "keys", description = "API keys"),
        (name = "rights", description = "Data subjects' rights"),
        (name = "transparency", description = "Notice, record of processing, transparency report, GPC"),
        (name = "analytics", description = "Differential privacy: budget planning"),
        (name = "recommendations", description = "Tiered, explained recommendations and the item model"),
        (name = "system", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(metrics_text))
        .routes(routes!(get_policy))
        .routes(routes!(post_events))
        .routes(routes!(get_consent, put_consent))
        .routes(routes!(get_consent_history))
        .routes(routes!(put_item, get_item, delete_item))
        .routes(routes!(import_items, list_items))
        .routes(routes!(verify_audit))
        .routes(routes!(create_key))
        .routes(routes!(get_recommendations))
        .routes(routes!(post_contextual))
        .routes(routes!(get_similar))
        .routes(routes!(post_train))
        .routes(routes!(get_model_card))
        .routes(routes!(erase_subject))
        .routes(routes!(export_subject))
        .routes(routes!(put_restriction))
        .routes(routes!(post_objection))
        .routes(routes!(delete_event))
        .routes(routes!(get_privacy_notice))
        .routes(routes!(get_processing_record))
        .routes(routes!(get_transparency))
        .routes(routes!(get_gpc_json))
        .routes(routes!(create_request, list_requests))
        .routes(routes!(extend_request))
        .routes(routes!(fulfil_request))
        .routes(routes!(acknowledge_request))
        .routes(routes!(get_plan))
        .routes(routes!(post_analytics_query))
        .routes(routes!(get_analytics_budget))
        .routes(routes!(get_receipt_key))
        .routes(routes!(verify_receipt))
        .routes(routes!(share_subject))
}

/// The OpenAPI 3 document of the API, generated from the route annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The application router.
pub fn app(state: AppState) -> Router {
    let (router, api) = api_router().split_for_parts();
    let api_json = Arc::new(
        api.to_pretty_json()
            .expect("the OpenAPI document serializes"),
    );
    router
        .route(
            "/openapi.json",
            get(move || {
                let body = api_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body.as_str().to_owned(),
                    )
                }
            }),
        )
        .fallback(|| async { error::ApiError::no_route() })
        .method_not_allowed_fallback(|| async { error::ApiError::no_method() })
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(
            // Spans name the route template, never the URI: paths hold subject ids.
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", |p| p.as_str());
                tracing::info_span!("request", method = %req.method(), route)
            }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            error::ApiError::internal().into_response()
        }))
        .with_state(state)
}
