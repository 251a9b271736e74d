//! `events`: pseudonymous, encrypted events. Stored in group transactions with their audit
//! entries; read back only through the purpose-bound [`EventStore::read_events`] (and, for the
//! subject's own right of access, [`EventStore::subject_events`]).

use std::collections::HashSet;

use async_trait::async_trait;
use candor_domain::{AuditDraft, Pseudonym, Purpose, Timestamp};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};
use crate::{CountAudit, IN_CHUNK, INSERT_CHUNK, Result, StoreError, pseudonym, subject_hint};

/// An event ready to be stored: pseudonymous, with an encrypted payload.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The data category, in plain form so reads can be purpose-bound.
    pub category: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// When the retention sweeper deletes it.
    pub expires_at: Timestamp,
    /// Keyed hash of (subject, item, type, time): refuses duplicates without revealing them.
    pub dedup: [u8; 16],
    /// AEAD ciphertext of the payload under the subject's data key.
    pub payload: Vec<u8>,
}

/// The events of one ingestion request and how to audit them.
pub struct EventGroup {
    /// The events.
    pub events: Vec<NewEvent>,
    /// Builds the group's audit entry from the number of events stored.
    pub audit: Box<dyn Fn(u64) -> AuditDraft + Send + Sync>,
}

impl std::fmt::Debug for EventGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventGroup")
            .field("events", &self.events.len())
            .finish()
    }
}

/// A stored event as returned by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Row id, increasing with insertion.
    pub id: i64,
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The data category.
    pub category: String,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// When the retention sweeper deletes it (the retention of the purposes it was stored
    /// under).
    pub expires_at: Timestamp,
    /// The encrypted payload.
    pub payload: Vec<u8>,
}

/// A purpose-bound read: the purpose, optionally one subject, and a page.
#[derive(Debug, Clone)]
pub struct PurposeRead<'a> {
    /// The purpose the data will be used for.
    pub purpose: &'a Purpose,
    /// Only this subject's events, if set.
    pub subject: Option<&'a Pseudonym>,
    /// The time at which consent must be live.
    pub now: Timestamp,
    /// Return events with `id > after_id`.
    pub after_id: i64,
    /// At most this many events.
    pub limit: u32,
}

/// Events.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores several groups of events (one per ingestion request) and, per group, the audit
    /// entry built from the number it stored, all in one transaction: all or nothing. Returns,
    /// per group and event, whether it was stored (`false`: an event with the same dedup key
    /// already exists, appears earlier in this call, or the database declined the row).
    async fn insert_event_groups(&self, groups: &[EventGroup]) -> Result<Vec<Vec<bool>>>;
    /// The processing read of personal data: events whose category is consented for the
    /// purpose at `read.now`, of subjects whose processing is not restricted, in id order.
    /// Audit entries are appended by the engine.
    async fn read_events(&self, read: &PurposeRead<'_>) -> Result<Vec<StoredEvent>>;
    /// Every stored event of one subject, whatever its consent state now: the read path of
    /// the subject's own right of access (GDPR Art. 15 and 20) and transparency report. In id
    /// order.
    async fn subject_events(&self, subject: &Pseudonym) -> Result<Vec<StoredEvent>>;
    /// Deletes some of one subject's events (rectification), auditing the count; returns how
    /// many existed and were deleted. Ids of other subjects' events are ignored.
    async fn delete_subject_events(
        &self,
        subject: &Pseudonym,
        ids: &[i64],
        audit: CountAudit<'_>,
    ) -> Result<u64>;
    /// Deletes events past their retention, auditing the count.
    async fn delete_expired_events(&self, now: Timestamp, audit: CountAudit<'_>) -> Result<u64>;
}

fn stored_event(r: &impl Get) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: r.int("id")?,
        subject: pseudonym(r.blob("subject")?, "events")?,
        category: r.text("category")?,
        occurred_at: Timestamp(r.int("occurred_at")?),
        expires_at: Timestamp(r.int("expires_at")?),
        payload: r.blob("payload")?,
    })
}

