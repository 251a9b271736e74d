//! `subject_sessions`: the live sessions of people signed in to their own privacy center. A row
//! says a session exists and until when; the token that names it is sealed by the engine and
//! never stored. Revocation and erasure delete rows, so every server stops admitting the
//! session when it next looks.

use async_trait::async_trait;
use candor_domain::{AuditDraft, Pseudonym, Timestamp};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};
use crate::{Result, pseudonym};

/// A live subject session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Random public id (named inside the sealed token).
    pub id: String,
    /// Whose session it is.
    pub subject: Pseudonym,
    /// When it was opened.
    pub created_at: Timestamp,
    /// When it stops admitting anything.
    pub expires_at: Timestamp,
}

fn session(r: &impl Get) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.text("id")?,
        subject: pseudonym(r.blob("subject")?, "subject_sessions")?,
        created_at: Timestamp(r.int("created_at")?),
        expires_at: Timestamp(r.int("expires_at")?),
    })
}

/// Subject sessions.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session, with its audit entry.
    async fn put_session(&self, session: &SessionRecord, audit: &[AuditDraft]) -> Result<()>;
    /// Looks a session up by id (expired ones too, until they are purged).
    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>>;
    /// Deletes every session of a subject; the audit entry is written only when one existed.
    /// Returns how many were deleted.
    async fn revoke_sessions(&self, subject: &Pseudonym, audit: &[AuditDraft]) -> Result<u64>;
    /// Deletes the sessions expired at `now` (they admit nothing already); returns how many.
    async fn purge_expired_sessions(&self, now: Timestamp) -> Result<u64>;
}

#[async_trait]
impl<D: Dialect> SessionStore for SqlStore<D> {
    async fn put_session(&self, session: &SessionRecord, audit: &[AuditDraft]) -> Result<()> {
        let mut tx = self.begin().await?;
        let insert = Sql::new(
            "INSERT INTO subject_sessions (id, subject, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .arg(session.id.as_str())
        .arg(session.subject.0.to_vec())
        .arg(session.created_at.0)
        .arg(session.expires_at.0);
        D::execute(&mut tx, insert).await?;
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let q = Sql::new(
            "SELECT id, subject, created_at, expires_at FROM subject_sessions WHERE id = $1",
        )
        .arg(id);
        self.fetch_one(q).await?.as_ref().map(session).transpose()
    }

    async fn revoke_sessions(&self, subject: &Pseudonym, audit: &[AuditDraft]) -> Result<u64> {
        let mut tx = self.begin().await?;
        let delete =
            Sql::new("DELETE FROM subject_sessions WHERE subject = $1").arg(subject.0.to_vec());
        let n = D::execute(&mut tx, delete).await?;
        if n > 0 {
            self.append_in_tx(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn purge_expired_sessions(&self, now: Timestamp) -> Result<u64> {
        self.execute(Sql::new("DELETE FROM subject_sessions WHERE expires_at <= $1").arg(now.0))
            .await
    }
}
