//! The operator console (`/console`): sign in with an API key (kept in an HttpOnly cookie,
//! never in a URL), then the pages the key's role may see, exactly as the API decides: an
//! overview, the rights-request queue, DP analytics with the budget meter, the audit log, the
//! model card with its fairness, and API keys. Every page calls the engine methods of the
//! JSON routes through [`OperatorPage`]; every change is a form with the login's form token.
//!
//! Over 500 lines because each page and the forms that act on it are kept together, so the
//! role a page asks for and the role its forms ask for stay visibly the same.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_domain::Timestamp;
use candor_engine::{AnalyticsQuery, Role};
use maud::{Markup, PreEscaped, html};

use super::{PageError, PageForm, charts, page, see_other, set_cookie};
use crate::auth::{CONSOLE_COOKIE, OperatorPage, Public, roles};
use crate::error::ApiError;

/// The console's pages: path, title, and the roles that may see each.
const PAGES: [(&str, &str, u8); 6] = [
    (
        "/console",
        "Overview",
        roles::ADMIN | roles::DPO | roles::ANALYST,
    ),
    ("/console/requests", "Rights requests", roles::DPO),
    (
        "/console/analytics",
        "Analytics",
        roles::ANALYST | roles::DPO,
    ),
    ("/console/audit", "Audit", roles::DPO),
    (
        "/console/model",
        "Model",
        roles::ADMIN | roles::DPO | roles::ANALYST | roles::SERVICE,
    ),
    ("/console/keys", "Keys", roles::ADMIN),
];

/// The shell of a console page: the navigation the role may use, then `body`.
fn shell(who: &OperatorPage, title: &str, flash: Option<Markup>, body: Markup) -> Markup {
    let token = who.form_token();
    page(
        &format!("{title} — Candor console"),
        html! {
            nav class="console" aria-label="Console" {
                ul {
                    @for (path, name, allowed) in PAGES {
                        @if who.admits(allowed) {
                            li { a href=(path) aria-current=[(name == title).then_some("page")] { (name) } }
                        }
                    }
                    li { form method="post" action="/console/logout" {
                        input type="hidden" name="form_token" value=(token);
                        button type="submit" { "Sign out (" (who.role().as_str()) ")" } } }
                }
            }
            h1 { (title) }
            @if let Some(flash) = flash { section class="flash" role="status" { (flash) } }
            (body)
        },
    )
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let body = html! {
        h1 { "Candor console" }
        @if let Some(m) = message { p role="alert" { (m) } }
        form method="post" action="/console/login" {
            label for="key" { "API key" }
            input type="password" id="key" name="key" autocomplete="off" required;
            button type="submit" { "Sign in" }
        }
        p { "What you see follows the key's role: admin, service, analyst or dpo." }
    };
    (status, page("Sign in — Candor console", body)).into_response()
}

/// The flash for an engine refusal; internal faults become an error page.
fn refused(err: candor_engine::EngineError) -> Result<Markup, PageError> {
    match err.code() {
        Some(_) => {
            let message = ApiError::from(err).message().to_owned();
            Ok(html! { p role="alert" { (message) } })
        }
        None => Err(err.into()),
    }
}

/// `GET /console`: the overview, or the sign-in form.
pub async fn overview(who: Result<OperatorPage, PageError>) -> Result<Response, PageError> {
    let Ok(who) = who else {
        return Ok(login_page(StatusCode::OK, None));
    };
    overview_page(who, None).await
}

