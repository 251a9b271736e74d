//! Events: what a subject did with an item. The payload is personal data and is only ever
//! stored encrypted; refusal reasons are the codes reported per event at ingestion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ItemId, SubjectId};
use crate::timestamp::Timestamp;

/// A validated event, ready for the consent check.
#[derive(Debug, Clone, PartialEq)]
pub struct EventInput {
    /// Who.
    pub subject: SubjectId,
    /// Which item.
    pub item: ItemId,
    /// The event type, declared in the policy.
    pub event_type: String,
    /// Optional numeric value (quantity, rating).
    pub value: Option<f64>,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Small context values whose keys the policy declares for the event type.
    pub context: BTreeMap<String, String>,
}

/// The encrypted part of a stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPayload {
    /// Item id.
    #[serde(rename = "i")]
    pub item: String,
    /// Event type.
    #[serde(rename = "t")]
    pub event_type: String,
    /// Optional value.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Context values.
    #[serde(rename = "c", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, String>,
}

/// Why an event was refused. Nothing about a refused event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The subject holds no live consent for a purpose that uses the event's category.
    ConsentRequired,
    /// The event type is not declared in the policy.
    UnknownEventType,
    /// A field is missing, unknown, of the wrong type or out of range.
    InvalidField,
    /// The subject or item id is malformed.
    InvalidId,
    /// The item is not in the catalogue.
    UnknownItem,
    /// The timestamp is more than the allowed skew in the future.
    TimestampInFuture,
    /// The timestamp is older than the category's retention, so it could not be kept.
    TimestampTooOld,
    /// A context key not declared for the event type, or a value too long.
    ContextNotAllowed,
    /// The same event (subject, item, type, timestamp) was already stored or sent twice.
    DuplicateEvent,
    /// The subject has restricted processing of their data (GDPR Art. 18).
    ProcessingRestricted,
}

impl RefusalReason {
    /// Every reason, for metrics.
    pub const ALL: [RefusalReason; 10] = [
        Self::ConsentRequired,
        Self::UnknownEventType,
        Self::InvalidField,
        Self::InvalidId,
        Self::UnknownItem,
        Self::TimestampInFuture,
        Self::TimestampTooOld,
        Self::ContextNotAllowed,
        Self::DuplicateEvent,
        Self::ProcessingRestricted,
    ];
    /// The machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::ConsentRequired => "consent_required",
            Self::UnknownEventType => "unknown_event_type",
            Self::InvalidField => "invalid_field",
            Self::InvalidId => "invalid_id",
            Self::UnknownItem => "unknown_item",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::ContextNotAllowed => "context_not_allowed",
            Self::DuplicateEvent => "duplicate_event",
            Self::ProcessingRestricted => "processing_restricted",
        }
    }
    /// What the reason means, in one sentence.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::ConsentRequired => {
                "The subject holds no live consent for a purpose that uses the event's category."
            }
            Self::UnknownEventType => "The policy declares no such event type.",
            Self::InvalidField => "A field is missing, unknown, of the wrong type or out of range.",
            Self::InvalidId => "The subject or item id is malformed.",
            Self::UnknownItem => "The item is not in the catalogue.",
            Self::TimestampInFuture => {
                "The timestamp is further in the future than the allowed skew."
            }
            Self::TimestampTooOld => {
                "The timestamp is older than its data category's retention, so it could not be kept."
            }
            Self::ContextNotAllowed => {
                "A context key is not declared for the event type, or its value is too long."
            }
            Self::DuplicateEvent => {
                "The same event was already stored, or appears earlier in the batch."
            }
            Self::ProcessingRestricted => "The subject has restricted processing of their data.",
        }
    }
}

/// One event as a client sends it (`POST /v1/events`), before any validation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    /// Subject id (1-128 of `A-Z a-z 0-9 _ . : @ -`). Never stored: only its keyed hash is.
    pub subject: String,
    /// Item id; the item must be in the catalogue.
    pub item: String,
    /// Event type declared in the policy, e.g. `view` or `purchase`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Numeric value where the event type declares one (quantity, rating).
    #[serde(default)]
    pub value: Option<f64>,
    /// RFC 3339 time of the event; defaults to now.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Context values whose keys the policy declares for the event type.
    #[serde(default)]
    pub context: Option<BTreeMap<String, String>>,
}

/// A request body split into its events: each read on its own, so one malformed event is
/// refused alone.
#[derive(Debug)]
pub struct WireBatch {
    /// Each event, or why it could not be read (a sentence without the event's data).
    pub events: Vec<Result<WireEvent, String>>,
    /// Whether the body was one event object rather than an array.
    pub single: bool,
}

/// Splits a JSON body into events without building a tree: an object is one event, an
/// array a batch. `None` when the body is neither (or not JSON).
pub fn split_batch(text: &str) -> Option<WireBatch> {
    use serde_json::value::RawValue;
    let read = |raw: &RawValue| {
        serde_json::from_str::<WireEvent>(raw.get())
            .map_err(|e| format!("the event does not have the expected fields: {e}"))
    };
    match text.trim_start().as_bytes().first() {
        Some(b'[') => {
            let values: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            Some(WireBatch {
                events: values.into_iter().map(read).collect(),
                single: false,
            })
        }
        Some(b'{') => {
            let value: &RawValue = serde_json::from_str(text).ok()?;
            Some(WireBatch {
                events: vec![read(value)],
                single: true,
            })
        }
        _ => None,
    }
}
