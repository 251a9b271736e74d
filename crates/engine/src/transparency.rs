//! Transparency generated from the policy: the Art. 13 privacy notice, the Art. 30 record of
//! processing, and a subject's own transparency report (what is held per category, why, for
//! whom, until when). Nothing here is written by hand apart from the fixed security measures.

use std::collections::BTreeMap;

use candor_domain::policy::{Controller, LegalBasis, Sensitivity};
use candor_domain::{AuditAction, SubjectId};
use serde::Serialize;

use crate::{Actor, Engine, Result};

/// A data category as the notice describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticeCategory {
    /// Name.
    pub name: String,
    /// What it holds.
    pub description: String,
    /// Sensitivity.
    pub sensitivity: Sensitivity,
}

/// A purpose as the notice describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticePurpose {
    /// Name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Legal basis.
    pub legal_basis: LegalBasis,
    /// Categories used.
    pub categories: Vec<NoticeCategory>,
    /// Retention in days.
    pub retention_days: u32,
    /// Consent lasts this long before it must be renewed.
    pub consent_renewal_days: u32,
    /// Recipients.
    pub recipients: Vec<String>,
    /// Whether a Global Privacy Control signal opts out of it.
    pub gpc_opt_out: bool,
}

/// A right and how to exercise it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoticeRight {
    /// The right.
    pub right: &'static str,
    /// The article or section.
    pub basis: &'static str,
    /// How.
    pub how: &'static str,
}

/// The Art. 13 privacy notice.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrivacyNotice {
    /// Policy version (the notice's version).
    pub version: String,
    /// The controller.
    pub controller: Controller,
    /// Purposes.
    pub purposes: Vec<NoticePurpose>,
    /// Consent.
    pub consent: &'static str,
    /// The rights.
    pub rights: Vec<NoticeRight>,
    /// The logic of profiling.
    pub profiling_logic: String,
}

/// One activity of the Art. 30 record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessingActivity {
    /// The purpose.
    pub purpose: String,
    /// What it is for.
    pub description: String,
    /// Legal basis.
    pub legal_basis: LegalBasis,
    /// Categories of data subjects.
    pub data_subjects: &'static str,
    /// Categories of personal data.
    pub data_categories: Vec<String>,
    /// Recipients.
    pub recipients: Vec<String>,
    /// Transfers to third countries.
    pub third_country_transfers: &'static str,
    /// Erasure time limit in days.
    pub retention_days: u32,
}

/// The GDPR Art. 30 record of processing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessingRecord {
    /// The controller.
    pub controller: Controller,
    /// Policy version it was generated from.
    pub policy_version: String,
    /// When it was generated.
    pub generated_at: String,
    /// One activity per purpose.
    pub activities: Vec<ProcessingActivity>,
    /// Technical and organisational security measures (Art. 32).
    pub security_measures: Vec<&'static str>,
}

/// A category as held for one subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeldCategory {
    /// Events held.
    pub events: usize,
    /// Purposes using it, with their consent state now and recipients.
    pub purposes: Vec<HeldPurpose>,
    /// Kept for this many days after each event.
    pub retention_days: u32,
    /// When the oldest event of this category will be deleted (RFC 3339).
    pub oldest_deleted_by: Option<String>,
}

/// A purpose for one subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeldPurpose {
    /// The purpose.
    pub purpose: String,
    /// Consent now for this category: granted, withdrawn, expired or none.
    pub consent: candor_domain::ConsentState,
    /// When the grant lapses, if granted.
    pub consent_expires_at: Option<String>,
    /// Recipients.
    pub recipients: Vec<String>,
}

/// A subject's transparency report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransparencyReport {
    /// When generated.
    pub generated_at: String,
    /// By category.
    pub categories: BTreeMap<String, HeldCategory>,
    /// Whether processing is restricted (Art. 18).
    pub restricted: bool,
}

const RIGHTS: [NoticeRight; 7] = [
    NoticeRight {
        right: "access and portability",
        basis: "GDPR Art. 15, 20; CCPA right to know",
        how: "GET /v1/subjects/{id}/export",
    },
    NoticeRight {
        right: "erasure",
        basis: "GDPR Art. 17; CCPA right to delete",
        how: "DELETE /v1/subjects/{id}",
    },
    NoticeRight {
        right: "rectification",
        basis: "GDPR Art. 16",
        how: "DELETE /v1/subjects/{id}/events/{event}, then send the corrected event",
    },
    NoticeRight {
        right: "restriction",
        basis: "GDPR Art. 18",
        how: "PUT /v1/subjects/{id}/restriction",
    },
    NoticeRight {
        right: "objection to profiling",
        basis: "GDPR Art. 21",
        how: "POST /v1/subjects/{id}/objection",
    },
    NoticeRight {
        right: "withdraw consent at any time",
        basis: "GDPR Art. 7(3)",
        how: "PUT /v1/subjects/{id}/consent",
    },
    NoticeRight {
        right: "opt out of sale and sharing",
        basis: "CCPA; Global Privacy Control",
        how: "send Sec-GPC: 1, or withdraw the sharing purposes",
    },
];