async fn overview_page(who: OperatorPage, flash: Option<Markup>) -> Result<Response, PageError> {
    who.require(PAGES[0].2)?;
    let stats = who.engine().stats().await?;
    let policy = who.engine().policy();
    let exact = who.admits(roles::DPO);
    let counts = if exact {
        Some(who.engine().granted_counts().await?)
    } else {
        None
    };
    let decisions = if exact {
        who.engine().consent_decisions(30).await?
    } else {
        Vec::new()
    };
    let (accepted, refused) = who.metrics().ingest_totals();
    let body = html! {
        h2 { "What is held" }
        dl { dt { "Events stored" } dd { (stats.events) } dt { "Subjects" } dd { (stats.subjects) }
             dt { "Consent records" } dd { (stats.consent_records) } dt { "Catalogue items" } dd { (stats.items) }
             dt { "Audit entries" } dd { (stats.audit_entries) } }
        h2 { "Consent now, by purpose" }
        @if let Some(counts) = counts {
            @let rows: Vec<(String, f64)> = counts.iter().map(|(p, n)| (p.clone(), *n as f64)).collect();
            @if let Some(svg) = charts::bars(&rows) {
                figure { div class="chart" role="img" aria-label="Subjects with a live grant, by purpose" { (PreEscaped(svg)) }
                         figcaption { "Subjects with a live grant, by purpose (exact)" } }
            }
            table { thead { tr { th scope="col" { "Purpose" } th scope="col" { "Subjects with a live grant" } } }
                tbody { @for (p, n) in &counts { tr { th scope="row" { (p) br; small { (policy.purposes.get(p).map_or("", |d| d.description.as_str())) } } td { (n) } } } } }
            h2 { "Consent decisions, last 30 days" }
            @if decisions.is_empty() { p { "No consent decision in the last 30 days." } } @else {
                table class="decisions" {
                    thead { tr { th scope="col" { "Day (UTC)" } th scope="col" { "Purpose" } th scope="col" { "Granted" }
                                 th scope="col" { "Withdrawn" } th scope="col" { "Share granted" } } }
                    tbody { @for ((d, p), (yes, no)) in decision_rows(&decisions) { tr {
                        td { (Timestamp(d * candor_domain::timestamp::DAY_MS).to_rfc3339().get(..10).unwrap_or_default()) }
                        td { (p) } td { (yes) } td { (no) }
                        td { (format!("{:.0}%", 100.0 * yes as f64 / (yes + no).max(1) as f64)) } } } }
                }
            }
        } @else {
            p { "Exact counts are shown to admin and dpo keys. An analyst gets them with "
                "differential privacy, charged to the analytics budget:" }
            form method="post" action="/console/consent-counts" {
                input type="hidden" name="form_token" value=(who.form_token());
                label for="consent-epsilon" { "ε" }
                input type="number" id="consent-epsilon" name="epsilon" step="any" min="0" value="0.5" required;
                button type="submit" { "Count with differential privacy" }
            }
        }
        h2 { "Ingestion on this server since it started" }
        p { (accepted) " events accepted." }
        @if !refused.is_empty() {
            table { thead { tr { th scope="col" { "Refused because" } th scope="col" { "Events" } } }
                tbody { @for (reason, n) in &refused { tr { td { code { (reason.code()) } } td { (n) } } } } }
        }
    };
    Ok(shell(&who, "Overview", flash, body).into_response())
}

/// `POST /console/consent-counts` (analyst): the DP consent counts, shown on the overview.
pub async fn consent_counts(who: OperatorPage, form: PageForm) -> Result<Response, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::ANALYST)?;
    let epsilon = form
        .get("epsilon")
        .and_then(|e| e.trim().parse::<f64>().ok());
    let flash = match epsilon {
        None => html! { p role="alert" { "ε must be a number." } },
        Some(epsilon) => match who
            .engine()
            .analytics_consent_counts(&who.actor(), epsilon)
            .await
        {
            Ok(answer) => answer_markup(&answer),
            Err(e) => refused(e)?,
        },
    };
    overview_page(who, Some(flash)).await
}

/// Decisions by (day, purpose): how many subjects granted and how many withdrew, newest day
/// first.
fn decision_rows(
    decisions: &[candor_engine::ConsentDecisions],
) -> Vec<((i64, String), (u64, u64))> {
    let mut rows: std::collections::BTreeMap<(i64, String), (u64, u64)> = Default::default();
    for d in decisions {
        let row = rows.entry((-d.day, d.purpose.clone())).or_default();
        if d.granted {
            row.0 += d.subjects;
        } else {
            row.1 += d.subjects;
        }
    }
    rows.into_iter().map(|((d, p), v)| ((-d, p), v)).collect()
}

