//! Consent: recording changes (API, banner, GPC), and reading a subject's state and history.
//! A grant is stored per purpose and category so that narrowed grants and purpose-bound reads
//! are a plain lookup; a Global Privacy Control signal withdraws the policy's GPC purposes
//! even over an earlier opt-in.
//!
//! Over 500 lines because the views of consent (per purpose, per category, history) live
//! beside the one write path they are read back from.

use std::collections::BTreeMap;

use candor_domain::ErrorCode;
use candor_domain::{
    AuditAction, ConsentMethod, ConsentRecord, ConsentRow, ConsentState, Pseudonym, SubjectId,
    Timestamp,
};
use serde::Serialize;

use crate::{Actor, Engine, EngineError, Result};

/// One purpose's requested choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeChoice {
    /// Grant (`true`) or withdraw (`false`).
    pub granted: bool,
    /// Narrow a grant to these categories of the purpose (`None`: all of them).
    pub categories: Option<Vec<String>>,
}

/// A requested consent change for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUpdate {
    /// Choices by purpose name; purposes not named are left as they are.
    pub purposes: BTreeMap<String, PurposeChoice>,
    /// How the consent was collected.
    pub method: ConsentMethod,
    /// For `import` only: when the consent was originally given (in the past), so that
    /// imported grants keep their original expiry.
    pub recorded_at: Option<Timestamp>,
}

impl ConsentUpdate {
    /// Grants (`granted`) or withdraws whole purposes, collected by `method`, now.
    pub fn whole(purposes: &[&str], granted: bool, method: ConsentMethod) -> Self {
        Self {
            purposes: purposes
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        PurposeChoice {
                            granted,
                            categories: None,
                        },
                    )
                })
                .collect(),
            method,
            recorded_at: None,
        }
    }
}

/// One category's consent within a purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryConsent {
    /// The category.
    pub category: String,
    /// Its state now.
    pub state: ConsentState,
    /// When the latest change was made (RFC 3339).
    pub changed_at: Option<String>,
    /// When a grant lapses (RFC 3339).
    pub expires_at: Option<String>,
    /// How the latest change was collected.
    pub method: Option<ConsentMethod>,
}

/// One purpose's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurposeConsent {
    /// Granted if any category is live; else expired, withdrawn or none.
    pub state: ConsentState,
    /// Per category.
    pub categories: Vec<CategoryConsent>,
}

/// A subject's consent, by purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentView {
    /// The policy version in force.
    pub policy_version: String,
    /// By purpose name; every purpose of the policy is listed.
    pub purposes: BTreeMap<String, PurposeConsent>,
}

/// One consent history record, as shown to the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentHistoryEntry {
    /// The purpose.
    pub purpose: String,
    /// The category.
    pub category: String,
    /// Granted or withdrawn.
    pub granted: bool,
    /// When (RFC 3339).
    pub at: String,
    /// When the grant lapses (RFC 3339), for grants.
    pub expires_at: Option<String>,
    /// The policy version in force then.
    pub policy_version: String,
    /// How it was collected.
    pub method: ConsentMethod,
}

/// Makes `records` current in `rows`, in order: each replaces the row of its purpose and
/// category (what the store does when they are recorded).
fn apply_records(rows: &mut Vec<ConsentRow>, records: &[ConsentRecord]) {
    for r in records {
        rows.retain(|c| !(c.purpose == r.purpose && c.category == r.category));
        rows.push(ConsentRow {
            purpose: r.purpose.clone(),
            category: r.category.clone(),
            granted: r.granted,
            at: r.at,
            expires_at: r.expires_at,
            method: r.method,
        });
    }
}

impl Engine {
    fn consent_record(
        &self,
        subject: Pseudonym,
        purpose: &str,
        category: &str,
        granted: bool,
        method: ConsentMethod,
        now: Timestamp,
    ) -> ConsentRecord {
        let renewal = self.policy.purposes[purpose].consent_renewal_days;
        ConsentRecord {
            subject,
            purpose: purpose.to_owned(),
            category: category.to_owned(),
            granted,
            at: now,
            expires_at: if granted { now.plus_days(renewal) } else { now },
            policy_version: self.policy.version.clone(),
            method,
        }
    }

