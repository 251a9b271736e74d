//! JSON wire types: the request and response bodies of the HTTP API, converted explicitly to
//! and from engine types. They carry the OpenAPI schemas.

use std::collections::BTreeMap;

use candor_domain::Item;
use candor_engine::consent::{ConsentHistoryEntry, ConsentView};
use candor_engine::{AuditReport, EventDraft, IngestReport};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Subject id (1-128 of `A-Z a-z 0-9 _ . : @ -`). Never stored: only its keyed hash is.
    pub subject: String,
    /// Item id; the item must be in the catalogue.
    pub item: String,
    /// Event type declared in the policy, e.g. `view` or `purchase`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Numeric value where the event type declares one (quantity, rating).
    #[serde(default)]
    pub value: Option<f64>,
    /// RFC 3339 time of the event; defaults to now.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Context values whose keys the policy declares for the event type.
    #[serde(default)]
    pub context: Option<BTreeMap<String, String>>,
}

impl From<EventBody> for EventDraft {
    fn from(body: EventBody) -> Self {
        Self {
            subject: body.subject,
            item: body.item,
            event_type: body.event_type,
            value: body.value,
            timestamp: body.timestamp,
            context: body.context.unwrap_or_default(),
        }
    }
}

/// A refused event.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusedEvent {
    /// Position in the batch (0 for a single event).
    pub index: usize,
    /// Reason code: `consent_required`, `unknown_event_type`, `invalid_field`, `invalid_id`,
    /// `unknown_item`, `timestamp_in_future`, `timestamp_too_old`, `context_not_allowed` or
    /// `duplicate_event`.
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
}

/// The outcome of an ingestion request.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Events stored.
    pub accepted: usize,
    /// Events refused; nothing about them was stored.
    pub refused: Vec<RefusedEvent>,
}

impl From<IngestReport> for IngestResponse {
    fn from(report: IngestReport) -> Self {
        Self {
            accepted: report.accepted,
            refused: report
                .refused
                .into_iter()
                .map(|r| RefusedEvent {
                    index: r.index,
                    code: r.reason.code().to_owned(),
                    message: r.message,
                })
                .collect(),
        }
    }
}

/// A purpose's choice: `true`/`false`, or a grant narrowed to some of its categories.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ChoiceBody {
    /// Grant or withdraw the whole purpose.
    Plain(bool),
    /// Grant or withdraw, narrowed to categories.
    Narrowed {
        /// Grant or withdraw.
        granted: bool,
        /// The categories of the purpose the grant covers.
        categories: Option<Vec<String>>,
    },
}

/// A consent change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// Choices by purpose name.
    #[serde(default)]
    pub purposes: BTreeMap<String, ChoiceBody>,
    /// Instead of `purposes`: an IAB TCF v2.2 TC string (its TCF purposes map to the
    /// policy's purposes).
    #[serde(default)]
    pub tc_string: Option<String>,
    /// How consent was collected: `api` (default), `banner`, `form` or `import`.
    #[serde(default)]
    pub method: Option<String>,
}

/// One category's consent.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryConsentBody {
    /// The data category.
    pub category: String,
    /// `granted`, `withdrawn`, `expired` or `none`.
    pub state: String,
    /// When it last changed.
    pub changed_at: Option<String>,
    /// When a grant lapses.
    pub expires_at: Option<String>,
    /// How the latest change was collected.
    pub method: Option<String>,
}

/// One purpose's consent.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurposeConsentBody {
    /// `granted` if any category is live, else `expired`, `withdrawn` or `none`.
    pub state: String,
    /// Per category.
    pub categories: Vec<CategoryConsentBody>,
}

/// A subject's consent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentResponse {
    /// The policy version in force.
    pub policy_version: String,
    /// By purpose.
    pub purposes: BTreeMap<String, PurposeConsentBody>,
    /// After a change: the signed Kantara v1.1 consent receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
}

