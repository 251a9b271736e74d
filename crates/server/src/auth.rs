//! The only road from a handler to the engine. [`AppState`] keeps the engine private to this
//! module; a handler reaches it through one of three extractors, which run before any body,
//! query or path is parsed:
//!
//! - [`Authorized<ROLES>`]: a bearer API key whose role is in the bit set `ROLES` (see
//!   [`roles`]; `admin` is admitted everywhere), or a subject session where `ROLES` holds
//!   [`roles::SUBJECT`] (and then only for its own subject, see [`Authorized::subject`]), else
//!   401 `unauthorized` or 403 `forbidden`;
//! - [`MaybeAuthorized<ROLES>`]: the same question, answered with an `Option` (public
//!   endpoints that show more to some roles);
//! - [`Public`]: no credential at all;
//! - [`SubjectPage`] and [`OperatorPage`]: the web pages' callers, a subject session or an API
//!   key carried in an HttpOnly, SameSite=Strict cookie instead of a header, with the form
//!   token every state-changing form must send back.
//!
//! Keys and session tokens never reach logs: the engine records only the key or session id, in
//! the audit log. The roles each operation admits are also written in its OpenAPI `security`
//! requirement (`api_key` with the roles, `subject_session` where sessions are admitted), and
//! the HTTP tests check every operation of the document against the extractor it really uses.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use candor_domain::{ErrorCode, SubjectId};
use candor_engine::{Access, Actor, Engine, Principal, Role};

use crate::Metrics;
use crate::error::ApiError;

/// Shared state of every handler; its fields are reachable only through the extractors here.
#[derive(Clone)]
pub struct AppState {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    allowed_origins: Vec<axum::http::HeaderValue>,
    limiter: Arc<crate::ratelimit::Limiter>,
    secure_cookies: bool,
}

impl AppState {
    /// State over an engine, with fresh metrics.
    pub fn new(engine: Arc<Engine>, max_body_bytes: usize) -> Self {
        Self {
            engine,
            metrics: Arc::new(Metrics::default()),
            max_body_bytes,
            allowed_origins: Vec::new(),
            limiter: Arc::new(crate::ratelimit::Limiter::new(Default::default())),
            secure_cookies: false,
        }
    }

    /// Marks the web pages' cookies `Secure` (the server is behind TLS).
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Applies these rate limits (none by default).
    pub fn rate_limits(mut self, limits: crate::ratelimit::RateLimits) -> Self {
        self.limiter = Arc::new(crate::ratelimit::Limiter::new(limits));
        self
    }

    /// The rate limiter.
    pub fn limiter(&self) -> Arc<crate::ratelimit::Limiter> {
        self.limiter.clone()
    }

    /// Lets browsers on these origins (`https://shop.example`) call the API cross-origin;
    /// none by default, so no cross-origin page can read a response.
    pub fn allow_origins(mut self, origins: Vec<axum::http::HeaderValue>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// The origins admitted cross-origin.
    pub fn allowed_origins(&self) -> &[axum::http::HeaderValue] {
        &self.allowed_origins
    }

    /// The largest accepted request body, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The metrics registry (the middleware records into it).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
}

/// Role sets for [`Authorized`], as bits: `Authorized<{ roles::SERVICE | roles::DPO }>`.
pub mod roles {
    use candor_engine::Role;

    /// Admin keys (admitted everywhere anyway; alone, it makes an operation admin-only).
    pub const ADMIN: u8 = 1;
    /// Service keys: the business's backend.
    pub const SERVICE: u8 = 1 << 1;
    /// Analyst keys: differentially private aggregates only.
    pub const ANALYST: u8 = 1 << 2;
    /// DPO keys: rights, audit, records of processing.
    pub const DPO: u8 = 1 << 3;
    /// Subject sessions: what a person may do about themselves, for themselves only.
    pub const SUBJECT: u8 = 1 << 4;

    /// The bit of one role.
    pub fn bit(role: Role) -> u8 {
        match role {
            Role::Admin => ADMIN,
            Role::Service => SERVICE,
            Role::Analyst => ANALYST,
            Role::Dpo => DPO,
        }
    }