    /// The withdrawals a GPC signal causes for a subject whose current rows are `rows`: every
    /// category of every GPC purpose that is not already withdrawn.
    pub(crate) fn gpc_records(
        &self,
        subject: Pseudonym,
        rows: &[ConsentRow],
        now: Timestamp,
    ) -> Vec<ConsentRecord> {
        let mut out = Vec::new();
        for purpose in self.policy.gpc_purposes() {
            for category in &purpose.categories {
                let withdrawn = rows
                    .iter()
                    .any(|r| r.purpose == purpose.name && &r.category == category && !r.granted);
                if !withdrawn {
                    out.push(self.consent_record(
                        subject,
                        &purpose.name,
                        category,
                        false,
                        ConsentMethod::Gpc,
                        now,
                    ));
                }
            }
        }
        out
    }

    fn gpc_drafts(
        &self,
        actor: &Actor,
        subject: Pseudonym,
        records: &[ConsentRecord],
    ) -> Vec<candor_domain::AuditDraft> {
        let mut purposes: Vec<&str> = records.iter().map(|r| r.purpose.as_str()).collect();
        purposes.dedup();
        purposes
            .into_iter()
            .map(|p| {
                self.draft(
                    actor,
                    AuditAction::ConsentGpc,
                    Some(subject),
                    Some(p),
                    "withdrawn method=gpc".into(),
                )
            })
            .collect()
    }

    /// Applies a GPC signal for already-known subjects; returns how many subjects changed.
    pub(crate) async fn apply_gpc(&self, actor: &Actor, subjects: &[Pseudonym]) -> Result<usize> {
        let now = self.now();
        let current = self.store.consent_current(subjects).await?;
        let mut records = Vec::new();
        let mut drafts = Vec::new();
        let mut changed = 0;
        for subject in subjects {
            let rows: Vec<ConsentRow> = current
                .iter()
                .filter(|(s, _)| s == subject)
                .map(|(_, r)| r.clone())
                .collect();
            if rows.is_empty() {
                continue;
            }
            let new = self.gpc_records(*subject, &rows, now);
            if !new.is_empty() {
                changed += 1;
                drafts.extend(self.gpc_drafts(actor, *subject, &new));
                records.extend(new);
            }
        }
        if !records.is_empty() {
            self.store.record_consent(&records, &drafts, None).await?;
        }
        Ok(changed)
    }

    /// Records a consent change (and, with `gpc`, the GPC withdrawals, which win) and returns
    /// the new state.
    pub async fn set_consent(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        update: &ConsentUpdate,
        gpc: bool,
    ) -> Result<ConsentView> {
        Ok(self
            .set_consent_logged(actor, subject, update, gpc, None)
            .await?
            .0)
    }

