//! Recommendations. Training reads only events consented for personalization, through the
//! purpose-bound read path, and stores a versioned item model. Serving picks the tier the
//! subject's consent allows: `server` (their current history, read for personalization and
//! audited, scored against the item model, each item explained by the history items behind
//! it) or `contextual` (the request's context items and popularity; nothing about the subject
//! is read or stored). The item model and the popularity it carries are differentially private
//! unless privacy is turned off in settings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use candor_domain::ErrorCode;
use candor_domain::{ItemId, SubjectId};
use candor_models::Interactions;
use candor_models::dp::{DpConfig, DpItemModel};
use candor_models::ease::{Ease, EaseConfig, MAX_ITEMS};
use candor_models::knn::{ItemKnn, KnnConfig};
use candor_models::metrics::evaluate_with_categories;
use candor_models::sparse::SparseItemModel;
use candor_models::topk::top_k;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::{Actor, Engine, EngineError, Result};

/// The purpose personalization runs under.
pub const PERSONALIZATION: &str = "personalize.content.profiling";
/// Most items one request may ask for.
pub const MAX_N: usize = 1000;
/// Most ids in `exclude` or `context`.
pub const MAX_LIST: usize = 200;
/// Weights kept per item in the serving model.
const KEEP_PER_ITEM: usize = 200;

/// What a model was built from and how, as published at `GET /v1/models/current`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// What the model's differential privacy promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    card: ModelCard,
    model: SparseItemModel,
    item_ids: Vec<String>,
    index: HashMap<String, u32>,
    categories: Vec<Option<String>>,
    providers: Vec<Option<String>>,
}

/// A request for recommendations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecommendRequest {
    /// How many items (1 to 1,000).
    pub n: usize,
    /// Item ids not to recommend.
    pub exclude: Vec<String>,
    /// Only items of this catalogue category.
    pub category: Option<String>,
    /// Items the person is looking at now (the contextual tier's signal).
    pub context: Vec<String>,
    /// 0 = by score only; 1 = strongly favour categories not yet in the list (MMR).
    pub diversity: f32,
    /// 0 = by score only; 1 = strongly favour less popular items and providers not yet in
    /// the list (popularity-bias and provider-exposure re-ranking).
    pub fairness: f32,
}