/// `POST /console/login`: checks the key and keeps it in the console cookie.
pub async fn login(public: Public, form: PageForm) -> Result<Response, PageError> {
    let key = form.get("key").unwrap_or_default().trim().to_owned();
    let principal = public.engine().authenticate(&key).await?;
    if !principal.is_some_and(|p| matches!(p.access(), candor_engine::Access::Role(_))) {
        public.metrics().record_auth_failure("invalid");
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            Some("That key is unknown, revoked or expired."),
        ));
    }
    let mut response = see_other("/console");
    set_cookie(
        &mut response,
        CONSOLE_COOKIE,
        Some(&key),
        "/console",
        public.secure_cookies(),
    );
    Ok(response)
}

/// `POST /console/logout`: forgets the key in this browser.
pub async fn logout(who: OperatorPage, form: PageForm) -> Result<Response, PageError> {
    who.check_form(form.get("form_token"))?;
    let mut response = login_page(StatusCode::OK, None);
    set_cookie(&mut response, CONSOLE_COOKIE, None, "/console", false);
    Ok(response)
}

/// `GET /console/requests`: the queue, overdue first, then by deadline.
pub async fn requests(who: OperatorPage) -> Result<Markup, PageError> {
    requests_page(who, None).await
}

async fn requests_page(who: OperatorPage, flash: Option<Markup>) -> Result<Markup, PageError> {
    who.require(roles::DPO)?;
    let mut queue = who.engine().list_requests(false).await?;
    queue.sort_by(|a, b| {
        let done = |r: &candor_engine::requests::RequestView| r.completed_at.is_some();
        (done(a), !a.overdue, &a.due_at).cmp(&(done(b), !b.overdue, &b.due_at))
    });
    let token = who.form_token();
    let body = html! {
        @if queue.is_empty() { p { "No requests." } } @else {
            table class="queue" {
                thead { tr { th scope="col" { "Due" } th scope="col" { "Request" } th scope="col" { "Law" }
                             th scope="col" { "Received" } th scope="col" { "Status" } th scope="col" { "Act" } } }
                tbody { @for r in &queue {
                    tr class=[r.overdue.then_some("overdue")] {
                        td { (r.due_at.get(..10).unwrap_or(&r.due_at)) @if r.overdue { " " strong { "overdue" } } }
                        td { (r.kind.as_str()) br; small { (r.id) } }
                        td { (r.jurisdiction.as_str()) }
                        td { (r.received_at.get(..10).unwrap_or(&r.received_at)) }
                        td { (r.status.as_str())
                             @if let Some(ack) = &r.acknowledge_by { br; small { "acknowledge by " (ack.get(..10).unwrap_or(ack)) } }
                             @if let Some(reason) = &r.extension_reason { br; small { "extended: " (reason) } } }
                        td { @if r.completed_at.is_none() {
                            @if r.status == candor_domain::RequestStatus::Received {
                                form method="post" action=(format!("/console/requests/{}/acknowledge", r.id)) {
                                    input type="hidden" name="form_token" value=(token);
                                    button type="submit" { "Acknowledge" } }
                            }
                            form method="post" action=(format!("/console/requests/{}/extend", r.id)) {
                                input type="hidden" name="form_token" value=(token);
                                label for=(format!("reason-{}", r.id)) { "Reason" }
                                input type="text" id=(format!("reason-{}", r.id)) name="reason" required;
                                button type="submit" { "Extend" } }
                            form method="post" action=(format!("/console/requests/{}/fulfil", r.id)) {
                                input type="hidden" name="form_token" value=(token);
                                label for=(format!("subject-{}", r.id)) { "Subject id" }
                                input type="text" id=(format!("subject-{}", r.id)) name="subject" required;
                                button type="submit" { "Fulfil" } }
                        } }
                    }
                } }
            }
        }
    };
    Ok(shell(&who, "Rights requests", flash, body))
}

