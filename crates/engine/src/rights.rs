//! Restriction of processing (GDPR Art. 18) and objection to profiling (Art. 21).
//! A restriction keeps the data stored but stops everything else: ingestion is refused with
//! `processing_restricted`, purpose-bound reads (so training and personalization) skip the
//! subject, and recommendations fall back to `contextual` — until it is lifted. An objection
//! withdraws every personalization and marketing purpose, recorded with method `objection`;
//! only a new grant by the subject turns them on again.

use candor_domain::{AuditAction, ConsentMethod, SubjectId, Timestamp};

use crate::consent::{ConsentUpdate, ConsentView};
use crate::{Actor, Engine, EngineError, Result};

impl Engine {
    /// Restricts processing of a subject's data, or lifts the restriction. Audited.
    pub async fn restrict(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        restricted: bool,
    ) -> Result<()> {
        let pseudonym = self.pseudonymize(subject);
        let known = !self.store.consent_current(&[pseudonym]).await?.is_empty()
            || !self.store.subject_keys(&[pseudonym]).await?.is_empty();
        if !known {
            return Err(EngineError::not_found(
                "unknown_subject",
                "no data or consent is held for this subject",
            ));
        }
        let detail = if restricted { "restricted" } else { "lifted" };
        let draft = self.draft(
            actor,
            AuditAction::SubjectRestrict,
            Some(pseudonym),
            None,
            detail.into(),
        );
        self.store
            .set_restriction(&pseudonym, restricted, Timestamp::now(), &[draft])
            .await?;
        Ok(())
    }

    /// Records an objection to profiling and direct marketing: withdraws every purpose named
    /// `personalize.*` or `marketing.*`.
    pub async fn object(&self, actor: &Actor, subject: &SubjectId) -> Result<ConsentView> {
        let purposes: Vec<&str> = self
            .policy
            .purposes
            .keys()
            .filter(|p| p.starts_with("personalize.") || p.starts_with("marketing."))
            .map(String::as_str)
            .collect();
        if purposes.is_empty() {
            return Err(EngineError::invalid(
                "no_profiling_purpose",
                "the policy has no profiling or marketing purpose",
            ));
        }
        let pseudonym = self.pseudonymize(subject);
        if self.store.consent_current(&[pseudonym]).await?.is_empty()
            && self.store.subject_keys(&[pseudonym]).await?.is_empty()
        {
            return Err(EngineError::not_found(
                "unknown_subject",
                "no data or consent is held for this subject",
            ));
        }
        let update = ConsentUpdate::whole(&purposes, false, ConsentMethod::Objection);
        self.record_update(actor, subject, &update, false).await
    }
}
