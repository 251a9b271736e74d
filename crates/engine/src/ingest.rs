//! Consent-gated ingestion. Each event is validated against the policy, its subject's live
//! consent is checked, and only then is it pseudonymized, encrypted and stored. Refused events
//! are reported per event with a reason code and leave no trace. The accepted events of one
//! call are committed in a single transaction: all of them or none.

use std::collections::{BTreeMap, HashMap, HashSet};

use candor_domain::ErrorCode;
use candor_domain::policy::EventType;
use candor_domain::{
    AuditAction, EventInput, EventPayload, ItemId, Pseudonym, RefusalReason, SubjectId, Timestamp,
};
use candor_store::NewEvent;
use rayon::prelude::*;

use crate::{Actor, Engine, EngineError, Result};

/// Batches at least this large are sealed in parallel.
const PARALLEL_SEAL_MIN: usize = 512;

/// Longest context value, in bytes.
pub const MAX_CONTEXT_VALUE_LEN: usize = 128;

/// An event as received, before any validation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventDraft {
    /// Subject id.
    pub subject: String,
    /// Item id.
    pub item: String,
    /// Event type.
    pub event_type: String,
    /// Optional value.
    pub value: Option<f64>,
    /// Optional RFC 3339 timestamp (default: now).
    pub timestamp: Option<String>,
    /// Context values.
    pub context: BTreeMap<String, String>,
}

/// Why one event of a batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Position in the batch.
    pub index: usize,
    /// The reason code.
    pub reason: RefusalReason,
    /// A sentence for people (never containing the event's data).
    pub message: String,
}

/// The outcome of an ingestion call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IngestReport {
    /// Events stored.
    pub accepted: usize,
    /// Events refused, in batch order.
    pub refused: Vec<Refusal>,
}

struct Candidate {
    index: usize,
    event: EventInput,
    category: String,
    subject: Pseudonym,
}

impl Engine {
    fn validate(
        &self,
        draft: &EventDraft,
        now: Timestamp,
    ) -> std::result::Result<(EventInput, &EventType), (RefusalReason, String)> {
        let subject = SubjectId::parse(&draft.subject)
            .map_err(|e| (RefusalReason::InvalidId, e.to_string()))?;
        let item =
            ItemId::parse(&draft.item).map_err(|e| (RefusalReason::InvalidId, e.to_string()))?;
        let Some(event_type) = self.policy.event_types.get(&draft.event_type) else {
            return Err((
                RefusalReason::UnknownEventType,
                "the policy declares no such event type".into(),
            ));
        };
        match (draft.value, event_type.value) {
            (None, _) => {}
            (Some(_), None) => {
                return Err((
                    RefusalReason::InvalidField,
                    format!("events of type `{}` carry no value", event_type.name),
                ));
            }
            (Some(v), Some(rule)) => {
                if !(v.is_finite() && v >= rule.min && v <= rule.max) {
                    return Err((
                        RefusalReason::InvalidField,
                        format!(
                            "value must be between {} and {} for `{}`",
                            rule.min, rule.max, event_type.name
                        ),
                    ));
                }
            }
        }
        for (key, value) in &draft.context {
            if !event_type.context.iter().any(|k| k == key) {
                return Err((
                    RefusalReason::ContextNotAllowed,
                    format!(
                        "the policy allows no context key `{key}` for `{}`",
                        event_type.name
                    ),
                ));
            }
            if value.len() > MAX_CONTEXT_VALUE_LEN {
                return Err((
                    RefusalReason::ContextNotAllowed,
                    format!("context value `{key}` is longer than {MAX_CONTEXT_VALUE_LEN} bytes"),
                ));
            }
        }
        let timestamp = match &draft.timestamp {
            None => now,
            Some(raw) => Timestamp::parse_rfc3339(raw).ok_or((
                RefusalReason::InvalidField,
                "timestamp is not an RFC 3339 date-time".to_string(),
            ))?,
        };
        if timestamp.0 > now.0 + self.config.future_skew_ms {
            return Err((
                RefusalReason::TimestampInFuture,
                "timestamp is in the future".into(),
            ));
        }
        let retention = self.policy.retention_days(&event_type.category);
        if timestamp.plus_days(retention) <= now {
            return Err((
                RefusalReason::TimestampTooOld,
                format!(
                    "timestamp is older than the {retention}-day retention of its data category"
                ),
            ));
        }
        Ok((
            EventInput {
                subject,
                item,
                event_type: event_type.name.clone(),
                value: draft.value,
                timestamp,
                context: draft.context.clone(),
            },
            event_type,
        ))
    }

