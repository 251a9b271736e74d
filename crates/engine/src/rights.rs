//! Rectification (GDPR Art. 16), restriction of processing (Art. 18) and objection to
//! profiling (Art. 21).
//! A restriction keeps the data stored but stops everything else: ingestion is refused with
//! `processing_restricted`, purpose-bound reads (so training and personalization) skip the
//! subject, and recommendations fall back to `contextual` — until it is lifted. An objection
//! withdraws every personalization and marketing purpose, recorded with method `objection`;
//! only a new grant by the subject turns them on again.

use candor_domain::ErrorCode;
use candor_domain::{AuditAction, ConsentMethod, SubjectId};

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
        self.known_rows(&pseudonym).await?;
        let detail = if restricted { "restricted" } else { "lifted" };
        let draft = self.draft(
            actor,
            AuditAction::SubjectRestrict,
            Some(pseudonym),
            None,
            detail.into(),
        );
        self.store
            .set_restriction(&pseudonym, restricted, self.now(), &[draft])
            .await?;
        Ok(())
    }

    /// Rectification (Art. 16): deletes one of the subject's events. Their recommendations
    /// change at once (they are computed from the current history); the item model forgets
    /// the event at its next training. To correct an event, delete it and send the corrected
    /// one.
    pub async fn delete_event(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        event_id: i64,
    ) -> Result<()> {
        let pseudonym = self.pseudonymize(subject);
        let audit = |n: u64| {
            self.draft(
                actor,
                AuditAction::EventsRectify,
                Some(pseudonym),
                None,
                format!("deleted={n}"),
            )
        };
        match self
            .store
            .delete_subject_events(&pseudonym, &[event_id], &audit)
            .await?
        {
            0 => Err(EngineError::refused(
                ErrorCode::UnknownEvent,
                "this subject has no event with this id",
            )),
            _ => Ok(()),
        }
    }

    /// Shares a subject's data with a named recipient: only the events of a purpose that
    /// lists the recipient and that the subject consents to now, read through the
    /// purpose-bound path and audited as a share. Returns the purpose and the events.
    pub async fn share(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        recipient: &str,
    ) -> Result<(String, Vec<crate::Event>)> {
        let purposes: Vec<&candor_domain::Purpose> = self
            .policy
            .purposes
            .values()
            .filter(|p| p.recipients.iter().any(|r| r == recipient))
            .collect();
        if purposes.is_empty() {
            return Err(EngineError::refused(
                ErrorCode::UnknownRecipient,
                "the policy names no such recipient",
            ));
        }
        let pseudonym = self.pseudonymize(subject);
        for purpose in purposes {
            let events = self
                .read_events_audited(actor, &purpose.name, Some(subject), 0, 10_000, false)
                .await?;
            if !events.is_empty() {
                let draft = self.draft(
                    actor,
                    AuditAction::SubjectShare,
                    Some(pseudonym),
                    Some(&purpose.name),
                    format!("events={}", events.len()),
                );
                self.audit(vec![draft]).await?;
                return Ok((purpose.name.clone(), events));
            }
        }
        Err(EngineError::Refused {
            code: ErrorCode::ConsentRequired,
            message: "the subject holds no live consent to share with this recipient (or nothing to share)".into(),
        })
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
            return Err(EngineError::refused(
                ErrorCode::NoProfilingPurpose,
                "the policy has no profiling or marketing purpose",
            ));
        }
        let pseudonym = self.pseudonymize(subject);
        self.known_rows(&pseudonym).await?;
        let update = ConsentUpdate::whole(&purposes, false, ConsentMethod::Objection);
        Ok(self
            .record_update(actor, subject, &update, false, None)
            .await?
            .0)
    }
}
