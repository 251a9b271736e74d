//! Data subjects' requests and their deadlines. GDPR: one calendar month, extendable once by
//! two more with a recorded reason (Art. 12(3)). CCPA: 45 days, extendable once by 45, with an
//! acknowledgement due within 10 business days. Fulfilling a request runs the right itself
//! (export, erasure, restriction, objection, do-not-sell) through the engine, audited. The
//! subject is stored only as a pseudonym: fulfilment needs their id again.

use candor_domain::ErrorCode;
use candor_domain::{
    AuditAction, ConsentMethod, Jurisdiction, RequestKind, RequestStatus, SubjectId, Timestamp,
};
use candor_store::RightsRequest;
use serde::Serialize;
use time::{Duration, OffsetDateTime, Weekday};

use crate::consent::ConsentUpdate;
use crate::{Actor, Engine, EngineError, Result};

/// A request as shown to the DPO.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestView {
    /// Id.
    pub id: String,
    /// What is asked for.
    pub kind: RequestKind,
    /// The law whose deadlines apply.
    pub jurisdiction: Jurisdiction,
    /// Where it stands.
    pub status: RequestStatus,
    /// When received.
    pub received_at: String,
    /// The deadline in force (extended if extended).
    pub due_at: String,
    /// When an acknowledgement is due (CCPA).
    pub acknowledge_by: Option<String>,
    /// Why it was extended, if it was.
    pub extension_reason: Option<String>,
    /// When completed.
    pub completed_at: Option<String>,
    /// Past its deadline (or, unacknowledged, past its acknowledgement deadline) and not
    /// completed.
    pub overdue: bool,
}

