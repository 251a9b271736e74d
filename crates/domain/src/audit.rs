//! Audit entries and the rules of the hash chain. Each entry carries the SHA-256 of the one
//! before it; the newest entry's position and hash (the head) are signed and kept outside the
//! log table, so edits, deletions, insertions, reordering and truncation are all detectable.
//! The entries are also the leaves of an RFC 6962 Merkle tree whose signed tree heads are
//! published, so anyone can check an entry's inclusion and the log's growth without the key.
//! Entries hold pseudonyms, never raw ids or payloads.

use crate::ids::Pseudonym;
use crate::timestamp::Timestamp;

/// What was done. Stored by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A subject's consent changed (API, banner, ...).
    ConsentUpdate,
    /// A Global Privacy Control signal withdrew consents.
    ConsentGpc,
    /// A subject's consent state or history was read.
    ConsentRead,
    /// Consent-history rows were committed to the chain (`consent_rows=N root=HEX`).
    ConsentRecorded,
    /// Consent-history rows were deleted by an erasure (`consent_rows=N`).
    ConsentErased,
    /// A batch of events was ingested.
    EventsIngest,
    /// Personal events were read for a purpose.
    EventsRead,
    /// The retention sweeper deleted expired events.
    RetentionSweep,
    /// An API key was created.
    KeyCreate,
    /// An API key was revoked.
    KeyRevoke,
    /// A subject session (the person's own credential) was opened.
    SessionOpen,
    /// A subject's sessions were revoked.
    SessionRevoke,
    /// A subject was erased (crypto-shredding and deletion).
    SubjectErase,
    /// A subject's data was exported to them (right of access and portability).
    SubjectExport,
    /// Processing of a subject's data was restricted or the restriction lifted (Art. 18).
    SubjectRestrict,
    /// Some of a subject's events were deleted at their request (rectification, Art. 16).
    EventsRectify,
    /// A data subject's request was received, extended or completed.
    RequestUpdate,
    /// A subject's data was shared with a recipient under a live sharing consent.
    SubjectShare,
    /// A differentially private query was charged to a privacy budget.
    AnalyticsCharge,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsentUpdate => "consent.update",
            Self::ConsentGpc => "consent.gpc",
            Self::ConsentRead => "consent.read",
            Self::ConsentRecorded => "consent.recorded",
            Self::ConsentErased => "consent.erased",
            Self::EventsIngest => "events.ingest",
            Self::EventsRead => "events.read",
            Self::RetentionSweep => "retention.sweep",
            Self::KeyCreate => "key.create",
            Self::KeyRevoke => "key.revoke",
            Self::SessionOpen => "session.open",
            Self::SessionRevoke => "session.revoke",
            Self::SubjectErase => "subject.erase",
            Self::SubjectExport => "subject.export",
            Self::SubjectRestrict => "subject.restrict",
            Self::EventsRectify => "events.rectify",
            Self::RequestUpdate => "request.update",
            Self::SubjectShare => "subject.share",
            Self::AnalyticsCharge => "analytics.charge",
        }
    }
}

/// An audit entry before it is sealed into the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// When.
    pub at: Timestamp,
    /// Who: `key:<key id>`, `session:<session id>`, `cli` or `system`.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// About whom, as a pseudonym.
    pub subject: Option<Pseudonym>,
    /// For which purpose.
    pub purpose: Option<String>,
    /// Counts and codes only; never personal data.
    pub detail: String,
}

/// A sealed audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1-based position in the chain.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// What, by stored name.
    pub action: String,
    /// About whom, as a pseudonym.
    pub subject: Option<Pseudonym>,
    /// For which purpose.
    pub purpose: Option<String>,
    /// Counts and codes.
    pub detail: String,
    /// Hash of the previous entry (zeros for the first).
    pub prev_hash: [u8; 32],
    /// SHA-256 of this entry's canonical bytes.
    pub hash: [u8; 32],
    /// Keyed MAC over `hash` under a server secret: an attacker who can write the database
    /// but lacks the key cannot forge a self-consistent entry, so verification names the
    /// exact entry that was edited or inserted.
    pub mac: [u8; 32],
}