    /// The roles in a set.
    pub fn of(set: u8) -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|r| set & bit(*r) != 0)
            .collect()
    }

    /// Whether a caller is admitted to an operation open to the set.
    pub fn admit(set: u8, principal: &super::Principal) -> bool {
        match principal.access() {
            super::Access::Subject => set & SUBJECT != 0,
            super::Access::Role(_) => principal.admits(&of(set)),
        }
    }
}

/// The bearer token of a request, if it sent one.
fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Resolves the caller: 401 unless a live key was sent.
/// Failures are counted in the metrics and logged with the key's public id only (the part
/// before the dot, never the secret), so a brute force is visible.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let Some(token) = bearer(parts) else {
        state.metrics.record_auth_failure("missing");
        return Err(ApiError::unauthorized());
    };
    match state.engine.authenticate(token).await? {
        Some(principal) => Ok(principal),
        None => {
            state.metrics.record_auth_failure("invalid");
            // Only a well-formed id is logged, so nothing a caller sends can forge log lines.
            let key_id = candor_engine::key_id_of(token)
                .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or("malformed");
            tracing::warn!(
                key_id,
                "refused a request with an unknown, revoked or expired key"
            );
            Err(ApiError::unauthorized())
        }
    }
}

/// A caller admitted to an operation open to the roles in `ROLES`.
pub struct Authorized<const ROLES: u8> {
    principal: Principal,
    state: AppState,
}

impl<const ROLES: u8> FromRequestParts<AppState> for Authorized<ROLES> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state).await?;
        if !roles::admit(ROLES, &principal) {
            return Err(ApiError::forbidden(principal.describe()));
        }
        // A session on another subject's path is refused here, before any body is read (the
        // handler checks again with the parsed id, and checks a subject named in a body).
        if principal.access() == Access::Subject {
            let params = axum::extract::RawPathParams::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::forbidden(principal.describe()))?;
            let other = params.iter().any(|(name, value)| {
                name == "id" && SubjectId::parse(value).is_ok_and(|s| !principal.may_act_for(&s))
            });
            if other {
                return Err(ApiError::forbidden(principal.describe()));
            }
        }
        Ok(Self {
            principal,
            state: state.clone(),
        })
    }
}

impl<const ROLES: u8> Authorized<ROLES> {
    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// How the caller appears in the audit log.
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    /// The subject a session acts for (`None` for API keys).
    pub fn session_subject(&self) -> Option<&SubjectId> {
        self.principal.subject()
    }

    /// Whether the caller is a subject session (not an API key).
    pub fn is_session(&self) -> bool {
        self.principal.access() == Access::Subject
    }

    /// Parses a subject id from the request and checks that the caller may act for that
    /// subject (a session only for its own): 400 `invalid_id`, or 403 `forbidden`.
    pub fn subject(&self, raw: &str) -> Result<SubjectId, ApiError> {
        let subject = SubjectId::parse(raw)
            .map_err(|e| ApiError::new(ErrorCode::InvalidId, e.to_string()))?;
        if !self.principal.may_act_for(&subject) {
            return Err(ApiError::forbidden(self.principal.describe()));
        }
        Ok(subject)
    }
}

/// A caller who may or may not be admitted to `ROLES`; never refuses.
pub struct MaybeAuthorized<const ROLES: u8> {
    admitted: bool,
    state: AppState,
}

impl<const ROLES: u8> FromRequestParts<AppState> for MaybeAuthorized<ROLES> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let admitted = match bearer(parts) {
            None => false,
            Some(_) => authenticate(parts, state)
                .await
                .is_ok_and(|p| roles::admit(ROLES, &p)),
        };
        Ok(Self {
            admitted,
            state: state.clone(),
        })
    }
}

impl<const ROLES: u8> MaybeAuthorized<ROLES> {
    /// Whether the caller holds a key with one of the roles.
    pub fn admitted(&self) -> bool {
        self.admitted
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }
}

/// A caller of a public operation: no credential is asked for.
pub struct Public {
    state: AppState,
}

impl FromRequestParts<AppState> for Public {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            state: state.clone(),
        })
    }
}

impl Public {
    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }
}

/// The cookie that carries a subject session in the browser.
pub const SESSION_COOKIE: &str = "candor_session";
/// The cookie that carries an operator's API key in the console.
pub const CONSOLE_COOKIE: &str = "candor_console";

