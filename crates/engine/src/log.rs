//! The audit log as an RFC 6962 Merkle tree, in the manner of Certificate Transparency: each
//! entry is a leaf (its leaf data is the entry's SHA-256), and each consent-history row is a
//! leaf of the subtree its `consent.recorded` entry commits. This server keeps the tree it
//! has verified as a [`Checkpoint`] (roots of complete blocks and the leaves after them, a few
//! bytes per thousand entries), issues signed tree heads from it, and serves inclusion proofs
//! (of an entry, or of the entry that recorded a consent receipt) and consistency proofs
//! between heads. The documents verify offline with the server's public key alone.

use candor_crypto::merkle::{self, Hash, LeafSource};
use candor_domain::{AuditEntry, ErrorCode, Pseudonym, Timestamp, TreeHeadRecord};
use serde::{Deserialize, Serialize};

use crate::receipts::ConsentReceipt;
use crate::signing::{SignedDocument, hex, hex_decode, sign};
use crate::{Engine, EngineError, Result};

/// Leaves per cached block: a power of two, so every subtree the proofs need is either inside
/// one block or a union of whole blocks.
const BLOCK: u64 = 1024;

/// The version string of a tree-head document.
pub const TREE_HEAD_VERSION: &str = "candor.tree-head/1";
/// The version string of an inclusion-proof document.
pub const INCLUSION_VERSION: &str = "candor.inclusion/1";
/// The version string of a consistency-proof document.
pub const CONSISTENCY_VERSION: &str = "candor.consistency/1";

/// What this server has verified of the log: its size, the newest entry's hash, and the
/// Merkle tree over it as the roots of complete blocks plus the leaf hashes after them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checkpoint {
    /// Entries verified.
    pub size: u64,
    /// The hash of entry `size` (zeros for none).
    pub last_hash: Hash,
    blocks: Vec<Hash>,
    tail: Vec<Hash>,
}

impl Checkpoint {
    /// Appends a verified entry's hash as the next leaf.
    pub fn push(&mut self, entry_hash: &Hash) {
        self.tail.push(merkle::leaf_hash(entry_hash));
        self.size += 1;
        self.last_hash = *entry_hash;
        if self.tail.len() as u64 == BLOCK {
            let root = merkle::root(&self.tail[..], 0, BLOCK).expect("a full block");
            self.blocks.push(root);
            self.tail.clear();
        }
    }

    /// The tree head over the verified entries.
    pub fn root(&self) -> Hash {
        merkle::tree_root(&Leaves::new(self, None), self.size).expect("held leaves")
    }

    /// The complete block holding leaf `index`, if it is not in the tail.
    fn block_of(&self, index: u64) -> Option<u64> {
        let block = index / BLOCK;
        (block < self.blocks.len() as u64).then_some(block)
    }
}

/// The checkpoint's hashes, plus one complete block's leaves read back for a proof.
struct Leaves<'a> {
    checkpoint: &'a Checkpoint,
    loaded: Option<(u64, Vec<Hash>)>,
}

impl<'a> Leaves<'a> {
    fn new(checkpoint: &'a Checkpoint, loaded: Option<(u64, Vec<Hash>)>) -> Self {
        Self { checkpoint, loaded }
    }
}

impl LeafSource for Leaves<'_> {
    fn leaf(&self, index: u64) -> Option<Hash> {
        let block = index / BLOCK;
        let offset = (index % BLOCK) as usize;
        if block == self.checkpoint.blocks.len() as u64 {
            return self.checkpoint.tail.get(offset).copied();
        }
        match &self.loaded {
            Some((b, leaves)) if *b == block => leaves.get(offset).copied(),
            _ => None,
        }
    }
    fn subtree(&self, lo: u64, hi: u64) -> Option<Hash> {
        (lo.is_multiple_of(BLOCK) && hi - lo == BLOCK)
            .then(|| self.checkpoint.blocks.get((lo / BLOCK) as usize).copied())
            .flatten()
    }
}

/// A signed tree head: the Merkle root over the first `tree_size` audit entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    /// `candor.tree-head/1`.
    pub version: String,
    /// Entries covered.
    pub tree_size: u64,
    /// When it was issued, in milliseconds since the epoch.
    pub timestamp: i64,
    /// Hex RFC 6962 Merkle root (each leaf's data is an entry's SHA-256).
    pub root_hash: String,
    /// Hex Ed25519 public key of the signer.
    pub public_key: String,
    /// Hex signature over the document with this field empty.
    pub signature: String,
}

