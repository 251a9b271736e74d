//! The error-code table: every code a request can be refused with, its class and what it
//! means, in one place. The engine's errors carry an [`ErrorCode`]; the server maps each
//! [`ErrorClass`] to one HTTP status in one exhaustive match; the OpenAPI document and
//! `docs/errors.md` list the table. Per-event refusal reasons at ingestion are a second, smaller
//! table ([`crate::RefusalReason`]) because a refused event is reported inside a batch's answer.

use serde::{Serialize, Serializer};

/// What kind of failure a code reports. The server gives each class one HTTP status; nothing
/// below the server knows HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed or breaks a rule (400).
    BadRequest,
    /// No valid credential was sent (401).
    Unauthenticated,
    /// The credential may not do this, or consent or a privacy budget forbids it (403).
    Forbidden,
    /// The thing named does not exist (404).
    NotFound,
    /// The endpoint does not accept the method (405).
    MethodNotAllowed,
    /// The request's headers or body did not arrive in time (408).
    RequestTimeout,
    /// The request cannot be served in the service's present state (409).
    Conflict,
    /// The body or the batch is larger than accepted (413).
    TooLarge,
    /// The body is not declared as JSON (415).
    UnsupportedMediaType,
    /// The body is JSON of the wrong shape (422).
    Unprocessable,
    /// Too many requests from this key or address; retry after the time given (429).
    TooManyRequests,
    /// The service failed; nothing was changed (500).
    Internal,
}

impl ErrorClass {
    /// Every class, in table order.
    pub const ALL: [ErrorClass; 12] = [
        Self::BadRequest,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::Conflict,
        Self::TooLarge,
        Self::UnsupportedMediaType,
        Self::Unprocessable,
        Self::TooManyRequests,
        Self::Internal,
    ];
}

