//! `audit_log`, `audit_head` and `audit_tree_heads`: the hash chain of audit entries, its
//! signed head, and the signed Merkle tree heads published over it. Every
//! write of personal data or consent appends its entries in its own transaction through
//! [`SqlStore::append_in_tx`], so the log and the data never disagree.

use async_trait::async_trait;
use candor_domain::{AuditDraft, AuditEntry, SignedHead, Timestamp, TreeHeadRecord};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql, Value};
use crate::{INSERT_CHUNK, Result, StoreError, pseudonym};

/// The audit chain.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends audit entries on their own.
    async fn append_audit(&self, audit: &[AuditDraft]) -> Result<()>;
    /// Audit entries in chain order, from position `after_seq + 1`.
    async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>>;
    /// The signed head, if any entry exists.
    async fn audit_head(&self) -> Result<Option<SignedHead>>;
    /// The hashes of entries from position `after_seq + 1`, in order (the tree's leaf data).
    async fn audit_hashes(&self, after_seq: u64, limit: u32) -> Result<Vec<[u8; 32]>>;
    /// The first position of an entry with this action whose detail contains `needle`.
    async fn find_audit_entry(&self, action: &str, needle: &str) -> Result<Option<u64>>;
    /// Stores a tree head unless one of that size exists; returns the one stored for the
    /// size, so every server publishes the same head for the same size.
    async fn publish_tree_head(&self, head: &TreeHeadRecord) -> Result<TreeHeadRecord>;
    /// The tree head of `size`, or the largest one.
    async fn tree_head(&self, size: Option<u64>) -> Result<Option<TreeHeadRecord>>;
}

fn tree_head_record(r: &impl Get) -> Result<TreeHeadRecord> {
    Ok(TreeHeadRecord {
        size: r.int("tree_size")? as u64,
        at: Timestamp(r.int("at")?),
        root: hash32(r.blob("root")?, "audit_tree_heads")?,
        public_key: r.text("public_key")?,
        signature: r.text("signature")?,
    })
}

pub(crate) fn hash32(bytes: Vec<u8>, table: &'static str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt(table))
}

impl<D: Dialect> SqlStore<D> {
    /// Seals `drafts` onto the chain inside `tx` and re-signs the head; returns the position
    /// of the last entry appended (0 when there was nothing to append).
    pub(crate) async fn append_in_tx(
        &self,
        tx: &mut D::Connection,
        drafts: &[AuditDraft],
    ) -> Result<u64> {
        if drafts.is_empty() {
            return Ok(0);
        }
        D::lock_audit(tx).await?;
        let last = D::fetch_all(
            tx,
            Sql::new("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"),
        )
        .await?;
        let (mut seq, mut prev) = match last.first() {
            Some(row) => (
                row.int("seq")? as u64,
                hash32(row.blob("hash")?, "audit_log")?,
            ),
            None => (0, [0u8; 32]),
        };
        let mut entries = Vec::with_capacity(drafts.len());
        for draft in drafts {
            seq += 1;
            let entry = self.sealer.seal(draft, seq, prev);
            prev = entry.hash;
            entries.push(entry);
        }
        for chunk in entries.chunks(INSERT_CHUNK) {
            let mut q = Sql::new(
                "INSERT INTO audit_log (seq, at, actor, action, subject, purpose, detail, \
                 prev_hash, hash, mac) VALUES ",
            );
            q.rows(chunk, |e| {
                vec![
                    (e.seq as i64).into(),
                    e.at.0.into(),
                    e.actor.as_str().into(),
                    e.action.as_str().into(),
                    Value::OptBlob(e.subject.map(|p| p.0.to_vec())),
                    Value::OptText(e.purpose.clone()),
                    e.detail.as_str().into(),
                    e.prev_hash.to_vec().into(),
                    e.hash.to_vec().into(),
                    e.mac.to_vec().into(),
                ]
            });
            D::execute(tx, q).await?;
        }
        let head = self.sealer.sign_head(seq, prev);
        let upsert = Sql::new(
            "INSERT INTO audit_head (id, seq, hash, signature) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
             signature = excluded.signature",
        )
        .arg(head.seq as i64)
        .arg(head.hash.to_vec())
        .arg(head.signature);
        D::execute(tx, upsert).await?;
        Ok(seq)
    }
}

