//! API errors: every failure becomes `{"error": {"code", "message"}}`. The code comes from the
//! error table (`candor_domain::ErrorCode`), and its HTTP status from the code's class, decided
//! in [`status`], one exhaustive match; the one other kind of error response, a refused single
//! event, is always 422 with the refusal reason as its code. Internal faults are logged with
//! their details and shown to the client only as `internal_error`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_domain::{ErrorClass, ErrorCode, RefusalReason};
use candor_engine::EngineError;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};

/// The HTTP status of every error class.
pub fn status(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
        ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorClass::Forbidden => StatusCode::FORBIDDEN,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorClass::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorClass::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorClass::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorClass::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status of a refused single event (`POST /v1/events` with one object).
pub const EVENT_REFUSED: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;

/// What an error response reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A code from the error table.
    Code(ErrorCode),
    /// A single event refused at ingestion, with its reason.
    EventRefused(RefusalReason),
}

/// An error as sent to clients.
#[derive(Debug)]
pub struct ApiError {
    kind: Kind,
    message: String,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a sentence for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code from the error table (`docs/errors.md`), or a refusal
    /// reason for a single refused event.
    #[schema(schema_with = code_schema)]
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// The schema of `code`: every code of both tables.
fn code_schema() -> utoipa::openapi::schema::Object {
    let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    names.extend(RefusalReason::ALL.iter().map(|r| r.code()));
    names.sort_unstable();
    names.dedup();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "A code of the error table, or a refusal reason (see docs/errors.md)",
        ))
        .enum_values(Some(names))
        .build()
}

impl ApiError {
    /// An error with a code from the table and a sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Code(code),
            message: message.into(),
        }
    }

    /// A single event refused for `reason`.
    pub fn event_refused(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::EventRefused(reason),
            message: message.into(),
        }
    }

    /// 401: no or unknown key.
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "send a valid API key as `Authorization: Bearer <key>`",
        )
    }

    /// 403: the key's role may not call this endpoint.
    pub fn forbidden(role: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("a `{role}` key may not call this endpoint"),
        )
    }

    /// 404 for an unknown route.
    pub fn no_route() -> Self {
        Self::new(ErrorCode::NotFound, "there is no such endpoint")
    }

    /// 405 for a known route and an unknown method.
    pub fn no_method() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "this endpoint does not accept that method",
        )
    }

    /// 500, after logging what happened.
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::InternalError,
            "the server could not complete the request; nothing was changed",
        )
    }

    /// The wire code, for tests and metrics.
    pub fn code(&self) -> &'static str {
        match self.kind {
            Kind::Code(code) => code.as_str(),
            Kind::EventRefused(reason) => reason.code(),
        }
    }

    /// The sentence for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Code(code) => status(code.class()),
            Kind::EventRefused(_) => EVENT_REFUSED,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::Refused { code, message } => Self::new(code, message),
            EngineError::Store(_)
            | EngineError::GroupStore(_)
            | EngineError::Crypto
            | EngineError::Noise(_)
            | EngineError::Setup(_) => {
                tracing::error!(error = %err, "internal error");
                Self::internal()
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::new(
                ErrorCode::InvalidBody,
                format!(
                    "the JSON body does not have the expected shape: {}",
                    source_message(&e)
                ),
            ),
            JsonRejection::JsonSyntaxError(_) => {
                Self::new(ErrorCode::MalformedJson, "the body is not valid JSON")
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                ErrorCode::UnsupportedMediaType,
                "send the body with `Content-Type: application/json`",
            ),
            other if timed_out(&other) => Self::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive in time",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                ErrorCode::BodyTooLarge,
                "the request body is larger than the server accepts",
            ),
            _ => Self::new(
                ErrorCode::MalformedJson,
                "the request body could not be read",
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            ErrorCode::InvalidQuery,
            format!(
                "the query string is invalid: {}",
                source_message(&rejection)
            ),
        )
    }
}

/// Whether reading the body failed because the body timeout ran out.
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<crate::listen::BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The innermost error message (serde's, which names the field), without axum's prefix.
fn source_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.message,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// `docs/errors.md`: both tables, generated from the code (a test keeps the file in sync).
pub fn errors_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         Generated from `crates/domain/src/error.rs` and `crates/domain/src/event.rs` by \
         `UPDATE_DOCS=1 cargo test -p candor-server --test http docs`; do not edit by hand.\n\n\
         Every error response is `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`. \
         The code is stable and machine-readable; the message is a sentence for people and may \
         change. Each code has one HTTP status.\n\n\
         | code | status | meaning |\n|---|---|---|\n",
    );
    for code in ErrorCode::ALL {
        let status = status(code.class());
        out.push_str(&format!(
            "| `{}` | {} {} | {} |\n",
            code.as_str(),
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            code.meaning()
        ));
    }
    out.push_str(&format!(
        "\n## Refusal reasons at ingestion\n\n\
         `POST /v1/events` decides each event on its own. A batch answers 200 with every refused \
         event's index, reason and message in `refused`; a single event (a JSON object) that is \
         refused answers {} with its reason as the error code. Nothing about a refused event \
         is stored.\n\n| reason | meaning |\n|---|---|\n",
        EVENT_REFUSED.as_u16()
    ));
    for reason in RefusalReason::ALL {
        out.push_str(&format!("| `{}` | {} |\n", reason.code(), reason.meaning()));
    }
    out
}