/// Defines [`ErrorCode`] from `Variant = "code", Class, "meaning";` rows.
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $class:ident, $meaning:literal;)*) => {
        /// A machine-readable error code. Its wire form is the snake-case string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),*];

            /// The wire form, e.g. `consent_required`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The kind of failure, which decides the HTTP status.
            pub fn class(self) -> ErrorClass {
                match self {
                    $(Self::$variant => ErrorClass::$class,)*
                }
            }

            /// What the code means, in one sentence.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Self::$variant => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidField = "invalid_field", BadRequest,
        "A field is missing, of the wrong type, out of range, or not allowed with another.";
    InvalidId = "invalid_id", BadRequest,
        "A subject, item or event id is malformed.";
    InvalidN = "invalid_n", BadRequest,
        "The number of items asked for is outside 1 to 1,000.";
    InvalidQuery = "invalid_query", BadRequest,
        "The query string cannot be read or has an unknown parameter.";
    MalformedJson = "malformed_json", BadRequest,
        "The body is not valid JSON, or could not be read.";
    UnknownPurpose = "unknown_purpose", BadRequest,
        "The policy has no purpose of that name.";
    UnknownCategory = "unknown_category", BadRequest,
        "The purpose does not use that data category.";
    UnknownEventType = "unknown_event_type", BadRequest,
        "The policy declares no event type of that name.";
    UnknownQueryKind = "unknown_query_kind", BadRequest,
        "The analytics query kind is not one Candor answers.";
    BoundsOutOfOrder = "bounds_out_of_order", BadRequest,
        "A lower bound or start is not below its upper bound or end.";
    UnknownKind = "unknown_kind", BadRequest,
        "The rights request kind is not one Candor handles.";
    UnknownJurisdiction = "unknown_jurisdiction", BadRequest,
        "The rights request names a jurisdiction Candor has no deadlines for.";
    AlreadyAcknowledged = "already_acknowledged", BadRequest,
        "The rights request was already acknowledged or completed.";
    AlreadyExtended = "already_extended", BadRequest,
        "The rights request's deadline was already extended once.";
    AlreadyCompleted = "already_completed", BadRequest,
        "The rights request is already completed.";
    SubjectMismatch = "subject_mismatch", BadRequest,
        "The rights request is about another subject.";
    TcfNotConfigured = "tcf_not_configured", BadRequest,
        "TC strings are refused until tcf.vendor_id is set.";
    TcfEncoding = "tcf_encoding", BadRequest,
        "The TC string is not base64url.";
    TcfTruncated = "tcf_truncated", BadRequest,
        "The TC string ends before one of its fields.";
    TcfVersion = "tcf_version", BadRequest,
        "The TC string is not a version 2 string.";
    TcfPolicyVersion = "tcf_policy_version", BadRequest,
        "The TC string's TCF policy version is below 4 (TCF v2.2).";
    TcfNotServiceSpecific = "tcf_not_service_specific", BadRequest,
        "The TC string is not service-specific.";
    TcfVendorRange = "tcf_vendor_range", BadRequest,
        "A vendor range in the TC string ends before it starts or names vendor 0.";
    TcfVendorAboveMax = "tcf_vendor_above_max", BadRequest,
        "A vendor range in the TC string goes above the string's own MaxVendorId.";
    NoPersonalizationPurpose = "no_personalization_purpose", BadRequest,
        "The policy has no personalize.content.profiling purpose to train or personalize for.";
    NoProfilingPurpose = "no_profiling_purpose", BadRequest,
        "The policy has no profiling or marketing purpose to object to.";
    Unauthorized = "unauthorized", Unauthenticated,
        "No valid API key was sent as a bearer token.";
    Forbidden = "forbidden", Forbidden,
        "The key's role may not call this endpoint.";
    ConsentRequired = "consent_required", Forbidden,
        "The subject holds no live consent for what was asked.";
    BudgetExhausted = "budget_exhausted", Forbidden,
        "The privacy budget cannot pay for this release until it refills.";
    NotFound = "not_found", NotFound,
        "There is no such endpoint.";
    UnknownItem = "unknown_item", NotFound,
        "The catalogue, or the item model, has no item with this id.";
    UnknownSubject = "unknown_subject", NotFound,
        "No data or consent is held for this subject.";
    UnknownRequest = "unknown_request", NotFound,
        "There is no rights request with this id.";
    UnknownKey = "unknown_key", NotFound,
        "There is no live API key with this id (never created, or already revoked).";
    UnknownRecipient = "unknown_recipient", NotFound,
        "The policy names no such recipient.";
    UnknownEvent = "unknown_event", NotFound,
        "The subject has no event with this id.";
    NothingHeld = "nothing_held", NotFound,
        "Nothing is held for this subject: never known, or already erased.";
    MethodNotAllowed = "method_not_allowed", MethodNotAllowed,
        "The endpoint does not accept this method.";
    ModelNotTrained = "model_not_trained", Conflict,
        "No item model has been trained yet.";
    NoTrainingData = "no_training_data", Conflict,
        "No events are consented for personalization, so there is nothing to train on.";
    AuditLogBroken = "audit_log_broken", Conflict,
        "The audit log does not verify, so no tree head or proof is issued; run `candor audit verify`.";
    BatchTooLarge = "batch_too_large", TooLarge,
        "The batch holds more events or items than one request may.";
    BodyTooLarge = "body_too_large", TooLarge,
        "The request body is larger than the server accepts.";
    UnsupportedMediaType = "unsupported_media_type", UnsupportedMediaType,
        "The body was not sent with Content-Type: application/json.";
    InvalidBody = "invalid_body", Unprocessable,
        "The body is JSON, but not of the expected shape (a field missing, unknown or mistyped).";
    RequestTimeout = "request_timeout", RequestTimeout,
        "The request body did not arrive within the server's body timeout; send it again.";
    RateLimited = "rate_limited", TooManyRequests,
        "Too many requests from this key or address; wait as long as Retry-After says.";
    InternalError = "internal_error", Internal,
        "The server could not complete the request; nothing was changed.";
}

impl ErrorCode {
    /// The code with this wire form.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == raw)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} is in the table twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name} is not snake case"
            );
            assert_eq!(ErrorCode::parse(name), Some(code));
            assert!(code.meaning().ends_with('.'), "{name}: a sentence");
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }
}
