//! The item model: training on events read for personalization (so lapsed or withdrawn
//! consent is never read), the model card, versioned artifacts in the store, and loading the
//! newest into what every request is served from. The item model and the popularity it
//! carries are differentially private unless privacy is turned off in settings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candor_domain::ErrorCode;
use candor_models::Interactions;
use candor_models::dp::{DpConfig, DpItemModel};
use candor_models::ease::{Ease, EaseConfig, MAX_ITEMS};
use candor_models::knn::{ItemKnn, KnnConfig};
use candor_models::metrics::evaluate_with_categories;
use candor_models::sparse::SparseItemModel;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::recommend::PERSONALIZATION;
use crate::{Actor, Engine, EngineError, Result};

/// Weights kept per item in the serving model.
const KEEP_PER_ITEM: usize = 200;

/// What a model was built from and how, as published at `GET /v1/models/current`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelCard {
    /// Artifact version.
    pub version: i64,
    /// `edlae` or `item_knn`.
    pub algorithm: String,
    /// Hyperparameters.
    pub hyperparameters: BTreeMap<String, f64>,
    /// When training finished (RFC 3339).
    pub trained_at: String,
    /// Subjects whose consented events were used.
    pub subjects: usize,
    /// Events used.
    pub events: usize,
    /// Items in the model.
    pub items: usize,
    /// The purpose the training data was read for.
    pub purpose: String,
    /// The data categories used.
    pub categories: Vec<String>,
    /// Figures of the same recipe on held-out consented history.
    pub evaluation: ModelEvaluation,
    /// The differential-privacy guarantee of the release; `None` when trained without noise.
    #[serde(default)]
    pub privacy: Option<ModelPrivacyCard>,
}

/// A model card as it is shown: the exact training counts and held-out figures (statistics of
/// the training data that are not differentially private) only to admin and dpo callers;
/// everyone else, and every subject export, gets the card without them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelCardView {
    /// Artifact version.
    pub version: i64,
    /// `dp_spectral`, `edlae` or `item_knn`.
    pub algorithm: String,
    /// Hyperparameters.
    pub hyperparameters: BTreeMap<String, f64>,
    /// When training finished (RFC 3339).
    pub trained_at: String,
    /// Subjects whose consented events were used (admin and dpo only).
    pub subjects: Option<usize>,
    /// Events used (admin and dpo only).
    pub events: Option<usize>,
    /// Items in the model.
    pub items: usize,
    /// The purpose the training data was read for.
    pub purpose: String,
    /// The data categories used.
    pub data_categories: Vec<String>,
    /// Figures of the same recipe on held-out consented history (admin and dpo only).
    pub evaluation: Option<ModelEvaluation>,
    /// The differential-privacy guarantee of the release; `None` when trained without noise.
    pub privacy: Option<ModelPrivacyCard>,
}

impl ModelCard {
    /// The card as shown to a caller who may (`statistics`) or may not see the exact
    /// training statistics.
    pub fn view(self, statistics: bool) -> ModelCardView {
        ModelCardView {
            version: self.version,
            algorithm: self.algorithm,
            hyperparameters: self.hyperparameters,
            trained_at: self.trained_at,
            subjects: statistics.then_some(self.subjects),
            events: statistics.then_some(self.events),
            items: self.items,
            purpose: self.purpose,
            data_categories: self.categories,
            evaluation: statistics.then_some(self.evaluation),
            privacy: self.privacy,
        }
    }
}

/// What the model's differential privacy promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelPrivacyCard {
    /// ε of the release.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// zCDP ρ of the release.
    pub rho: f64,
    /// What a neighbouring dataset differs in.
    pub unit: String,
    /// What is released and how.
    pub mechanism: String,
    /// Items kept per subject (contribution bound).
    pub max_items_per_user: usize,
    /// Noise σ on popularity, per subject contribution of unit length.
    pub popularity_sigma: f64,
    /// Noise σ on each co-occurrence entry, same units.
    pub cooccurrence_sigma: f64,
    /// zCDP ρ of every DP model release so far (this one included), composed.
    #[serde(default)]
    pub releases_rho: f64,
    /// ε at `delta` of every DP model release so far, composed: what a subject whose data
    /// was in all of them is protected by.
    #[serde(default)]
    pub releases_epsilon: f64,
}