/// `POST /console/requests/{id}/{action}`: acknowledge, extend (with a reason) or fulfil
/// (naming the subject, which must match the request).
pub async fn request_action(
    who: OperatorPage,
    Path((id, action)): Path<(String, String)>,
    form: PageForm,
) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::DPO)?;
    let engine = who.engine();
    let actor = who.actor();
    let outcome = match action.as_str() {
        "acknowledge" => engine
            .acknowledge_request(&actor, &id)
            .await
            .map(|_| "Acknowledged.".to_owned()),
        "extend" => engine
            .extend_request(&actor, &id, form.get("reason").unwrap_or_default())
            .await
            .map(|r| {
                format!(
                    "Extended; now due {}.",
                    r.due_at.get(..10).unwrap_or(&r.due_at)
                )
            }),
        "fulfil" => {
            match candor_domain::SubjectId::parse(form.get("subject").unwrap_or_default()) {
                Ok(subject) => engine
                    .fulfil_request(&actor, &id, &subject)
                    .await
                    .map(|_| "Fulfilled.".to_owned()),
                Err(e) => Ok(format!("Not fulfilled: {e}")),
            }
        }
        _ => return Err(ApiError::no_route().into()),
    };
    let flash = match outcome {
        Ok(message) => html! { p { (message) } },
        Err(e) => refused(e)?,
    };
    requests_page(who, Some(flash)).await
}

/// `GET /console/analytics`: the budget meter and the query builder.
pub async fn analytics(who: OperatorPage) -> Result<Markup, PageError> {
    analytics_page(who, None).await
}

async fn analytics_page(who: OperatorPage, flash: Option<Markup>) -> Result<Markup, PageError> {
    who.require(roles::ANALYST | roles::DPO)?;
    let budget = who.engine().analytics_budget().await?;
    let spent_share = if budget.limit_rho > 0.0 {
        budget.spent_rho / budget.limit_rho
    } else {
        1.0
    };
    let token = who.form_token();
    let body = html! {
        h2 { "Privacy budget" }
        p { label for="budget" { "Spent of the " (budget.dataset) " budget" } " "
            meter id="budget" min="0" max="1" value=(format!("{spent_share:.6}")) data-spent-rho=(budget.spent_rho) { (format!("{:.1}%", spent_share * 100.0)) } }
        dl { dt { "Limit" } dd { "ε = " (budget.epsilon) " at δ = " (budget.delta) " (ρ = " (format!("{:.6}", budget.limit_rho)) ")" }
             dt { "Spent" } dd { "ε = " (format!("{:.4}", budget.spent_epsilon)) " (ρ = " span class="spent-rho" { (format!("{:.6}", budget.spent_rho)) } ")" }
             dt { "Remaining" } dd { "ρ = " (format!("{:.6}", budget.remaining_rho)) }
             dt { "Refills" } dd { (budget.refills_at.as_deref().unwrap_or("never (a fixed budget)")) } }
        @if who.admits(roles::ANALYST) {
            h2 { "Ask a question" }
            form method="post" action="/console/analytics" class="query" {
                input type="hidden" name="form_token" value=(token);
                label for="kind" { "Kind" }
                select id="kind" name="kind" { @for k in candor_engine::QueryKind::ALL { option value=(k.as_str()) { (k.as_str()) } } }
                label for="epsilon" { "ε" } input type="number" id="epsilon" name="epsilon" step="any" min="0" value="0.5" required;
                label for="k" { "k (top_k)" } input type="number" id="k" name="k" min="1" value="5";
                label for="from" { "from, to (count_by_day; ms)" } input type="number" id="from" name="from";
                input type="number" id="to" name="to" aria-label="to";
                label for="lower" { "lower, upper, bins (histogram, mean)" } input type="number" id="lower" name="lower" step="any";
                input type="number" id="upper" name="upper" step="any" aria-label="upper";
                input type="number" id="bins" name="bins" min="1" aria-label="bins";
                div { input type="checkbox" id="dry_run" name="dry_run" value="true"; label for="dry_run" { "Only show the cost (dry run)" } }
                button type="submit" { "Ask" }
            }
        }
    };
    Ok(shell(&who, "Analytics", flash, body))
}