fn name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl From<ConsentView> for ConsentResponse {
    fn from(view: ConsentView) -> Self {
        Self {
            receipt: None,
            policy_version: view.policy_version,
            purposes: view
                .purposes
                .into_iter()
                .map(|(purpose, p)| {
                    let body = PurposeConsentBody {
                        state: name(&p.state),
                        categories: p
                            .categories
                            .into_iter()
                            .map(|c| CategoryConsentBody {
                                category: c.category,
                                state: name(&c.state),
                                changed_at: c.changed_at,
                                expires_at: c.expires_at,
                                method: c.method.map(|m| m.as_str().to_owned()),
                            })
                            .collect(),
                    };
                    (purpose, body)
                })
                .collect(),
        }
    }
}

/// One consent record.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentRecordBody {
    /// The purpose.
    pub purpose: String,
    /// The category.
    pub category: String,
    /// Granted or withdrawn.
    pub granted: bool,
    /// When.
    pub at: String,
    /// When a grant lapses.
    pub expires_at: Option<String>,
    /// The policy version then in force.
    pub policy_version: String,
    /// `api`, `banner`, `form`, `import`, `gpc` or `tcf`.
    pub method: String,
}

/// A subject's consent history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentHistoryResponse {
    /// Every record; records are never changed or removed.
    pub records: Vec<ConsentRecordBody>,
}

impl From<Vec<ConsentHistoryEntry>> for ConsentHistoryResponse {
    fn from(entries: Vec<ConsentHistoryEntry>) -> Self {
        Self {
            records: entries
                .into_iter()
                .map(|e| ConsentRecordBody {
                    purpose: e.purpose,
                    category: e.category,
                    granted: e.granted,
                    at: e.at,
                    expires_at: e.expires_at,
                    policy_version: e.policy_version,
                    method: e.method.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

/// An item's fields (the id is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemFields {
    /// Display title.
    pub title: String,
    /// Category, e.g. a genre or a department.
    #[serde(default)]
    pub category: Option<String>,
    /// Provider, e.g. a seller or a studio.
    #[serde(default)]
    pub provider: Option<String>,
    /// Free-form attributes (a JSON object, at most 4 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A catalogue item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    /// Item id.
    pub id: String,
    /// Display title.
    pub title: String,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Free-form attributes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl From<ItemBody> for Item {
    fn from(b: ItemBody) -> Self {
        Item {
            id: b.id,
            title: b.title,
            category: b.category,
            provider: b.provider,
            attributes: b.attributes,
        }
    }
}

impl From<Item> for ItemBody {
    fn from(i: Item) -> Self {
        ItemBody {
            id: i.id,
            title: i.title,
            category: i.category,
            provider: i.provider,
            attributes: i.attributes,
        }
    }
}

/// A batch import of items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemImport {
    /// Up to 10,000 items, inserted or replaced all or none.
    pub items: Vec<ItemBody>,
}

/// The result of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    /// Items inserted or replaced.
    pub imported: usize,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemsPage {
    /// Items in id order.
    pub items: Vec<ItemBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Paging parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Return items with ids after this one.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// The audit chain's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerifyResponse {
    /// Whether every entry and the signed head check out.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first broken position, if any.
    pub first_bad_position: Option<u64>,
    /// What is wrong there.
    pub problem: Option<String>,
}

impl From<AuditReport> for AuditVerifyResponse {
    fn from(r: AuditReport) -> Self {
        Self {
            ok: r.ok,
            entries: r.entries,
            first_bad_position: r.first_bad_position,
            problem: r.problem,
        }
    }
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// `admin`, `service`, `analyst` or `dpo`.
    pub role: String,
    /// A label for people.
    #[serde(default)]
    pub label: Option<String>,
}

/// A new key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateKeyResponse {
    /// The bearer token. It is not stored and cannot be shown again.
    pub key: String,
    /// Its role.
    pub role: String,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// Candor's version.
    pub version: String,
}

/// Query of a recommendation request.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecommendParams {
    /// How many items, 1 to 1,000 (default 10).
    pub n: Option<usize>,
    /// Comma-separated item ids not to recommend.
    pub exclude: Option<String>,
    /// Only items of this catalogue category.
    pub category: Option<String>,
    /// 0 (default) to 1: how strongly to favour categories not yet in the list.
    pub diversity: Option<f32>,
    /// 0 (default) to 1: how strongly to favour less popular items and providers not yet in
    /// the list.
    pub fairness: Option<f32>,
    /// Comma-separated item ids the person is looking at now.
    pub context: Option<String>,
}

/// Splits a comma-separated list, ignoring empty parts.
pub fn id_list(raw: Option<&str>) -> Vec<String> {
    raw.map(|r| {
        r.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// A contextual request: no identity at all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextualRequest {
    /// Items in the current session.
    #[serde(default)]
    pub items: Vec<String>,
    /// How many items, 1 to 1,000 (default 10).
    #[serde(default)]
    pub n: Option<usize>,
    /// Only items of this category.
    #[serde(default)]
    pub category: Option<String>,
    /// 0 to 1: category diversity.
    #[serde(default)]
    pub diversity: Option<f32>,
    /// 0 to 1: popularity and provider fairness.
    #[serde(default)]
    pub fairness: Option<f32>,
}

/// A history item behind a recommendation.
#[derive(Debug, Serialize, ToSchema)]
pub struct BecauseBody {
    /// The history item.
    pub item: String,
    /// Its weight in the score.
    pub weight: f32,
}

/// Why an item was recommended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    /// The subject's history items that contributed most.
    pub because: Vec<BecauseBody>,
    /// The data categories that history came from.
    pub data_categories: Vec<String>,
}

/// A recommended item.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendedBody {
    /// Item id.
    pub item: String,
    /// Score, comparable within one response.
    pub score: f32,
    /// Present in the `server` tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<ExplanationBody>,
}

/// Recommendations and the tier they were made at.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationsResponse {
    /// `server` (personalized, explained) or `contextual` (no profile used).
    pub tier: String,
    /// Why this tier.
    pub reason: String,
    /// The item model version.
    pub model_version: i64,
    /// Best first.
    pub items: Vec<RecommendedBody>,
}

impl From<candor_engine::Recommendations> for RecommendationsResponse {
    fn from(r: candor_engine::Recommendations) -> Self {
        Self {
            tier: r.tier.into(),
            reason: r.reason,
            model_version: r.model_version,
            items: r
                .items
                .into_iter()
                .map(|i| RecommendedBody {
                    item: i.item,
                    score: i.score,
                    explanation: i.explanation.map(|e| ExplanationBody {
                        because: e
                            .because
                            .into_iter()
                            .map(|(item, weight)| BecauseBody { item, weight })
                            .collect(),
                        data_categories: e.categories,
                    }),
                })
                .collect(),
        }
    }
}

/// Paging-free `n` parameter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    /// How many, 1 to 1,000 (default 10).
    pub n: Option<usize>,
}

