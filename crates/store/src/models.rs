//! `model_artifacts`: versioned item models (card and weights); every server serves the newest.

use async_trait::async_trait;
use candor_domain::Timestamp;

use crate::Result;
use crate::dialect::{Dialect, SqlStore};
use crate::sql::{Get, Sql};

/// A stored model artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelArtifact {
    /// Increasing version.
    pub version: i64,
    /// When it was stored.
    pub created_at: Timestamp,
    /// The model card (JSON).
    pub card: String,
    /// The encoded weights.
    pub weights: Vec<u8>,
}

/// Model artifacts.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Stores a trained model artifact; returns its version.
    async fn put_model(&self, card: &str, weights: &[u8], at: Timestamp) -> Result<i64>;
    /// The newest model artifact.
    async fn latest_model(&self) -> Result<Option<ModelArtifact>>;
    /// The newest model's version alone: what a server polls to pick up a model another
    /// server trained.
    async fn latest_model_version(&self) -> Result<Option<i64>>;
    /// Deletes every artifact older than `version` (all of them with `i64::MAX`): after an
    /// erasure, no stored model may still hold what it learned from the subject.
    async fn delete_models_below(&self, version: i64) -> Result<u64>;
}

#[async_trait]
impl<D: Dialect> ModelStore for SqlStore<D> {
    async fn put_model(&self, card: &str, weights: &[u8], at: Timestamp) -> Result<i64> {
        let insert = Sql::new(
            "INSERT INTO model_artifacts (created_at, card, weights) VALUES ($1, $2, $3) \
             RETURNING version",
        )
        .arg(at.0)
        .arg(card)
        .arg(weights);
        let mut conn = self.write.acquire().await?;
        let rows = D::fetch_all(&mut conn, insert).await?;
        rows.first()
            .map(|r| r.int("version"))
            .transpose()?
            .ok_or(crate::StoreError::Corrupt("model_artifacts"))
    }

    async fn delete_models_below(&self, version: i64) -> Result<u64> {
        self.execute(Sql::new("DELETE FROM model_artifacts WHERE version < $1").arg(version))
            .await
    }

    async fn latest_model_version(&self) -> Result<Option<i64>> {
        let q = Sql::new("SELECT MAX(version) AS version FROM model_artifacts");
        Ok(self
            .fetch_one(q)
            .await?
            .map(|r| r.opt_int("version"))
            .transpose()?
            .flatten())
    }

    async fn latest_model(&self) -> Result<Option<ModelArtifact>> {
        let q = Sql::new(
            "SELECT version, created_at, card, weights FROM model_artifacts \
             ORDER BY version DESC LIMIT 1",
        );
        let row = self.fetch_one(q).await?;
        row.map(|r| {
            Ok(ModelArtifact {
                version: r.int("version")?,
                created_at: Timestamp(r.int("created_at")?),
                card: r.text("card")?,
                weights: r.blob("weights")?,
            })
        })
        .transpose()
    }
}