/// `POST /console/analytics`: the query, through the same conversion and engine call as
/// `POST /v1/analytics/query`; the answer as a table with intervals and a chart.
pub async fn ask(who: OperatorPage, form: PageForm) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::ANALYST)?;
    let mut body = serde_json::Map::new();
    for (name, value) in &form.0 {
        let value = value.trim();
        if value.is_empty() || name == "form_token" {
            continue;
        }
        let json = match name.as_str() {
            "kind" => serde_json::Value::String(value.to_owned()),
            "dry_run" => serde_json::Value::Bool(value == "true"),
            _ => match value.parse::<f64>() {
                Ok(n)
                    if n.fract() == 0.0
                        && matches!(name.as_str(), "k" | "from" | "to" | "bins") =>
                {
                    serde_json::json!(n as i64)
                }
                Ok(n) => serde_json::json!(n),
                Err(_) => serde_json::Value::String(value.to_owned()),
            },
        };
        body.insert(name.clone(), json);
    }
    let parsed: Result<crate::routes::analytics::AnalyticsQueryBody, _> =
        serde_json::from_value(serde_json::Value::Object(body));
    let flash = match parsed {
        Err(e) => html! { p role="alert" { "The question is not well formed: " (e) } },
        Ok(body) => match AnalyticsQuery::try_from(body) {
            Err(e) => html! { p role="alert" { (e.message()) } },
            Ok(query) => match who.engine().analytics_query(&who.actor(), &query).await {
                Ok(answer) => answer_markup(&answer),
                Err(e) => refused(e)?,
            },
        },
    };
    analytics_page(who, Some(flash)).await
}

fn answer_markup(answer: &candor_engine::AnalyticsAnswer) -> Markup {
    let rows: Vec<(String, f64)> = answer
        .rows
        .iter()
        .map(|r| (r.key.clone(), r.value.max(0.0)))
        .collect();
    html! {
        p class="cost" { @if answer.dry_run { "Dry run: it would cost " } @else { "Answered (" (answer.kind) "), charged " }
            "ε = " (format!("{:.4}", answer.cost.epsilon)) " (ρ = " span class="cost-rho" { (format!("{:.6}", answer.cost.rho)) } ")." }
        @if !answer.rows.is_empty() {
            @if let Some(svg) = charts::bars(&rows) {
                figure { div class="chart" role="img" aria-label="The noisy answer" { (PreEscaped(svg)) }
                         figcaption { "Noisy values; the table gives each 95% interval" } }
            }
            table { thead { tr { th scope="col" { "Row" } th scope="col" { "Value" } th scope="col" { "95% interval" } } }
                tbody { @for r in &answer.rows { tr { th scope="row" { (r.key) } td { (format!("{:.1}", r.value)) }
                    td { (format!("{:.1} to {:.1}", r.low, r.high)) } } } } }
        }
    }
}

/// `GET /console/audit`: the head of the log and its newest entries.
pub async fn audit(who: OperatorPage) -> Result<Markup, PageError> {
    audit_page(who, None).await
}

async fn audit_page(who: OperatorPage, flash: Option<Markup>) -> Result<Markup, PageError> {
    who.require(roles::DPO)?;
    let head = who.engine().tree_head().await?;
    let after = head.tree_size.saturating_sub(30);
    let mut entries = who.engine().audit_entries(after, 30).await?;
    entries.reverse();
    let token = who.form_token();
    let body = html! {
        form method="post" action="/console/audit/verify" {
            input type="hidden" name="form_token" value=(token);
            button type="submit" { "Verify the chain" }
        }
        p { "Signed tree head: " (head.tree_size) " entries, root " code { (head.root_hash) } }
        table {
            caption { "Newest entries" }
            thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Detail" } } }
            tbody { @for e in &entries { tr { td { (e.seq) } td { (Timestamp(e.at).to_rfc3339()) } td { (e.actor) } td { (e.action) } td { (e.detail) } } } }
        }
    };
    Ok(shell(&who, "Audit", flash, body))
}

