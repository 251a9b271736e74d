//! Policy as code: the TOML document that declares data categories, purposes and event types,
//! parsed and checked once. Everything that enforces or explains data use (ingestion, reads,
//! retention, the privacy notice) is driven by the [`Policy`] value built here.
//!
//! Over 500 lines because every check of the format names its line and field, and the tests
//! of those messages sit with them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The policy that ships with Candor and is in force unless another is configured.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policy/default.toml");

/// Why a policy document was refused; the message names the line and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// 1-based line of the offending field, when known.
    pub line: Option<usize>,
    /// Dotted path of the offending field, e.g. `purposes.analytics.reporting.categories`.
    pub field: String,
    /// The whole human-readable message, line and field included.
    pub message: String,
}

/// How sensitive a data category is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Low: e.g. page views of public content.
    Low,
    /// Medium: e.g. purchase history.
    Medium,
    /// High: e.g. precise location.
    High,
    /// A special category under GDPR Art. 9 (health, beliefs, ...).
    Special,
}

/// The GDPR Art. 6 legal basis a purpose declares. Candor still requires an opt-in consent
/// record before it stores or reads personal data for any purpose; the basis is what the
/// privacy notice and the record of processing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// Art. 6(1)(a).
    Consent,
    /// Art. 6(1)(b).
    Contract,
    /// Art. 6(1)(c).
    LegalObligation,
    /// Art. 6(1)(d).
    VitalInterests,
    /// Art. 6(1)(e).
    PublicTask,
    /// Art. 6(1)(f).
    LegitimateInterests,
}

/// The controller named in the notice and in consent receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Controller {
    /// Legal name.
    pub name: String,
    /// Contact address for privacy matters.
    pub contact: String,
    /// URL of the human-readable privacy policy.
    #[serde(default)]
    pub policy_url: Option<String>,
}

/// A data category, such as `user.behavior.browsing_history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Category {
    /// Dotted fideslang-style name.
    pub name: String,
    /// What the category holds, for people.
    pub description: String,
    /// How sensitive it is.
    pub sensitivity: Sensitivity,
}

/// A purpose of processing, such as `personalize.content.profiling`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Purpose {
    /// Dotted fideslang-style name.
    pub name: String,
    /// What the purpose is, for people.
    pub description: String,
    /// Declared legal basis.
    pub legal_basis: LegalBasis,
    /// Data categories this purpose uses.
    pub categories: Vec<String>,
    /// How long events stored for this purpose are kept.
    pub retention_days: u32,
    /// How long a consent grant for this purpose lasts before it must be renewed.
    pub consent_renewal_days: u32,
    /// Who receives data processed for this purpose.
    pub recipients: Vec<String>,
    /// Whether a Global Privacy Control signal withdraws this purpose (sale, sharing and
    /// cross-context behavioural advertising).
    pub gpc_opt_out: bool,
    /// IAB TCF v2.2 purpose numbers this purpose corresponds to.
    pub tcf_purposes: Vec<u8>,
}

impl Purpose {
    /// Whether this purpose uses the given data category.
    pub fn uses(&self, category: &str) -> bool {
        self.categories.iter().any(|c| c == category)
    }
}

/// Limits on an event's optional numeric `value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ValueRule {
    /// Smallest accepted value.
    pub min: f64,
    /// Largest accepted value.
    pub max: f64,
}

/// An event type, such as `view` or `purchase`, and the category of data it carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventType {
    /// The type's name as sent in events.
    pub name: String,
    /// What the event means, for people.
    pub description: String,
    /// The one data category an event of this type carries.
    pub category: String,
    /// Context keys an event of this type may carry (anything else is refused).
    pub context: Vec<String>,
    /// The accepted range of `value`; `None` means the event carries no value.
    pub value: Option<ValueRule>,
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Policy {
    /// Version label; recorded with every consent change.
    pub version: String,
    /// The controller.
    pub controller: Controller,
    /// Data categories by name.
    pub categories: BTreeMap<String, Category>,
    /// Purposes by name.
    pub purposes: BTreeMap<String, Purpose>,
    /// Event types by name.
    pub event_types: BTreeMap<String, EventType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<String>,
    controller: Controller,
    categories: BTreeMap<String, RawCategory>,
    purposes: BTreeMap<String, RawPurpose>,
    event_types: BTreeMap<String, RawEventType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    description: String,
    sensitivity: Sensitivity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    description: String,
    legal_basis: LegalBasis,
    categories: Spanned<Vec<Spanned<String>>>,
    retention_days: Spanned<u32>,
    consent_renewal_days: Spanned<u32>,
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    gpc_opt_out: bool,
    #[serde(default)]
    tcf_purposes: Option<Spanned<Vec<u8>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventType {
    #[serde(default)]
    description: String,
    category: Spanned<String>,
    #[serde(default)]
    context: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    value: Option<Spanned<ValueRule>>,
}

/// Longest accepted context key.
pub const MAX_CONTEXT_KEY_LEN: usize = 32;
/// Most context keys an event type may declare.
pub const MAX_CONTEXT_KEYS: usize = 16;
/// Longest renewal or retention period, in days (ten years).
pub const MAX_PERIOD_DAYS: u32 = 3650;

fn valid_dotted_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 96
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

struct Checker<'a> {
    source: &'a str,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }
    fn error(
        &self,
        span: Option<std::ops::Range<usize>>,
        field: String,
        what: &str,
    ) -> PolicyError {
        let line = span.map(|s| self.line_of(s.start));
        let message = match line {
            Some(line) => format!("policy line {line}, field `{field}`: {what}"),
            None => format!("policy field `{field}`: {what}"),
        };
        PolicyError {
            line,
            field,
            message,
        }
    }
    /// Finds the line where a table header or key first mentions `needle`, for errors about
    /// map keys (which carry no span of their own).
    fn find(&self, needle: &str) -> Option<std::ops::Range<usize>> {
        self.source.find(needle).map(|s| s..s)
    }
}