/// Similar items.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarResponse {
    /// Most similar first.
    pub items: Vec<BecauseBody>,
}

/// Training options.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Wait for training to finish and return the model card (default: run in background).
    pub wait: Option<bool>,
}

/// The model card.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCardBody {
    /// Version.
    pub version: i64,
    /// `edlae` or `item_knn`.
    pub algorithm: String,
    /// Hyperparameters.
    pub hyperparameters: BTreeMap<String, f64>,
    /// When trained.
    pub trained_at: String,
    /// Subjects whose consented events were used (admin and dpo only: an exact count about
    /// a group is not released publicly).
    pub subjects: Option<usize>,
    /// Events used (admin and dpo only).
    pub events: Option<usize>,
    /// Items in the model.
    pub items: usize,
    /// The purpose the data was read for.
    pub purpose: String,
    /// Data categories used.
    pub data_categories: Vec<String>,
    /// The recipe's figures on held-out consented history at training time (admin and dpo
    /// only: they are exact statistics of the training data).
    pub evaluation: Option<EvaluationBody>,
    /// The differential-privacy guarantee of the released model; null when it was trained
    /// without noise.
    pub privacy: Option<ModelPrivacyBody>,
}

/// What the model's differential privacy promises.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPrivacyBody {
    /// ε of the release.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// zCDP ρ.
    pub rho: f64,
    /// What neighbouring datasets differ in.
    pub unit: String,
    /// What is released and how.
    pub mechanism: String,
    /// Items kept per subject.
    pub max_items_per_user: usize,
    /// Noise σ on popularity.
    pub popularity_sigma: f64,
    /// Noise σ on each co-occurrence entry.
    pub cooccurrence_sigma: f64,
    /// zCDP ρ of every DP model release so far, composed.
    pub releases_rho: f64,
    /// ε at δ of every DP model release so far, composed (each training is a new release).
    pub releases_epsilon: f64,
}