/// `POST /console/audit/verify`: checks what the log gained since this server's checkpoint.
pub async fn verify(who: OperatorPage, form: PageForm) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::DPO)?;
    let report = who.engine().verify_audit_incremental().await?;
    let flash = if report.ok {
        html! { p class="ok" { "The chain is intact: " (report.tree_size) " entries." } }
    } else {
        html! { p role="alert" { "The chain is broken"
        @if let Some(at) = report.first_bad_position { " at entry " (at) } ": "
        (report.problem.as_deref().unwrap_or("see the audit log")) } }
    };
    audit_page(who, Some(flash)).await
}

/// `GET /console/model`: the model card (statistics for admin and dpo), its DP guarantee,
/// held-out quality and exposure fairness; admin may retrain.
pub async fn model(who: OperatorPage) -> Result<Markup, PageError> {
    model_page(who, None).await
}

async fn model_page(who: OperatorPage, flash: Option<Markup>) -> Result<Markup, PageError> {
    let statistics = who.admits(roles::DPO);
    let card = who.engine().model_card().ok().map(|c| c.view(statistics));
    let token = who.form_token();
    let body = html! {
        @match &card {
            None => p { "No model is trained yet." },
            Some(card) => {
                dl { dt { "Version" } dd { (card.version) } dt { "Algorithm" } dd { (card.algorithm) }
                     dt { "Trained" } dd { (card.trained_at) } dt { "Purpose" } dd { (card.purpose) }
                     dt { "Items" } dd { (card.items) }
                     @if let (Some(s), Some(e)) = (card.subjects, card.events) { dt { "Trained on" } dd { (e) " events of " (s) " subjects" } } }
                @if let Some(p) = &card.privacy {
                    h2 { "Differential privacy" }
                    p { "Each release: (ε, δ) = (" (p.epsilon) ", " (p.delta) "), " (p.unit) " level, " (p.mechanism) "." }
                    p { "All releases so far compose to ε = " (format!("{:.3}", p.releases_epsilon)) " (ρ = " (format!("{:.4}", p.releases_rho)) ")." }
                } @else { p class="notice" { "This model has no differential-privacy guarantee." } }
                @if let Some(e) = &card.evaluation {
                    h2 { "Held-out quality" }
                    dl { dt { "NDCG@10" } dd { (format!("{:.4}", e.ndcg_10)) } dt { "Recall@20" } dd { (format!("{:.4}", e.recall_20)) }
                         dt { "Coverage@10" } dd { (format!("{:.1}%", e.coverage_10 * 100.0)) }
                         dt { "Exposure Gini@10" } dd { (format!("{:.3}", e.exposure_gini_10)) } }
                    @if let Some(svg) = charts::lorenz(&e.exposure_lorenz_10) {
                        figure { div class="chart" role="img" aria-label="Lorenz curve of item exposure" { (PreEscaped(svg)) }
                                 figcaption { "Exposure in held-out top-10 lists: the share of all exposure the least exposed items get (the diagonal is equal exposure)" } }
                    }
                } @else { p { "Held-out figures are shown to admin and dpo keys." } }
            }
        }
        @if who.role() == Role::Admin {
            form method="post" action="/console/model/train" {
                input type="hidden" name="form_token" value=(token);
                button type="submit" { "Retrain now" }
            }
        }
    };
    Ok(shell(&who, "Model", flash, body))
}

