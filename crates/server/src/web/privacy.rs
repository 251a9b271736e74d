//! The privacy center: a person's own consent, the data held about them, their
//! recommendations and why, and their rights, on one page a person understands without
//! reading a policy. Each form posts back here and is answered with the page and what the
//! change produced (the signed receipt, the request's deadline, the erasure certificate).
//!
//! Over 500 lines because the page is one document: its sections and the forms that change
//! them are kept together so the words, the fields and the engine calls stay in step.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_domain::policy::{LegalBasis, Purpose};
use candor_domain::{ConsentMethod, ConsentState, ErrorCode, Jurisdiction, RequestKind};
use candor_engine::consent::{ConsentView, PurposeConsent};
use candor_engine::requests::RequestView;
use candor_engine::transparency::TransparencyReport;
use candor_engine::{
    ConsentReceipt, ConsentUpdate, PurposeChoice, RecommendRequest, SignedDocument,
};
use maud::{Markup, PreEscaped, html};

use super::{PageError, PageForm, charts, page, see_other, set_cookie};
use crate::auth::{Public, SESSION_COOKIE, SubjectPage};
use crate::extract::Gpc;

/// A grant this close to lapsing (or lapsed) asks to be renewed.
const RENEW_WITHIN_MS: i64 = 30 * candor_domain::timestamp::DAY_MS;

/// `GET /privacy`: with `?session=TOKEN`, exchanges the token for the session cookie and
/// redirects to the bare address (so the token leaves the address bar and the history);
/// otherwise the page itself.
pub async fn center_page(
    public: Public,
    Gpc(gpc): Gpc,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    who: Result<SubjectPage, PageError>,
) -> Result<Response, PageError> {
    if let Some(token) = query.ok().and_then(|Query(q)| q.get("session").cloned()) {
        return exchange(&public, &token).await;
    }
    let who = who?;
    Ok(center(&who, gpc, None).await?.into_response())
}

/// Sets the session cookie from a token in the address, then sends the browser on.
async fn exchange(public: &Public, token: &str) -> Result<Response, PageError> {
    let principal = public.engine().authenticate(token).await?;
    if !principal.is_some_and(|p| p.access() == candor_engine::Access::Subject) {
        public.metrics().record_auth_failure("invalid");
        return Err(PageError::signed_out());
    }
    let mut response = see_other("/privacy");
    set_cookie(
        &mut response,
        SESSION_COOKIE,
        Some(token),
        "/privacy",
        public.secure_cookies(),
    );
    Ok(response)
}

/// The whole page, with `flash` (what the last form did) at the top.
async fn center(who: &SubjectPage, gpc: bool, flash: Option<Markup>) -> Result<Markup, PageError> {
    let engine = who.engine();
    let actor = who.actor();
    let consent = consent_now(who, gpc).await?;
    let report = match engine.transparency(&actor, who.subject()).await {
        Err(e) if e.code() == Some(ErrorCode::UnknownSubject) => TransparencyReport {
            generated_at: engine.now().to_rfc3339(),
            categories: BTreeMap::new(),
            restricted: false,
        },
        other => other?,
    };
    let requests = engine.subject_requests(who.subject()).await?;
    let receipts = engine.consent_receipts(&actor, who.subject()).await?;
    let request = RecommendRequest {
        n: 10,
        ..Default::default()
    };
    let recommendations = engine.recommend(&actor, who.subject(), &request, gpc).await;
    let policy = engine.policy();
    let token = who.form_token();
    let body = html! {
        h1 { "Your privacy at " (policy.controller.name) }
        p { "What " (policy.controller.name) " may do with your data, what it holds, and your rights. "
            "Nothing is used for a purpose below unless you turn it on." }
        @if let Some(flash) = flash { section class="flash" role="status" { (flash) } }
        nav aria-label="Sections" {
            ul { li { a href="#consent" { "Your choices" } } li { a href="#held" { "What we hold" } }
                 li { a href="#recommendations" { "Your recommendations" } } li { a href="#rights" { "Your rights" } }
                 li { a href="#receipts" { "Your receipts" } } }
        }
        (consent_section(who, &consent, gpc, &token))
        (receipts_section(&receipts))
        (held_section(policy, &report))
        (recommendations_section(who, recommendations).await)
        (rights_section(&report, &requests, &token))
    };
    Ok(page("Your privacy", body))
}

