//! Serving recommendations at the tier the subject's consent allows: `server` (their current
//! history, read for personalization and audited, scored against the item model, each item
//! explained by the history items behind it) or `contextual` (the request's context items and
//! popularity; nothing about the subject is read or stored). Re-ranking for category
//! diversity and popularity and provider fairness, and similar items.

use std::collections::{HashMap, HashSet};

use candor_domain::ErrorCode;
use candor_domain::{ItemId, SubjectId};
use candor_models::topk::top_k;
use serde::Serialize;

use crate::model::Serving;
use crate::{Actor, Engine, EngineError, Result};

/// The purpose personalization runs under.
pub const PERSONALIZATION: &str = "personalize.content.profiling";
/// Most items one request may ask for.
pub const MAX_N: usize = 1000;
/// Most ids in `exclude` or `context`.
pub const MAX_LIST: usize = 200;

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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// The subject's history items that contributed most, with their weights.
    pub because: Vec<(String, f32)>,
    /// The data categories the contributing history came from.
    pub categories: Vec<String>,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
                let granted = self
                    .store
                    .granted_purposes(&[pseudonym], category, &[PERSONALIZATION], self.now())
                    .await?;
                consented |= !granted.is_empty();
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
        // Only items the history actually points to, with a positive score, are personalized:
        // an item the model links to none of the history has nothing behind it.
        let mut supported = vec![false; scores.len()];
        for &h in &history {
            for &(j, _) in serving.model.neighbours(h) {
                supported[j as usize] = scores[j as usize] > 0.0;
            }
        }
        let picked = self.select(&serving, &scores, request, &history, Some(&supported))?;
        if picked.is_empty() {
            return self.contextual_with(
                &serving,
                request,
                "the item model links the subject's history to nothing they have not seen yet, so nothing is personalized",
            );
        }
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
        let picked = self.select(serving, &scores, request, &context, None)?;
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

    /// Filters (history, exclusions, category, and items outside `allowed` when given) and
    /// picks the top n, with MMR-style category diversity when asked.
    fn select(
        &self,
        serving: &Serving,
        scores: &[f32],
        request: &RecommendRequest,
        seen: &[u32],
        allowed: Option<&[bool]>,
    ) -> Result<Vec<(u32, f32)>> {
        let excluded: HashSet<u32> = request
            .exclude
            .iter()
            .filter_map(|id| serving.index.get(id).copied())
            .collect();
        let skip = |i: u32| {
            allowed.is_some_and(|a| !a[i as usize])
                || seen.binary_search(&i).is_ok()
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
