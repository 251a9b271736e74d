//! Candor's HTTP API. [`app`] builds the axum router (the tests call it too); routes and their
//! OpenAPI descriptions are registered together so the document served at `/openapi.json`
//! cannot drift from the code. This is the only crate that knows HTTP and JSON wire types; it
//! reaches personal data only through `candor-engine`.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method, Request, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub mod auth;
pub mod contract;
pub mod error;
pub mod extract;
pub mod listen;
pub mod metrics;
pub mod ratelimit;
mod routes;
pub mod web;

pub use auth::AppState;
pub use metrics::Metrics;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Candor",
        description = "A self-hosted personalization engine that enforces its privacy policy in code. \
            Errors are `{\"error\": {\"code\", \"message\"}}`. Authenticate with `Authorization: Bearer <key>` (an API key, or a subject session token where an operation admits one).",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Consent-gated ingestion"),
        (name = "consent", description = "Per-purpose, expiring, opt-in consent"),
        (name = "catalogue", description = "Items (not personal data)"),
        (name = "policy", description = "The policy in force"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "keys", description = "API keys"),
        (name = "sessions", description = "Subject sessions: a person's own, narrow credential"),
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
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "An API key. Each operation's security requirement names the roles it admits \
             (`admin` is admitted everywhere); an empty requirement means no key is needed."
                .into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
        let mut session = Http::new(HttpAuthScheme::Bearer);
        session.description = Some(
            "A subject session token (`cs1.…`, from `POST /v1/subjects/{id}/sessions`): the \
             person's own credential. Operations that list this scheme admit it for the \
             session's own subject only; every other operation answers it 403."
                .into(),
        );
        components.add_security_scheme("subject_session", SecurityScheme::Http(session));
    }
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::router())
}

/// Cross-origin access: only the configured origins, with the bearer header and the methods
/// the API uses; with none configured, no cross-origin response is readable.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// The OpenAPI 3 document of the API, generated from the route annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = api_router().split_for_parts().1;
    contract::complete(&mut api);
    api
}

/// The application router.
pub fn app(state: AppState) -> Router {
    let (router, mut api) = api_router().split_for_parts();
    contract::complete(&mut api);
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
        .merge(web::router())
        .fallback(|| async { error::ApiError::no_route() })
        .method_not_allowed_fallback(|| async { error::ApiError::no_method() })
        .layer(middleware::from_fn_with_state(
            state.metrics(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes()))
        // Outside the body limit and every handler: a request over a limit costs nothing.
        .layer(middleware::from_fn_with_state(
            state.limiter(),
            ratelimit::limit,
        ))
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
        // Every answer may hold personal data: no cache keeps it, no browser sniffs it (the
        // static assets of the pages, which hold none, say how long they may be kept).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(cors(state.allowed_origins()))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            error::ApiError::internal().into_response()
        }))
        .with_state(state)
}
