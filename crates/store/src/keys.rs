//! `subject_keys` and `api_keys`: each subject's wrapped data key (destroyed on erasure), and
//! API keys stored as hashes.

use async_trait::async_trait;
use candor_domain::{AuditDraft, Pseudonym, Timestamp};

use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};
use crate::{IN_CHUNK, INSERT_CHUNK, Result, pseudonym};

/// An API key as stored: the secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id.
    pub id: String,
    /// Role name.
    pub role: String,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    /// A label for people.
    pub label: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops admitting anything, if it expires.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

fn api_key(r: &impl Get) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.text("id")?,
        role: r.text("role")?,
        secret_hash: r.blob("secret_hash")?,
        label: r.text("label")?,
        created_at: Timestamp(r.int("created_at")?),
        expires_at: r.opt_int("expires_at")?.map(Timestamp),
        revoked_at: r.opt_int("revoked_at")?.map(Timestamp),
    })
}

const API_KEY_COLUMNS: &str = "id, role, secret_hash, label, created_at, expires_at, revoked_at";

/// Subjects' data keys and API keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The wrapped data keys of those of the given subjects that have one.
    async fn subject_keys(&self, subjects: &[Pseudonym]) -> Result<Vec<(Pseudonym, Vec<u8>)>>;
    /// Stores each wrapped key unless its subject already has one, in one transaction;
    /// returns the keys in force for those subjects.
    async fn ensure_subject_keys(
        &self,
        keys: &[(Pseudonym, Vec<u8>)],
        at: Timestamp,
    ) -> Result<Vec<(Pseudonym, Vec<u8>)>>;
    /// Destroys a subject's data key (crypto-shredding); returns how many were deleted (0 or
    /// 1), and purges the deleted bytes from the files.
    async fn delete_subject_key(&self, subject: &Pseudonym) -> Result<u64>;
    /// A page of every wrapped data key, by pseudonym, after `after` (`None`: from the start).
    async fn subject_key_page(
        &self,
        after: Option<&Pseudonym>,
        limit: u32,
    ) -> Result<Vec<(Pseudonym, Vec<u8>)>>;
    /// Replaces the wrapped form of existing data keys, all in one transaction (master-key
    /// rotation); keys of subjects erased meanwhile are not brought back.
    async fn rewrap_subject_keys(&self, keys: &[(Pseudonym, Vec<u8>)]) -> Result<()>;
    /// Deletes every data key (after they moved to a key store of their own).
    async fn delete_all_subject_keys(&self) -> Result<u64>;
    /// Stores an API key, with an audit entry.
    async fn put_api_key(&self, key: &ApiKeyRecord, audit: &[AuditDraft]) -> Result<()>;
    /// Looks an API key up by id.
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// Every API key, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// Revokes a key at `at`, with an audit entry; `false` if there is no such key or it was
    /// already revoked (then nothing is written).
    async fn revoke_api_key(&self, id: &str, at: Timestamp, audit: &[AuditDraft]) -> Result<bool>;
}

/// `SELECT subject, wrapped_key FROM subject_keys WHERE subject IN (...)`.
fn select_keys(subjects: &[&Pseudonym]) -> Sql {
    let mut q = Sql::new("SELECT subject, wrapped_key FROM subject_keys WHERE subject IN (");
    q.list(subjects.iter().map(|s| s.0.to_vec())).push(")");
    q
}

fn key_pair(r: &impl Get) -> Result<(Pseudonym, Vec<u8>)> {
    Ok((
        pseudonym(r.blob("subject")?, "subject_keys")?,
        r.blob("wrapped_key")?,
    ))
}

#[async_trait]
impl<D: Dialect> KeyStore for SqlStore<D> {
    async fn subject_keys(&self, subjects: &[Pseudonym]) -> Result<Vec<(Pseudonym, Vec<u8>)>> {
        let mut out = Vec::with_capacity(subjects.len());
        let subjects: Vec<&Pseudonym> = subjects.iter().collect();
        for chunk in subjects.chunks(IN_CHUNK) {
            for row in self.fetch(select_keys(chunk)).await? {
                out.push(key_pair(&row)?);
            }
        }
        Ok(out)
    }