/// The person's consent now; a person nothing is held about yet has consented to nothing.
async fn consent_now(who: &SubjectPage, gpc: bool) -> Result<ConsentView, PageError> {
    let engine = who.engine();
    match engine.consent(&who.actor(), who.subject(), gpc).await {
        Err(e) if e.code() == Some(ErrorCode::UnknownSubject) => Ok(ConsentView {
            policy_version: engine.policy().version.clone(),
            purposes: BTreeMap::new(),
        }),
        other => Ok(other?),
    }
}

fn basis(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "your consent (GDPR Art. 6(1)(a)); you can withdraw it at any time",
        LegalBasis::Contract => "a contract with you (Art. 6(1)(b))",
        LegalBasis::LegalObligation => "a legal obligation (Art. 6(1)(c))",
        LegalBasis::VitalInterests => "vital interests (Art. 6(1)(d))",
        LegalBasis::PublicTask => "a public task (Art. 6(1)(e))",
        LegalBasis::LegitimateInterests => {
            "legitimate interests (Art. 6(1)(f)); you may object to it below"
        }
    }
}

/// A category's name in words: `user.behavior.browsing_history` is "browsing history".
fn category_label(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).replace('_', " ")
}

/// The date of an RFC 3339 time.
fn day(rfc3339: &str) -> &str {
    rfc3339.get(..10).unwrap_or(rfc3339)
}

/// Whether a purpose's grant lapses within [`RENEW_WITHIN_MS`] of `now` (or has lapsed).
fn needs_renewal(state: &PurposeConsent, now: i64) -> Option<String> {
    if state.state == ConsentState::Expired {
        return Some(
            "Your consent to this has lapsed. Turn it on and save to give it again.".into(),
        );
    }
    let soonest = state
        .categories
        .iter()
        .filter(|c| c.state == ConsentState::Granted)
        .filter_map(|c| c.expires_at.as_deref())
        .filter_map(candor_domain::Timestamp::parse_rfc3339)
        .min()?;
    (soonest.0 - now <= RENEW_WITHIN_MS).then(|| {
        format!(
            "Your consent to this lapses on {}. Keep it on and save to renew it.",
            day(&soonest.to_rfc3339())
        )
    })
}