#[async_trait]
impl<D: Dialect> AuditStore for SqlStore<D> {
    async fn append_audit(&self, audit: &[AuditDraft]) -> Result<()> {
        let mut tx = self.begin().await?;
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = self
            .fetch_bulk(
                Sql::new(
                    "SELECT seq, at, actor, action, subject, purpose, detail, prev_hash, hash, mac \
                     FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .arg(after_seq as i64)
                .arg(limit as i64),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.int("seq")? as u64,
                    at: Timestamp(r.int("at")?),
                    actor: r.text("actor")?,
                    action: r.text("action")?,
                    subject: r
                        .opt_blob("subject")?
                        .map(|s| pseudonym(s, "audit_log"))
                        .transpose()?,
                    purpose: r.opt_text("purpose")?,
                    detail: r.text("detail")?,
                    prev_hash: hash32(r.blob("prev_hash")?, "audit_log")?,
                    hash: hash32(r.blob("hash")?, "audit_log")?,
                    mac: hash32(r.blob("mac")?, "audit_log")?,
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<SignedHead>> {
        let row = self
            .fetch_one(Sql::new(
                "SELECT seq, hash, signature FROM audit_head WHERE id = 1",
            ))
            .await?;
        row.map(|r| {
            Ok(SignedHead {
                seq: r.int("seq")? as u64,
                hash: hash32(r.blob("hash")?, "audit_head")?,
                signature: r.blob("signature")?,
            })
        })
        .transpose()
    }

    async fn audit_hashes(&self, after_seq: u64, limit: u32) -> Result<Vec<[u8; 32]>> {
        let q = Sql::new("SELECT hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .arg(after_seq as i64)
            .arg(limit as i64);
        self.fetch_bulk(q)
            .await?
            .iter()
            .map(|r| hash32(r.blob("hash")?, "audit_log"))
            .collect()
    }

    async fn find_audit_entry(&self, action: &str, needle: &str) -> Result<Option<u64>> {
        // The needle is matched literally: LIKE's wildcards and its escape are escaped.
        let escaped: String = needle
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '!' => vec!['!', c],
                c => vec![c],
            })
            .collect();
        let q = Sql::new(
            "SELECT MIN(seq) AS seq FROM audit_log WHERE action = $1 AND detail LIKE $2 ESCAPE '!'",
        )
        .arg(action)
        .arg(format!("%{escaped}%"));
        Ok(self
            .fetch_bulk(q)
            .await?
            .into_iter()
            .next()
            .map(|r| r.opt_int("seq"))
            .transpose()?
            .flatten()
            .map(|s| s as u64))
    }

    async fn publish_tree_head(&self, head: &TreeHeadRecord) -> Result<TreeHeadRecord> {
        let insert = Sql::new(
            "INSERT INTO audit_tree_heads (tree_size, at, root, public_key, signature) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
        )
        .arg(head.size as i64)
        .arg(head.at.0)
        .arg(head.root.to_vec())
        .arg(head.public_key.as_str())
        .arg(head.signature.as_str());
        self.execute(insert).await?;
        self.tree_head(Some(head.size))
            .await?
            .ok_or(StoreError::Corrupt("audit_tree_heads"))
    }

    async fn tree_head(&self, size: Option<u64>) -> Result<Option<TreeHeadRecord>> {
        let select = "SELECT tree_size, at, root, public_key, signature FROM audit_tree_heads";
        let q = match size {
            Some(size) => Sql::new(&format!("{select} WHERE tree_size = $1")).arg(size as i64),
            None => Sql::new(&format!("{select} ORDER BY tree_size DESC LIMIT 1")),
        };
        self.fetch_one(q)
            .await?
            .map(|r| tree_head_record(&r))
            .transpose()
    }
}