/// How the model's recipe did on held-out data at training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelEvaluation {
    /// How the figures were measured.
    pub protocol: String,
    /// Subjects with held-out items.
    pub users: usize,
    /// NDCG@10.
    pub ndcg_10: f64,
    /// Recall@20.
    pub recall_20: f64,
    /// Precision@10.
    pub precision_10: f64,
    /// HR@10.
    pub hr_10: f64,
    /// Coverage@10.
    pub coverage_10: f64,
    /// Gini coefficient of exposure in the top 10.
    pub exposure_gini_10: f64,
    /// The Lorenz curve of that exposure: the share of all top-10 exposure going to the
    /// least exposed 0%, 5%, ..., 100% of the catalogue (absent from models trained before
    /// it was measured).
    #[serde(default)]
    pub exposure_lorenz_10: Vec<f64>,
    /// Mean training popularity of the top-10 items.
    pub mean_popularity_10: f64,
    /// Share of pairs in a top-10 list from different catalogue categories.
    pub intra_list_diversity_10: f64,
}

/// A fitted serving model and what the card says about it.
struct Fitted {
    algorithm: &'static str,
    hyperparameters: BTreeMap<String, f64>,
    model: SparseItemModel,
    privacy: Option<ModelPrivacyCard>,
}

/// Fits the serving model. With privacy on (the default), the DP item model (joint DP:
/// noisy popularity and projected co-occurrence, see `candor_models::dp`), sparsified; with it
/// off, EDLAE (hyperparameters chosen on ml-100k validation splits), sparsified, where the
/// catalogue allows the dense inverse, and item-kNN above that.
fn fit_item_model(data: &Interactions, privacy: Option<crate::ModelPrivacy>) -> Result<Fitted> {
    let failed = |e: candor_models::ModelError| EngineError::Setup(format!("training failed: {e}"));
    if let Some(p) = privacy {
        let config = DpConfig {
            epsilon: p.epsilon,
            delta: p.delta,
            ..DpConfig::default()
        };
        let dp = DpItemModel::fit(data, config, &mut StdRng::from_entropy()).map_err(failed)?;
        let g = dp.guarantee();
        let hp = BTreeMap::from([
            (
                "max_items_per_user".into(),
                config.max_items_per_user as f64,
            ),
            ("max_items".into(), config.max_items as f64),
            ("max_factors".into(), config.factors as f64),
            ("rank".into(), dp.rank() as f64),
            ("covered_items".into(), dp.covered() as f64),
            ("kept_per_item".into(), KEEP_PER_ITEM as f64),
        ]);
        return Ok(Fitted {
            algorithm: "dp_spectral",
            hyperparameters: hp,
            model: dp.to_sparse(KEEP_PER_ITEM),
            privacy: Some(ModelPrivacyCard {
                epsilon: g.epsilon,
                delta: g.delta,
                rho: g.rho,
                unit: "subject (add or remove one subject's whole history)".into(),
                mechanism: "joint DP: discrete Gaussian noise on bounded, unit-normalized \
                            popularity and item co-occurrence, projected to its top eigenvectors; \
                            subject vectors come from each subject's own history at serving time"
                    .into(),
                max_items_per_user: config.max_items_per_user,
                popularity_sigma: g.popularity_sigma,
                cooccurrence_sigma: g.cooccurrence_sigma,
                releases_rho: g.rho,
                releases_epsilon: g.epsilon,
            }),
        });
    }
    let popularity: Vec<f32> = data.item_counts().into_iter().map(|c| c as f32).collect();
    if data.n_items() <= MAX_ITEMS {
        let config = EaseConfig {
            lambda: 200.0,
            dropout: 0.67,
        };
        let ease = Ease::fit(data, config).map_err(failed)?;
        let hp = BTreeMap::from([
            ("lambda".into(), config.lambda),
            ("dropout".into(), config.dropout),
            ("kept_per_item".into(), KEEP_PER_ITEM as f64),
        ]);
        Ok(Fitted {
            algorithm: "edlae",
            hyperparameters: hp,
            model: SparseItemModel::from_ease(&ease, data.n_items(), KEEP_PER_ITEM, popularity),
            privacy: None,
        })
    } else {
        let config = KnnConfig {
            neighbours: KEEP_PER_ITEM,
            shrink: 0.0,
        };
        let knn = ItemKnn::fit(data, config).map_err(failed)?;
        let hp = BTreeMap::from([
            ("neighbours".into(), config.neighbours as f64),
            ("shrink".into(), config.shrink as f64),
        ]);
        Ok(Fitted {
            algorithm: "item_knn",
            hyperparameters: hp,
            model: SparseItemModel::from_knn(&knn, data.n_items(), popularity),
            privacy: None,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredCard {
    card: ModelCard,
    item_ids: Vec<String>,
}

/// A loaded model with its item index and the catalogue's categories.
pub(crate) struct Serving {
    pub(crate) card: ModelCard,
    pub(crate) model: SparseItemModel,
    pub(crate) item_ids: Vec<String>,
    pub(crate) index: HashMap<String, u32>,
    pub(crate) categories: Vec<Option<String>>,
    pub(crate) providers: Vec<Option<String>>,
}

impl Engine {
    /// Trains the item model on every event consented for personalization now, stores it as
    /// a new version and serves it.
    pub async fn train(&self, actor: &Actor) -> Result<ModelCard> {
        let Some(purpose) = self.policy.purposes.get(PERSONALIZATION) else {
            return Err(EngineError::refused(
                ErrorCode::NoPersonalizationPurpose,
                format!("the policy has no `{PERSONALIZATION}` purpose"),
            ));
        };
        let mut subjects: HashMap<candor_domain::Pseudonym, u32> = HashMap::new();
        let mut items: HashMap<String, u32> = HashMap::new();
        let mut pairs = Vec::new();
        let mut categories = std::collections::BTreeSet::new();
        let mut after = 0;
        loop {
            let page = self
                .read_events(actor, PERSONALIZATION, None, after, 10_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for e in page {
                let next = subjects.len() as u32;
                let u = *subjects.entry(e.subject).or_insert(next);
                let next = items.len() as u32;
                let i = *items.entry(e.payload.item).or_insert(next);
                categories.insert(e.category);
                pairs.push((u, i));
            }
        }
        if pairs.is_empty() {
            return Err(EngineError::refused(
                ErrorCode::NoTrainingData,
                "no events are consented for personalization yet",
            ));
        }
        let data = Interactions::from_pairs(subjects.len(), items.len(), &pairs);
        // Evaluate the same recipe on a held-out fifth of each subject's consented history,
        // then fit on everything.
        let (fit_part, held) = candor_models::holdout(&data, 0.2, 7);
        let privacy = self.config.model_privacy;
        let probe = fit_item_model(&fit_part, privacy)?.model;
        let labels = self.catalogue_labels().await?;
        let mut codes: HashMap<&str, u32> = HashMap::new();
        let mut category_codes = vec![None; items.len()];
        for (id, &i) in &items {
            if let Some(Some(category)) = labels.get(id).map(|l| l.0.as_deref()) {
                let next = codes.len() as u32;
                category_codes[i as usize] = Some(*codes.entry(category).or_insert(next));
            }
        }
        let report = evaluate_with_categories(&probe, &fit_part, &held, Some(&category_codes));
        let Fitted {
            algorithm,
            hyperparameters,
            model,
            privacy,
        } = fit_item_model(&data, privacy)?;
        let evaluation = ModelEvaluation {
            protocol: "hold out a seeded 20% of each subject's consented items; rank all items but the rest".into(),
            users: report.users,
            ndcg_10: report.ndcg_10,
            recall_20: report.recall_20,
            precision_10: report.precision_10,
            hr_10: report.hr_10,
            coverage_10: report.coverage_10,
            exposure_gini_10: report.gini_10,
            exposure_lorenz_10: report.lorenz_10.to_vec(),
            mean_popularity_10: report.popularity_10,
            intra_list_diversity_10: report.ild_10.unwrap_or(0.0),
        };
        let mut item_ids = vec![String::new(); items.len()];
        for (id, i) in items {
            item_ids[i as usize] = id;
        }
        let mut privacy = privacy;
        if let Some(p) = privacy.as_mut() {
            // Every release composes with the earlier ones: account for all of them.
            let (rho, epsilon) = self.account_model_release(actor, p).await?;
            p.releases_rho = rho;
            p.releases_epsilon = epsilon;
        }
        let mut card = ModelCard {
            version: 0,
            algorithm: algorithm.into(),
            hyperparameters,
            trained_at: self.now().to_rfc3339(),
            subjects: subjects.len(),
            events: pairs.len(),
            items: item_ids.len(),
            purpose: purpose.name.clone(),
            categories: categories.into_iter().collect(),
            evaluation,
            privacy,
        };
        let stored = StoredCard {
            card: card.clone(),
            item_ids,
        };
        let json = serde_json::to_string(&stored).expect("a model card serializes");
        card.version = self
            .store
            .put_model(&json, &model.to_bytes(), self.now())
            .await?;
        let serving = self
            .serving_from(card.clone(), model, stored.item_ids)
            .await?;
        *self.serving.write() = Some(Arc::new(serving));
        tracing::info!(
            version = card.version,
            events = card.events,
            "trained item model"
        );
        Ok(card)
    }

    /// The catalogue's category and provider of every item, by id.
    /// Every catalogue item's (category, provider), by id.
    pub(crate) async fn catalogue_labels(
        &self,
    ) -> Result<HashMap<String, (Option<String>, Option<String>)>> {
        let mut by_id = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_items(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            by_id.extend(page.into_iter().map(|i| (i.id, (i.category, i.provider))));
        }
        Ok(by_id)
    }

    async fn serving_from(
        &self,
        card: ModelCard,
        model: SparseItemModel,
        item_ids: Vec<String>,
    ) -> Result<Serving> {
        let index = item_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        let by_id = self.catalogue_labels().await?;
        let categories = item_ids
            .iter()
            .map(|id| by_id.get(id).and_then(|c| c.0.clone()))
            .collect();
        let providers = item_ids
            .iter()
            .map(|id| by_id.get(id).and_then(|c| c.1.clone()))
            .collect();
        Ok(Serving {
            card,
            model,
            item_ids,
            index,
            categories,
            providers,
        })
    }

    /// Loads the newest stored model if it is newer than the one being served (another
    /// server, or `candor train`, may have trained it); returns whether it changed.
    pub async fn refresh_model(&self) -> Result<bool> {
        let current = self.serving.read().as_ref().map(|s| s.card.version);
        let latest = self.store.latest_model_version().await?;
        if latest.is_some() && latest == current {
            return Ok(false);
        }
        let Some(artifact) = self.store.latest_model().await? else {
            // Another server withdrew the model (an erasure left nothing to train on).
            return Ok(self.serving.write().take().is_some());
        };
        if current == Some(artifact.version) {
            return Ok(false);
        }
        self.load_artifact(artifact).await?;
        Ok(true)
    }

    /// Loads the newest stored model, if any.
    pub(crate) async fn load_model(&self) -> Result<()> {
        let Some(artifact) = self.store.latest_model().await? else {
            return Ok(());
        };
        self.load_artifact(artifact).await
    }

    async fn load_artifact(&self, artifact: candor_store::ModelArtifact) -> Result<()> {
        let stored: StoredCard = serde_json::from_str(&artifact.card)
            .map_err(|_| EngineError::Setup("the stored model card is corrupt".into()))?;
        let model = SparseItemModel::from_bytes(&artifact.weights)
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        let mut card = stored.card;
        card.version = artifact.version;
        let serving = self.serving_from(card, model, stored.item_ids).await?;
        *self.serving.write() = Some(Arc::new(serving));
        Ok(())
    }

    pub(crate) fn current_model(&self) -> Result<Arc<Serving>> {
        self.serving.read().clone().ok_or_else(|| {
            EngineError::refused(
                ErrorCode::ModelNotTrained,
                "no item model has been trained yet; POST /v1/models/train",
            )
        })
    }

    /// The card of the model being served.
    pub fn model_card(&self) -> Result<ModelCard> {
        Ok(self.current_model()?.card.clone())
    }
}