fn consent_section(who: &SubjectPage, consent: &ConsentView, gpc: bool, token: &str) -> Markup {
    let engine = who.engine();
    let policy = engine.policy();
    let now = engine.now().0;
    let gpc_off: Vec<&Purpose> = policy.purposes.values().filter(|p| p.gpc_opt_out).collect();
    html! {
        section id="consent" aria-labelledby="consent-h" {
            h2 id="consent-h" { "Your choices" }
            @if gpc {
                p class="notice" role="note" {
                    "Your browser sends a Global Privacy Control signal. We treat it as your \"no\" to: "
                    @for (i, p) in gpc_off.iter().enumerate() { @if i > 0 { "; " } (p.description.trim_end_matches('.')) }
                    ". Those switches stay off while your browser sends it."
                }
            }
            form method="post" action="/privacy/consent" {
                input type="hidden" name="form_token" value=(token);
                @for (name, purpose) in &policy.purposes {
                    @let state = consent.purposes.get(name);
                    @let granted = state.is_some_and(|s| s.state == ConsentState::Granted);
                    @let locked = gpc && purpose.gpc_opt_out;
                    @let id = format!("purpose-{}", name.replace('.', "-"));
                    fieldset class="purpose" {
                        legend {
                            @if purpose.legal_basis == LegalBasis::Consent {
                                input type="checkbox" role="switch" id=(id) name="purpose" value=(name)
                                    checked[granted && !locked] disabled[locked];
                                label for=(id) { (purpose.description) }
                            } @else {
                                (purpose.description)
                            }
                        }
                        dl {
                            dt { "Data it uses" }
                            dd { @for (i, c) in purpose.categories.iter().enumerate() { @if i > 0 { ", " } (category_label(c)) } }
                            dt { "Why we may" } dd { (basis(purpose.legal_basis)) }
                            dt { "Shared with" }
                            dd { @if purpose.recipients.is_empty() { "No one outside " (policy.controller.name) }
                                 @else { @for (i, r) in purpose.recipients.iter().enumerate() { @if i > 0 { ", " } (r) } } }
                            dt { "Kept" } dd { (purpose.retention_days) " days after each event" }
                            dt { "Your choice now" }
                            dd { (choice_words(state)) }
                        }
                        @if locked { p class="notice" { "Off because your browser sends Global Privacy Control." } }
                        @if let Some(prompt) = state.and_then(|s| needs_renewal(s, now)) { p class="notice renew" { (prompt) } }
                        @if purpose.categories.len() > 1 && purpose.legal_basis == LegalBasis::Consent && !locked {
                            details {
                                summary { "Allow only some of this data" }
                                // Says the category boxes were on the form, so none ticked means none.
                                input type="hidden" name=(format!("narrowable:{name}")) value="yes";
                                @for c in &purpose.categories {
                                    @let cid = format!("{id}-{}", c.replace('.', "-"));
                                    @let on = !granted || state.is_some_and(|s| s.categories.iter().any(|k| &k.category == c && k.state == ConsentState::Granted));
                                    div { input type="checkbox" id=(cid) name=(format!("category:{name}")) value=(c) checked[on];
                                          label for=(cid) { (category_label(c)) } }
                                }
                            }
                        }
                    }
                }
                button type="submit" { "Save my choices" }
            }
        }
    }
}

