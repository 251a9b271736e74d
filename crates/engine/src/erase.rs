//! Erasure (GDPR Art. 17, CCPA delete) by crypto-shredding: the subject's data key, events,
//! consent records and cached key go in one transaction, the database's deleted bytes are
//! purged, the item model is retrained without them, and a signed certificate says what was
//! erased and when the model forgot them. The certificate holds no personal data.

use candor_domain::ErrorCode;
use candor_domain::{AuditAction, SubjectId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::signing::{SignedDocument, hex, random_id, sign};
use crate::{Actor, Engine, EngineError, Result};

/// A signed record of an erasure. It names no subject: the requester keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureCertificate {
    /// Format version.
    pub version: u32,
    /// Random identifier of this certificate.
    pub certificate_id: String,
    /// The controller.
    pub controller: String,
    /// When the data was erased (RFC 3339).
    pub erased_at: String,
    /// Events deleted (their ciphertext is unreadable without the destroyed key anyway).
    pub events_deleted: u64,
    /// Consent records deleted.
    pub consent_records_deleted: u64,
    /// Whether the subject's data key was destroyed.
    pub data_key_destroyed: bool,
    /// The item model version trained without the subject, if retrained at once.
    pub model_retrained_version: Option<i64>,
    /// When the item model has forgotten the subject (RFC 3339): now if retrained at once,
    /// else the next scheduled training.
    pub model_forgets_by: String,
    /// Hex Ed25519 public key that signed this certificate.
    pub public_key: String,
    /// Hex Ed25519 signature over the certificate with this field empty.
    pub signature: String,
}

impl SignedDocument for ErasureCertificate {
    fn signature_mut(&mut self) -> &mut String {
        &mut self.signature
    }
    fn public_key(&self) -> &str {
        &self.public_key
    }
}

impl Engine {
    /// Erases a subject. refused with `nothing_held` when nothing is held: never known, or
    /// already erased (erasure is idempotent).
    pub async fn erase(&self, actor: &Actor, subject: &SubjectId) -> Result<ErasureCertificate> {
        let retrain_every_secs = self.config.train_interval_secs;
        let pseudonym = self.pseudonymize(subject);
        // The erasure's own audit entry names the certificate, not the subject: it holds no
        // personal data, yet the certificate the subject keeps proves it.
        let certificate_id = random_id(16);
        let audit = |n: u64| {
            self.draft(
                actor,
                AuditAction::SubjectErase,
                None,
                None,
                format!("certificate={certificate_id} rows={n}"),
            )
        };
        let erased = self.store.erase_subject(&pseudonym, &audit).await?;
        self.key_cache.lock().remove(&pseudonym);
        if erased.total() == 0 {
            return Err(EngineError::refused(
                ErrorCode::NothingHeld,
                "nothing is held for this subject: it was never known, or it is already erased",
            ));
        }
        let now = self.now();
        // Retraining is cheap at the scales a single server holds: forget them at once. If it
        // cannot run (nothing left to train on), the next scheduled training will.
        let model_in_use = self.model_card().is_ok();
        // If the model's privacy budget is spent, the next release waits for its refill.
        let mut budget_refill = None;
        let retrained = if model_in_use && erased.events > 0 {
            match self.train(actor).await {
                Ok(card) => Some(card.version),
                Err(EngineError::Refused {
                    code: ErrorCode::NoTrainingData,
                    ..
                }) => None,
                Err(EngineError::Refused {
                    code: ErrorCode::BudgetExhausted,
                    ..
                }) => {
                    budget_refill = self.model_releases_refill().await?;
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let next_training = Timestamp(now.0 + retrain_every_secs as i64 * 1000);
        let forgets_by = match retrained {
            Some(_) => now,
            None if !model_in_use || erased.events == 0 => now,
            None => budget_refill.map_or(next_training, |r| Timestamp(r.0.max(next_training.0))),
        };
        let mut certificate = ErasureCertificate {
            version: 1,
            certificate_id,
            controller: self.policy.controller.name.clone(),
            erased_at: now.to_rfc3339(),
            events_deleted: erased.events,
            consent_records_deleted: erased.consent_records,
            data_key_destroyed: erased.keys > 0,
            model_retrained_version: retrained,
            model_forgets_by: forgets_by.to_rfc3339(),
            public_key: hex(&self.keys.verifying_key()),
            signature: String::new(),
        };
        sign(&self.keys, &mut certificate);
        Ok(certificate)
    }
}