/// One multi-row insert of `chunk`, skipping dedup keys already stored; with `returning`, it
/// also answers the dedup keys it stored.
fn insert_events(chunk: &[&NewEvent], returning: bool) -> Sql {
    let mut q = Sql::new(
        "INSERT INTO events (subject, subject_hint, category, occurred_at, expires_at, dedup, \
         payload) VALUES ",
    );
    q.rows(chunk, |e| {
        vec![
            e.subject.0.to_vec().into(),
            subject_hint(&e.subject).into(),
            e.category.as_str().into(),
            e.occurred_at.0.into(),
            e.expires_at.0.into(),
            e.dedup.to_vec().into(),
            e.payload.clone().into(),
        ]
    });
    q.push(" ON CONFLICT (dedup) DO NOTHING");
    if returning {
        q.push(" RETURNING dedup");
    }
    q
}

impl<D: Dialect> SqlStore<D> {
    /// Inserts `fresh` in dedup order (so concurrent writers lock index entries in the same
    /// order) inside `tx`. Without `exact`, returns `None` unless every row was stored;
    /// with it, the dedup keys that were stored.
    async fn insert_fresh(
        &self,
        tx: &mut D::Connection,
        fresh: &[&NewEvent],
        exact: bool,
    ) -> Result<Option<HashSet<[u8; 16]>>> {
        let mut stored = HashSet::new();
        let mut count = 0u64;
        for chunk in fresh.chunks(INSERT_CHUNK) {
            if exact {
                for row in D::fetch_all(tx, insert_events(chunk, true)).await? {
                    let dedup: [u8; 16] = row
                        .blob("dedup")?
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("events"))?;
                    stored.insert(dedup);
                }
            } else {
                count += D::execute(tx, insert_events(chunk, false)).await?;
            }
        }
        if exact {
            return Ok(Some(stored));
        }
        Ok((count == fresh.len() as u64).then(|| fresh.iter().map(|e| e.dedup).collect()))
    }
}

#[async_trait]
impl<D: Dialect> EventStore for SqlStore<D> {
    async fn insert_event_groups(&self, groups: &[EventGroup]) -> Result<Vec<Vec<bool>>> {
        // The first occurrence of a dedup key in this call is the candidate; later ones are
        // duplicates.
        let mut seen: HashSet<[u8; 16]> = HashSet::new();
        let mut fresh: Vec<&NewEvent> = Vec::new();
        let candidate: Vec<Vec<bool>> = groups
            .iter()
            .map(|group| {
                group
                    .events
                    .iter()
                    .map(|e| {
                        let new = seen.insert(e.dedup);
                        if new {
                            fresh.push(e);
                        }
                        new
                    })
                    .collect()
            })
            .collect();
        fresh.sort_by_key(|e| e.dedup);
        // Duplicates are rare: first insert everything and count. Only if the database skipped
        // a row (a key already stored, a concurrent writer first, a row it declined) is the
        // work redone, asking the database which rows it stored, so that what is reported
        // stored, and counted in the audit entry, is exactly what was.
        let t0 = std::time::Instant::now();
        let mut tx = self.begin().await?;
        let stored = match self.insert_fresh(&mut tx, &fresh, false).await? {
            Some(all) => all,
            None => {
                tx.rollback().await?;
                tx = self.begin().await?;
                self.insert_fresh(&mut tx, &fresh, true)
                    .await?
                    .unwrap_or_default()
            }
        };
        let flags: Vec<Vec<bool>> = groups
            .iter()
            .zip(candidate)
            .map(|(group, candidate)| {
                group
                    .events
                    .iter()
                    .zip(candidate)
                    .map(|(e, first)| first && stored.contains(&e.dedup))
                    .collect()
            })
            .collect();
        let t_insert = t0.elapsed();
        let drafts: Vec<AuditDraft> = groups
            .iter()
            .zip(&flags)
            .filter_map(|(g, f)| {
                let n = f.iter().filter(|&&stored| stored).count() as u64;
                (n > 0).then(|| (g.audit)(n))
            })
            .collect();
        self.append_in_tx(&mut tx, &drafts).await?;
        tx.commit().await?;
        tracing::debug!(
            groups = groups.len(),
            events = fresh.len(),
            insert_us = t_insert.as_micros() as u64,
            commit_us = (t0.elapsed() - t_insert).as_micros() as u64,
            "stored events"
        );
        Ok(flags)
    }

