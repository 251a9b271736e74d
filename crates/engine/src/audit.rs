//! The audit chain's cryptography and its verification. [`Sealer`] hashes, MACs and signs for
//! the store; [`Engine::verify_audit`] walks the whole chain and names the first bad position,
//! then checks the consent history (the legal proof of consent) against the leaves the chain
//! commits to, so an edited, inserted or deleted consent record is caught too.

use std::collections::HashMap;
use std::sync::Arc;

use candor_crypto::{KeyRing, ct_eq, sha256, verify_signature};
use candor_domain::audit::parse_consent_detail;
use candor_domain::{AuditSealer, SignedHead};
use serde::Serialize;

use crate::{Engine, Result};

/// Seals audit entries with the server's key ring.
pub struct Sealer {
    keys: Arc<KeyRing>,
}

impl Sealer {
    /// A sealer over a key ring.
    pub fn new(keys: Arc<KeyRing>) -> Self {
        Self { keys }
    }
}

impl AuditSealer for Sealer {
    fn digest(&self, bytes: &[u8]) -> [u8; 32] {
        sha256(bytes)
    }
    fn mac(&self, hash: &[u8; 32]) -> [u8; 32] {
        self.keys.keyed_hash(b"audit-entry", &[hash])
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.keys.sign(message).to_vec()
    }
}

/// The outcome of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Whether the whole chain and its signed head check out.
    pub ok: bool,
    /// Entries read.
    pub entries: u64,
    /// The first position (1-based) at which the chain is broken.
    pub first_bad_position: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

const PAGE: u32 = 10_000;

impl Engine {
    /// Verifies every entry's hash, MAC and link, their positions, and the signed head.
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        let sealer = Sealer::new(self.keys.clone());
        let bad = |entries: u64, pos: u64, problem: String| AuditReport {
            ok: false,
            entries,
            first_bad_position: Some(pos),
            problem: Some(problem),
        };
        let mut expected: u64 = 1;
        let mut prev_hash = [0u8; 32];
        // Position → (an erasure?, rows, root) of each consent commitment in the chain.
        let mut commitments: HashMap<u64, (bool, usize, Option<[u8; 32]>)> = HashMap::new();
        let mut read: u64 = 0;
        let mut after = 0;
        loop {
            let page = self.store.audit_entries(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in page {
                read += 1;
                if entry.seq != expected {
                    return Ok(bad(
                        read,
                        expected,
                        format!(
                            "entry {expected} is missing or out of place (found position {} next)",
                            entry.seq
                        ),
                    ));
                }
                let recomputed = sealer.digest(&entry.canonical_bytes());
                if !ct_eq(&recomputed, &entry.hash) || !ct_eq(&sealer.mac(&entry.hash), &entry.mac)
                {
                    return Ok(bad(
                        read,
                        expected,
                        format!(
                            "entry {expected} was altered or forged: its hash or MAC does not match its content"
                        ),
                    ));
                }
                if entry.prev_hash != prev_hash {
                    return Ok(bad(
                        read,
                        expected,
                        format!(
                            "entry {expected} does not follow entry {}: an entry was inserted, removed or reordered",
                            expected - 1
                        ),
                    ));
                }
                match entry.action.as_str() {
                    "consent.recorded" | "consent.erased" => {
                        let Some((rows, root)) = parse_consent_detail(&entry.detail) else {
                            return Ok(bad(
                                read,
                                expected,
                                format!("entry {expected} has an unreadable consent commitment"),
                            ));
                        };
                        commitments
                            .insert(entry.seq, (entry.action == "consent.erased", rows, root));
                    }
                    _ => {}
                }
                prev_hash = entry.hash;
                expected += 1;
            }
        }
        let last_seq = expected - 1;
        let head: Option<SignedHead> = self.store.audit_head().await?;
        match head {
            None if last_seq == 0 => {}
            None => {
                return Ok(bad(
                    read,
                    1,
                    "the signed head of the chain is missing".into(),
                ));
            }
            Some(head) => {
                let message = SignedHead::message(head.seq, &head.hash);
                if !verify_signature(&self.keys.verifying_key(), &message, &head.signature) {
                    return Ok(bad(
                        read,
                        head.seq.min(last_seq + 1).max(1),
                        "the signed head's signature is invalid".into(),
                    ));
                }
                if head.seq > last_seq {
                    return Ok(bad(
                        read,
                        last_seq + 1,
                        format!(
                            "the log was truncated: the signed head is at position {} but the log ends at {last_seq}",
                            head.seq
                        ),
                    ));
                }
                if head.seq < last_seq {
                    return Ok(bad(
                        read,
                        head.seq + 1,
                        format!(
                            "entries after the signed head (position {}) were added without signing",
                            head.seq
                        ),
                    ));
                }
                if head.hash != prev_hash {
                    return Ok(bad(
                        read,
                        last_seq,
                        "the newest entry does not match the signed head".into(),
                    ));
                }
            }
        }
        if let Some((position, problem)) = self.verify_consent(&sealer, &commitments).await? {
            return Ok(bad(read, position, problem));
        }
        Ok(AuditReport {
            ok: true,
            entries: read,
            first_bad_position: None,
            problem: None,
        })
    }

