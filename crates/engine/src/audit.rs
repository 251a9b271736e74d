//! The audit chain's cryptography and its verification. [`Sealer`] hashes, MACs and signs for
//! the store; [`Engine::verify_audit`] walks the whole chain and names the first bad position,
//! then checks the consent history (the legal proof of consent) against the leaves the chain
//! commits to, so an edited, inserted or deleted consent record is caught too;
//! [`Engine::verify_audit_incremental`] checks only what follows this server's last verified
//! checkpoint, which is also the Merkle tree that signed tree heads are issued from.

use std::collections::HashMap;
use std::sync::Arc;

use candor_crypto::{KeyRing, ct_eq, merkle, sha256, verify_signature};
use candor_domain::audit::parse_consent_detail;
use candor_domain::{AuditEntry, AuditSealer, SignedHead};
use serde::Serialize;

use crate::log::Checkpoint;
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
    fn commit(&self, leaves: &[[u8; 32]]) -> [u8; 32] {
        let hashes: Vec<merkle::Hash> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
        merkle::tree_root(&hashes[..], hashes.len() as u64).unwrap_or_else(merkle::empty_root)
    }
}

/// What is wrong with `entry` at position `expected` after the verified `checkpoint`, if
/// anything: its place, its hash and MAC, its link to the entry before.
fn check_entry(
    sealer: &Sealer,
    entry: &AuditEntry,
    expected: u64,
    checkpoint: &Checkpoint,
) -> Option<String> {
    if entry.seq != expected {
        return Some(format!(
            "entry {expected} is missing or out of place (found position {} next)",
            entry.seq
        ));
    }
    let recomputed = sealer.digest(&entry.canonical_bytes());
    if !ct_eq(&recomputed, &entry.hash) || !ct_eq(&sealer.mac(&entry.hash), &entry.mac) {
        return Some(format!(
            "entry {expected} was altered or forged: its hash or MAC does not match its content"
        ));
    }
    if entry.prev_hash != checkpoint.last_hash {
        return Some(format!(
            "entry {expected} does not follow entry {}: an entry was inserted, removed or reordered",
            expected - 1
        ));
    }
    None
}

/// The outcome of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Whether the chain, its signed head and the consent history check out.
    pub ok: bool,
    /// Entries read by this verification.
    pub entries: u64,
    /// The position after which this verification started: 0 for the whole log, else the
    /// checkpoint this server verified before (everything up to it was checked then).
    pub checked_from: u64,
    /// Entries verified in all (the log's size when `ok`).
    pub tree_size: u64,
    /// The first position (1-based) at which the chain is broken.
    pub first_bad_position: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

const PAGE: u32 = 10_000;

/// Position → (an erasure?, rows, root) of each consent commitment in the chain.
type Commitments = HashMap<u64, (bool, usize, Option<[u8; 32]>)>;