    async fn ensure_subject_keys(
        &self,
        keys: &[(Pseudonym, Vec<u8>)],
        at: Timestamp,
    ) -> Result<Vec<(Pseudonym, Vec<u8>)>> {
        let mut tx = self.begin().await?;
        // Inserted in key order so concurrent writers lock rows in the same order.
        let mut ordered: Vec<&(Pseudonym, Vec<u8>)> = keys.iter().collect();
        ordered.sort_by_key(|(subject, _)| *subject);
        for chunk in ordered.chunks(INSERT_CHUNK) {
            let mut q =
                Sql::new("INSERT INTO subject_keys (subject, wrapped_key, created_at) VALUES ");
            q.rows(chunk, |(subject, wrapped)| {
                vec![
                    subject.0.to_vec().into(),
                    wrapped.clone().into(),
                    at.0.into(),
                ]
            });
            q.push(" ON CONFLICT (subject) DO NOTHING");
            D::execute(&mut tx, q).await?;
        }
        let mut out = Vec::with_capacity(keys.len());
        let subjects: Vec<&Pseudonym> = keys.iter().map(|(s, _)| s).collect();
        for chunk in subjects.chunks(IN_CHUNK) {
            for row in D::fetch_all(&mut tx, select_keys(chunk)).await? {
                out.push(key_pair(&row)?);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn delete_subject_key(&self, subject: &Pseudonym) -> Result<u64> {
        let delete =
            Sql::new("DELETE FROM subject_keys WHERE subject = $1").arg(subject.0.to_vec());
        let n = self.execute(delete).await?;
        D::purge_deleted_bytes(&self.write).await?;
        Ok(n)
    }

    async fn subject_key_page(
        &self,
        after: Option<&Pseudonym>,
        limit: u32,
    ) -> Result<Vec<(Pseudonym, Vec<u8>)>> {
        let mut q = Sql::new("SELECT subject, wrapped_key FROM subject_keys");
        if let Some(after) = after {
            q.push(" WHERE subject > ").bind(after.0.to_vec());
        }
        q.push(" ORDER BY subject LIMIT ").bind(limit as i64);
        self.fetch(q).await?.iter().map(key_pair).collect()
    }

    async fn rewrap_subject_keys(&self, keys: &[(Pseudonym, Vec<u8>)]) -> Result<()> {
        let mut tx = self.begin().await?;
        for (subject, wrapped) in keys {
            let update = Sql::new("UPDATE subject_keys SET wrapped_key = $1 WHERE subject = $2")
                .arg(wrapped.clone())
                .arg(subject.0.to_vec());
            D::execute(&mut tx, update).await?;
        }
        tx.commit().await?;
        D::purge_deleted_bytes(&self.write).await
    }

    async fn delete_all_subject_keys(&self) -> Result<u64> {
        let n = self.execute(Sql::new("DELETE FROM subject_keys")).await?;
        D::purge_deleted_bytes(&self.write).await?;
        Ok(n)
    }

    async fn put_api_key(&self, key: &ApiKeyRecord, audit: &[AuditDraft]) -> Result<()> {
        let mut tx = self.begin().await?;
        let insert = Sql::new(
            "INSERT INTO api_keys (id, role, secret_hash, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .arg(key.id.as_str())
        .arg(key.role.as_str())
        .arg(key.secret_hash.clone())
        .arg(key.label.as_str())
        .arg(key.created_at.0)
        .arg(key.expires_at.map(|t| t.0));
        D::execute(&mut tx, insert).await?;
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let q = Sql::new(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
        ))
        .arg(id);
        self.fetch_one(q).await?.as_ref().map(api_key).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let q = Sql::new(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ));
        self.fetch(q).await?.iter().map(api_key).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: Timestamp, audit: &[AuditDraft]) -> Result<bool> {
        let mut tx = self.begin().await?;
        let revoke =
            Sql::new("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .arg(at.0)
                .arg(id);
        if D::execute(&mut tx, revoke).await? == 0 {
            return Ok(false);
        }
        self.append_in_tx(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