impl Policy {
    /// Parses and checks a policy document.
    pub fn from_toml(source: &str) -> Result<Self, PolicyError> {
        let checker = Checker { source };
        let raw: RawPolicy = toml::from_str(source).map_err(|e| {
            let span = e.span();
            let what = e.message().to_owned();
            let field = what
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| "(document)".to_owned());
            checker.error(span, field, &what)
        })?;
        Self::check(raw, &checker)
    }

    /// The policy that ships with Candor.
    pub fn default_policy() -> Self {
        Self::from_toml(DEFAULT_POLICY_TOML).expect("the shipped policy is valid")
    }

    fn check(raw: RawPolicy, c: &Checker<'_>) -> Result<Self, PolicyError> {
        if raw.version.get_ref().trim().is_empty() {
            return Err(c.error(
                Some(raw.version.span()),
                "version".into(),
                "must not be empty",
            ));
        }
        let mut categories = BTreeMap::new();
        for (name, cat) in raw.categories {
            if !valid_dotted_name(&name) {
                return Err(c.error(
                    c.find(&name),
                    format!("categories.{name}"),
                    "a category name is dotted lower-case words, e.g. user.behavior.browsing_history",
                ));
            }
            categories.insert(
                name.clone(),
                Category {
                    name,
                    description: cat.description,
                    sensitivity: cat.sensitivity,
                },
            );
        }
        if raw.purposes.is_empty() {
            return Err(c.error(None, "purposes".into(), "at least one purpose is required"));
        }
        let mut purposes = BTreeMap::new();
        for (name, p) in raw.purposes {
            let field = |f: &str| format!("purposes.{name}.{f}");
            if !valid_dotted_name(&name) {
                return Err(c.error(
                    c.find(&name),
                    format!("purposes.{name}"),
                    "a purpose name is dotted lower-case words, e.g. personalize.content.profiling",
                ));
            }
            if p.categories.get_ref().is_empty() {
                return Err(c.error(
                    Some(p.categories.span()),
                    field("categories"),
                    "a purpose must use at least one data category",
                ));
            }
            let mut cats = Vec::new();
            for cat in p.categories.into_inner() {
                if !categories.contains_key(cat.get_ref()) {
                    return Err(c.error(
                        Some(cat.span()),
                        field("categories"),
                        &format!("unknown data category `{}`", cat.get_ref()),
                    ));
                }
                if !cats.contains(cat.get_ref()) {
                    cats.push(cat.into_inner());
                }
            }
            for (value, f) in [
                (&p.retention_days, "retention_days"),
                (&p.consent_renewal_days, "consent_renewal_days"),
            ] {
                let days = *value.get_ref();
                if days == 0 || days > MAX_PERIOD_DAYS {
                    return Err(c.error(
                        Some(value.span()),
                        field(f),
                        &format!("must be between 1 and {MAX_PERIOD_DAYS} days"),
                    ));
                }
            }
            let tcf_span = p.tcf_purposes.as_ref().map(|t| t.span());
            let tcf_purposes = p.tcf_purposes.map(Spanned::into_inner).unwrap_or_default();
            if let Some(bad) = tcf_purposes.iter().find(|&&n| !(1..=11).contains(&n)) {
                return Err(c.error(
                    tcf_span,
                    field("tcf_purposes"),
                    &format!("TCF purpose {bad} does not exist (TCF v2.2 has purposes 1 to 11)"),
                ));
            }
            purposes.insert(
                name.clone(),
                Purpose {
                    name,
                    description: p.description,
                    legal_basis: p.legal_basis,
                    categories: cats,
                    retention_days: p.retention_days.into_inner(),
                    consent_renewal_days: p.consent_renewal_days.into_inner(),
                    recipients: p.recipients,
                    gpc_opt_out: p.gpc_opt_out,
                    tcf_purposes,
                },
            );
        }
        let mut event_types = BTreeMap::new();
        for (name, e) in raw.event_types {
            let field = |f: &str| format!("event_types.{name}.{f}");
            if name.is_empty()
                || name.len() > 32
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                return Err(c.error(
                    c.find(&name),
                    format!("event_types.{name}"),
                    "an event type name is lower-case letters and _, at most 32",
                ));
            }
            let category = e.category.get_ref();
            if !categories.contains_key(category) {
                return Err(c.error(
                    Some(e.category.span()),
                    field("category"),
                    &format!("unknown data category `{category}`"),
                ));
            }
            if !purposes.values().any(|p: &Purpose| p.uses(category)) {
                return Err(c.error(
                    Some(e.category.span()),
                    field("category"),
                    &format!(
                        "no purpose uses `{category}`, so events of this type could never be stored"
                    ),
                ));
            }
            let context_span = e.context.as_ref().map(|c| c.span());
            let context = e.context.map(Spanned::into_inner).unwrap_or_default();
            if context.len() > MAX_CONTEXT_KEYS {
                return Err(c.error(
                    context_span.clone(),
                    field("context"),
                    &format!("at most {MAX_CONTEXT_KEYS} context keys"),
                ));
            }
            if let Some(bad) = context.iter().find(|k| {
                k.is_empty()
                    || k.len() > MAX_CONTEXT_KEY_LEN
                    || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            }) {
                return Err(c.error(
                    context_span.clone(),
                    field("context"),
                    &format!("context key `{bad}` must be lower-case letters and _, at most {MAX_CONTEXT_KEY_LEN}"),
                ));
            }
            let value = match e.value {
                Some(v) => {
                    let rule = *v.get_ref();
                    if !(rule.min.is_finite() && rule.max.is_finite() && rule.min <= rule.max) {
                        return Err(c.error(
                            Some(v.span()),
                            field("value"),
                            "min and max must be finite with min <= max",
                        ));
                    }
                    Some(rule)
                }
                None => None,
            };
            event_types.insert(
                name.clone(),
                EventType {
                    name,
                    description: e.description,
                    category: e.category.into_inner(),
                    context,
                    value,
                },
            );
        }
        if event_types.is_empty() {
            return Err(c.error(
                None,
                "event_types".into(),
                "at least one event type is required",
            ));
        }
        Ok(Self {
            version: raw.version.into_inner(),
            controller: raw.controller,
            categories,
            purposes,
            event_types,
        })
    }

    /// The purposes that use a category.
    pub fn purposes_using<'a>(
        &'a self,
        category: &'a str,
    ) -> impl Iterator<Item = &'a Purpose> + 'a {
        self.purposes.values().filter(move |p| p.uses(category))
    }

    /// How long an event of this category is kept: the longest retention among the purposes
    /// that use it (its data may serve any of them).
    pub fn retention_days(&self, category: &str) -> u32 {
        self.purposes_using(category)
            .map(|p| p.retention_days)
            .max()
            .unwrap_or(0)
    }

    /// The purposes a Global Privacy Control signal withdraws.
    pub fn gpc_purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.purposes.values().filter(|p| p.gpc_opt_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml(source)
    }

    #[test]
    fn default_policy_is_valid() {
        let p = Policy::default_policy();
        assert!(p.purposes.contains_key("personalize.content.profiling"));
        assert!(p.gpc_purposes().any(|p| p.name == "third_party_sharing"));
        assert_eq!(
            p.event_types["purchase"].category,
            "user.behavior.purchase_history"
        );
        assert!(p.retention_days("user.behavior.browsing_history") >= 1);
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = DEFAULT_POLICY_TOML.replacen(
            "categories = [\"user.behavior.browsing_history\", \"user.behavior.purchase_history\"]",
            "categories = [\"user.behavior.browsing_history\", \"user.behavior.nope\"]",
            1,
        );
        assert_ne!(bad, DEFAULT_POLICY_TOML, "the replaced line must exist");
        let err = check(&bad).unwrap_err();
        let line = DEFAULT_POLICY_TOML
            .lines()
            .position(|l| {
                l.contains(
                    "\"user.behavior.browsing_history\", \"user.behavior.purchase_history\"]",
                )
            })
            .unwrap()
            + 1;
        assert_eq!(err.line, Some(line));
        assert!(err.field.ends_with(".categories"), "{}", err.field);
        assert!(
            err.message.contains("user.behavior.nope"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_keys_and_types_are_refused() {
        let bad = DEFAULT_POLICY_TOML.replacen("retention_days = ", "retention_dayz = ", 1);
        let err = check(&bad).unwrap_err();
        assert!(err.message.contains("retention_dayz"), "{}", err.message);
        assert!(err.line.is_some());
        let bad = DEFAULT_POLICY_TOML.replacen("retention_days = 365", "retention_days = 0", 1);
        let err = check(&bad).unwrap_err();
        assert!(err.field.ends_with("retention_days"), "{}", err.field);
        let bad =
            DEFAULT_POLICY_TOML.replacen("retention_days = 365", "retention_days = \"a year\"", 1);
        assert!(check(&bad).unwrap_err().line.is_some());
    }
}