impl Engine {
    /// Verifies the whole log: every entry's hash, MAC and link, their positions, the signed
    /// head and the consent history; on success the result becomes this server's checkpoint.
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        self.verify_audit_from(Checkpoint::default()).await
    }

    /// Verifies what was appended since this server's last verified checkpoint (the whole
    /// log the first time), and that the checkpoint's last entry is still in place. What lies
    /// before the checkpoint was verified then; [`Engine::verify_audit`] checks it again, and
    /// the published tree heads let anyone check it without the key.
    pub async fn verify_audit_incremental(&self) -> Result<AuditReport> {
        let start = self.checkpoint.lock().clone();
        self.verify_audit_from(start).await
    }

    async fn verify_audit_from(&self, start: Checkpoint) -> Result<AuditReport> {
        let (report, checkpoint) = self.verify_chain(start).await?;
        if report.ok {
            let mut current = self.checkpoint.lock();
            if checkpoint.size >= current.size {
                *current = checkpoint;
            }
        }
        Ok(report)
    }

    /// Extends `checkpoint` over the entries after it, up to the signed head.
    pub(crate) async fn verify_chain(
        &self,
        mut checkpoint: Checkpoint,
    ) -> Result<(AuditReport, Checkpoint)> {
        let sealer = Sealer::new(self.keys.clone());
        let from = checkpoint.size;
        let mut read: u64 = 0;
        let bad = |read: u64, pos: u64, problem: String| AuditReport {
            ok: false,
            entries: read,
            checked_from: from,
            tree_size: pos.saturating_sub(1),
            first_bad_position: Some(pos),
            problem: Some(problem),
        };
        if from > 0 {
            let still = self.store.audit_entries(from - 1, 1).await?;
            let intact = still.first().is_some_and(|e| {
                e.seq == from
                    && e.hash == checkpoint.last_hash
                    && ct_eq(&sealer.digest(&e.canonical_bytes()), &e.hash)
            });
            if !intact {
                return Ok((
                    bad(
                        0,
                        from,
                        format!(
                            "entry {from} changed or vanished since this server verified the log up to it"
                        ),
                    ),
                    checkpoint,
                ));
            }
        }
        let mut commitments = Commitments::new();
        // Verify up to the signed head; appends made meanwhile move the head, so read it again
        // and go on until it stays put.
        let mut head: Option<SignedHead> = self.store.audit_head().await?;
        loop {
            let target = head.as_ref().map_or(0, |h| h.seq);
            while checkpoint.size < target {
                let limit = PAGE.min((target - checkpoint.size) as u32);
                let page = self.store.audit_entries(checkpoint.size, limit).await?;
                if page.is_empty() {
                    let end = checkpoint.size;
                    return Ok((
                        bad(
                            read,
                            end + 1,
                            format!(
                                "the log was truncated: the signed head is at position {target} but the log ends at {end}"
                            ),
                        ),
                        checkpoint,
                    ));
                }
                for entry in page {
                    read += 1;
                    let expected = checkpoint.size + 1;
                    if let Some(problem) = check_entry(&sealer, &entry, expected, &checkpoint) {
                        return Ok((bad(read, expected, problem), checkpoint));
                    }
                    if matches!(entry.action.as_str(), "consent.recorded" | "consent.erased") {
                        let Some((rows, root)) = parse_consent_detail(&entry.detail) else {
                            return Ok((
                                bad(
                                    read,
                                    expected,
                                    format!(
                                        "entry {expected} has an unreadable consent commitment"
                                    ),
                                ),
                                checkpoint,
                            ));
                        };
                        commitments
                            .insert(entry.seq, (entry.action == "consent.erased", rows, root));
                    }
                    checkpoint.push(&entry.hash);
                }
            }
            if let Some(head) = &head {
                let message = SignedHead::message(head.seq, &head.hash);
                if !verify_signature(&self.keys.verifying_key(), &message, &head.signature) {
                    return Ok((
                        bad(
                            read,
                            head.seq.max(1),
                            "the signed head's signature is invalid".into(),
                        ),
                        checkpoint,
                    ));
                }
                if head.hash != checkpoint.last_hash {
                    return Ok((
                        bad(
                            read,
                            head.seq.max(1),
                            "the newest entry does not match the signed head".into(),
                        ),
                        checkpoint,
                    ));
                }
            }
            let beyond = !self
                .store
                .audit_hashes(checkpoint.size, 1)
                .await?
                .is_empty();
            if !beyond {
                break;
            }
            let again = self.store.audit_head().await?;
            if again.as_ref().map(|h| h.seq) == head.as_ref().map(|h| h.seq) {
                let at = checkpoint.size;
                return Ok((
                    bad(
                        read,
                        at + 1,
                        if at == 0 {
                            "the signed head of the chain is missing".into()
                        } else {
                            format!(
                                "entries after the signed head (position {at}) were added without signing"
                            )
                        },
                    ),
                    checkpoint,
                ));
            }
            head = again;
        }
        if let Some((position, problem)) = self.verify_consent(&sealer, &commitments, from).await? {
            return Ok((bad(read, position, problem), checkpoint));
        }
        let report = AuditReport {
            ok: true,
            entries: read,
            checked_from: from,
            tree_size: checkpoint.size,
            first_bad_position: None,
            problem: None,
        };
        Ok((report, checkpoint))
    }

    /// Checks the consent history against the chain's commitments: every row has a leaf
    /// that matches its content; the leaves each `consent.recorded` entry commits hash to its
    /// root; a leaf whose row is gone was marked by an erasure, and each erasure marked as
    /// many as it says. Returns the position to blame and the problem, if any.
    async fn verify_consent(
        &self,
        sealer: &Sealer,
        commitments: &Commitments,
        since: u64,
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
        // Leaves per committing entry, in id order, and erased leaves per erasure, of the
        // entries after `since` (the commitments read this time).
        let mut committed: HashMap<u64, Vec<[u8; 32]>> = HashMap::new();
        let mut erased: HashMap<u64, usize> = HashMap::new();
        let mut after = 0;
        loop {
            let page = self.store.consent_leaves(after, since, PAGE).await?;
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
                    (None, Some(by)) if by > since => *erased.entry(by).or_default() += 1,
                    (None, Some(_)) => {}
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
                if leaf.recorded_seq > since {
                    committed
                        .entry(leaf.recorded_seq)
                        .or_default()
                        .push(leaf.leaf);
                }
            }
        }
        for (seq, leaves) in &committed {
            match commitments.get(seq) {
                Some((false, rows, Some(root)))
                    if *rows == leaves.len() && ct_eq(&sealer.commit(leaves), root) => {}
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
                erased.get(seq).copied()
            } else {
                committed.get(seq).map(Vec::len)
            }
            .unwrap_or(0);
            if found != *rows {
                return Ok(Some((
                    *seq,
                    format!(
                        "entry {seq} accounts for {rows} consent-history rows, but {found} are there"
                    ),
                )));
            }
        }
        Ok(None)
    }
}