impl SignedDocument for TreeHead {
    fn signature_mut(&mut self) -> &mut String {
        &mut self.signature
    }
    fn public_key(&self) -> &str {
        &self.public_key
    }
}

impl TreeHead {
    fn from_record(r: &TreeHeadRecord) -> Self {
        Self {
            version: TREE_HEAD_VERSION.into(),
            tree_size: r.size,
            timestamp: r.at.0,
            root_hash: hex(&r.root),
            public_key: r.public_key.clone(),
            signature: r.signature.clone(),
        }
    }

    /// Checks the signature against `key` and returns the root.
    pub fn check(&self, key: &[u8; 32]) -> std::result::Result<Hash, String> {
        if self.version != TREE_HEAD_VERSION {
            return Err(format!("not a tree head (version `{}`)", self.version));
        }
        if !self.verify(Some(key)) {
            return Err(format!(
                "the tree head of size {} is not signed by the trusted key",
                self.tree_size
            ));
        }
        decode_hash(&self.root_hash).ok_or_else(|| "the tree head's root is not a hash".into())
    }
}

/// An audit entry as a proof shows it: every field its hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoggedEntry {
    /// 1-based position.
    pub seq: u64,
    /// When, in milliseconds since the epoch.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// About whom, as a hex pseudonym.
    pub subject: Option<String>,
    /// For which purpose.
    pub purpose: Option<String>,
    /// Counts and codes.
    pub detail: String,
    /// Hex hash of the entry before.
    pub prev_hash: String,
}

impl LoggedEntry {
    fn from_entry(e: &AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: e.at.0,
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.map(|p| p.to_hex()),
            purpose: e.purpose.clone(),
            detail: e.detail.clone(),
            prev_hash: hex(&e.prev_hash),
        }
    }

    /// The entry's hash (the leaf data), recomputed from its fields.
    pub fn hash(&self) -> Option<Hash> {
        let subject = match &self.subject {
            Some(h) => Some(Pseudonym(decode_hash(h)?)),
            None => None,
        };
        let entry = AuditEntry {
            seq: self.seq,
            at: Timestamp(self.at),
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject,
            purpose: self.purpose.clone(),
            detail: self.detail.clone(),
            prev_hash: decode_hash(&self.prev_hash)?,
            hash: [0; 32],
            mac: [0; 32],
        };
        Some(candor_crypto::sha256(&entry.canonical_bytes()))
    }
}

/// Proof that an entry is in the log: the entry, the signed head, and the audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// `candor.inclusion/1`.
    pub version: String,
    /// The head the path leads to.
    pub tree_head: TreeHead,
    /// The leaf's 0-based index (the entry's position minus one).
    pub leaf_index: u64,
    /// The entry.
    pub entry: LoggedEntry,
    /// Hex sibling hashes from the leaf up (RFC 6962 PATH).
    pub audit_path: Vec<String>,
}

impl InclusionProof {
    /// Checks the head's signature against `key`, the entry's hash, and the path.
    pub fn check(&self, key: &[u8; 32]) -> std::result::Result<(), String> {
        if self.version != INCLUSION_VERSION {
            return Err(format!(
                "not an inclusion proof (version `{}`)",
                self.version
            ));
        }
        let root = self.tree_head.check(key)?;
        if self.entry.seq != self.leaf_index + 1 {
            return Err("the entry's position is not the proof's leaf".into());
        }
        let leaf = self
            .entry
            .hash()
            .ok_or("the entry has a malformed hash field")?;
        let path = decode_hashes(&self.audit_path).ok_or("the audit path holds a non-hash")?;
        if !merkle::verify_inclusion(
            &leaf,
            self.leaf_index,
            self.tree_head.tree_size,
            &root,
            &path,
        ) {
            return Err(format!(
                "entry {} is not in the tree of size {} under this head",
                self.entry.seq, self.tree_head.tree_size
            ));
        }
        Ok(())
    }