fn odt(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t.0 as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The same day `months` calendar months later, or the month's last day if it has none.
pub fn add_months(t: Timestamp, months: u32) -> Timestamp {
    let d = odt(t);
    let total = d.month() as u32 - 1 + months;
    let year = d.year() + (total / 12) as i32;
    let month = time::Month::try_from((total % 12 + 1) as u8).expect("1..=12");
    let day = d.day().min(time::util::days_in_month(month, year));
    let date = time::Date::from_calendar_date(year, month, day).expect("a valid date");
    ts(d.replace_date(date))
}

/// `days` business days (Monday to Friday) later.
pub fn add_business_days(t: Timestamp, days: u32) -> Timestamp {
    let mut d = odt(t);
    let mut left = days;
    while left > 0 {
        d += Duration::days(1);
        if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    ts(d)
}

fn view(r: &RightsRequest, now: Timestamp) -> RequestView {
    let due = r.extended_until.unwrap_or(r.due_at);
    RequestView {
        id: r.id.clone(),
        kind: r.kind,
        jurisdiction: r.jurisdiction,
        status: r.status,
        received_at: r.received_at.to_rfc3339(),
        due_at: due.to_rfc3339(),
        acknowledge_by: r.ack_due_at.map(Timestamp::to_rfc3339),
        extension_reason: r.extension_reason.clone(),
        completed_at: r.completed_at.map(Timestamp::to_rfc3339),
        overdue: r.status != RequestStatus::Completed
            && (now > due
                || (r.status == RequestStatus::Received
                    && r.ack_due_at.is_some_and(|ack| now > ack))),
    }
}

impl Engine {
    /// Records a request received now (or at `received_at`, for requests received elsewhere).
    pub async fn create_request(
        &self,
        actor: &Actor,
        kind: RequestKind,
        subject: &SubjectId,
        jurisdiction: Jurisdiction,
        received_at: Option<Timestamp>,
    ) -> Result<RequestView> {
        let now = self.now();
        let received = received_at.unwrap_or(now);
        if received > now {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "a request cannot be received in the future",
            ));
        }
        let (due_at, ack_due_at) = match jurisdiction {
            Jurisdiction::Gdpr => (add_months(received, 1), None),
            Jurisdiction::Ccpa => (
                received.plus_days(45),
                Some(add_business_days(received, 10)),
            ),
        };
        let request = RightsRequest {
            id: crate::signing::random_id(12),
            kind,
            subject: self.pseudonymize(subject),
            jurisdiction,
            status: RequestStatus::Received,
            received_at: received,
            due_at,
            ack_due_at,
            extended_until: None,
            extension_reason: None,
            completed_at: None,
        };
        let draft = self.draft(
            actor,
            AuditAction::RequestUpdate,
            Some(request.subject),
            None,
            format!("request={} kind={kind} received", request.id),
        );
        self.store.put_request(&request, &[draft]).await?;
        Ok(view(&request, now))
    }

    /// All requests, or only the overdue ones.
    pub async fn list_requests(&self, overdue_only: bool) -> Result<Vec<RequestView>> {
        let now = self.now();
        Ok(self
            .store
            .list_requests(None)
            .await?
            .iter()
            .map(|r| view(r, now))
            .filter(|v| !overdue_only || v.overdue)
            .collect())
    }

    /// One subject's requests, newest first (what they filed, and where each stands).
    pub async fn subject_requests(&self, subject: &SubjectId) -> Result<Vec<RequestView>> {
        let now = self.now();
        let pseudonym = self.pseudonymize(subject);
        Ok(self
            .store
            .list_requests(Some(&pseudonym))
            .await?
            .iter()
            .map(|r| view(r, now))
            .collect())
    }

    async fn request(&self, id: &str) -> Result<RightsRequest> {
        self.store.get_request(id).await?.ok_or_else(|| {
            EngineError::refused(
                ErrorCode::UnknownRequest,
                "there is no request with this id",
            )
        })
    }

    /// Acknowledges receipt of a request to the subject (CCPA: within 10 business days).
    pub async fn acknowledge_request(&self, actor: &Actor, id: &str) -> Result<RequestView> {
        let mut r = self.request(id).await?;
        if r.status != RequestStatus::Received {
            return Err(EngineError::refused(
                ErrorCode::AlreadyAcknowledged,
                format!("the request is already {}", r.status),
            ));
        }
        r.status = RequestStatus::Acknowledged;
        let draft = self.draft(
            actor,
            AuditAction::RequestUpdate,
            Some(r.subject),
            None,
            format!("request={} acknowledged", r.id),
        );
        self.store.put_request(&r, &[draft]).await?;
        Ok(view(&r, self.now()))
    }

    /// Extends a request's deadline once, with a reason: GDPR by two months, CCPA by 45 days.
    pub async fn extend_request(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<RequestView> {
        let mut r = self.request(id).await?;
        if reason.trim().is_empty() || reason.len() > 1000 {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "give a reason of 1 to 1,000 bytes",
            ));
        }
        if r.extended_until.is_some() {
            return Err(EngineError::refused(
                ErrorCode::AlreadyExtended,
                "a deadline may be extended only once",
            ));
        }
        if r.status == RequestStatus::Completed {
            return Err(EngineError::refused(
                ErrorCode::AlreadyCompleted,
                "the request is already completed",
            ));
        }
        r.extended_until = Some(match r.jurisdiction {
            Jurisdiction::Gdpr => add_months(r.due_at, 2),
            Jurisdiction::Ccpa => r.due_at.plus_days(45),
        });
        r.extension_reason = Some(reason.trim().to_owned());
        let draft = self.draft(
            actor,
            AuditAction::RequestUpdate,
            Some(r.subject),
            None,
            format!("request={} extended", r.id),
        );
        self.store.put_request(&r, &[draft]).await?;
        Ok(view(&r, self.now()))
    }

    /// Fulfils a request for the subject it names (their id, checked against the stored
    /// pseudonym) and returns the outcome: the export, the erasure certificate, or the new
    /// consent state.
    pub async fn fulfil_request(
        self: &std::sync::Arc<Self>,
        actor: &Actor,
        id: &str,
        subject: &SubjectId,
    ) -> Result<(RequestView, serde_json::Value)> {
        let mut r = self.request(id).await?;
        if self.pseudonymize(subject) != r.subject {
            return Err(EngineError::refused(
                ErrorCode::SubjectMismatch,
                "this request is not about that subject",
            ));
        }
        if r.status == RequestStatus::Completed {
            return Err(EngineError::refused(
                ErrorCode::AlreadyCompleted,
                "the request is already completed",
            ));
        }
        let to_json = |v: &dyn erased::Json| v.json();
        let outcome = match r.kind {
            RequestKind::Access => to_json(&self.export(actor, subject).await?),
            RequestKind::Erasure => match self.erase(actor, subject).await {
                Ok(certificate) => to_json(&certificate),
                Err(EngineError::Refused {
                    code: ErrorCode::NothingHeld,
                    ..
                }) => serde_json::json!({ "nothing_held": true }),
                Err(e) => return Err(e),
            },
            RequestKind::Restriction => {
                self.restrict(actor, subject, true).await?;
                serde_json::json!({ "restricted": true })
            }
            RequestKind::Objection => to_json(&self.object(actor, subject).await?),
            RequestKind::DoNotSell => {
                let purposes: Vec<&str> = self
                    .policy
                    .gpc_purposes()
                    .map(|p| p.name.as_str())
                    .collect();
                to_json(
                    &self
                        .record_update(
                            actor,
                            subject,
                            &ConsentUpdate::whole(&purposes, false, ConsentMethod::Api),
                            false,
                            None,
                        )
                        .await?
                        .0,
                )
            }
        };
        r.status = RequestStatus::Completed;
        r.completed_at = Some(self.now());
        let draft = self.draft(
            actor,
            AuditAction::RequestUpdate,
            Some(r.subject),
            None,
            format!("request={} completed", r.id),
        );
        self.store.put_request(&r, &[draft]).await?;
        Ok((view(&r, self.now()), outcome))
    }
}

mod erased {
    //! Serializing the different outcomes through one function.
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn deadlines() {
        assert_eq!(
            add_months(at("2026-01-31T10:00:00Z"), 1),
            at("2026-02-28T10:00:00Z")
        );
        assert_eq!(
            add_months(at("2026-11-29T10:00:00Z"), 1),
            at("2026-12-29T10:00:00Z")
        );
        assert_eq!(
            add_months(at("2026-12-15T00:00:00Z"), 2),
            at("2027-02-15T00:00:00Z")
        );
        assert_eq!(
            add_months(at("2028-01-31T00:00:00Z"), 1),
            at("2028-02-29T00:00:00Z")
        );
        // Friday + 10 business days = the Friday two weeks later.
        assert_eq!(
            add_business_days(at("2026-11-27T09:00:00Z"), 10),
            at("2026-12-11T09:00:00Z")
        );
        assert_eq!(
            add_business_days(at("2026-11-28T09:00:00Z"), 1),
            at("2026-11-30T09:00:00Z")
        );
    }
}