/// Why an item was recommended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The subject's history items that contributed most, with their weights.
    pub because: Vec<(String, f32)>,
    /// The data categories the contributing history came from.
    pub categories: Vec<String>,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommended {
    /// Item id.
    pub item: String,
    /// Score (comparable within one response).
    pub score: f32,
    /// Present in the `server` tier.
    pub explanation: Option<Explanation>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendations {
    /// `server` or `contextual`.
    pub tier: &'static str,
    /// Why this tier.
    pub reason: String,
    /// The model version used.
    pub model_version: i64,
    /// The items, best first.
    pub items: Vec<Recommended>,
}

fn check_ids(ids: &[String], field: &str) -> Result<()> {
    if ids.len() > MAX_LIST {
        return Err(EngineError::refused(
            ErrorCode::InvalidField,
            format!("{field} lists at most {MAX_LIST} items"),
        ));
    }
    for id in ids {
        ItemId::parse(id)
            .map_err(|e| EngineError::refused(ErrorCode::InvalidField, format!("{field}: {e}")))?;
    }
    Ok(())
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
        let Some(artifact) = self.store.latest_model().await? else {
            return Ok(false);
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

    fn current_model(&self) -> Result<Arc<Serving>> {
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

    fn check_request(&self, request: &RecommendRequest) -> Result<()> {
        if request.n == 0 || request.n > MAX_N {
            return Err(EngineError::refused(
                ErrorCode::InvalidN,
                format!("n must be between 1 and {MAX_N}"),
            ));
        }
        if !(0.0..=1.0).contains(&request.diversity) || !(0.0..=1.0).contains(&request.fairness) {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "diversity and fairness must be between 0 and 1",
            ));
        }
        check_ids(&request.exclude, "exclude")?;
        check_ids(&request.context, "context")
    }

    /// Recommendations for a subject, at the tier their consent allows.
    pub async fn recommend(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        request: &RecommendRequest,
        gpc: bool,
    ) -> Result<Recommendations> {
        self.check_request(request)?;
        let serving = self.current_model()?;
        let pseudonym = self.pseudonymize(subject);
        if gpc {
            self.apply_gpc(actor, &[pseudonym]).await?;
        }
        // The purpose-bound read returns events only while the subject holds a live
        // personalization grant, so it doubles as the consent check; only an empty answer
        // needs the consent state to tell "no consent" from "no history".
        let events = self
            .read_events_audited(actor, PERSONALIZATION, Some(subject), 0, 10_000, false)
            .await?;
        if events.is_empty() {
            if !self.store.restricted(&[pseudonym]).await?.is_empty() {
                return self.contextual_with(
                    &serving,
                    request,
                    "the subject has restricted processing of their data, so nothing about them is used",
                );
            }
            let purpose = &self.policy.purposes[PERSONALIZATION];
            let mut consented = false;
            for category in &purpose.categories {
                let lacking = self
                    .store
                    .subjects_without_grant(&[pseudonym], category, &[PERSONALIZATION], self.now())
                    .await?;
                consented |= lacking.is_empty();
            }
            let reason = if consented {
                "the subject has consented but has no history yet"
            } else {
                "the subject has not consented to personalization, so nothing about them is used"
            };
            return self.contextual_with(&serving, request, reason);
        }
        let mut history: Vec<u32> = Vec::new();
        let mut category_of: HashMap<u32, String> = HashMap::new();
        for e in &events {
            if let Some(&i) = serving.index.get(&e.payload.item) {
                history.push(i);
                category_of.insert(i, e.category.clone());
            }
        }
        history.sort_unstable();
        history.dedup();
        if history.is_empty() {
            return self.contextual_with(
                &serving,
                request,
                "the subject has consented but has no history the model knows yet",
            );
        }
        let mut scores = vec![0f32; serving.model.n_items()];
        serving.model.score(&history, &mut scores);
        let picked = self.select(&serving, &scores, request, &history)?;
        let items = picked
            .into_iter()
            .map(|(i, score)| {
                let parts = serving.model.explain(&history, i);
                let mut categories: Vec<String> = parts
                    .iter()
                    .filter_map(|(h, _)| category_of.get(h).cloned())
                    .collect();
                categories.sort();
                categories.dedup();
                Recommended {
                    item: serving.item_ids[i as usize].clone(),
                    score,
                    explanation: Some(Explanation {
                        because: parts
                            .into_iter()
                            .take(3)
                            .map(|(h, w)| (serving.item_ids[h as usize].clone(), w))
                            .collect(),
                        categories,
                    }),
                }
            })
            .collect();
        Ok(Recommendations {
            tier: "server",
            reason: "personalized from the subject's own consented history".into(),
            model_version: serving.card.version,
            items,
        })
    }

    /// Recommendations from context items alone: no identity, nothing stored.
    pub fn recommend_contextual(&self, request: &RecommendRequest) -> Result<Recommendations> {
        self.check_request(request)?;
        let serving = self.current_model()?;
        self.contextual_with(
            &serving,
            request,
            "no identity: from the request's context items and popularity",
        )
    }

    fn contextual_with(
        &self,
        serving: &Serving,
        request: &RecommendRequest,
        reason: &str,
    ) -> Result<Recommendations> {
        let mut context: Vec<u32> = request
            .context
            .iter()
            .filter_map(|id| serving.index.get(id).copied())
            .collect();
        context.sort_unstable();
        context.dedup();
        let popularity = serving.model.popularity();
        let max_pop = popularity.iter().copied().fold(1.0f32, f32::max);
        let mut scores = vec![0f32; serving.model.n_items()];
        serving.model.score(&context, &mut scores);
        let max_ctx = scores.iter().copied().fold(0.0f32, f32::max).max(1e-6);
        // Context dominates; popularity breaks ties and fills in when there is no context.
        for (s, p) in scores.iter_mut().zip(popularity) {
            *s = *s / max_ctx + 0.1 * p / max_pop;
        }
        let picked = self.select(serving, &scores, request, &context)?;
        Ok(Recommendations {
            tier: "contextual",
            reason: reason.into(),
            model_version: serving.card.version,
            items: picked
                .into_iter()
                .map(|(i, score)| Recommended {
                    item: serving.item_ids[i as usize].clone(),
                    score,
                    explanation: None,
                })
                .collect(),
        })
    }

    /// Filters (history, exclusions, category) and picks the top n, with MMR-style
    /// category diversity when asked.
    fn select(
        &self,
        serving: &Serving,
        scores: &[f32],
        request: &RecommendRequest,
        seen: &[u32],
    ) -> Result<Vec<(u32, f32)>> {
        let excluded: HashSet<u32> = request
            .exclude
            .iter()
            .filter_map(|id| serving.index.get(id).copied())
            .collect();
        let skip = |i: u32| {
            seen.binary_search(&i).is_ok()
                || excluded.contains(&i)
                || request
                    .category
                    .as_ref()
                    .is_some_and(|c| serving.categories[i as usize].as_ref() != Some(c))
        };
        if request.diversity <= 0.0 && request.fairness <= 0.0 {
            return Ok(top_k(scores, request.n, skip));
        }
        // Greedy re-ranking (MMR) over a pool of the best candidates: relevance, minus the
        // share of already chosen items in the same category (diversity), minus popularity
        // and the share from the same provider (fairness).
        let pool = top_k(scores, (request.n * 5).max(50), skip);
        let best = pool.first().map_or(1.0, |p| p.1.abs().max(1e-6));
        let popularity = serving.model.popularity();
        let max_pop = popularity.iter().copied().fold(1.0f32, f32::max);
        let share = |chosen: &[(u32, f32)], same: &dyn Fn(u32) -> bool| {
            if chosen.is_empty() {
                0.0
            } else {
                chosen.iter().filter(|(j, _)| same(*j)).count() as f32 / chosen.len() as f32
            }
        };
        let (d, f) = (request.diversity, request.fairness);
        let mut chosen: Vec<(u32, f32)> = Vec::with_capacity(request.n);
        let mut remaining = pool;
        while chosen.len() < request.n && !remaining.is_empty() {
            let (pos, _) = remaining
                .iter()
                .enumerate()
                .map(|(k, &(i, s))| {
                    let i_cat = &serving.categories[i as usize];
                    let i_prov = &serving.providers[i as usize];
                    let same_category =
                        share(&chosen, &|j| &serving.categories[j as usize] == i_cat);
                    let same_provider = share(&chosen, &|j| {
                        i_prov.is_some() && &serving.providers[j as usize] == i_prov
                    });
                    let pop = popularity[i as usize] / max_pop;
                    let value = (1.0 - d.max(f)) * s / best
                        - d * same_category
                        - f * 0.5 * (pop + same_provider);
                    (k, value)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .expect("remaining is not empty");
            chosen.push(remaining.remove(pos));
        }
        Ok(chosen)
    }

    /// Items most similar to an item, from the item model.
    pub fn similar_items(&self, item: &str, n: usize) -> Result<Vec<(String, f32)>> {
        if n == 0 || n > MAX_N {
            return Err(EngineError::refused(
                ErrorCode::InvalidN,
                format!("n must be between 1 and {MAX_N}"),
            ));
        }
        ItemId::parse(item)
            .map_err(|e| EngineError::refused(ErrorCode::InvalidId, e.to_string()))?;
        let serving = self.current_model()?;
        let Some(&i) = serving.index.get(item) else {
            return Err(EngineError::refused(
                ErrorCode::UnknownItem,
                "the item model does not know this item",
            ));
        };
        Ok(serving
            .model
            .neighbours(i)
            .iter()
            .filter(|(_, w)| *w > 0.0)
            .take(n)
            .map(|&(j, w)| (serving.item_ids[j as usize].clone(), w))
            .collect())
    }
}
