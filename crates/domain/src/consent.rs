//! Consent rules: how a subject's consent records become a state per purpose. Consent is
//! opt-in (no record means no consent), per purpose and optionally per category, and a grant
//! lapses after its purpose's renewal period.

use crate::ids::Pseudonym;
use crate::timestamp::Timestamp;

crate::named_enum! {
    /// How a consent change was collected.
    pub enum ConsentMethod {
        /// Through the API on the subject's behalf.
        Api = "api",
        /// A consent banner or privacy center.
        Banner = "banner",
        /// A form (web or paper).
        Form = "form",
        /// Imported from an earlier system.
        Import = "import",
        /// A Global Privacy Control signal (`Sec-GPC: 1`).
        Gpc = "gpc",
        /// An IAB TCF consent string.
        Tcf = "tcf",
        /// An objection to profiling or direct marketing (GDPR Art. 21).
        Objection = "objection",
    }
}

/// One immutable consent change for one subject, purpose and category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Whose consent.
    pub subject: Pseudonym,
    /// The purpose.
    pub purpose: String,
    /// The data category the change applies to.
    pub category: String,
    /// Granted (`true`) or withdrawn (`false`).
    pub granted: bool,
    /// When the change was made.
    pub at: Timestamp,
    /// When a grant lapses (equal to `at` for a withdrawal).
    pub expires_at: Timestamp,
    /// The policy version in force.
    pub policy_version: String,
    /// How it was collected.
    pub method: ConsentMethod,
}

impl ConsentRecord {
    /// The bytes a consent-history row's leaf covers: its id and every field,
    /// length-prefixed so that no two rows share an encoding.
    pub fn canonical_bytes(&self, id: i64) -> Vec<u8> {
        let mut out = b"candor-consent-v1".to_vec();
        out.extend_from_slice(&id.to_be_bytes());
        for field in [
            &self.subject.0[..],
            self.purpose.as_bytes(),
            self.category.as_bytes(),
            self.policy_version.as_bytes(),
            self.method.as_str().as_bytes(),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.push(self.granted as u8);
        out.extend_from_slice(&self.at.0.to_be_bytes());
        out.extend_from_slice(&self.expires_at.0.to_be_bytes());
        out
    }
}

/// The current consent of one subject for one purpose and category (the latest record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    /// The purpose.
    pub purpose: String,
    /// The category.
    pub category: String,
    /// Whether the latest record is a grant.
    pub granted: bool,
    /// When the latest record was made.
    pub at: Timestamp,
    /// When the grant lapses.
    pub expires_at: Timestamp,
    /// How the latest record was collected.
    pub method: ConsentMethod,
}

crate::named_enum! {
    /// The state of a consent at a given time.
    pub enum ConsentState {
        /// Granted and not lapsed.
        Granted = "granted",
        /// Withdrawn.
        Withdrawn = "withdrawn",
        /// Granted once, but the renewal period has passed.
        Expired = "expired",
        /// Never given (opt-in: this is no consent).
        None = "none",
    }
}

impl ConsentRow {
    /// This row's state at `now`.
    pub fn state(&self, now: Timestamp) -> ConsentState {
        match (self.granted, self.expires_at > now) {
            (true, true) => ConsentState::Granted,
            (true, false) => ConsentState::Expired,
            (false, _) => ConsentState::Withdrawn,
        }
    }
    /// Whether this row is a live grant at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.state(now) == ConsentState::Granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_grant_and_expiry() {
        let row = |granted, expires_at| ConsentRow {
            purpose: "p".into(),
            category: "c".into(),
            granted,
            at: Timestamp(0),
            expires_at: Timestamp(expires_at),
            method: ConsentMethod::Api,
        };
        assert_eq!(row(true, 10).state(Timestamp(5)), ConsentState::Granted);
        assert_eq!(row(true, 10).state(Timestamp(10)), ConsentState::Expired);
        assert_eq!(row(false, 10).state(Timestamp(5)), ConsentState::Withdrawn);
        for m in ["api", "banner", "form", "import", "gpc", "tcf", "objection"] {
            assert_eq!(ConsentMethod::parse(m).unwrap().as_str(), m);
        }
    }
}