/// Every receipt the person was given, newest first, each with a button that verifies it.
fn receipts_section(receipts: &[ConsentReceipt]) -> Markup {
    html! {
        section id="receipts" aria-labelledby="receipts-h" {
            h2 id="receipts-h" { "Your receipts" }
            @if receipts.is_empty() {
                p { "Each time you change a choice you get a signed receipt; you have none yet." }
            } @else {
                p { "Each is signed by us: proof of what you chose, and when." }
                ul class="receipts" {
                    @for r in receipts {
                        @let json = serde_json::to_string_pretty(r).unwrap_or_default();
                        @let when = candor_domain::Timestamp(r.consent_timestamp * 1000).to_rfc3339();
                        li {
                            details { summary { (day(&when)) " — "
                                @for (i, p) in r.services.iter().flat_map(|s| s.purposes.iter()).enumerate() {
                                    @if i > 0 { "; " } (if p.granted { "on: " } else { "off: " }) (p.purpose_category.join(", ").trim_end_matches('.'))
                                } " (" (r.collection_method) ")" }
                                pre { (json) } }
                            form method="post" action="/privacy/receipts/verify" {
                                input type="hidden" name="receipt" value=(json);
                                button type="submit" aria-label=(format!("Verify receipt {}", r.consent_receipt_id)) { "Verify" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn choice_words(state: Option<&PurposeConsent>) -> String {
    let Some(state) = state else {
        return "Off (you have not turned it on)".into();
    };
    match state.state {
        ConsentState::Granted => {
            let until = state
                .categories
                .iter()
                .filter(|c| c.state == ConsentState::Granted)
                .filter_map(|c| c.expires_at.as_deref())
                .min()
                .map(|t| format!(" until {}", day(t)))
                .unwrap_or_default();
            format!("On{until}")
        }
        ConsentState::Withdrawn => "Off (you turned it off)".into(),
        ConsentState::Expired => "Off (your consent lapsed)".into(),
        ConsentState::None => "Off (you have not turned it on)".into(),
    }
}

fn held_section(policy: &candor_domain::Policy, report: &TransparencyReport) -> Markup {
    let held: Vec<(String, f64)> = report
        .categories
        .iter()
        .map(|(name, c)| (category_label(name), c.events as f64))
        .collect();
    let chart = (!held.is_empty()).then(|| charts::bars(&held)).flatten();
    html! {
        section id="held" aria-labelledby="held-h" {
            h2 id="held-h" { "What we hold" }
            @if report.restricted { p class="notice" { "You have restricted processing: your data is kept but not used." } }
            @if report.categories.is_empty() {
                p { "We hold no events about you." }
            } @else {
                @if let Some(svg) = chart {
                    figure { div class="chart" role="img" aria-label="Events held, by kind of data" { (PreEscaped(svg)) }
                             figcaption { "Events we hold about you, by kind of data" } }
                }
                table {
                    thead { tr { th scope="col" { "Kind of data" } th scope="col" { "Events" } th scope="col" { "Used for" }
                                 th scope="col" { "Kept" } th scope="col" { "Oldest deleted by" } } }
                    tbody {
                        @for (name, c) in &report.categories {
                            tr {
                                th scope="row" { (category_label(name))
                                    @if let Some(cat) = policy.categories.get(name) { br; small { (cat.description) } } }
                                td { (c.events) }
                                td { @for p in &c.purposes {
                                        div { (policy.purposes.get(&p.purpose).map_or(p.purpose.as_str(), |d| d.description.as_str()))
                                              " — " (state_word(p.consent))
                                              @if !p.recipients.is_empty() { " (shared with " (p.recipients.join(", ")) ")" } } } }
                                td { (c.retention_days) " days" }
                                td { (c.oldest_deleted_by.as_deref().map(day).unwrap_or("—")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn state_word(state: ConsentState) -> &'static str {
    match state {
        ConsentState::Granted => "allowed",
        ConsentState::Withdrawn => "turned off",
        ConsentState::Expired => "lapsed",
        ConsentState::None => "not allowed",
    }
}

/// The titles of catalogue items; an item no longer in the catalogue is named as such.
async fn titles(
    who: &SubjectPage,
    ids: impl IntoIterator<Item = String>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in ids.into_iter().collect::<HashSet<_>>() {
        let title = match who.engine().get_item(&id).await {
            Ok(item) => item.title,
            Err(_) => "an item no longer in the catalogue".into(),
        };
        out.insert(id, title);
    }
    out
}

async fn recommendations_section(
    who: &SubjectPage,
    recommendations: candor_engine::Result<candor_engine::Recommendations>,
) -> Markup {
    let profiling = who
        .engine()
        .policy()
        .purposes
        .get(candor_engine::recommend::PERSONALIZATION)
        .map_or("personalization", |p| p.description.as_str())
        .to_owned();
    let recs = match recommendations {
        Ok(r) => r,
        Err(e) => {
            let message = crate::error::ApiError::from(e).message().to_owned();
            return html! { section id="recommendations" aria-labelledby="recs-h" {
            h2 id="recs-h" { "Your recommendations, and why" } p { "None to show now: " (message) } } };
        }
    };
    let ids = recs.items.iter().flat_map(|r| {
        std::iter::once(r.item.clone()).chain(
            r.explanation
                .iter()
                .flat_map(|e| e.because.iter().map(|(i, _)| i.clone())),
        )
    });
    let names = titles(who, ids.collect::<Vec<_>>()).await;
    let title = |id: &str| names.get(id).cloned().unwrap_or_default();
    let personalized = recs.tier == "server";
    html! {
        section id="recommendations" aria-labelledby="recs-h" data-tier=(recs.tier) {
            h2 id="recs-h" { "Your recommendations, and why" }
            @if personalized {
                p class="tier" { "Personalized from your history here, because you allow: \u{201c}" (profiling) "\u{201d}. "
                    "Turn it off above and they will no longer use your history." }
            } @else {
                p class="tier" { "Not personalized: they use only what is popular, nothing about you. "
                    "To get recommendations from your history, turn on \u{201c}" (profiling) "\u{201d} above." }
            }
            ol class="recs" {
                @for r in &recs.items {
                    li { strong { (title(&r.item)) }
                        @if let Some(e) = &r.explanation {
                            @if !e.because.is_empty() {
                                br; span class="why" { "Because you showed interest in: "
                                    @for (i, (item, _)) in e.because.iter().enumerate() { @if i > 0 { ", " } (title(item)) }
                                    @if !e.categories.is_empty() { " (from your " (e.categories.iter().map(|c| category_label(c)).collect::<Vec<_>>().join(" and ")) ")" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn rights_section(report: &TransparencyReport, requests: &[RequestView], token: &str) -> Markup {
    html! {
        section id="rights" aria-labelledby="rights-h" {
            h2 id="rights-h" { "Your rights" }
            h3 { "Get a copy of your data" }
            p { a href="/privacy/export.json" download="my-data.json" { "Download everything (JSON)" } " · "
                a href="/privacy/export.csv" download="my-events.csv" { "Download your events (CSV)" } }
            h3 { "Correct your data" }
            p { a href="/privacy/events" { "See your events and delete any that are wrong" } }
            h3 { "Limit what we do" }
            form method="post" action="/privacy/restriction" {
                input type="hidden" name="form_token" value=(token);
                @if report.restricted {
                    input type="hidden" name="restricted" value="false";
                    button type="submit" { "Lift the restriction" }
                } @else {
                    input type="hidden" name="restricted" value="true";
                    button type="submit" { "Restrict processing (keep my data, but do not use it)" }
                }
            }
            form method="post" action="/privacy/objection" {
                input type="hidden" name="form_token" value=(token);
                button type="submit" { "Object to profiling and marketing" }
            }
            h3 { "Delete your data" }
            p { a href="/privacy/erase" class="danger" { "Delete all my data\u{2026}" } }
            h3 { "Make a request" }
            form method="post" action="/privacy/requests" {
                input type="hidden" name="form_token" value=(token);
                label for="kind" { "What you ask for" }
                select id="kind" name="kind" { @for k in RequestKind::ALL { option value=(k.as_str()) { (kind_words(*k)) } } }
                label for="jurisdiction" { "The law that applies to you" }
                select id="jurisdiction" name="jurisdiction" {
                    option value="gdpr" { "GDPR (EU, EEA, UK)" } option value="ccpa" { "CCPA (California)" } }
                button type="submit" { "Send the request" }
            }
            @if !requests.is_empty() {
                table {
                    caption { "Your requests" }
                    thead { tr { th scope="col" { "Request" } th scope="col" { "Received" } th scope="col" { "Answer due by" } th scope="col" { "Status" } } }
                    tbody { @for r in requests { tr class=[r.overdue.then_some("overdue")] {
                        td { (kind_words(r.kind)) } td { (day(&r.received_at)) } td { (day(&r.due_at)) }
                        td { (r.status.as_str()) @if r.overdue { " (overdue)" } } } } }
                }
            }
            h3 { "Leave" }
            form method="post" action="/privacy/signout" {
                input type="hidden" name="form_token" value=(token);
                button type="submit" { "Sign out of your privacy settings" }
            }
        }
    }
}

fn kind_words(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Access => "A copy of everything you hold about me",
        RequestKind::Erasure => "Delete my data",
        RequestKind::Restriction => "Restrict processing of my data",
        RequestKind::Objection => "I object to profiling and marketing",
        RequestKind::DoNotSell => "Do not sell or share my data",
    }
}

/// The flash for a refused action: the engine's sentence.
fn refused(err: candor_engine::EngineError) -> Result<Markup, PageError> {
    match err.code() {
        Some(_) => {
            let message = crate::error::ApiError::from(err).message().to_owned();
            Ok(html! { p role="alert" { (message) } })
        }
        None => Err(err.into()),
    }
}

/// `POST /privacy/consent`: records the switches that changed (and renews those kept on
/// that are due), method `form`, and shows the signed receipt.
pub async fn save_consent(
    who: SubjectPage,
    Gpc(gpc): Gpc,
    form: PageForm,
) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    let engine = who.engine();
    let now = engine.now().0;
    let on: HashSet<&str> = form
        .0
        .iter()
        .filter(|(k, _)| k == "purpose")
        .map(|(_, v)| v.as_str())
        .collect();
    let current = consent_now(&who, gpc).await?;
    let mut purposes = BTreeMap::new();
    for (name, purpose) in &engine.policy().purposes {
        if purpose.legal_basis != LegalBasis::Consent {
            continue;
        }
        let state = current.purposes.get(name);
        let was = state.is_some_and(|s| s.state == ConsentState::Granted);
        let granted_now: HashSet<&str> = state
            .map(|s| {
                s.categories
                    .iter()
                    .filter(|c| c.state == ConsentState::Granted)
                    .map(|c| c.category.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let field = format!("category:{name}");
        let mut chosen: Vec<String> = form
            .0
            .iter()
            .filter(|(k, _)| *k == field)
            .map(|(_, v)| v.clone())
            .collect();
        // Without category boxes on the form (one category, or locked by GPC) the switch is
        // the whole purpose; with them, only the ticked ones, and none ticked grants nothing.
        if form.get(&format!("narrowable:{name}")).is_none() {
            chosen = purpose.categories.clone();
        }
        let wants = on.contains(name.as_str()) && !chosen.is_empty();
        let same_categories =
            chosen.iter().map(String::as_str).collect::<HashSet<_>>() == granted_now;
        let renew = wants && state.is_some_and(|s| needs_renewal(s, now).is_some());
        if wants == was && (!wants || same_categories) && !renew {
            continue;
        }
        let categories = (wants && chosen.len() < purpose.categories.len()).then_some(chosen);
        purposes.insert(
            name.clone(),
            PurposeChoice {
                granted: wants,
                categories,
            },
        );
    }
    if purposes.is_empty() {
        let flash = html! { p { "Nothing changed." } };
        return center(&who, gpc, Some(flash)).await;
    }
    let update = ConsentUpdate {
        purposes,
        method: ConsentMethod::Form,
        recorded_at: None,
    };
    let flash = match engine
        .set_consent_with_receipt(&who.actor(), who.subject(), &update, gpc)
        .await
    {
        Ok((_, receipt)) => receipt_flash(&receipt),
        Err(e) => refused(e)?,
    };
    center(&who, gpc, Some(flash)).await
}

fn receipt_flash(receipt: &ConsentReceipt) -> Markup {
    let json = serde_json::to_string_pretty(receipt).unwrap_or_default();
    html! {
        p { "Saved. Here is your receipt, signed by us: keep it as proof of what you chose." }
        details class="receipt" { summary { "Receipt " (receipt.consent_receipt_id) } pre { (json) } }
        form method="post" action="/privacy/receipts/verify" {
            input type="hidden" name="receipt" value=(json);
            button type="submit" { "Verify this receipt" }
        }
    }
}

/// `POST /privacy/receipts/verify`: checks a receipt's signature against this server's key.
pub async fn verify_receipt(
    who: SubjectPage,
    Gpc(gpc): Gpc,
    form: PageForm,
) -> Result<Markup, PageError> {
    let receipt: Option<ConsentReceipt> = form
        .get("receipt")
        .and_then(|r| serde_json::from_str(r).ok());
    let valid = receipt.is_some_and(|r| r.verify(Some(&who.engine().verifying_key())));
    let flash = if valid {
        html! { p class="ok" { "This receipt is genuine: its signature is valid and it was made by this service." } }
    } else {
        html! { p role="alert" { "This receipt does not verify: it was changed, or this service did not make it." } }
    };
    center(&who, gpc, Some(flash)).await
}

/// `GET /privacy/events`: the person's events, each with a button to delete it.
pub async fn events_page(who: SubjectPage) -> Result<Markup, PageError> {
    let token = who.form_token();
    let events = match who.engine().export(&who.actor(), who.subject()).await {
        Ok(export) => export.events,
        Err(e) if e.code() == Some(ErrorCode::NothingHeld) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let names = titles(
        &who,
        events.iter().map(|e| e.item.clone()).collect::<Vec<_>>(),
    )
    .await;
    let body = html! {
        h1 { "Your events" }
        p { a href="/privacy" { "Back to your privacy settings" } }
        @if events.is_empty() { p { "We hold no events about you." } } @else {
            p { "If one is wrong, delete it (the site can then record the right one). Your recommendations change at once." }
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Item" } th scope="col" { "Kind of data" } th scope="col" { span class="visually-hidden" { "Action" } } } }
                tbody { @for e in &events { tr {
                    td { (e.timestamp.replace('T', " ").get(..16).unwrap_or(&e.timestamp)) } td { (e.event_type) }
                    td { (names.get(&e.item).cloned().unwrap_or_default()) } td { (category_label(&e.category)) }
                    td { form method="post" action=(format!("/privacy/events/{}/delete", e.id)) {
                        input type="hidden" name="form_token" value=(token);
                        button type="submit" aria-label=(format!("Delete the {} of {}", e.event_type, names.get(&e.item).cloned().unwrap_or_default())) { "Delete" } } }
                } } }
            }
        }
    };
    Ok(page("Your events", body))
}

/// `POST /privacy/events/{event}/delete`: rectification of one event.
pub async fn delete_event(
    who: SubjectPage,
    Path(event): Path<i64>,
    form: PageForm,
) -> Result<Response, PageError> {
    who.check_form(form.get("form_token"))?;
    who.engine()
        .delete_event(&who.actor(), who.subject(), event)
        .await?;
    Ok(see_other("/privacy/events"))
}

/// `POST /privacy/restriction`: restricts processing, or lifts the restriction.
pub async fn restriction(
    who: SubjectPage,
    Gpc(gpc): Gpc,
    form: PageForm,
) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    let restricted = form.get("restricted") == Some("true");
    let flash = match who
        .engine()
        .restrict(&who.actor(), who.subject(), restricted)
        .await
    {
        Ok(()) if restricted => {
            html! { p { "Processing is restricted: your data is kept, but not used, until you lift it." } }
        }
        Ok(()) => html! { p { "The restriction is lifted." } },
        Err(e) => refused(e)?,
    };
    center(&who, gpc, Some(flash)).await
}

/// `POST /privacy/objection`: objects to profiling and direct marketing.
pub async fn objection(
    who: SubjectPage,
    Gpc(gpc): Gpc,
    form: PageForm,
) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    let flash = match who.engine().object(&who.actor(), who.subject()).await {
        Ok(_) => {
            html! { p { "Your objection is recorded: profiling and marketing are off until you turn them on again." } }
        }
        Err(e) => refused(e)?,
    };
    center(&who, gpc, Some(flash)).await
}

/// `GET /privacy/erase`: the confirmation step before erasure.
pub async fn erase_confirm(who: SubjectPage) -> Markup {
    let body = html! {
        h1 { "Delete all your data?" }
        p { "This deletes every event we hold about you and your consent records, and destroys the key "
            "that encrypts them, so no copy anywhere can be read again. Recommendations stop using your "
            "history. It cannot be undone." }
        form method="post" action="/privacy/erase" {
            input type="hidden" name="form_token" value=(who.form_token());
            div { input type="checkbox" id="confirm" name="confirm" value="yes" required;
                  label for="confirm" { "I understand that my data will be deleted for good" } }
            button type="submit" class="danger" { "Delete my data" }
        }
        p { a href="/privacy" { "No, take me back" } }
    };
    page("Delete your data?", body)
}

/// `POST /privacy/erase`: erases the person, then shows the signed certificate and nothing
/// else (the erasure ended the session).
pub async fn erase(who: SubjectPage, form: PageForm) -> Result<Response, PageError> {
    who.check_form(form.get("form_token"))?;
    if form.get("confirm") != Some("yes") {
        return Ok(erase_confirm(who).await.into_response());
    }
    let (status, body) = match who.engine().erase(&who.actor(), who.subject()).await {
        Ok(certificate) => {
            let json = serde_json::to_string_pretty(&certificate).unwrap_or_default();
            let valid = certificate.verify(Some(&who.engine().verifying_key()));
            (
                StatusCode::OK,
                html! {
                    h1 { "Your data is deleted" }
                    p { "Keep this certificate: it is signed by us and says what was deleted and when." }
                    p class=(if valid { "ok" } else { "alert" }) { (if valid { "Its signature is valid." } else { "Its signature does not verify." }) }
                    pre class="certificate" { (json) }
                },
            )
        }
        Err(e) if e.code() == Some(ErrorCode::NothingHeld) => (
            StatusCode::OK,
            html! {
            h1 { "There is nothing to delete" } p { "We hold no data about you." } },
        ),
        Err(e) => return Err(e.into()),
    };
    let mut response = (status, page("Your data is deleted", body)).into_response();
    clear_cookie(&mut response);
    Ok(response)
}

fn clear_cookie(response: &mut Response) {
    set_cookie(response, SESSION_COOKIE, None, "/privacy", false);
}

/// `POST /privacy/requests`: files a rights request, received now, and shows its deadline.
pub async fn file_request(
    who: SubjectPage,
    Gpc(gpc): Gpc,
    form: PageForm,
) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    let kind = form.get("kind").and_then(RequestKind::parse);
    let jurisdiction = form.get("jurisdiction").and_then(Jurisdiction::parse);
    let flash = match (kind, jurisdiction) {
        (Some(kind), Some(jurisdiction)) => {
            match who
                .engine()
                .create_request(&who.actor(), kind, who.subject(), jurisdiction, None)
                .await
            {
                Ok(r) => {
                    html! { p { "Your request is received. We must answer by " strong { (day(&r.due_at)) } "." } }
                }
                Err(e) => refused(e)?,
            }
        }
        _ => html! { p role="alert" { "Choose what you ask for and the law that applies." } },
    };
    center(&who, gpc, Some(flash)).await
}

/// `GET /privacy/export.json`: the real export, as a download.
pub async fn export_json(who: SubjectPage) -> Result<Response, PageError> {
    let export = who.engine().export(&who.actor(), who.subject()).await?;
    let json = serde_json::to_string_pretty(&export)
        .map_err(|_| PageError::from(crate::error::ApiError::internal()))?;
    Ok(download("application/json", "my-data.json", json))
}

/// `GET /privacy/export.csv`: the export's events as CSV, as a download.
pub async fn export_csv(who: SubjectPage) -> Result<Response, PageError> {
    let export = who.engine().export(&who.actor(), who.subject()).await?;
    Ok(download(
        "text/csv; charset=utf-8",
        "my-events.csv",
        crate::routes::rights::export_csv(&export),
    ))
}

fn download(content_type: &'static str, filename: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `POST /privacy/signout`: ends every privacy session of the person and the cookie.
pub async fn sign_out(who: SubjectPage, form: PageForm) -> Result<Response, PageError> {
    who.check_form(form.get("form_token"))?;
    who.engine()
        .revoke_sessions(&who.actor(), who.subject())
        .await?;
    let body = html! { h1 { "You are signed out" } p { "Your privacy session has ended." } };
    let mut response = page("Signed out", body).into_response();
    clear_cookie(&mut response);
    Ok(response)
}
