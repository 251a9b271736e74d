//! `requests`: data subjects' rights requests and their deadlines.

use async_trait::async_trait;
use candor_domain::{AuditDraft, Jurisdiction, Pseudonym, RequestKind, RequestStatus, Timestamp};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};
use crate::{Result, StoreError, pseudonym};

/// A data subject's request as stored (deadlines are the engine's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsRequest {
    /// Random id.
    pub id: String,
    /// What is asked for.
    pub kind: RequestKind,
    /// The subject's pseudonym.
    pub subject: Pseudonym,
    /// The law whose deadlines apply.
    pub jurisdiction: Jurisdiction,
    /// Where it stands.
    pub status: RequestStatus,
    /// When received.
    pub received_at: Timestamp,
    /// When due (before any extension).
    pub due_at: Timestamp,
    /// When an acknowledgement is due (CCPA).
    pub ack_due_at: Option<Timestamp>,
    /// The extended deadline, if extended.
    pub extended_until: Option<Timestamp>,
    /// Why it was extended.
    pub extension_reason: Option<String>,
    /// When completed.
    pub completed_at: Option<Timestamp>,
}

/// Rights requests.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a new rights request, or replaces one (same id) with its new state; audited.
    async fn put_request(&self, request: &RightsRequest, audit: &[AuditDraft]) -> Result<()>;
    /// One request.
    async fn get_request(&self, id: &str) -> Result<Option<RightsRequest>>;
    /// All requests, or one subject's, newest first.
    async fn list_requests(&self, subject: Option<&Pseudonym>) -> Result<Vec<RightsRequest>>;
}

fn named<T>(raw: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(raw).ok_or(StoreError::Corrupt("requests"))
}

fn request(r: &impl Get) -> Result<RightsRequest> {
    let at = |column: &str| -> Result<Option<Timestamp>> { Ok(r.opt_int(column)?.map(Timestamp)) };
    Ok(RightsRequest {
        id: r.text("id")?,
        kind: named(&r.text("kind")?, RequestKind::parse)?,
        subject: pseudonym(r.blob("subject")?, "requests")?,
        jurisdiction: named(&r.text("jurisdiction")?, Jurisdiction::parse)?,
        status: named(&r.text("status")?, RequestStatus::parse)?,
        received_at: Timestamp(r.int("received_at")?),
        due_at: Timestamp(r.int("due_at")?),
        ack_due_at: at("ack_due_at")?,
        extended_until: at("extended_until")?,
        extension_reason: r.opt_text("extension_reason")?,
        completed_at: at("completed_at")?,
    })
}

const COLUMNS: &str = "id, kind, subject, jurisdiction, status, received_at, due_at, ack_due_at, \
                       extended_until, extension_reason, completed_at";

#[async_trait]
impl<D: Dialect> RequestStore for SqlStore<D> {
    async fn put_request(&self, r: &RightsRequest, audit: &[AuditDraft]) -> Result<()> {
        let mut tx = self.begin().await?;
        let upsert = Sql::new(&format!(
            "INSERT INTO requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
             extended_until = excluded.extended_until, \
             extension_reason = excluded.extension_reason, completed_at = excluded.completed_at"
        ))
        .arg(r.id.as_str())
        .arg(r.kind.as_str())
        .arg(r.subject.0.to_vec())
        .arg(r.jurisdiction.as_str())
        .arg(r.status.as_str())
        .arg(r.received_at.0)
        .arg(r.due_at.0)
        .arg(r.ack_due_at.map(|t| t.0))
        .arg(r.extended_until.map(|t| t.0))
        .arg(r.extension_reason.clone())
        .arg(r.completed_at.map(|t| t.0));
        D::execute(&mut tx, upsert).await?;
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_request(&self, id: &str) -> Result<Option<RightsRequest>> {
        let q = Sql::new(&format!("SELECT {COLUMNS} FROM requests WHERE id = $1")).arg(id);
        self.fetch_one(q).await?.as_ref().map(request).transpose()
    }

    async fn list_requests(&self, subject: Option<&Pseudonym>) -> Result<Vec<RightsRequest>> {
        let mut q = Sql::new(&format!("SELECT {COLUMNS} FROM requests"));
        if let Some(subject) = subject {
            q.push(" WHERE subject = ").bind(subject.0.to_vec());
        }
        q.push(" ORDER BY received_at DESC, id");
        self.fetch(q).await?.iter().map(request).collect()
    }
}
