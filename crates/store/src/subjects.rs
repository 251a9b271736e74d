//! What is held per subject as a whole: erasure across every table of personal data (the data
//! key, events, consent records, restriction), and restriction of processing (`restrictions`).

use std::collections::HashSet;

use async_trait::async_trait;
use candor_domain::audit::consent_erased_detail;
use candor_domain::{AuditAction, AuditDraft, Pseudonym, Timestamp};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};
use crate::{CountAudit, IN_CHUNK, Result, pseudonym, subject_hint};

/// What an erasure deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErasedRows {
    /// Events.
    pub events: u64,
    /// Consent records (history and current).
    pub consent_records: u64,
    /// Data keys destroyed (0 or 1).
    pub keys: u64,
}

impl ErasedRows {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.events + self.consent_records + self.keys
    }
}

/// Erasure and restriction.
#[async_trait]
pub trait SubjectStore: Send + Sync {
    /// Erases a subject in one transaction: their events, consent records and receipts,
    /// sessions and data key (so any copy of their ciphertext left anywhere is unreadable),
    /// with the audit entry. Then
    /// makes sure no deleted byte lingers in the database files (SQLite: `secure_delete`
    /// overwrote the pages, and the WAL is checkpointed and truncated).
    async fn erase_subject(&self, subject: &Pseudonym, audit: CountAudit<'_>)
    -> Result<ErasedRows>;
    /// Restricts processing of a subject's data (or lifts the restriction), with the audit
    /// entry.
    async fn set_restriction(
        &self,
        subject: &Pseudonym,
        restricted: bool,
        at: Timestamp,
        audit: &[AuditDraft],
    ) -> Result<()>;
    /// Which of the given subjects are restricted.
    async fn restricted(&self, subjects: &[Pseudonym]) -> Result<HashSet<Pseudonym>>;
}

#[async_trait]
impl<D: Dialect> SubjectStore for SqlStore<D> {
    async fn erase_subject(
        &self,
        subject: &Pseudonym,
        audit: CountAudit<'_>,
    ) -> Result<ErasedRows> {
        let bytes = subject.0.to_vec();
        let mut tx = self.begin().await?;
        let events = D::execute(
            &mut tx,
            Sql::new("DELETE FROM events WHERE subject_hint = $1 AND subject = $2")
                .arg(subject_hint(subject))
                .arg(bytes.clone()),
        )
        .await?;
        // The consent-history rows go, their leaves stay, marked by an entry of their own
        // that says how many the erasure deleted.
        let history = Sql::new("DELETE FROM consent_history WHERE subject = $1 RETURNING id");
        let history_ids: Vec<i64> = D::fetch_all(&mut tx, history.arg(bytes.clone()))
            .await?
            .iter()
            .map(|r| r.int("id"))
            .collect::<Result<_>>()?;
        let current = Sql::new("DELETE FROM consent_current WHERE subject = $1");
        let consent_records =
            history_ids.len() as u64 + D::execute(&mut tx, current.arg(bytes.clone())).await?;
        let restriction = Sql::new("DELETE FROM restrictions WHERE subject = $1");
        D::execute(&mut tx, restriction.arg(bytes.clone())).await?;
        let receipts = Sql::new("DELETE FROM consent_receipts WHERE subject = $1");
        D::execute(&mut tx, receipts.arg(bytes.clone())).await?;
        let sessions = Sql::new("DELETE FROM subject_sessions WHERE subject = $1");
        D::execute(&mut tx, sessions.arg(bytes.clone())).await?;
        let key = Sql::new("DELETE FROM subject_keys WHERE subject = $1");
        let keys = D::execute(&mut tx, key.arg(bytes)).await?;
        let erased = ErasedRows {
            events,
            consent_records,
            keys,
        };
        if erased.total() > 0 {
            let entry = audit(erased.total());
            let mut drafts = vec![entry.clone()];
            if !history_ids.is_empty() {
                drafts.push(AuditDraft {
                    action: AuditAction::ConsentErased,
                    subject: None,
                    purpose: None,
                    detail: consent_erased_detail(history_ids.len()),
                    ..entry
                });
            }
            let seq = self.append_in_tx(&mut tx, &drafts).await?;
            for chunk in history_ids.chunks(IN_CHUNK) {
                let mut mark = Sql::new("UPDATE consent_leaves SET erased_seq = ");
                mark.bind(seq as i64).push(" WHERE id IN (");
                mark.list(chunk.iter().copied()).push(")");
                D::execute(&mut tx, mark).await?;
            }
        }
        tx.commit().await?;
        D::purge_deleted_bytes(&self.write).await?;
        Ok(erased)
    }

    async fn set_restriction(
        &self,
        subject: &Pseudonym,
        restricted: bool,
        at: Timestamp,
        audit: &[AuditDraft],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let change = if restricted {
            Sql::new(
                "INSERT INTO restrictions (subject, at) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO NOTHING",
            )
            .arg(subject.0.to_vec())
            .arg(at.0)
        } else {
            Sql::new("DELETE FROM restrictions WHERE subject = $1").arg(subject.0.to_vec())
        };
        D::execute(&mut tx, change).await?;
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn restricted(&self, subjects: &[Pseudonym]) -> Result<HashSet<Pseudonym>> {
        let mut out = HashSet::new();
        for chunk in subjects.chunks(IN_CHUNK) {
            let mut q = Sql::new("SELECT subject FROM restrictions WHERE subject IN (");
            q.list(chunk.iter().map(|s| s.0.to_vec())).push(")");
            for row in self.fetch(q).await? {
                out.insert(pseudonym(row.blob("subject")?, "restrictions")?);
            }
        }
        Ok(out)
    }
}
