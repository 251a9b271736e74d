//! The right of access and portability (GDPR Art. 15 and 20, CCPA right to know): everything
//! held about a subject, decrypted for them, with what it is used for, by whom, for how long,
//! where it came from, and how the recommender uses it. Audited.

use std::collections::BTreeMap;

use candor_domain::{AuditAction, EventPayload, SubjectId};
use serde::Serialize;

use crate::consent::{ConsentHistoryEntry, ConsentView};
use crate::model::ModelCardView;
use crate::recommend::{RecommendRequest, Recommendations};
use crate::{Actor, Engine, EngineError, Result};

/// The export's schema identifier; bump it when the shape changes.
pub const EXPORT_SCHEMA: &str = "candor.export/1";

/// One exported event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportedEvent {
    /// The event's id, for rectification (`DELETE /v1/subjects/{id}/events/{event}`).
    pub id: i64,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Item id.
    pub item: String,
    /// Value, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Context values.
    pub context: BTreeMap<String, String>,
    /// Data category.
    pub category: String,
}

/// How one held data category is processed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryUse {
    /// Events held in this category.
    pub events: usize,
    /// Purposes that use it: name, legal basis, recipients, retention in days.
    pub purposes: Vec<PurposeUse>,
    /// How long events of this category are kept, in days.
    pub retention_days: u32,
}

/// One purpose that uses a category.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurposeUse {
    /// The purpose.
    pub purpose: String,
    /// What it is for.
    pub description: String,
    /// Its legal basis.
    pub legal_basis: candor_domain::policy::LegalBasis,
    /// Who receives data processed for it.
    pub recipients: Vec<String>,
    /// Retention in days.
    pub retention_days: u32,
}

/// Everything held about a subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectExport {
    /// Schema identifier.
    #[cfg_attr(feature = "openapi", schema(example = "candor.export/1"))]
    pub schema: &'static str,
    /// When this export was made.
    pub generated_at: String,
    /// The controller.
    pub controller: candor_domain::policy::Controller,
    /// The policy version in force.
    pub policy_version: String,
    /// Where the data came from.
    pub source: String,
    /// Every stored event.
    pub events: Vec<ExportedEvent>,
    /// Consent now.
    pub consent: ConsentView,
    /// Every consent change.
    pub consent_history: Vec<ConsentHistoryEntry>,
    /// Per held category: counts, purposes, recipients, retention.
    pub processing: BTreeMap<String, CategoryUse>,
    /// The recommender's logic: the model card, if a model is trained, without the exact
    /// training statistics of other people's data.
    pub recommender_model: Option<ModelCardView>,
    /// The subject's current recommendations and their explanations, if a model is trained.
    pub current_recommendations: Option<Recommendations>,
}

impl Engine {
    /// Exports everything held about a subject, to them. Audited.
    pub async fn export(&self, actor: &Actor, subject: &SubjectId) -> Result<SubjectExport> {
        let pseudonym = self.pseudonymize(subject);
        let rows = self.store.subject_events(&pseudonym).await?;
        let consent = self.consent(actor, subject, false).await?;
        let consent_history = self.consent_history(actor, subject, false).await?;
        // An export reads the key store afresh: another server may have replaced the key.
        let key = self.reload_data_key(&pseudonym).await?;
        let mut events = Vec::with_capacity(rows.len());
        // Without a key the rows were crypto-shredded (an erasure, then a restored backup):
        // nothing readable is held, so nothing is exported.
        for row in rows.iter().filter(|_| key.is_some()) {
            let key = key.as_ref().ok_or(EngineError::Crypto)?;
            let plaintext = key
                .open(&row.payload, &pseudonym.0)
                .map_err(|_| EngineError::Crypto)?;
            let payload: EventPayload =
                serde_json::from_slice(&plaintext).map_err(|_| EngineError::Crypto)?;
            events.push(ExportedEvent {
                id: row.id,
                timestamp: row.occurred_at.to_rfc3339(),
                event_type: payload.event_type,
                item: payload.item,
                value: payload.value,
                context: payload.context,
                category: row.category.clone(),
            });
        }
        let mut processing: BTreeMap<String, CategoryUse> = BTreeMap::new();
        for e in &events {
            let entry = processing
                .entry(e.category.clone())
                .or_insert_with(|| CategoryUse {
                    events: 0,
                    purposes: self
                        .policy
                        .purposes_using(&e.category)
                        .map(|p| PurposeUse {
                            purpose: p.name.clone(),
                            description: p.description.clone(),
                            legal_basis: p.legal_basis,
                            recipients: p.recipients.clone(),
                            retention_days: p.retention_days,
                        })
                        .collect(),
                    retention_days: self.policy.retention_days(&e.category),
                });
            entry.events += 1;
        }
        let current_recommendations = match self.model_card() {
            Ok(_) => Some(
                self.recommend(
                    actor,
                    subject,
                    &RecommendRequest {
                        n: 10,
                        ..Default::default()
                    },
                    false,
                )
                .await?,
            ),
            Err(_) => None,
        };
        let draft = self.draft(
            actor,
            AuditAction::SubjectExport,
            Some(pseudonym),
            None,
            format!("events={}", events.len()),
        );
        self.audit(vec![draft]).await?;
        Ok(SubjectExport {
            schema: EXPORT_SCHEMA,
            generated_at: self.now().to_rfc3339(),
            controller: self.policy.controller.clone(),
            policy_version: self.policy.version.clone(),
            source: format!(
                "collected from your use of {}'s services (first-party data)",
                self.policy.controller.name
            ),
            events,
            consent,
            consent_history,
            processing,
            recommender_model: self.model_card().ok().map(|card| card.view(false)),
            current_recommendations,
        })
    }
}