    /// Checks the consent history against the chain's commitments: every row has a leaf
    /// that matches its content; the leaves each `consent.recorded` entry commits hash to its
    /// root; a leaf whose row is gone was marked by an erasure, and each erasure marked as
    /// many as it says. Returns the position to blame and the problem, if any.
    async fn verify_consent(
        &self,
        sealer: &Sealer,
        commitments: &HashMap<u64, (bool, usize, Option<[u8; 32]>)>,
    ) -> Result<Option<(u64, String)>> {
        let unsealed = self.store.unsealed_consent_rows().await?;
        if unsealed > 0 {
            return Ok(Some((
                commitments.keys().max().copied().unwrap_or(1),
                format!(
                    "{unsealed} consent-history rows were inserted outside any recorded change"
                ),
            )));
        }
        // Leaves per committing entry, in id order, and erased leaves per erasure.
        let mut committed: HashMap<u64, (usize, Vec<u8>)> = HashMap::new();
        let mut erased: HashMap<u64, usize> = HashMap::new();
        let mut after = 0;
        loop {
            let page = self.store.consent_leaves(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for leaf in page {
                let blame = leaf.recorded_seq;
                match (&leaf.row, leaf.erased_seq) {
                    (Some(_), Some(_)) => {
                        return Ok(Some((
                            blame,
                            format!(
                                "consent-history row {} is held again after an erasure deleted it",
                                leaf.id
                            ),
                        )));
                    }
                    (Some(row), None) => {
                        let expected = sealer.mac(&sealer.digest(&row.canonical_bytes(leaf.id)));
                        if !ct_eq(&expected, &leaf.leaf) {
                            return Ok(Some((
                                blame,
                                format!(
                                    "consent-history row {} was altered after it was recorded",
                                    leaf.id
                                ),
                            )));
                        }
                    }
                    (None, Some(by)) => *erased.entry(by).or_default() += 1,
                    (None, None) => {
                        return Ok(Some((
                            blame,
                            format!(
                                "consent-history row {} was deleted, and not by an erasure",
                                leaf.id
                            ),
                        )));
                    }
                }
                let entry = committed.entry(leaf.recorded_seq).or_default();
                entry.0 += 1;
                entry.1.extend_from_slice(&leaf.leaf);
            }
        }
        for (seq, (count, concatenated)) in &committed {
            match commitments.get(seq) {
                Some((false, rows, Some(root)))
                    if rows == count && ct_eq(&sealer.digest(concatenated), root) => {}
                _ => {
                    return Ok(Some((
                        *seq,
                        format!(
                            "the consent-history rows committed by entry {seq} were added to, removed or changed"
                        ),
                    )));
                }
            }
        }
        for (seq, (is_erasure, rows, _)) in commitments {
            let found = if *is_erasure {
                erased.get(seq)
            } else {
                committed.get(seq).map(|(n, _)| n)
            };
            if found.copied().unwrap_or(0) != *rows {
                return Ok(Some((
                    *seq,
                    format!(
                        "entry {seq} accounts for {rows} consent-history rows, but {} are there",
                        found.copied().unwrap_or(0)
                    ),
                )));
            }
        }
        Ok(None)
    }
}