/// The value of a request cookie.
fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v).filter_map(Result::ok))
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Authenticates the credential in a cookie: `None` when there is none or it is not live.
async fn cookie_principal(
    parts: &Parts,
    state: &AppState,
    name: &str,
) -> Result<Option<Principal>, crate::web::PageError> {
    let Some(token) = cookie_value(parts, name) else {
        return Ok(None);
    };
    let principal = state
        .engine
        .authenticate(&token)
        .await
        .map_err(|e| crate::web::PageError::from(ApiError::from(e)))?;
    if principal.is_none() {
        state.metrics.record_auth_failure("invalid");
    }
    Ok(principal)
}

/// Refuses a form that does not carry `principal`'s form token (403 page).
fn check_form(
    state: &AppState,
    principal: &Principal,
    presented: Option<&str>,
) -> Result<(), crate::web::PageError> {
    match presented {
        Some(token) if state.engine.check_form_token(principal, token) => Ok(()),
        _ => Err(crate::web::PageError::bad_form()),
    }
}

/// A person on their privacy center's pages: a live subject session from [`SESSION_COOKIE`].
pub struct SubjectPage {
    principal: Principal,
    subject: SubjectId,
    state: AppState,
}

impl FromRequestParts<AppState> for SubjectPage {
    type Rejection = crate::web::PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, crate::web::PageError> {
        match cookie_principal(parts, state, SESSION_COOKIE).await? {
            Some(principal) if principal.access() == Access::Subject => {
                let subject = principal
                    .subject()
                    .cloned()
                    .ok_or_else(crate::web::PageError::signed_out)?;
                Ok(Self {
                    principal,
                    subject,
                    state: state.clone(),
                })
            }
            _ => Err(crate::web::PageError::signed_out()),
        }
    }
}

impl SubjectPage {
    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    /// How the person appears in the audit log (`session:ID`).
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    /// The one subject the session acts for.
    pub fn subject(&self) -> &SubjectId {
        &self.subject
    }

    /// The token this session's forms carry.
    pub fn form_token(&self) -> String {
        self.state.engine.form_token(&self.principal)
    }

    /// Refuses a form whose token is not this session's (403 page).
    pub fn check_form(&self, presented: Option<&str>) -> Result<(), crate::web::PageError> {
        check_form(&self.state, &self.principal, presented)
    }
}

/// An operator on the console's pages: a live API key from [`CONSOLE_COOKIE`]. What each page
/// shows follows the key's role exactly as the API's extractors decide.
pub struct OperatorPage {
    principal: Principal,
    role: Role,
    state: AppState,
}

impl FromRequestParts<AppState> for OperatorPage {
    type Rejection = crate::web::PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, crate::web::PageError> {
        match cookie_principal(parts, state, CONSOLE_COOKIE).await? {
            Some(principal) => match principal.access() {
                Access::Role(role) => Ok(Self {
                    principal,
                    role,
                    state: state.clone(),
                }),
                Access::Subject => Err(crate::web::PageError::operator_signed_out()),
            },
            None => Err(crate::web::PageError::operator_signed_out()),
        }
    }
}

impl OperatorPage {
    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.state.engine
    }

    /// How the operator appears in the audit log (`key:ID`).
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The key's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether an operation open to the role set `roles` admits this key.
    pub fn admits(&self, roles: u8) -> bool {
        roles::admit(roles, &self.principal)
    }

    /// Refuses a page the key's role may not see (403 page), as the API would.
    pub fn require(&self, roles: u8) -> Result<(), crate::web::PageError> {
        if self.admits(roles) {
            Ok(())
        } else {
            Err(crate::web::PageError::from(ApiError::forbidden(
                self.principal.describe(),
            )))
        }
    }

    /// The token this login's forms carry.
    pub fn form_token(&self) -> String {
        self.state.engine.form_token(&self.principal)
    }

    /// Refuses a form whose token is not this login's (403 page).
    pub fn check_form(&self, presented: Option<&str>) -> Result<(), crate::web::PageError> {
        check_form(&self.state, &self.principal, presented)
    }
}

impl Public {
    /// Whether cookies are marked `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.state.secure_cookies
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }
}