    async fn read_events(&self, read: &PurposeRead<'_>) -> Result<Vec<StoredEvent>> {
        let mut q = Sql::new(
            "SELECT e.id AS id, e.subject AS subject, e.category AS category, \
             e.occurred_at AS occurred_at, e.expires_at AS expires_at, e.payload AS payload \
             FROM events e \
             JOIN consent_current c ON c.subject = e.subject AND c.category = e.category \
             WHERE c.purpose = ",
        );
        q.bind(read.purpose.name.as_str());
        q.push(" AND c.granted = ").bind(true);
        q.push(" AND c.expires_at > ").bind(read.now.0);
        q.push(" AND e.expires_at > ").bind(read.now.0);
        if read.after_id > 0 {
            // Only when paging: on PostgreSQL a bare `id > 0` makes the planner AND a scan of
            // the whole primary key into a one-subject read.
            q.push(" AND e.id > ").bind(read.after_id);
        }
        q.push(" AND e.category IN (")
            .list(read.purpose.categories.iter().map(String::as_str))
            .push(")");
        if let Some(subject) = read.subject {
            q.push(" AND e.subject_hint = ").bind(subject_hint(subject));
            q.push(" AND e.subject = ").bind(subject.0.to_vec());
        }
        q.push(" AND NOT EXISTS (SELECT 1 FROM restrictions r WHERE r.subject = e.subject)");
        q.push(" ORDER BY e.id LIMIT ").bind(read.limit as i64);
        // One subject's history is a request's read; everyone's (training, analytics) is a
        // long one.
        let rows = match read.subject {
            Some(_) => self.fetch(q).await?,
            None => self.fetch_bulk(q).await?,
        };
        rows.iter().map(stored_event).collect()
    }

    async fn subject_events(&self, subject: &Pseudonym) -> Result<Vec<StoredEvent>> {
        let q = Sql::new(
            "SELECT id, subject, category, occurred_at, expires_at, payload FROM events \
             WHERE subject_hint = $1 AND subject = $2 ORDER BY id",
        )
        .arg(subject_hint(subject))
        .arg(subject.0.to_vec());
        self.fetch(q).await?.iter().map(stored_event).collect()
    }

    async fn delete_subject_events(
        &self,
        subject: &Pseudonym,
        ids: &[i64],
        audit: CountAudit<'_>,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let mut deleted = 0;
        for chunk in ids.chunks(IN_CHUNK) {
            let mut q = Sql::new("DELETE FROM events WHERE subject_hint = $1 AND subject = $2")
                .arg(subject_hint(subject))
                .arg(subject.0.to_vec());
            q.push(" AND id IN (").list(chunk.iter().copied()).push(")");
            deleted += D::execute(&mut tx, q).await?;
        }
        if deleted > 0 {
            self.append_in_tx(&mut tx, &[audit(deleted)]).await?;
        }
        tx.commit().await?;
        if deleted > 0 {
            D::purge_deleted_bytes(&self.write).await?;
        }
        Ok(deleted)
    }

    async fn delete_expired_events(&self, now: Timestamp, audit: CountAudit<'_>) -> Result<u64> {
        let mut tx = self.begin().await?;
        let deleted = D::execute(
            &mut tx,
            Sql::new("DELETE FROM events WHERE expires_at <= $1").arg(now.0),
        )
        .await?;
        if deleted > 0 {
            self.append_in_tx(&mut tx, &[audit(deleted)]).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
