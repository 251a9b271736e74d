//! Purpose-bound reads of personal data: the only way to get events back out. Each read names
//! its purpose, returns only events consented for it now, is decrypted here and is audited.
//! Personalization reads one subject's history through a cache of decrypted histories that
//! every write of theirs through this server invalidates at once (the store's revisions), and
//! that trusts nothing older than half a second (writes through other servers).

use candor_domain::ErrorCode;
use candor_domain::{AuditAction, EventPayload, Pseudonym, SubjectId, Timestamp};
use std::sync::Arc;

use candor_store::PurposeRead;

use crate::recommend::PERSONALIZATION;
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
        let (events, _) = self
            .read_events_until(actor, purpose, subject, after_id, limit, audit_empty)
            .await?;
        Ok(events)
    }

    /// One subject's whole history for personalization, from the cache of decrypted histories
    /// when this process has written nothing of theirs since it was read, its grants and
    /// events are still live, and it is younger than [`HISTORY_RECHECK_MS`] (writes through
    /// other servers). Audited like the read it stands for; an empty history is not cached.
    pub(crate) async fn personal_history(
        &self,
        actor: &Actor,
        subject: &SubjectId,
    ) -> Result<Arc<Vec<Event>>> {
        let pseudonym = self.pseudonymize(subject);
        let now = self.now();
        // Read before the store is: a write committed after this moves the revision, so a
        // result read before that write is never taken for current.
        let revision = self.store.history_revision(&pseudonym);
        let hit = self
            .histories
            .lock()
            .get(&pseudonym)
            .filter(|h| h.revision == revision && now < h.valid_until)
            .map(|h| h.events.clone());
        if let Some(events) = hit {
            self.audit_read(actor, Some(pseudonym), PERSONALIZATION, events.len())
                .await?;
            return Ok(events);
        }
        let (events, valid_until) = self
            .read_events_until(
                actor,
                PERSONALIZATION,
                Some(subject),
                0,
                HISTORY_LIMIT,
                false,
            )
            .await?;
        let events = Arc::new(events);
        if !events.is_empty() && events.len() < HISTORY_LIMIT as usize {
            let mut cache = self.histories.lock();
            let held: usize = cache.values().map(|h| h.events.len()).sum();
            if held + events.len() > HISTORY_CACHE_EVENTS {
                cache.clear();
            }
            cache.insert(
                pseudonym,
                CachedHistory {
                    events: events.clone(),
                    revision,
                    valid_until: valid_until.min(Timestamp(now.0 + HISTORY_RECHECK_MS)),
                },
            );
        }
        Ok(events)
    }

    /// The read behind [`Engine::read_events_audited`], with the time until which its answer
    /// stays true unless something is written: the earliest lapse of a grant it was read
    /// under or of an event's retention.
    async fn read_events_until(
        &self,
        actor: &Actor,
        purpose: &str,
        subject: Option<&SubjectId>,
        after_id: i64,
        limit: u32,
        audit_empty: bool,
    ) -> Result<(Vec<Event>, Timestamp)> {
        let mut valid_until = Timestamp(i64::MAX);
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
                valid_until = valid_until
                    .min(row.expires_at)
                    .min(row.grant_expires_at.unwrap_or(valid_until));
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
            return Ok((events, valid_until));
        }
        self.audit_read(actor, pseudonym, purpose, events.len())
            .await?;
        Ok((events, valid_until))
    }

    /// Audits a purpose-bound read of `events` events.
    async fn audit_read(
        &self,
        actor: &Actor,
        subject: Option<Pseudonym>,
        purpose: &str,
        events: usize,
    ) -> Result<()> {
        let draft = self.draft(
            actor,
            AuditAction::EventsRead,
            subject,
            Some(purpose),
            format!("events={events}"),
        );
        self.audit(vec![draft]).await
    }
}

/// How long a cached history is trusted without a write through this server: the bound on
/// how late a change made through another server (an erasure, a withdrawal) reaches this one.
pub const HISTORY_RECHECK_MS: i64 = 500;

/// The most events one history read returns.
const HISTORY_LIMIT: u32 = 10_000;

/// The most decrypted events the history cache holds (it starts afresh when full).
const HISTORY_CACHE_EVENTS: usize = 200_000;

/// A subject's decrypted history for personalization, as of `revision`.
pub(crate) struct CachedHistory {
    events: Arc<Vec<Event>>,
    revision: u128,
    valid_until: Timestamp,
}