    /// Refuses a batch of `n` events with `batch_too_large` when it is over the limit: the one
    /// place the limit is checked (the server asks before it reads the events one by one).
    pub fn check_batch(&self, n: usize) -> Result<()> {
        if n > self.config.max_batch {
            return Err(EngineError::refused(
                ErrorCode::BatchTooLarge,
                format!("a batch holds at most {} events", self.config.max_batch),
            ));
        }
        Ok(())
    }

    /// Ingests a batch: validates, checks consent, encrypts and stores what may be stored.
    /// With `gpc`, the GPC signal is applied to the batch's known subjects first.
    pub async fn ingest(
        &self,
        actor: &Actor,
        drafts: &[EventDraft],
        gpc: bool,
    ) -> Result<IngestReport> {
        self.check_batch(drafts.len())?;
        let now = self.now();
        let started = std::time::Instant::now();
        let mut report = IngestReport::default();
        let mut refuse = |index: usize, reason: RefusalReason, message: String| {
            report.refused.push(Refusal {
                index,
                reason,
                message,
            });
        };

        // 1. Validate each event against the policy, and pseudonymize its subject.
        let mut pseudonyms: HashMap<&str, Pseudonym> = HashMap::new();
        let mut candidates = Vec::with_capacity(drafts.len());
        for (index, draft) in drafts.iter().enumerate() {
            match self.validate(draft, now) {
                Err((reason, message)) => refuse(index, reason, message),
                Ok((event, event_type)) => {
                    let subject = *pseudonyms
                        .entry(draft.subject.as_str())
                        .or_insert_with(|| self.pseudonymize(&event.subject));
                    candidates.push(Candidate {
                        index,
                        category: event_type.category.clone(),
                        event,
                        subject,
                    });
                }
            }
        }
        let subjects: Vec<Pseudonym> = {
            let set: HashSet<Pseudonym> = candidates.iter().map(|c| c.subject).collect();
            set.into_iter().collect()
        };

        // 2. A GPC signal withdraws before anything is checked.
        if gpc && !subjects.is_empty() {
            self.apply_gpc(actor, &subjects).await?;
        }

        let t_validate = started.elapsed();
        // 3. Items must be in the catalogue.
        let item_ids: Vec<&str> = {
            let set: HashSet<&str> = candidates.iter().map(|c| c.event.item.as_str()).collect();
            set.into_iter().collect()
        };
        let missing_items = self.missing_items(&item_ids).await?;

        let t_items = started.elapsed();
        // 4. Live consent for a purpose that uses the event's category.
        let mut subjects_by_category: HashMap<String, HashSet<Pseudonym>> = HashMap::new();
        for c in &candidates {
            subjects_by_category
                .entry(c.category.clone())
                .or_default()
                .insert(c.subject);
        }
        // An event is kept as long as the longest retention among the purposes it is stored
        // under: those the subject holds a live grant for, not every purpose of its category.
        let mut retention: HashMap<(Pseudonym, String), u32> = HashMap::new();
        for (category, subjects) in &subjects_by_category {
            let purposes: Vec<&str> = self
                .policy
                .purposes_using(category)
                .map(|p| p.name.as_str())
                .collect();
            let subjects: Vec<Pseudonym> = subjects.iter().copied().collect();
            for (subject, granted) in self
                .store
                .granted_purposes(&subjects, category, &purposes, now)
                .await?
            {
                let days = granted
                    .iter()
                    .filter_map(|p| self.policy.purposes.get(p.as_str()))
                    .map(|p| p.retention_days)
                    .max();
                if let Some(days) = days {
                    retention.insert((subject, category.clone()), days);
                }
            }
        }
        let restricted = self.store.restricted(&subjects).await?;
        let mut seen_dedup = HashSet::new();
        let mut kept = Vec::with_capacity(candidates.len());
        for c in candidates {
            if missing_items.contains(c.event.item.as_str()) {
                refuse(
                    c.index,
                    RefusalReason::UnknownItem,
                    "the item is not in the catalogue".into(),
                );
                continue;
            }
            if restricted.contains(&c.subject) {
                refuse(
                    c.index,
                    RefusalReason::ProcessingRestricted,
                    "the subject has restricted processing of their data".into(),
                );
                continue;
            }
            let Some(&days) = retention.get(&(c.subject, c.category.clone())) else {
                refuse(
                    c.index,
                    RefusalReason::ConsentRequired,
                    format!(
                        "the subject holds no live consent for a purpose that uses `{}`",
                        c.category
                    ),
                );
                continue;
            };
            if c.event.timestamp.plus_days(days) <= now {
                refuse(
                    c.index,
                    RefusalReason::TimestampTooOld,
                    format!(
                        "timestamp is older than the {days}-day retention of the purposes the subject consented to"
                    ),
                );
                continue;
            }
            let dedup = self.dedup_key(&c);
            if !seen_dedup.insert(dedup) {
                refuse(
                    c.index,
                    RefusalReason::DuplicateEvent,
                    "the same event appears earlier in this batch".into(),
                );
                continue;
            }
            kept.push((c, dedup, days));
        }

        let t_consent = started.elapsed();
        // 5. Encrypt under each subject's data key.
        let kept_subjects: Vec<Pseudonym> = {
            let set: HashSet<Pseudonym> = kept.iter().map(|(c, _, _)| c.subject).collect();
            set.into_iter().collect()
        };
        let keys = self.data_keys(&kept_subjects, true).await?;
        let seal = |(c, dedup, retention): &(Candidate, [u8; 16], u32)| -> Result<NewEvent> {
            let key = keys.get(&c.subject).ok_or(EngineError::Crypto)?;
            let payload = EventPayload {
                item: c.event.item.as_str().to_owned(),
                event_type: c.event.event_type.clone(),
                value: c.event.value,
                context: c.event.context.clone(),
            };
            let plaintext =
                serde_json::to_vec(&payload).expect("an event payload always serializes");
            Ok(NewEvent {
                subject: c.subject,
                category: c.category.clone(),
                occurred_at: c.event.timestamp,
                expires_at: c.event.timestamp.plus_days(*retention),
                dedup: *dedup,
                payload: key.seal(&plaintext, &c.subject.0),
            })
        };
        // Sealing is the CPU-heavy step: spread large batches over the cores.
        let rows: Vec<NewEvent> = if kept.len() >= PARALLEL_SEAL_MIN {
            kept.par_iter().map(seal).collect::<Result<_>>()?
        } else {
            kept.iter().map(seal).collect::<Result<_>>()?
        };

        let t_encrypt = started.elapsed();
        // 6. Store all accepted events and the audit entry in one transaction.
        let single_subject = (subjects.len() == 1).then(|| subjects[0]);
        let template = self.draft(
            actor,
            AuditAction::EventsIngest,
            single_subject,
            None,
            String::new(),
        );
        let n_subjects = subjects.len();
        let audit = move |n: u64| candor_domain::AuditDraft {
            detail: format!("stored={n} subjects={n_subjects}"),
            ..template.clone()
        };
        let inserted = if rows.is_empty() {
            Vec::new()
        } else {
            self.writer
                .write(candor_store::EventGroup {
                    events: rows,
                    audit: Box::new(audit),
                })
                .await
                .map_err(EngineError::GroupStore)?
        };
        for ((c, _, _), stored) in kept.iter().zip(inserted) {
            if stored {
                report.accepted += 1;
            } else {
                report.refused.push(Refusal {
                    index: c.index,
                    reason: RefusalReason::DuplicateEvent,
                    message: "this event was already stored".into(),
                });
            }
        }
        report.refused.sort_by_key(|r| r.index);
        tracing::debug!(
            events = drafts.len(),
            accepted = report.accepted,
            validate_us = t_validate.as_micros() as u64,
            items_us = (t_items - t_validate).as_micros() as u64,
            consent_us = (t_consent - t_items).as_micros() as u64,
            encrypt_us = (t_encrypt - t_consent).as_micros() as u64,
            store_us = (started.elapsed() - t_encrypt).as_micros() as u64,
            "ingested a batch"
        );
        Ok(report)
    }

    /// The dedup key: the event time (48-bit milliseconds, big-endian) followed by 80 bits
    /// of a keyed hash of subject, item, type and time. The time prefix keeps the unique
    /// index's inserts local (a batch's events are close in time) and reveals nothing the
    /// plain `occurred_at` column does not.
    fn dedup_key(&self, c: &Candidate) -> [u8; 16] {
        let full = self.keys.keyed_hash(
            b"event-dedup",
            &[
                &c.subject.0,
                c.event.item.as_str().as_bytes(),
                c.event.event_type.as_bytes(),
                &c.event.timestamp.0.to_be_bytes(),
            ],
        );
        let mut key = [0u8; 16];
        key[..6].copy_from_slice(&c.event.timestamp.0.to_be_bytes()[2..]);
        key[6..].copy_from_slice(&full[..10]);
        key
    }
}