impl AuditEntry {
    /// The bytes the entry's hash covers: every field but the hash, length-prefixed so that no
    /// two different entries share an encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.detail.len());
        out.extend_from_slice(b"candor-audit-v1");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at.0.to_be_bytes());
        for field in [
            self.actor.as_bytes(),
            self.action.as_bytes(),
            self.subject.as_ref().map(|p| &p.0[..]).unwrap_or(b""),
            self.purpose.as_deref().unwrap_or("").as_bytes(),
            self.detail.as_bytes(),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.push(self.subject.is_some() as u8);
        out.push(self.purpose.is_some() as u8);
        out.extend_from_slice(&self.prev_hash);
        out
    }
}

/// A signed tree head as stored: the RFC 6962 Merkle root over the first `size` entries (each
/// leaf the entry's hash), when it was issued, and the hex key and signature of its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHeadRecord {
    /// Entries covered.
    pub size: u64,
    /// When it was issued.
    pub at: Timestamp,
    /// The Merkle root.
    pub root: [u8; 32],
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    /// Hex signature of the tree-head document.
    pub signature: String,
}

/// The signed head of the chain: the newest position and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHead {
    /// Position of the newest entry.
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// Ed25519 signature over [`SignedHead::message`].
    pub signature: Vec<u8>,
}

impl SignedHead {
    /// The bytes the signature covers.
    pub fn message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut out = b"candor-audit-head-v1".to_vec();
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(hash);
        out
    }
}

/// Hashes and signs for the store, which appends entries inside its own transactions but
/// knows no cryptography. Implemented by the engine over `candor-crypto`.
pub trait AuditSealer: Send + Sync {
    /// SHA-256 of the given bytes.
    fn digest(&self, bytes: &[u8]) -> [u8; 32];
    /// Keyed MAC of an entry hash.
    fn mac(&self, hash: &[u8; 32]) -> [u8; 32];
    /// Signs a head message.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    /// The commitment to a change's consent-history leaves: the RFC 6962 Merkle root over
    /// them in id order, so each row is a leaf of the subtree its audit entry commits.
    fn commit(&self, leaves: &[[u8; 32]]) -> [u8; 32];

    /// Seals a draft at position `seq` after an entry whose hash is `prev_hash`.
    fn seal(&self, draft: &AuditDraft, seq: u64, prev_hash: [u8; 32]) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at: draft.at,
            actor: draft.actor.clone(),
            action: draft.action.as_str().to_owned(),
            subject: draft.subject,
            purpose: draft.purpose.clone(),
            detail: draft.detail.clone(),
            prev_hash,
            hash: [0; 32],
            mac: [0; 32],
        };
        entry.hash = self.digest(&entry.canonical_bytes());
        entry.mac = self.mac(&entry.hash);
        entry
    }
    /// Signs the head at `seq` with `hash`.
    fn sign_head(&self, seq: u64, hash: [u8; 32]) -> SignedHead {
        SignedHead {
            seq,
            hash,
            signature: self.sign(&SignedHead::message(seq, &hash)),
        }
    }
}

/// The detail of a [`AuditAction::ConsentRecorded`] entry: how many consent-history leaves it
/// commits and their Merkle root ([`AuditSealer::commit`]).
pub fn consent_recorded_detail(rows: usize, root: &[u8; 32]) -> String {
    format!("consent_rows={rows} root={}", crate::hex::encode(root))
}

/// The detail of a [`AuditAction::ConsentErased`] entry.
pub fn consent_erased_detail(rows: usize) -> String {
    format!("consent_rows={rows}")
}

/// Reads `consent_rows=N` and, if present, `root=HEX` back from such a detail.
pub fn parse_consent_detail(detail: &str) -> Option<(usize, Option<[u8; 32]>)> {
    let mut rows = None;
    let mut root = None;
    for part in detail.split(' ') {
        if let Some(n) = part.strip_prefix("consent_rows=") {
            rows = n.parse().ok();
        } else if let Some(hex) = part.strip_prefix("root=") {
            root = Some(crate::hex::decode(hex)?.try_into().ok()?);
        }
    }
    Some((rows?, root))
}
