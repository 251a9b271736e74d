//! Consent receipts after the Kantara Initiative Consent Receipt Specification v1.1: every
//! consent change gets a receipt, signed with the server's Ed25519 key, that the subject can
//! keep and anyone can verify offline against `GET /v1/keys/receipts`.

use candor_domain::SubjectId;
use serde::{Deserialize, Serialize};

use crate::consent::{ConsentUpdate, ConsentView};
use crate::signing::{SignedDocument, hex, sign};
use crate::{Actor, Engine, Result};

/// The receipt format's version string.
pub const RECEIPT_VERSION: &str = "KI-CR-v1.1.0";

/// The controller block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptController {
    /// Controller name.
    pub pii_controller: String,
    /// Contact.
    pub contact: String,
    /// Whether it acts on behalf of another.
    pub on_behalf: bool,
}

/// One purpose of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptPurpose {
    /// The purpose's name.
    pub purpose: String,
    /// Its description.
    pub purpose_category: Vec<String>,
    /// `EXPLICIT` (opt-in).
    pub consent_type: String,
    /// Data categories covered.
    pub pii_category: Vec<String>,
    /// Whether it is the service's primary purpose.
    pub primary_purpose: bool,
    /// When the consent ends: the expiry of a grant, or `withdrawn`.
    pub termination: String,
    /// Whether data is disclosed to third parties.
    pub third_party_disclosure: bool,
    /// The third parties.
    pub third_party_name: Vec<String>,
    /// Granted (`true`) or withdrawn (`false`) by this change.
    pub granted: bool,
}

/// A service and its purposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptService {
    /// Service name.
    pub service: String,
    /// Purposes changed.
    pub purposes: Vec<ReceiptPurpose>,
}

/// A signed consent receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentReceipt {
    /// `KI-CR-v1.1.0`.
    pub version: String,
    /// Jurisdiction of the controller.
    pub jurisdiction: String,
    /// Seconds since the epoch.
    pub consent_timestamp: i64,
    /// How consent was collected (`api`, `banner`, ...).
    pub collection_method: String,
    /// Random receipt id.
    pub consent_receipt_id: String,
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    /// Language.
    pub language: String,
    /// The pseudonymous principal id (never the raw id).
    pub pii_principal_id: String,
    /// Controllers.
    pub pii_controllers: Vec<ReceiptController>,
    /// The privacy policy's URL.
    pub policy_url: String,
    /// Services and purposes.
    pub services: Vec<ReceiptService>,
    /// Whether sensitive categories are involved.
    pub sensitive: bool,
    /// Sensitive categories involved.
    pub spi_cat: Vec<String>,
    /// Hex signature over the receipt with this field empty.
    pub signature: String,
}

impl SignedDocument for ConsentReceipt {
    fn signature_mut(&mut self) -> &mut String {
        &mut self.signature
    }
    fn public_key(&self) -> &str {
        &self.public_key
    }
}

impl Engine {
    /// Records a consent change and returns the new state with a signed receipt, stored with
    /// the change (see [`Engine::consent_receipts`]).
    pub async fn set_consent_with_receipt(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        update: &ConsentUpdate,
        gpc: bool,
    ) -> Result<(ConsentView, ConsentReceipt)> {
        let receipt_id = crate::signing::random_id(16);
        let (view, receipt) = self
            .set_consent_logged(actor, subject, update, gpc, Some(&receipt_id))
            .await?;
        let receipt = receipt.ok_or_else(|| {
            crate::EngineError::Setup("a consent change asked for a receipt and got none".into())
        })?;
        Ok((view, receipt))
    }

    /// Every receipt stored for a subject, newest first (audited as a consent read).
    pub async fn consent_receipts(
        &self,
        actor: &Actor,
        subject: &SubjectId,
    ) -> Result<Vec<ConsentReceipt>> {
        let pseudonym = self.pseudonymize(subject);
        let stored = self.store.consent_receipts(&pseudonym).await?;
        let draft = self.draft(
            actor,
            candor_domain::AuditAction::ConsentRead,
            Some(pseudonym),
            None,
            format!("receipts={}", stored.len()),
        );
        self.audit(vec![draft]).await?;
        stored
            .iter()
            .map(|r| {
                serde_json::from_str(&r.document).map_err(|_| {
                    crate::EngineError::Store(candor_store::StoreError::Corrupt("consent_receipts"))
                })
            })
            .collect()
    }

    /// The signed receipt of a change whose outcome for the purposes it names is `after`.
    pub(crate) fn build_receipt(
        &self,
        subject: &SubjectId,
        update: &ConsentUpdate,
        after: &ConsentView,
        receipt_id: String,
    ) -> ConsentReceipt {
        let view = after;
        let now = self.now();
        let purposes = update
            .purposes
            .keys()
            .filter_map(|name| {
                let p = self.policy.purposes.get(name)?;
                let state = view.purposes.get(name)?;
                let granted = state.state == candor_domain::ConsentState::Granted;
                let live: Vec<String> = state
                    .categories
                    .iter()
                    .filter(|c| c.state == candor_domain::ConsentState::Granted)
                    .map(|c| c.category.clone())
                    .collect();
                let termination = state
                    .categories
                    .iter()
                    .find_map(|c| c.expires_at.clone())
                    .filter(|_| granted)
                    .unwrap_or_else(|| "withdrawn".into());
                Some(ReceiptPurpose {
                    purpose: p.name.clone(),
                    purpose_category: vec![p.description.clone()],
                    consent_type: "EXPLICIT".into(),
                    pii_category: if granted { live } else { p.categories.clone() },
                    primary_purpose: p.name == crate::recommend::PERSONALIZATION,
                    termination,
                    third_party_disclosure: !p.recipients.is_empty(),
                    third_party_name: p.recipients.clone(),
                    granted,
                })
            })
            .collect();
        let spi_cat: Vec<String> = update
            .purposes
            .keys()
            .filter_map(|name| self.policy.purposes.get(name))
            .flat_map(|p| p.categories.iter())
            .filter(|c| {
                self.policy
                    .categories
                    .get(*c)
                    .is_some_and(|c| c.sensitivity == candor_domain::policy::Sensitivity::Special)
            })
            .cloned()
            .collect();
        let controller = &self.policy.controller;
        let mut receipt = ConsentReceipt {
            version: RECEIPT_VERSION.into(),
            jurisdiction: "EU (GDPR); US-CA (CCPA)".into(),
            consent_timestamp: now.0 / 1000,
            collection_method: update.method.as_str().into(),
            consent_receipt_id: receipt_id,
            public_key: hex(&self.keys.verifying_key()),
            language: "en".into(),
            pii_principal_id: self.pseudonymize(subject).to_hex(),
            pii_controllers: vec![ReceiptController {
                pii_controller: controller.name.clone(),
                contact: controller.contact.clone(),
                on_behalf: false,
            }],
            policy_url: controller.policy_url.clone().unwrap_or_default(),
            services: vec![ReceiptService {
                service: format!("{} personalization", controller.name),
                purposes,
            }],
            sensitive: !spi_cat.is_empty(),
            spi_cat,
            signature: String::new(),
        };
        sign(&self.keys, &mut receipt);
        receipt
    }
}