impl ModelCardBody {
    /// The card for callers who are not admin or dpo: no exact group statistics.
    pub fn public(mut self) -> Self {
        self.subjects = None;
        self.events = None;
        self.evaluation = None;
        self
    }
}

/// Held-out evaluation figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationBody {
    /// How they were measured.
    pub protocol: String,
    /// Subjects evaluated.
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

impl From<candor_engine::ModelCard> for ModelCardBody {
    fn from(c: candor_engine::ModelCard) -> Self {
        Self {
            version: c.version,
            algorithm: c.algorithm,
            hyperparameters: c.hyperparameters,
            trained_at: c.trained_at,
            subjects: Some(c.subjects),
            events: Some(c.events),
            items: c.items,
            purpose: c.purpose,
            data_categories: c.categories,
            privacy: c.privacy.map(|p| ModelPrivacyBody {
                epsilon: p.epsilon,
                delta: p.delta,
                rho: p.rho,
                unit: p.unit,
                mechanism: p.mechanism,
                max_items_per_user: p.max_items_per_user,
                popularity_sigma: p.popularity_sigma,
                cooccurrence_sigma: p.cooccurrence_sigma,
                releases_rho: p.releases_rho,
                releases_epsilon: p.releases_epsilon,
            }),
            evaluation: Some(EvaluationBody {
                protocol: c.evaluation.protocol,
                users: c.evaluation.users,
                ndcg_10: c.evaluation.ndcg_10,
                recall_20: c.evaluation.recall_20,
                precision_10: c.evaluation.precision_10,
                hr_10: c.evaluation.hr_10,
                coverage_10: c.evaluation.coverage_10,
                exposure_gini_10: c.evaluation.exposure_gini_10,
                mean_popularity_10: c.evaluation.mean_popularity_10,
                intra_list_diversity_10: c.evaluation.intra_list_diversity_10,
            }),
        }
    }
}

/// Training started in the background.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrainStarted {
    /// `started`.
    pub status: String,
}

/// A differentially private query (`POST /v1/analytics/query`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQueryBody {
    /// `count_by_item`, `count_by_category`, `count_by_day`, `histogram`, `top_k` or `mean`.
    pub kind: String,
    /// The cost as ε at the budget's δ (give this or `rho`).
    pub epsilon: Option<f64>,
    /// The cost as zCDP ρ.
    pub rho: Option<f64>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Only events at or after this time (ms since the epoch); required by `count_by_day`.
    pub from: Option<i64>,
    /// Only events before this time (ms); required by `count_by_day`.
    pub to: Option<i64>,
    /// Most events counted per subject (1 to 1,000; default 10).
    pub max_contributions: Option<u32>,
    /// Most events per subject in any one row (default 1).
    pub max_per_partition: Option<u32>,
    /// Rows of a `top_k` answer (1 to 1,000; default 10).
    pub k: Option<usize>,
    /// Lower bound of values (histogram, mean).
    pub lower: Option<f64>,
    /// Upper bound of values (histogram, mean).
    pub upper: Option<f64>,
    /// Histogram bins (1 to 1,000; default 10).
    pub bins: Option<u32>,
    /// Preview the cost: nothing is read or charged.
    #[serde(default)]
    pub dry_run: bool,
}

impl From<AnalyticsQueryBody> for candor_engine::AnalyticsQuery {
    fn from(b: AnalyticsQueryBody) -> Self {
        Self {
            kind: b.kind,
            epsilon: b.epsilon,
            rho: b.rho,
            event_type: b.event_type,
            from: b.from,
            to: b.to,
            max_contributions: b.max_contributions,
            max_per_partition: b.max_per_partition,
            k: b.k,
            lower: b.lower,
            upper: b.upper,
            bins: b.bins,
            dry_run: b.dry_run,
        }
    }
}