impl Engine {
    /// The Art. 13 notice, generated from the policy.
    pub fn privacy_notice(&self) -> PrivacyNotice {
        let purposes = self
            .policy
            .purposes
            .values()
            .map(|p| NoticePurpose {
                name: p.name.clone(),
                description: p.description.clone(),
                legal_basis: p.legal_basis,
                categories: p
                    .categories
                    .iter()
                    .map(|c| {
                        let cat = &self.policy.categories[c];
                        NoticeCategory {
                            name: cat.name.clone(),
                            description: cat.description.clone(),
                            sensitivity: cat.sensitivity,
                        }
                    })
                    .collect(),
                retention_days: p.retention_days,
                consent_renewal_days: p.consent_renewal_days,
                recipients: p.recipients.clone(),
                gpc_opt_out: p.gpc_opt_out,
            })
            .collect();
        let model = self.model_card().ok().map_or_else(
            || "no model is trained yet".to_string(),
            |c| {
                format!(
                    "model version {} ({}), trained {} on {} consented events",
                    c.version, c.algorithm, c.trained_at, c.events
                )
            },
        );
        PrivacyNotice {
            version: self.policy.version.clone(),
            controller: self.policy.controller.clone(),
            purposes,
            consent: "Every purpose is opt-in: nothing is stored or used for a purpose you have not consented to, and each consent lapses after its renewal period.",
            rights: RIGHTS.to_vec(),
            profiling_logic: format!(
                "With your consent to personalize.content.profiling, items are scored from your own recent history against an item-to-item model learned from everyone's consented history; each recommendation names the items of yours that led to it. Without that consent, recommendations use only the page you are on and overall popularity. Current model: {model}."
            ),
        }
    }

    /// The Art. 30 record of processing, generated from the policy.
    pub fn processing_record(&self) -> ProcessingRecord {
        ProcessingRecord {
            controller: self.policy.controller.clone(),
            policy_version: self.policy.version.clone(),
            generated_at: self.now().to_rfc3339(),
            activities: self
                .policy
                .purposes
                .values()
                .map(|p| ProcessingActivity {
                    purpose: p.name.clone(),
                    description: p.description.clone(),
                    legal_basis: p.legal_basis,
                    data_subjects: "customers and visitors of the controller's services",
                    data_categories: p.categories.clone(),
                    recipients: p.recipients.clone(),
                    third_country_transfers: "none declared in the policy",
                    retention_days: p.retention_days,
                })
                .collect(),
            security_measures: vec![
                "identifiers pseudonymized with HMAC-SHA256 under a server secret before storage",
                "event payloads encrypted with XChaCha20-Poly1305 under a key per person, wrapped by a master key",
                "erasure by destroying the person's key, deleting their rows and purging deleted bytes",
                "every access and consent change in a hash-chained, MAC'd audit log with an Ed25519-signed head",
                "role-based API keys stored as hashes and compared in constant time",
                "opt-in, purpose-bound reads: data is returned only for purposes consented to now",
            ],
        }
    }

    /// What is held about a subject, why, for whom and until when. Audited.
    pub async fn transparency(
        &self,
        actor: &Actor,
        subject: &SubjectId,
    ) -> Result<TransparencyReport> {
        let pseudonym = self.pseudonymize(subject);
        let view = self.consent(actor, subject, false).await?;
        let rows = self.store.subject_events(&pseudonym).await?;
        let restricted = !self.store.restricted(&[pseudonym]).await?.is_empty();
        let mut categories: BTreeMap<String, HeldCategory> = BTreeMap::new();
        for row in &rows {
            let retention = self.policy.retention_days(&row.category);
            let entry = categories
                .entry(row.category.clone())
                .or_insert_with(|| HeldCategory {
                    events: 0,
                    purposes: self
                        .policy
                        .purposes_using(&row.category)
                        .map(|p| {
                            let state = view.purposes.get(&p.name).and_then(|pc| {
                                pc.categories.iter().find(|c| c.category == row.category)
                            });
                            HeldPurpose {
                                purpose: p.name.clone(),
                                consent: state
                                    .map_or(candor_domain::ConsentState::None, |c| c.state),
                                consent_expires_at: state.and_then(|c| c.expires_at.clone()),
                                recipients: p.recipients.clone(),
                            }
                        })
                        .collect(),
                    retention_days: retention,
                    oldest_deleted_by: None,
                });
            entry.events += 1;
            let deleted_by = row.expires_at.to_rfc3339();
            if entry
                .oldest_deleted_by
                .as_ref()
                .is_none_or(|d| &deleted_by < d)
            {
                entry.oldest_deleted_by = Some(deleted_by);
            }
        }
        let draft = self.draft(
            actor,
            AuditAction::ConsentRead,
            Some(pseudonym),
            None,
            format!("transparency categories={}", categories.len()),
        );
        self.audit(vec![draft]).await?;
        Ok(TransparencyReport {
            generated_at: self.now().to_rfc3339(),
            categories,
            restricted,
        })
    }
}
