//! Purpose-bound reads of personal data: the only way to get events back out. Each read names
//! its purpose, returns only events consented for it now, is decrypted here and is audited.

use candor_domain::ErrorCode;
use candor_domain::{AuditAction, EventPayload, Pseudonym, SubjectId, Timestamp};
use candor_store::PurposeRead;

use crate::{Actor, Engine, EngineError, Result};

/// A decrypted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Storage order.
    pub id: i64,
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The data category.
    pub category: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// The decrypted payload.
    pub payload: EventPayload,
}

impl Engine {
    /// Reads events for `purpose` (one subject's, or everyone's), in storage order after
    /// `after_id`, at most `limit`. Audited.
    pub async fn read_events(
        &self,
        actor: &Actor,
        purpose: &str,
        subject: Option<&SubjectId>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Event>> {
        self.read_events_audited(actor, purpose, subject, after_id, limit, true)
            .await
    }

    /// [`Engine::read_events`]; with `audit_empty` unset, a read that returns nothing leaves
    /// no audit entry (so probing a subject without consent records nothing about them).
    pub(crate) async fn read_events_audited(
        &self,
        actor: &Actor,
        purpose: &str,
        subject: Option<&SubjectId>,
        after_id: i64,
        limit: u32,
        audit_empty: bool,
    ) -> Result<Vec<Event>> {
        let Some(purpose_def) = self.policy.purposes.get(purpose) else {
            return Err(EngineError::refused(
                ErrorCode::UnknownPurpose,
                format!("the policy has no purpose named `{purpose}`"),
            ));
        };
        let pseudonym = subject.map(|s| self.pseudonymize(s));
        let mut events = Vec::new();
        let mut shredded = 0usize;
        let mut after_row = after_id;
        // A row whose subject has no key any more was crypto-shredded (its key erased, the
        // row come back with a restored backup): it is skipped, not an error. Pages of
        // nothing but such rows are read past, so an empty answer still means the end.
        loop {
            let read = PurposeRead {
                purpose: purpose_def,
                subject: pseudonym.as_ref(),
                now: self.now(),
                after_id: after_row,
                limit,
            };
            let rows = self.store.read_events(&read).await?;
            let full = rows.len() as u32 == limit;
            let subjects: Vec<Pseudonym> = {
                let set: std::collections::HashSet<Pseudonym> =
                    rows.iter().map(|r| r.subject).collect();
                set.into_iter().collect()
            };
            let mut keys = self.data_keys(&subjects, false).await?;
            if let Some(last) = rows.last() {
                after_row = last.id;
            }
            for row in rows {
                let Some(key) = keys.get(&row.subject) else {
                    shredded += 1;
                    continue;
                };
                let plaintext = match key.open(&row.payload, &row.subject.0) {
                    Ok(plaintext) => plaintext,
                    // The cached key may be stale (erased and replaced on another server).
                    Err(_) => match self.reload_data_key(&row.subject).await? {
                        Some(fresh) => {
                            let opened = fresh.open(&row.payload, &row.subject.0);
                            keys.insert(row.subject, fresh);
                            opened.map_err(|_| EngineError::Crypto)?
                        }
                        None => {
                            keys.remove(&row.subject);
                            shredded += 1;
                            continue;
                        }
                    },
                };
                let payload: EventPayload =
                    serde_json::from_slice(&plaintext).map_err(|_| EngineError::Crypto)?;
                events.push(Event {
                    id: row.id,
                    subject: row.subject,
                    category: row.category,
                    occurred_at: row.occurred_at,
                    payload,
                });
            }
            if !events.is_empty() || !full {
                break;
            }
        }
        if shredded > 0 {
            tracing::warn!(
                shredded,
                "skipped events whose data key was erased (restored from a backup?)"
            );
        }
        if events.is_empty() && !audit_empty {
            return Ok(events);
        }
        let draft = self.draft(
            actor,
            AuditAction::EventsRead,
            pseudonym,
            Some(purpose),
            format!("events={}", events.len()),
        );
        self.audit(vec![draft]).await?;
        Ok(events)
    }
}
