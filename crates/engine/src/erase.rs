//! Erasure (GDPR Art. 17, CCPA delete) by crypto-shredding: the subject's data key, events,
//! consent records and cached key go in one transaction, the database's deleted bytes are
//! purged, the item model is retrained without them, and a signed certificate says what was
//! erased and when the model forgot them. The certificate holds no personal data.

use std::sync::Arc;
use std::time::Duration;

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
    /// What became of retraining the item model without the subject.
    pub model_retraining: ModelRetraining,
    /// The item model version trained without the subject, if it finished while the
    /// erasure waited for it.
    pub model_retrained_version: Option<i64>,
    /// When the item model will have forgotten the subject (RFC 3339): now if it was
    /// retrained or never learned from them, else the next scheduled training (or the
    /// budget's refill). `None` when nothing is scheduled: an operator must run a training.
    pub model_forgets_by: Option<String>,
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

/// What became of retraining the item model after an erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModelRetraining {
    /// Retrained without the subject; `model_retrained_version` names the version.
    Retrained,
    /// Still training in the background when the certificate was signed.
    InProgress,
    /// The retraining failed; the next scheduled training forgets the subject.
    Failed,
    /// The model's privacy budget is spent; the next release after its refill forgets them.
    BudgetExhausted,
    /// No consented events were left to train on, so the model was withdrawn: the
    /// contextual ranking serves until the next training.
    Withdrawn,
    /// No model had learned from the subject's events.
    NotNeeded,
}

/// How long an erasure waits for its retraining before signing the certificate with the
/// retraining still in progress.
const RETRAIN_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// Retrains without an erased subject in a task of its own, waiting up to
    /// [`RETRAIN_WAIT`] for it; a training that takes longer goes on in the background.
    async fn retrain_after_erasure(
        self: &Arc<Self>,
        actor: &Actor,
    ) -> (ModelRetraining, Option<i64>) {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let engine = Arc::clone(self);
        let actor = actor.clone();
        tokio::spawn(async move {
            let result = engine.forget_in_models(&actor).await;
            if let Err(error) = &result {
                tracing::warn!(%error, "retraining after an erasure failed");
            }
            // The erasure may have stopped waiting; the model is served either way.
            let _ = done.send(result);
        });
        match tokio::time::timeout(RETRAIN_WAIT, outcome).await {
            Err(_) => (ModelRetraining::InProgress, None),
            Ok(Ok(Ok(Some(version)))) => (ModelRetraining::Retrained, Some(version)),
            Ok(Ok(Ok(None))) => (ModelRetraining::Withdrawn, None),
            Ok(Ok(Err(EngineError::Refused {
                code: ErrorCode::BudgetExhausted,
                ..
            }))) => (ModelRetraining::BudgetExhausted, None),
            // A failed or panicked training: the scheduled training is the backstop.
            Ok(Ok(Err(_)) | Err(_)) => (ModelRetraining::Failed, None),
        }
    }

    /// Trains without the erased subject and deletes every older stored model, or, when no
    /// consented events are left to train on, withdraws the model altogether (`None`): a
    /// model that learned from them must not go on serving.
    async fn forget_in_models(&self, actor: &Actor) -> Result<Option<i64>> {
        match self.train(actor).await {
            Ok(card) => {
                self.store.delete_models_below(card.version).await?;
                Ok(Some(card.version))
            }
            Err(EngineError::Refused {
                code: ErrorCode::NoTrainingData,
                ..
            }) => {
                self.store.delete_models_below(i64::MAX).await?;
                *self.serving.write() = None;
                tracing::info!("withdrew the item model: no consented events are left");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Erases a subject. refused with `nothing_held` when nothing is held: never known, or
    /// already erased (erasure is idempotent).
    /// The erasure is committed before the model is retrained, so nothing the retraining
    /// does (fail, run long, panic) can take the certificate away: it says what happened.
    pub async fn erase(
        self: &Arc<Self>,
        actor: &Actor,
        subject: &SubjectId,
    ) -> Result<ErasureCertificate> {
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
        // The key goes first: once it is gone the data is unreadable, wherever it is.
        let vault_keys = if Arc::ptr_eq(&self.vault, &self.store) {
            0
        } else {
            self.vault.delete_subject_key(&pseudonym).await?
        };
        self.key_cache.lock().remove(&pseudonym);
        let audit = |n: u64| audit(n + vault_keys);
        let mut erased = self.store.erase_subject(&pseudonym, &audit).await?;
        // The erasure deleted the subject's sessions too; this server forgets them at once.
        self.forget_sessions(&pseudonym);
        erased.keys += vault_keys;
        if erased.total() == 0 {
            return Err(EngineError::refused(
                ErrorCode::NothingHeld,
                "nothing is held for this subject: it was never known, or it is already erased",
            ));
        }
        let now = self.now();
        let model_in_use = self.model_card().is_ok();
        let (retraining, retrained) = if model_in_use && erased.events > 0 {
            self.retrain_after_erasure(actor).await
        } else {
            (ModelRetraining::NotNeeded, None)
        };
        let next_training =
            (retrain_every_secs > 0).then(|| Timestamp(now.0 + retrain_every_secs as i64 * 1000));
        let forgets_by = match retraining {
            ModelRetraining::Retrained
            | ModelRetraining::Withdrawn
            | ModelRetraining::NotNeeded => Some(now),
            ModelRetraining::InProgress | ModelRetraining::Failed => next_training,
            // If the model's privacy budget is spent, the next release waits for its refill.
            ModelRetraining::BudgetExhausted => match self.model_releases_refill().await {
                Ok(Some(refill)) => next_training.map(|t| Timestamp(t.0.max(refill.0))),
                Ok(None) => next_training,
                Err(error) => {
                    tracing::warn!(%error, "could not read when the model budget refills");
                    next_training
                }
            },
        };
        let mut certificate = ErasureCertificate {
            version: 1,
            certificate_id,
            controller: self.policy.controller.name.clone(),
            erased_at: now.to_rfc3339(),
            events_deleted: erased.events,
            consent_records_deleted: erased.consent_records,
            data_key_destroyed: erased.keys > 0,
            model_retraining: retraining,
            model_retrained_version: retrained,
            model_forgets_by: forgets_by.map(|t| t.to_rfc3339()),
            public_key: hex(&self.keys.verifying_key()),
            signature: String::new(),
        };
        sign(&self.keys, &mut certificate);
        Ok(certificate)
    }
}