    /// Checks the proof, the receipt's signature, and that the entry recorded this receipt's
    /// consent change for its principal.
    pub fn check_receipt(
        &self,
        receipt: &ConsentReceipt,
        key: &[u8; 32],
    ) -> std::result::Result<(), String> {
        if !receipt.verify(Some(key)) {
            return Err("the receipt is not signed by the trusted key".into());
        }
        self.check(key)?;
        let token = format!("receipt={}", receipt.consent_receipt_id);
        if self.entry.action != "consent.update"
            || !self.entry.detail.split(' ').any(|t| t == token)
            || self.entry.subject.as_deref() != Some(receipt.pii_principal_id.as_str())
        {
            return Err("the logged entry is not this receipt's consent change".into());
        }
        Ok(())
    }
}

/// Proof that the log grew only by appending between a head of `first_size` and `tree_head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// `candor.consistency/1`.
    pub version: String,
    /// The earlier tree's size.
    pub first_size: u64,
    /// The later head.
    pub tree_head: TreeHead,
    /// Hex hashes (RFC 6962 PROOF).
    pub proof: Vec<String>,
}

impl ConsistencyProof {
    /// Checks both heads' signatures against `key` and the proof from `earlier` (a head the
    /// verifier kept) to the later head.
    pub fn check(&self, earlier: &TreeHead, key: &[u8; 32]) -> std::result::Result<(), String> {
        if self.version != CONSISTENCY_VERSION {
            return Err(format!(
                "not a consistency proof (version `{}`)",
                self.version
            ));
        }
        let old_root = earlier.check(key)?;
        let new_root = self.tree_head.check(key)?;
        if earlier.tree_size != self.first_size {
            return Err(format!(
                "the proof starts at size {}, the earlier head has size {}",
                self.first_size, earlier.tree_size
            ));
        }
        let proof = decode_hashes(&self.proof).ok_or("the proof holds a non-hash")?;
        if !merkle::verify_consistency(
            self.first_size,
            &old_root,
            self.tree_head.tree_size,
            &new_root,
            &proof,
        ) {
            return Err(format!(
                "the log of size {} is not an extension of the log of size {}: it was rewritten",
                self.tree_head.tree_size, self.first_size
            ));
        }
        Ok(())
    }
}

fn decode_hash(text: &str) -> Option<Hash> {
    hex_decode(text)?.try_into().ok()
}

fn decode_hashes(texts: &[String]) -> Option<Vec<Hash>> {
    texts.iter().map(|t| decode_hash(t)).collect()
}

fn log_broken(problem: Option<String>) -> EngineError {
    EngineError::refused(
        ErrorCode::AuditLogBroken,
        format!(
            "the audit log does not verify, so no tree head is issued: {}",
            problem.unwrap_or_default()
        ),
    )
}

impl Engine {
    /// Verifies what was appended since this server's checkpoint and returns the signed
    /// head of the verified tree: the one published for that size if any server published
    /// one, else a new one. Refused when the log does not verify, or when the head
    /// published for this size has another root (the log was rewritten).
    pub async fn tree_head(&self) -> Result<TreeHead> {
        Ok(self.verified_head().await?.0)
    }

    /// The published head of exactly `size` entries.
    pub async fn tree_head_of(&self, size: u64) -> Result<TreeHead> {
        match self.store.tree_head(Some(size)).await? {
            Some(r) => Ok(TreeHead::from_record(&r)),
            None => Err(EngineError::refused(
                ErrorCode::NotFound,
                format!("no tree head of size {size} was published"),
            )),
        }
    }

    /// Issues (or finds) the head of the verified tree; returns it with the checkpoint.
    async fn verified_head(&self) -> Result<(TreeHead, Checkpoint)> {
        let report = self.verify_audit_incremental().await?;
        if !report.ok {
            return Err(log_broken(report.problem));
        }
        let checkpoint = self.checkpoint.lock().clone();
        let root = checkpoint.root();
        // A head of this size is usually published already (by this server or another):
        // sign and store one only when it is not.
        let published = match self.store.tree_head(Some(checkpoint.size)).await? {
            Some(published) => published,
            None => {
                let mut head = TreeHead {
                    version: TREE_HEAD_VERSION.into(),
                    tree_size: checkpoint.size,
                    timestamp: self.now().0,
                    root_hash: hex(&root),
                    public_key: hex(&self.keys.verifying_key()),
                    signature: String::new(),
                };
                sign(&self.keys, &mut head);
                self.store
                    .publish_tree_head(&TreeHeadRecord {
                        size: head.tree_size,
                        at: Timestamp(head.timestamp),
                        root,
                        public_key: head.public_key,
                        signature: head.signature,
                    })
                    .await?
            }
        };
        if published.root != root {
            return Err(log_broken(Some(format!(
                "the tree head published for size {} has a different root: the log was rewritten",
                published.size
            ))));
        }
        Ok((TreeHead::from_record(&published), checkpoint))
    }