    /// [`Engine::set_consent`], naming in each purpose's audit entry the receipt that will
    /// be issued for the change, so the receipt's inclusion in the log can be proven.
    pub(crate) async fn set_consent_logged(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        update: &ConsentUpdate,
        gpc: bool,
        receipt: Option<&str>,
    ) -> Result<(ConsentView, Option<crate::ConsentReceipt>)> {
        if matches!(
            update.method,
            ConsentMethod::Gpc | ConsentMethod::Objection | ConsentMethod::Tcf
        ) {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "the consent methods `gpc`, `objection` and `tcf` are recorded only from a Sec-GPC header, an objection or a TC string",
            ));
        }
        self.record_update(actor, subject, update, gpc, receipt)
            .await
    }

    /// Records the consents an IAB TCF v2.2 TC string expresses: a policy purpose is granted
    /// when every TCF purpose it maps to is allowed for this service's vendor id (purpose and
    /// vendor consent, no publisher restriction against it), and withdrawn otherwise.
    pub async fn set_consent_tcf(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        tc_string: &str,
        gpc: bool,
    ) -> Result<ConsentView> {
        let Some(vendor) = self.config.tcf_vendor_id else {
            return Err(EngineError::refused(
                ErrorCode::TcfNotConfigured,
                "set tcf.vendor_id to accept TC strings",
            ));
        };
        let tc = candor_domain::tcf::decode(tc_string)
            .map_err(|e| EngineError::refused(e.code(), e.to_string()))?;
        let purposes = self
            .policy
            .purposes
            .values()
            .filter(|p| !p.tcf_purposes.is_empty())
            .map(|p| {
                let granted = p.tcf_purposes.iter().all(|&t| tc.allows(vendor, t));
                (
                    p.name.clone(),
                    PurposeChoice {
                        granted,
                        categories: None,
                    },
                )
            })
            .collect();
        let update = ConsentUpdate {
            purposes,
            method: ConsentMethod::Tcf,
            recorded_at: None,
        };
        Ok(self
            .record_update(actor, subject, &update, gpc, None)
            .await?
            .0)
    }

    /// Records a consent change whose method has been checked by the caller; with a receipt
    /// id, also the signed receipt of the change, in the same transaction, and returns it.
    pub(crate) async fn record_update(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        update: &ConsentUpdate,
        gpc: bool,
        receipt: Option<&str>,
    ) -> Result<(ConsentView, Option<crate::ConsentReceipt>)> {
        if update.purposes.is_empty() && !gpc {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "name at least one purpose to change",
            ));
        }
        let real_now = self.now();
        let now = match update.recorded_at {
            None => real_now,
            Some(at) if update.method == ConsentMethod::Import && at <= real_now => at,
            Some(_) => {
                return Err(EngineError::refused(
                    ErrorCode::InvalidField,
                    "a consent time may be given only for imported records, and not in the future",
                ));
            }
        };
        let pseudonym = self.pseudonymize(subject);
        let mut records = Vec::new();
        let mut drafts = Vec::new();
        for (name, choice) in &update.purposes {
            let Some(purpose) = self.policy.purposes.get(name) else {
                return Err(EngineError::refused(
                    ErrorCode::UnknownPurpose,
                    format!("the policy has no purpose named `{name}`"),
                ));
            };
            if let Some(cats) = &choice.categories {
                if let Some(bad) = cats.iter().find(|c| !purpose.uses(c)) {
                    return Err(EngineError::refused(
                        ErrorCode::UnknownCategory,
                        format!("the purpose `{name}` does not use the category `{bad}`"),
                    ));
                }
                if choice.granted && cats.is_empty() {
                    return Err(EngineError::refused(
                        ErrorCode::InvalidField,
                        format!(
                            "a grant of `{name}` narrowed to no category grants nothing; withdraw it instead"
                        ),
                    ));
                }
            }
            let mut granted_cats = Vec::new();
            for category in &purpose.categories {
                let granted = choice.granted
                    && choice
                        .categories
                        .as_ref()
                        .is_none_or(|c| c.contains(category));
                if granted {
                    granted_cats.push(category.as_str());
                }
                records.push(self.consent_record(
                    pseudonym,
                    name,
                    category,
                    granted,
                    update.method,
                    now,
                ));
            }
            let detail = if choice.granted {
                format!(
                    "granted categories={} method={}",
                    granted_cats.join(","),
                    update.method.as_str()
                )
            } else {
                format!("withdrawn method={}", update.method.as_str())
            };
            let detail = match receipt {
                Some(id) => format!("{detail} receipt={id}"),
                None => detail,
            };
            drafts.push(self.draft(
                actor,
                AuditAction::ConsentUpdate,
                Some(pseudonym),
                Some(name),
                detail,
            ));
        }
        if gpc {
            let mut current = self
                .store
                .consent_current(&[pseudonym])
                .await?
                .into_iter()
                .map(|(_, r)| r)
                .collect::<Vec<_>>();
            // The update above is about to become current: GPC applies on top of it.
            apply_records(&mut current, &records);
            let gpc_records = self.gpc_records(pseudonym, &current, real_now);
            drafts.extend(self.gpc_drafts(actor, pseudonym, &gpc_records));
            records.extend(gpc_records);
        }
        // The receipt states the change's outcome: the newest record of each category it set.
        let receipt = receipt.map(|id| {
            let mut after: Vec<ConsentRow> = Vec::new();
            apply_records(&mut after, &records);
            self.build_receipt(subject, update, &self.view(&after, real_now), id.to_owned())
        });
        let stored = receipt.as_ref().map(|r| candor_store::ReceiptRecord {
            id: r.consent_receipt_id.clone(),
            subject: pseudonym,
            at: real_now,
            document: serde_json::to_string(r).unwrap_or_default(),
        });
        self.store
            .record_consent(&records, &drafts, stored.as_ref())
            .await?;
        let rows = self.current_rows(&pseudonym).await?;
        Ok((self.view(&rows, real_now), receipt))
    }

    async fn current_rows(&self, subject: &Pseudonym) -> Result<Vec<ConsentRow>> {
        Ok(self
            .store
            .consent_current(std::slice::from_ref(subject))
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Rows of a subject that must already be known (any consent record or data key).
    /// A subject's current consent rows; `unknown_subject` unless they have some consent
    /// record or a data key.
    pub(crate) async fn known_rows(&self, subject: &Pseudonym) -> Result<Vec<ConsentRow>> {
        let rows = self.current_rows(subject).await?;
        if rows.is_empty()
            && self
                .vault
                .subject_keys(std::slice::from_ref(subject))
                .await?
                .is_empty()
        {
            return Err(EngineError::refused(
                ErrorCode::UnknownSubject,
                "no data or consent is held for this subject",
            ));
        }
        Ok(rows)
    }

    /// Consent decisions over the last `days` days: per purpose, UTC day and direction, how
    /// many distinct subjects decided (exact: for admin and dpo).
    pub async fn consent_decisions(&self, days: u32) -> Result<Vec<crate::ConsentDecisions>> {
        let since = Timestamp(self.now().0 - days as i64 * candor_domain::timestamp::DAY_MS);
        Ok(self.store.consent_decisions(since).await?)
    }

    /// How many subjects hold a live grant of each purpose of the policy now (exact: for
    /// admin and dpo; every purpose is listed, with 0 where nobody granted it).
    pub async fn granted_counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut counts: BTreeMap<String, u64> = self
            .policy
            .purposes
            .keys()
            .map(|p| (p.clone(), 0))
            .collect();
        for (purpose, n) in self.store.granted_counts(self.now()).await? {
            if let Some(slot) = counts.get_mut(&purpose) {
                *slot = n;
            }
        }
        Ok(counts)
    }

    /// A subject's consent now (applying a GPC signal first, if sent).
    pub async fn consent(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        gpc: bool,
    ) -> Result<ConsentView> {
        let pseudonym = self.pseudonymize(subject);
        let mut rows = self.known_rows(&pseudonym).await?;
        if gpc && self.apply_gpc(actor, &[pseudonym]).await? > 0 {
            rows = self.current_rows(&pseudonym).await?;
        }
        let draft = self.draft(
            actor,
            AuditAction::ConsentRead,
            Some(pseudonym),
            None,
            "state".into(),
        );
        self.audit(vec![draft]).await?;
        Ok(self.view(&rows, self.now()))
    }

    /// A subject's whole consent history, oldest first (applying a GPC signal first, if sent).
    pub async fn consent_history(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        gpc: bool,
    ) -> Result<Vec<ConsentHistoryEntry>> {
        let pseudonym = self.pseudonymize(subject);
        self.known_rows(&pseudonym).await?;
        if gpc {
            self.apply_gpc(actor, &[pseudonym]).await?;
        }
        let history = self.store.consent_history(&pseudonym).await?;
        let draft = self.draft(
            actor,
            AuditAction::ConsentRead,
            Some(pseudonym),
            None,
            format!("history records={}", history.len()),
        );
        self.audit(vec![draft]).await?;
        Ok(history
            .into_iter()
            .map(|r| ConsentHistoryEntry {
                purpose: r.purpose,
                category: r.category,
                granted: r.granted,
                at: r.at.to_rfc3339(),
                expires_at: r.granted.then(|| r.expires_at.to_rfc3339()),
                policy_version: r.policy_version,
                method: r.method,
            })
            .collect())
    }

    fn view(&self, rows: &[ConsentRow], now: Timestamp) -> ConsentView {
        let mut purposes = BTreeMap::new();
        for purpose in self.policy.purposes.values() {
            let categories: Vec<CategoryConsent> = purpose
                .categories
                .iter()
                .map(|category| {
                    let row = rows
                        .iter()
                        .find(|r| r.purpose == purpose.name && &r.category == category);
                    CategoryConsent {
                        category: category.clone(),
                        state: row.map_or(ConsentState::None, |r| r.state(now)),
                        changed_at: row.map(|r| r.at.to_rfc3339()),
                        expires_at: row.filter(|r| r.granted).map(|r| r.expires_at.to_rfc3339()),
                        method: row.map(|r| r.method),
                    }
                })
                .collect();
            let state = [
                ConsentState::Granted,
                ConsentState::Expired,
                ConsentState::Withdrawn,
            ]
            .into_iter()
            .find(|s| categories.iter().any(|c| c.state == *s))
            .unwrap_or(ConsentState::None);
            purposes.insert(purpose.name.clone(), PurposeConsent { state, categories });
        }
        ConsentView {
            policy_version: self.policy.version.clone(),
            purposes,
        }
    }
}
