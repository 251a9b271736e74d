//! The web pages for the people in the loop, served by the same binary: the privacy center
//! (`/privacy`: a person's own consent, data, recommendations and rights), the consent banner
//! a shop embeds (`/assets/v1/consent.js`, a script that calls the JSON API with the person's
//! session token), and the operator console (`/console`, signed in with an API key whose role
//! decides every page as the API would). Pages reach the engine only through the extractors
//! of [`crate::auth`] ([`crate::auth::SubjectPage`], [`crate::auth::OperatorPage`]) and call
//! it exactly as the JSON API does; there is no data path of their own.
//!
//! Every page works without JavaScript (plain HTML forms), carries a Content-Security-Policy
//! with no inline script or style and `frame-ancestors 'none'`, and sends no referrer to
//! another site (`same-origin`: with `no-referrer` browsers send `Origin: null` on forms).
//! Every state-changing form carries the credential's form token and is refused from another
//! origin; the cookies are HttpOnly and SameSite=Strict (and Secure behind TLS).

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::AppState;
use candor_domain::ErrorCode;

use crate::error::ApiError;

mod charts;
mod console;
mod privacy;

/// The version in the assets' fixed URLs: a new release of the pages gets new URLs, so a page
/// can pin them with Subresource Integrity.
pub const ASSETS_VERSION: &str = "v1";

const STYLESHEET: &str = include_str!("../../assets/candor.css");
const BANNER: &str = include_str!("../../assets/consent.js");
const BANNER_STYLESHEET: &str = include_str!("../../assets/banner.css");

/// The policy every page is served with.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The web pages' routes, with their security headers.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/privacy", get(privacy::center_page))
        .route("/privacy/consent", post(privacy::save_consent))
        .route("/privacy/events", get(privacy::events_page))
        .route(
            "/privacy/events/{event}/delete",
            post(privacy::delete_event),
        )
        .route("/privacy/restriction", post(privacy::restriction))
        .route("/privacy/objection", post(privacy::objection))
        .route(
            "/privacy/erase",
            get(privacy::erase_confirm).post(privacy::erase),
        )
        .route("/privacy/requests", post(privacy::file_request))
        .route("/privacy/export.json", get(privacy::export_json))
        .route("/privacy/export.csv", get(privacy::export_csv))
        .route("/privacy/receipts/verify", post(privacy::verify_receipt))
        .route("/privacy/signout", post(privacy::sign_out))
        .route("/console", get(console::overview))
        .route("/console/login", post(console::login))
        .route("/console/logout", post(console::logout))
        .route("/console/consent-counts", post(console::consent_counts))
        .route("/console/requests", get(console::requests))
        .route(
            "/console/requests/{id}/{action}",
            post(console::request_action),
        )
        .route(
            "/console/analytics",
            get(console::analytics).post(console::ask),
        )
        .route("/console/audit", get(console::audit))
        .route("/console/audit/verify", post(console::verify))
        .route("/console/model", get(console::model))
        .route("/console/model/train", post(console::train))
        .route("/console/keys", get(console::keys).post(console::mint))
        .route("/console/keys/{id}/revoke", post(console::revoke))
        .route(
            &format!("/assets/{ASSETS_VERSION}/candor.css"),
            get(|| async { asset("text/css; charset=utf-8", STYLESHEET, true) }),
        )
        .route(
            &format!("/assets/{ASSETS_VERSION}/banner.css"),
            get(|| async { asset("text/css; charset=utf-8", BANNER_STYLESHEET, true) }),
        )
        .route(
            &format!("/assets/{ASSETS_VERSION}/consent.js"),
            get(|| async { asset("text/javascript; charset=utf-8", BANNER, true) }),
        )
        // The newest banner under a stable name, for sites that do not pin a version.
        .route(
            "/consent.js",
            get(|| async { asset("text/javascript; charset=utf-8", BANNER, false) }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// A static asset. Under a versioned URL it never changes, so it is cached for a year (and
/// can be pinned with Subresource Integrity); under a stable one, for an hour.
fn asset(content_type: &'static str, body: &'static str, versioned: bool) -> Response {
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

/// A whole page: the shell every page shares, around `body`.
pub fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href=(format!("/assets/{ASSETS_VERSION}/candor.css"));
            }
            body {
                a class="skip" href="#main" { "Skip to the content" }
                main id="main" { (body) }
            }
        }
    }
}

/// A page-shaped error: an error of the API's table (its code and status) with a title, as
/// HTML that names the code, so a refused page is as machine-readable as a refused call.
#[derive(Debug)]
pub struct PageError {
    title: &'static str,
    error: ApiError,
}

impl PageError {
    fn new(title: &'static str, code: ErrorCode, message: &str) -> Self {
        Self {
            title,
            error: ApiError::new(code, message),
        }
    }

    /// No live session: the person must come back through the site that sent them.
    pub fn signed_out() -> Self {
        Self::new(
            "Your session has ended",
            ErrorCode::Unauthorized,
            "For your safety, privacy sessions are short. Go back to the site that sent you \
             here and open your privacy settings again.",
        )
    }

    /// No live operator login.
    pub fn operator_signed_out() -> Self {
        Self::new(
            "Please sign in",
            ErrorCode::Unauthorized,
            "Sign in to the console with an API key.",
        )
    }

    /// A form without its token, or from another site.
    pub fn bad_form() -> Self {
        Self::new(
            "This form was refused",
            ErrorCode::Forbidden,
            "The form did not come from this page (its security token is missing or wrong). \
             Reload the page and try again.",
        )
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self {
            title: "Something was refused",
            error,
        }
    }
}

impl From<candor_engine::EngineError> for PageError {
    fn from(err: candor_engine::EngineError) -> Self {
        ApiError::from(err).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let code = self.error.code();
        let body = html! {
            h1 { (self.title) }
            p role="alert" data-error-code=(code) { (self.error.message()) }
            p { small { "Error code: " code { (code) } } }
        };
        (self.error.status(), page(self.title, body)).into_response()
    }
}

/// A submitted form: its fields in order (a checkbox that is off sends nothing), refused
/// whole when it comes from another origin or is not a form.
pub struct PageForm(pub Vec<(String, String)>);

impl PageForm {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for PageForm {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        // A browser names the page a form came from; one of another origin is refused even
        // before its token is looked at.
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            let origin_host = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .map(|(_, rest)| rest);
            if host.is_none() || origin_host != host {
                return Err(PageError::bad_form());
            }
        }
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|rejection| {
                PageError::new(
                    "This form was refused",
                    ErrorCode::InvalidBody,
                    &rejection.body_text(),
                )
            })?;
        Ok(Self(fields))
    }
}

/// Sets a credential cookie on `response`: HttpOnly, SameSite=Strict, scoped to `path`,
/// Secure when `secure`; `None` for the value clears it.
pub fn set_cookie(
    response: &mut Response,
    name: &'static str,
    value: Option<&str>,
    path: &'static str,
    secure: bool,
) {
    let mut cookie = cookie::Cookie::build((name, value.unwrap_or_default().to_owned()))
        .path(path)
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .build();
    if value.is_none() {
        cookie.set_max_age(cookie::time::Duration::ZERO);
    }
    if let Ok(header_value) = cookie.to_string().parse() {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, header_value);
    }
}

/// A `303 See Other` to a page of this site.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