/// `POST /console/model/train` (admin): trains the item model now.
pub async fn train(who: OperatorPage, form: PageForm) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::ADMIN)?;
    let flash = match who.engine().train(&who.actor()).await {
        Ok(card) => {
            html! { p { "Trained version " (card.version) " on " (card.events) " consented events." } }
        }
        Err(e) => refused(e)?,
    };
    model_page(who, Some(flash)).await
}

/// `GET /console/keys` (admin): every key, a form to mint one and a button to revoke each.
pub async fn keys(who: OperatorPage) -> Result<Markup, PageError> {
    keys_page(who, None).await
}

async fn keys_page(who: OperatorPage, flash: Option<Markup>) -> Result<Markup, PageError> {
    who.require(roles::ADMIN)?;
    let keys = who.engine().list_api_keys().await?;
    let token = who.form_token();
    let body = html! {
        form method="post" action="/console/keys" {
            input type="hidden" name="form_token" value=(token);
            label for="role" { "Role" }
            select id="role" name="role" { @for r in Role::ALL { option value=(r.as_str()) { (r.as_str()) } } }
            label for="label" { "Label" } input type="text" id="label" name="label" maxlength="128";
            label for="days" { "Expires in (days)" } input type="number" id="days" name="expires_in_days" min="1" max="3650";
            button type="submit" { "Mint a key" }
        }
        table { thead { tr { th scope="col" { "Id" } th scope="col" { "Role" } th scope="col" { "Label" } th scope="col" { "Created" }
                             th scope="col" { "State" } th scope="col" { span class="visually-hidden" { "Action" } } } }
            tbody { @for k in &keys { tr {
                td { code { (k.id) } } td { (k.role) } td { (k.label) } td { (k.created_at.get(..10).unwrap_or(&k.created_at)) }
                td { @if k.live { "live" @if let Some(t) = &k.expires_at { ", expires " (t.get(..10).unwrap_or(t)) } } @else { "revoked or expired" } }
                td { @if k.live { form method="post" action=(format!("/console/keys/{}/revoke", k.id)) {
                    input type="hidden" name="form_token" value=(token);
                    button type="submit" aria-label=(format!("Revoke key {}", k.id)) { "Revoke" } } } }
            } } }
        }
    };
    Ok(shell(&who, "Keys", flash, body))
}

/// `POST /console/keys` (admin): mints a key and shows it once.
pub async fn mint(who: OperatorPage, form: PageForm) -> Result<Markup, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::ADMIN)?;
    let role = form.get("role").and_then(Role::parse);
    let days = form
        .get("expires_in_days")
        .filter(|d| !d.is_empty())
        .map(str::parse::<u32>);
    let flash = match (role, days) {
        (None, _) => html! { p role="alert" { "Choose a role." } },
        (_, Some(Err(_))) | (_, Some(Ok(0))) | (_, Some(Ok(3651..))) => {
            html! { p role="alert" { "Expiry must be between 1 and 3,650 days." } }
        }
        (Some(role), days) => {
            let expires = days
                .and_then(Result::ok)
                .map(|d| who.engine().now().plus_days(d));
            match who
                .engine()
                .create_api_key(
                    &who.actor(),
                    role,
                    form.get("label").unwrap_or_default(),
                    expires,
                )
                .await
            {
                Ok(key) => {
                    html! { p { "A new " (role.as_str()) " key. It is shown once: copy it now." } p { code class="new-key" { (key.as_str()) } } }
                }
                Err(e) => refused(e)?,
            }
        }
    };
    keys_page(who, Some(flash)).await
}

/// `POST /console/keys/{id}/revoke` (admin).
pub async fn revoke(
    who: OperatorPage,
    Path(id): Path<String>,
    form: PageForm,
) -> Result<Response, PageError> {
    who.check_form(form.get("form_token"))?;
    who.require(roles::ADMIN)?;
    if let Err(e) = who.engine().revoke_api_key(&who.actor(), &id).await {
        return Ok(keys_page(who, Some(refused(e)?)).await?.into_response());
    }
    Ok(see_other("/console/keys"))
}