    /// Up to `limit` (at most 1,000) audit entries after position `after_seq`, oldest first:
    /// what was done, by whom, about which pseudonym; never personal data.
    pub async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<LoggedEntry>> {
        let entries = self.store.audit_entries(after_seq, limit.min(1000)).await?;
        Ok(entries.iter().map(LoggedEntry::from_entry).collect())
    }

    /// Proof that entry `seq` is in the log, against the current head.
    pub async fn inclusion_proof(&self, seq: u64) -> Result<InclusionProof> {
        let (head, checkpoint) = self.verified_head().await?;
        if seq == 0 || seq > checkpoint.size {
            return Err(EngineError::refused(
                ErrorCode::NotFound,
                format!(
                    "the log has no entry {seq} (it holds {} entries)",
                    checkpoint.size
                ),
            ));
        }
        let index = seq - 1;
        let leaves = self.leaves_for(&checkpoint, index).await?;
        let path = merkle::inclusion_path(&leaves, index, checkpoint.size)
            .ok_or_else(|| log_broken(Some("the audit path lacks a leaf".into())))?;
        let entry = self
            .store
            .audit_entries(index, 1)
            .await?
            .into_iter()
            .next()
            .filter(|e| e.seq == seq)
            .ok_or_else(|| log_broken(Some("a verified entry vanished".into())))?;
        Ok(InclusionProof {
            version: INCLUSION_VERSION.into(),
            tree_head: head,
            leaf_index: index,
            entry: LoggedEntry::from_entry(&entry),
            audit_path: path.iter().map(|h| hex(h)).collect(),
        })
    }

    /// Proof that the consent change a receipt was issued for is in the log.
    pub async fn receipt_proof(&self, receipt_id: &str) -> Result<InclusionProof> {
        let not_found = || {
            EngineError::refused(
                ErrorCode::NotFound,
                "no consent change with this receipt id is in the log",
            )
        };
        if receipt_id.len() != 32 || !receipt_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let seq = self
            .store
            .find_audit_entry("consent.update", &format!("receipt={receipt_id}"))
            .await?
            .ok_or_else(not_found)?;
        self.inclusion_proof(seq).await
    }

    /// Proof that the current head extends the tree of `first_size` entries.
    pub async fn consistency_proof(&self, first_size: u64) -> Result<ConsistencyProof> {
        let (head, checkpoint) = self.verified_head().await?;
        if first_size > checkpoint.size {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                format!(
                    "`first` ({first_size}) is larger than the log ({} entries)",
                    checkpoint.size
                ),
            ));
        }
        let leaves = self
            .leaves_for(&checkpoint, first_size.saturating_sub(1))
            .await?;
        let proof = merkle::consistency_proof(&leaves, first_size, checkpoint.size)
            .ok_or_else(|| log_broken(Some("the consistency proof lacks a leaf".into())))?;
        Ok(ConsistencyProof {
            version: CONSISTENCY_VERSION.into(),
            first_size,
            tree_head: head,
            proof: proof.iter().map(|h| hex(h)).collect(),
        })
    }

    /// The checkpoint's hashes with the complete block holding leaf `index` read back (and
    /// checked against the block root the checkpoint verified).
    async fn leaves_for<'a>(&self, checkpoint: &'a Checkpoint, index: u64) -> Result<Leaves<'a>> {
        let Some(block) = checkpoint.block_of(index) else {
            return Ok(Leaves::new(checkpoint, None));
        };
        let hashes = self.store.audit_hashes(block * BLOCK, BLOCK as u32).await?;
        let leaves: Vec<Hash> = hashes.iter().map(|h| merkle::leaf_hash(h)).collect();
        if leaves.len() as u64 != BLOCK
            || merkle::root(&leaves[..], 0, BLOCK) != checkpoint.blocks.get(block as usize).copied()
        {
            return Err(log_broken(Some(format!(
                "entries {} to {} changed since they were verified",
                block * BLOCK + 1,
                (block + 1) * BLOCK
            ))));
        }
        Ok(Leaves::new(checkpoint, Some((block, leaves))))
    }
}
