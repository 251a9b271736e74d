//! The HTTP API end to end, in process: auth and roles, ingestion, consent and GPC, the
//! catalogue, audit, metrics, errors, logs, and the OpenAPI document's sync with the code.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use candor_domain::{ErrorCode, RefusalReason};
use candor_engine::{Actor, Engine, EngineConfig, Role, ShiftedClock};
use candor_server::{AppState, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    app: Router,
    engine: Arc<Engine>,
    /// The engine's clock: tests advance it instead of sleeping.
    clock: Arc<ShiftedClock>,
    admin: String,
    service: String,
    analyst: String,
    dpo: String,
    _dir: tempfile::TempDir,
    /// Dropped after the engine (fields drop in order), so the schema outlives its pool.
    _pg: Option<PgSchema>,
}

const MAX_BODY: usize = 2 * 1024 * 1024;

/// The variable naming the PostgreSQL server for the tests that run on both backends.
const PG_URL_VAR: &str = "CANDOR_TEST_POSTGRES_URL";

/// A fresh PostgreSQL schema, dropped with the guard.
struct PgSchema {
    url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                        let _ = sqlx::query(&drop).execute(&mut conn).await;
                    }
                });
        })
        .join();
    }
}

/// The API over a fresh SQLite store.
async fn api() -> Api {
    build_api(None).await
}

/// The API over a fresh PostgreSQL schema, or `None` (with a notice) when
/// `CANDOR_TEST_POSTGRES_URL` is not set.
async fn api_postgres() -> Option<Api> {
    let Ok(url) = std::env::var(PG_URL_VAR) else {
        eprintln!("note: PostgreSQL HTTP test skipped: {PG_URL_VAR} is not set");
        return None;
    };
    let name = format!("candor_http_{:016x}", rand::random::<u64>());
    Some(build_api(Some(PgSchema { url, name })).await)
}

async fn build_api(pg: Option<PgSchema>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    // Trained without noise so that recommendations over three subjects are exact; the DP
    // model is tested in the engine.
    let mut config = EngineConfig::for_data_dir(dir.path());
    config.model_privacy = None;
    let clock = Arc::new(ShiftedClock::new());
    config.clock = clock.clone();
    let engine = match &pg {
        None => Arc::new(Engine::open(config).await.unwrap()),
        Some(schema) => {
            let keys = Arc::new(candor_crypto::KeyRing::generate());
            let sealer = Arc::new(candor_engine::audit::Sealer::new(keys.clone()));
            let store = candor_store::PostgresStore::open_in_schema(
                &schema.url,
                Some(&schema.name),
                sealer,
            )
            .await
            .expect("PostgreSQL at CANDOR_TEST_POSTGRES_URL is reachable");
            config.store_url = schema.url.clone();
            Arc::new(
                Engine::with_store(config, keys, Arc::new(store))
                    .await
                    .unwrap(),
            )
        }
    };
    let key = |role| {
        let engine = engine.clone();
        async move {
            engine
                .create_api_key(&Actor::cli(), role, "test", None)
                .await
                .unwrap()
                .to_string()
        }
    };
    let (admin, service, analyst, dpo) = (
        key(Role::Admin).await,
        key(Role::Service).await,
        key(Role::Analyst).await,
        key(Role::Dpo).await,
    );
    let app = app(AppState::new(engine.clone(), MAX_BODY));
    let api = Api {
        app,
        engine,
        clock,
        admin,
        service,
        analyst,
        dpo,
        _dir: dir,
        _pg: pg,
    };
    let items = json!({"items": [
        {"id": "i1", "title": "One", "category": "books"},
        {"id": "i2", "title": "Two", "category": "music", "provider": "p1", "attributes": {"price": 3.5}},
    ]});
    assert_eq!(
        api.call("POST", "/v1/items", Some(&api.service), Some(items))
            .await
            .0,
        StatusCode::OK
    );
    api
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, key, body.map(|b| b.to_string()), &[])
            .await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(h, _)| h.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        check_error_table(method, path, status, &value);
        (status, value)
    }

    async fn grant(&self, subject: &str, purposes: Value) {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/v1/subjects/{subject}/consent"),
                Some(&self.service),
                Some(json!({ "purposes": purposes })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Every error response's code is in the error table and answers with the table's status; the
/// one exception is a refused single event, 422 with its refusal reason.
fn check_error_table(method: &str, path: &str, status: StatusCode, body: &Value) {
    let Some(code) = body["error"]["code"].as_str() else {
        assert!(
            status.is_success(),
            "{method} {path}: {status} without an error body: {body}"
        );
        return;
    };
    match ErrorCode::parse(code) {
        Some(c) if candor_server::error::status(c.class()) == status => {}
        _ if method == "POST"
            && path == "/v1/events"
            && status == candor_server::error::EVENT_REFUSED
            && RefusalReason::ALL.iter().any(|r| r.code() == code) => {}
        Some(c) => panic!(
            "{method} {path}: `{code}` answered {status}, but the table says {}",
            candor_server::error::status(c.class())
        ),
        None => panic!("{method} {path}: `{code}` is not in the error table"),
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[tokio::test]
async fn openapi_document_is_in_sync() {
    let generated = candor_server::openapi().to_pretty_json().unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p candor-server --test http openapi`"
    );
    // And it is what the server serves.
    let api = api().await;
    let (status, served) = api.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, serde_json::from_str::<Value>(&generated).unwrap());
    // Every JSON response is written out: no body is an object without properties, and the
    // export's schema (candor.export/1) is in the document.
    for (path, item) in served["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    let schema = &content["schema"];
                    assert!(
                        schema["type"] != "object" || schema["properties"].is_object(),
                        "{method} {path} {status} {media}: the body is a bare object"
                    );
                }
            }
        }
    }
    let export = &served["components"]["schemas"]["SubjectExport"]["properties"];
    for field in [
        "schema",
        "events",
        "consent",
        "consent_history",
        "processing",
    ] {
        assert!(export[field].is_object(), "SubjectExport lacks {field}");
    }
    for path in [
        "/v1/events",
        "/v1/subjects/{id}/consent",
        "/v1/subjects/{id}/consent/history",
        "/v1/audit/verify",
        "/v1/policy",
    ] {
        assert!(
            served["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
}

/// The document is usable by generated clients: query parameters are declared in the query,
/// every operation that needs a key documents 401 and 403, and every subject or item id in a
/// path carries its pattern and length.
#[test]
fn openapi_document_serves_generated_clients() {
    let doc = serde_json::to_value(candor_server::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                if param["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: `{name}` is declared in the path but is not in it"
                    );
                }
                if param["in"] == "path" && name == "id" {
                    assert_eq!(param["schema"]["maxLength"], 128, "{method} {path}");
                    assert!(param["schema"]["pattern"].is_string(), "{method} {path}");
                }
            }
            let secured = op["security"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r.as_object().is_some_and(|o| !o.is_empty()));
            if secured {
                for status in ["401", "403"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path} does not document {status}"
                    );
                }
            }
            if op["requestBody"].is_object() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path} does not document {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn docs_errors_md_is_in_sync() {
    let generated = candor_server::error::errors_markdown();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/errors.md is out of date: run `UPDATE_DOCS=1 cargo test -p candor-server --test http docs`"
    );
}

#[tokio::test]
async fn keys_and_roles_are_enforced() {
    let api = api().await;
    let event = json!({"subject": "s1", "item": "i1", "type": "view"});
    assert_eq!(
        code(
            &api.call("POST", "/v1/events", None, Some(event.clone()))
                .await
                .1
        ),
        "unauthorized"
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/events",
            Some("cnd_000000000000000000000000_nope"),
            Some(event.clone()),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/events",
            Some(&api.analyst),
            Some(event.clone()),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = api
        .call("GET", "/v1/audit/verify", Some(&api.service), None)
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = api
        .call("GET", "/v1/audit/verify", Some(&api.dpo), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true);
    // Admin may do anything, including minting keys; others may not.
    let (status, body) = api
        .call(
            "POST",
            "/v1/keys",
            Some(&api.admin),
            Some(json!({"role": "analyst"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let new_key = body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        api.call("GET", "/v1/items/i1", Some(&new_key), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        api.call(
            "POST",
            "/v1/keys",
            Some(&api.service),
            Some(json!({"role": "admin"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/keys",
            Some(&api.admin),
            Some(json!({"role": "root"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    // Public endpoints.
    assert_eq!(
        api.call("GET", "/healthz", None, None).await.1["status"],
        "ok"
    );
    let (status, policy) = api.call("GET", "/v1/policy", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(policy["purposes"]["personalize.content.profiling"].is_object());
}

#[tokio::test]
async fn events_are_accepted_or_refused_per_event() {
    let api = api().await;
    api.grant("s1", json!({"personalize.content.profiling": true}))
        .await;
    let (status, body) = api.call("POST", "/v1/events", Some(&api.service), Some(json!({"subject": "s1", "item": "i1", "type": "view", "context": {"page": "/home"}}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 1);
    let (status, body) = api
        .call(
            "POST",
            "/v1/events",
            Some(&api.service),
            Some(json!({"subject": "s2", "item": "i1", "type": "view"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "consent_required")
    );
    let batch = json!([
        {"subject": "s1", "item": "i2", "type": "purchase", "value": 2},
        {"subject": "s2", "item": "i1", "type": "view"},
        {"subject": "s1", "item": "i1", "type": "view", "email": "x@example.com"},
        {"subject": "s1", "item": "i1", "type": "teleport"},
        {"subject": "s1", "item": "i1", "type": "view", "timestamp": "2999-01-01T00:00:00Z"},
        {"subject": "s1", "item": "i1", "type": "view", "value": "lots"},
        "not an event",
    ]);
    let (status, body) = api
        .call("POST", "/v1/events", Some(&api.service), Some(batch))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    let refused: Vec<(u64, &str)> = body["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        vec![
            (1, "consent_required"),
            (2, "invalid_field"),
            (3, "unknown_event_type"),
            (4, "timestamp_in_future"),
            (5, "invalid_field"),
            (6, "invalid_field")
        ]
    );
    assert_eq!(api.engine.stats().await.unwrap().events, 2);
}

#[tokio::test]
async fn malformed_and_oversize_requests_get_coded_errors_and_change_nothing() {
    let api = api().await;
    api.grant("s1", json!({"personalize.content.profiling": true}))
        .await;
    let before = api.engine.stats().await.unwrap();
    type Case<'a> = (Option<String>, Vec<(&'a str, &'a str)>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some("{\"subject\": ".into()),
            vec![],
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Some("{}".into()),
            vec![("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Some("42".into()),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some(format!(
                "[{}]",
                vec![r#"{"subject":"s1","item":"i1","type":"view"}"#; 10_001].join(",")
            )),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
        ),
        (
            Some(format!("[\"{}\"]", "x".repeat(MAX_BODY))),
            vec![],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (body, headers, status, expected) in cases {
        let (got, body) = api
            .call_with("POST", "/v1/events", Some(&api.service), body, &headers)
            .await;
        assert_eq!((got, code(&body)), (status, expected));
    }
    let long_id = "x".repeat(129);
    let (status, body) = api
        .call(
            "GET",
            &format!("/v1/subjects/{long_id}/consent"),
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
    let (status, body) = api
        .call(
            "GET",
            "/v1/subjects/bad%20id/consent",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
    let (status, body) = api
        .call(
            "GET",
            "/v1/subjects/nobody/consent",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_subject")
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/s1/consent",
            Some(&api.service),
            Some(json!({"purposes": {"mind.reading": true}})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "unknown_purpose")
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/s1/consent",
            Some(&api.service),
            Some(json!({"purposes": {"analytics.reporting": "yes"}})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/s1/consent",
            Some(&api.service),
            Some(json!({"purposes": {}, "extra": 1})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/s1/consent",
            Some(&api.service),
            Some(json!({"purposes": {"analytics.reporting": true}, "method": "gpc"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/items",
            Some(&api.service),
            Some(json!({"items": [{"id": "ok", "title": "ok"}, {"id": "not ok", "title": "x"}]})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
    let (status, body) = api
        .call("GET", "/v1/items/nothing-here", Some(&api.service), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_item")
    );
    let (status, body) = api
        .call("GET", "/v1/items?limit=many", Some(&api.service), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    assert_eq!(api.engine.stats().await.unwrap(), before);
}

#[tokio::test]
async fn consent_round_trip_history_and_gpc() {
    let api = api().await;
    let (status, body) = api
        .call("PUT", "/v1/subjects/s9/consent", Some(&api.service), Some(json!({"purposes": {
            "personalize.content.profiling": {"granted": true, "categories": ["user.behavior.browsing_history"]},
            "third_party_sharing": true,
            "analytics.reporting": false,
        }, "method": "banner"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purposes"]["third_party_sharing"]["state"], "granted");
    assert_eq!(
        body["purposes"]["analytics.reporting"]["state"],
        "withdrawn"
    );
    assert_eq!(
        body["purposes"]["personalize.content.search"]["state"],
        "none"
    );
    let profiling = &body["purposes"]["personalize.content.profiling"]["categories"];
    assert_eq!(profiling[0]["state"], "granted");
    assert_eq!(profiling[1]["state"], "withdrawn");
    // Sec-GPC values other than "1" are ignored.
    for ignored in ["0", "true", " 1"] {
        let (_, body) = api
            .call_with(
                "GET",
                "/v1/subjects/s9/consent",
                Some(&api.service),
                None,
                &[("sec-gpc", ignored)],
            )
            .await;
        assert_eq!(
            body["purposes"]["third_party_sharing"]["state"], "granted",
            "Sec-GPC: {ignored:?}"
        );
    }
    let (_, body) = api
        .call_with(
            "GET",
            "/v1/subjects/s9/consent",
            Some(&api.service),
            None,
            &[("sec-gpc", "1")],
        )
        .await;
    assert_eq!(
        body["purposes"]["third_party_sharing"]["state"],
        "withdrawn"
    );
    assert_eq!(
        body["purposes"]["third_party_sharing"]["categories"][0]["method"],
        "gpc"
    );
    assert_eq!(
        body["purposes"]["personalize.content.profiling"]["state"],
        "granted"
    );
    let (status, history) = api
        .call(
            "GET",
            "/v1/subjects/s9/consent/history",
            Some(&api.dpo),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let methods: Vec<&str> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"banner") && methods.contains(&"gpc"),
        "{methods:?}"
    );
    assert!(
        history["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["policy_version"] == "2026-11-01")
    );
}

#[tokio::test]
async fn catalogue_crud_and_paging() {
    let api = api().await;
    let (status, body) = api
        .call(
            "PUT",
            "/v1/items/i3",
            Some(&api.service),
            Some(json!({"title": "Three", "category": "film"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, item) = api
        .call("GET", "/v1/items/i2", Some(&api.analyst), None)
        .await;
    assert_eq!(item["attributes"]["price"], 3.5);
    let (_, page) = api
        .call("GET", "/v1/items?limit=2", Some(&api.service), None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_str().unwrap().to_owned();
    let (_, page) = api
        .call(
            "GET",
            &format!("/v1/items?limit=2&after={after}"),
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(page["items"][0]["id"], "i3");
    assert_eq!(
        api.call("DELETE", "/v1/items/i3", Some(&api.service), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        code(
            &api.call("DELETE", "/v1/items/i3", Some(&api.service), None)
                .await
                .1
        ),
        "unknown_item"
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/items/i4",
            Some(&api.service),
            Some(json!({"title": "t", "colour": "red"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
}

#[tokio::test]
async fn metrics_count_requests_and_refusals_without_ids() {
    let api = api().await;
    api.grant(
        "metric-subject-1",
        json!({"personalize.content.profiling": true}),
    )
    .await;
    api.call("POST", "/v1/events", Some(&api.service), Some(json!([{"subject": "metric-subject-1", "item": "i1", "type": "view"}, {"subject": "metric-subject-2", "item": "i1", "type": "view"}]))).await;
    assert_eq!(
        api.call("GET", "/metrics", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call("GET", "/metrics", Some(&api.analyst), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, text) = api.call("GET", "/metrics", Some(&api.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("candor_events_total{outcome=\"accepted\",reason=\"\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("candor_events_total{outcome=\"refused\",reason=\"consent_required\"} 1"),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/events\""), "{text}");
    assert!(
        text.contains("candor_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        !text.contains("metric-subject"),
        "metrics must not carry subject ids"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_hold_no_keys_or_subject_ids() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not scoped: tracing caches callsite interest process-wide, and other tests in this
    // binary run concurrently. Their log lines land here too; none carries these markers.
    tracing::subscriber::set_global_default(subscriber).expect("only this test sets a subscriber");
    let api = api().await;
    api.grant(
        "logged-subject-5",
        json!({"personalize.content.profiling": true}),
    )
    .await;
    api.call("POST", "/v1/events", Some(&api.service), Some(json!({"subject": "logged-subject-5", "item": "i1", "type": "view", "context": {"page": "secret-page-7"}}))).await;
    api.call(
        "GET",
        "/v1/subjects/logged-subject-5/consent",
        Some(&api.service),
        None,
    )
    .await;
    api.call(
        "GET",
        "/v1/subjects/logged-subject-6/consent",
        Some("cnd_000000000000000000000000_wrong"),
        None,
    )
    .await;
    let session = open_session(&api, "logged-subject-5").await;
    api.call(
        "GET",
        "/v1/subjects/logged-subject-5/consent",
        Some(&session),
        None,
    )
    .await;
    let forged = format!("{}x", &session[..session.len() - 1]);
    api.call(
        "GET",
        "/v1/subjects/logged-subject-5/consent",
        Some(&forged),
        None,
    )
    .await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/v1/subjects/{id}/consent"),
        "requests are logged by route: {logs}"
    );
    for secret in [
        "logged-subject-5",
        "logged-subject-6",
        "secret-page-7",
        &api.service,
        "cnd_000000000000000000000000_wrong",
        &session["cs1.".len()..],
        &forged["cs1.".len()..],
    ] {
        assert!(!logs.contains(secret), "`{secret}` reached the logs");
    }
}

/// No input panics the server or reaches a 5xx: crafted edge cases, then seeded random
/// mutations of valid bodies, against every endpoint that takes a body or a path id.
/// One to three random byte edits of a valid JSON body: a flipped byte, a deleted byte, or an
/// inserted JSON-ish character.
fn mutate(valid: &str, rng: &mut impl rand::Rng) -> String {
    let mut bytes = valid.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let at = rng.gen_range(0..bytes.len());
        match rng.gen_range(0..3) {
            0 => bytes[at] = rng.r#gen(),
            1 => {
                bytes.remove(at);
            }
            _ => {
                let alphabet = b"{}[]\":,0e-9\\u";
                bytes.insert(at, alphabet[rng.gen_range(0..alphabet.len())]);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn hostile_input_never_gets_a_5xx() {
    use rand::{Rng, SeedableRng};
    let api = api().await;
    api.grant("s1", json!({"personalize.content.profiling": true}))
        .await;
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let mut bodies: Vec<String> = vec![
        deep,
        "".into(),
        "null".into(),
        "[]".into(),
        "[null]".into(),
        "{\"subject\": \"s1\", \"item\": \"i1\", \"type\": \"rating\", \"value\": 1e400}".into(),
        "{\"subject\": \"s1\", \"item\": \"i1\", \"type\": \"rating\", \"value\": -0.0}".into(),
        "{\"subject\": \"s\\u0000\", \"item\": \"i1\", \"type\": \"view\"}".into(),
        "{\"subject\": \"s1\", \"item\": \"i1\", \"type\": \"view\", \"timestamp\": \"9999-12-31T23:59:59Z\"}".into(),
        "{\"subject\": \"s1\", \"item\": \"i1\", \"type\": \"view\", \"timestamp\": \"0000-01-01T00:00:00Z\"}".into(),
        "{\"subject\": \"s1\", \"item\": \"i1\", \"type\": \"view\", \"context\": {\"page\": 7}}".into(),
        "{\"subject\": \"😀\", \"item\": \"i1\", \"type\": \"view\"}".into(),
        "{\"purposes\": {\"personalize.content.profiling\": {\"granted\": true, \"categories\": []}}}".into(),
        "{\"purposes\": {\"personalize.content.profiling\": {\"granted\": true, \"categories\": null}}}".into(),
        "{\"items\": [{\"id\": \"x\", \"title\": \"t\", \"attributes\": [1]}]}".into(),
        "\u{feff}{}".into(),
    ];
    let valid = [
        json!({"subject": "s1", "item": "i1", "type": "view", "context": {"page": "/"}})
            .to_string(),
        json!({"purposes": {"analytics.reporting": true}, "method": "banner"}).to_string(),
        json!({"items": [{"id": "i9", "title": "Nine", "attributes": {"a": 1}}]}).to_string(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let pick = rng.gen_range(0..valid.len());
        bodies.push(mutate(&valid[pick], &mut rng));
    }
    let targets = [
        ("POST", "/v1/events"),
        ("PUT", "/v1/subjects/s1/consent"),
        ("POST", "/v1/items"),
        ("PUT", "/v1/items/i5"),
    ];
    for body in &bodies {
        for (method, path) in targets {
            let (status, reply) = api
                .call_with(method, path, Some(&api.service), Some(body.clone()), &[])
                .await;
            assert!(
                !status.is_server_error(),
                "{method} {path} with {body:?} gave {status}: {reply}"
            );
            if !status.is_success() {
                assert!(
                    reply["error"]["code"].is_string(),
                    "{method} {path}: {reply}"
                );
            }
        }
    }
    // DP queries, hostile and mutated, with the analyst's key.
    let mut queries: Vec<String> = vec![
        r#"{"kind":"mean","rho":1e308,"lower":-1e308,"upper":1e308}"#.into(),
        r#"{"kind":"histogram","epsilon":1e-300,"lower":-1e308,"upper":1e308,"bins":1000}"#
            .into(),
        r#"{"kind":"count_by_day","epsilon":0.1,"from":-9223372036854775808,"to":9223372036854775807}"#.into(),
        r#"{"kind":"top_k","epsilon":0.1,"k":18446744073709551615}"#.into(),
        r#"{"kind":"count_by_item","epsilon":0.1,"max_contributions":4294967296}"#.into(),
        r#"{"kind":"count_by_item","epsilon":1e400}"#.into(),
    ];
    let valid_query =
        r#"{"kind":"histogram","epsilon":0.01,"lower":0,"upper":5,"bins":5,"max_contributions":3}"#;
    for _ in 0..300 {
        queries.push(mutate(valid_query, &mut rng));
    }
    for body in &queries {
        let (status, reply) = api
            .call_with(
                "POST",
                "/v1/analytics/query",
                Some(&api.analyst),
                Some(body.clone()),
                &[],
            )
            .await;
        assert!(!status.is_server_error(), "{body:?} gave {status}: {reply}");
        if !status.is_success() {
            assert!(reply["error"]["code"].is_string(), "{body:?}: {reply}");
        }
    }
    for path in [
        "/v1/subjects/%00/consent",
        "/v1/subjects/%FF%FE/consent",
        "/v1/items/%2e%2e",
        "/v1/subjects/a%2Fb/consent/history",
    ] {
        let (status, reply) = api.call("GET", path, Some(&api.service), None).await;
        assert!(status.is_client_error(), "{path}: {status} {reply}");
    }
    let (_, verify) = api
        .call("GET", "/v1/audit/verify", Some(&api.dpo), None)
        .await;
    assert_eq!(verify["ok"], true);
}

#[tokio::test]
async fn recommendations_over_http() {
    let api = api().await;
    let (status, body) = api.call("GET", "/v1/models/current", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "model_not_trained")
    );
    for s in ["r1", "r2", "r3"] {
        api.grant(s, json!({"personalize.content.profiling": true}))
            .await;
        let events = json!([{"subject": s, "item": "i1", "type": "view"}, {"subject": s, "item": "i2", "type": "view"}]);
        assert_eq!(
            api.call("POST", "/v1/events", Some(&api.service), Some(events))
                .await
                .1["accepted"],
            2
        );
    }
    api.call(
        "PUT",
        "/v1/items/i3",
        Some(&api.service),
        Some(json!({"title": "Three"})),
    )
    .await;
    api.call(
        "POST",
        "/v1/events",
        Some(&api.service),
        Some(json!({"subject": "r3", "item": "i3", "type": "view"})),
    )
    .await;
    assert_eq!(
        api.call(
            "POST",
            "/v1/models/train?wait=true",
            Some(&api.service),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, card) = api
        .call("POST", "/v1/models/train?wait=true", Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{card}");
    assert_eq!(card["events"], 7);
    assert_eq!(card["purpose"], "personalize.content.profiling");
    assert!(card["evaluation"]["ndcg_10"].is_number(), "{card}");
    assert!(card["evaluation"]["exposure_gini_10"].is_number(), "{card}");
    let (_, public) = api.call("GET", "/v1/models/current", None, None).await;
    assert_eq!(public["version"], card["version"]);
    // The public card holds no exact statistics of the training data; a dpo key sees them.
    assert!(
        public["evaluation"].is_null() && public["subjects"].is_null(),
        "{public}"
    );
    let (_, full) = api
        .call("GET", "/v1/models/current", Some(&api.dpo), None)
        .await;
    assert!(full["evaluation"]["ndcg_10"].is_number(), "{full}");

    let (status, recs) = api
        .call(
            "GET",
            "/v1/subjects/r1/recommendations?n=1",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{recs}");
    assert_eq!(recs["tier"], "server");
    assert_eq!(recs["items"][0]["item"], "i3");
    assert!(recs["items"][0]["explanation"]["because"][0]["item"].is_string());
    let (_, recs) = api
        .call(
            "GET",
            "/v1/subjects/nobody/recommendations?context=i1&n=2",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(recs["tier"], "contextual");
    assert!(recs["items"][0].get("explanation").is_none());
    let (status, recs) = api
        .call(
            "POST",
            "/v1/recommendations/contextual",
            Some(&api.service),
            Some(json!({"items": ["i1"], "n": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(recs["tier"], "contextual");
    let (status, similar) = api
        .call("GET", "/v1/items/i1/similar?n=2", Some(&api.analyst), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(similar["items"].as_array().is_some());
    for (path, expected) in [
        ("/v1/subjects/r1/recommendations?n=0", "invalid_n"),
        ("/v1/subjects/r1/recommendations?n=1001", "invalid_n"),
        ("/v1/subjects/r1/recommendations?n=ten", "invalid_query"),
        (
            "/v1/subjects/r1/recommendations?context=a%20b",
            "invalid_field",
        ),
        (
            "/v1/subjects/r1/recommendations?diversity=3",
            "invalid_field",
        ),
        (
            "/v1/subjects/r1/recommendations?colour=red",
            "invalid_query",
        ),
        ("/v1/items/i1/similar?n=0", "invalid_n"),
    ] {
        let (status, body) = api.call("GET", path, Some(&api.service), None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, expected),
            "{path}"
        );
    }
    let (status, body) = api
        .call("GET", "/v1/items/zzz/similar", Some(&api.service), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_item")
    );
}

#[tokio::test]
async fn transparency_documents_come_from_the_policy() {
    let api = api().await;
    let (status, notice) = api.call("GET", "/v1/privacy/notice", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(notice["version"], "2026-11-01");
    assert_eq!(notice["controller"]["name"], "Example Shop Ltd");
    let purposes = notice["purposes"].as_array().unwrap();
    assert_eq!(purposes.len(), 5);
    let sharing = purposes
        .iter()
        .find(|p| p["name"] == "third_party_sharing")
        .unwrap();
    assert_eq!(sharing["recipients"][0], "Partner Logistics GmbH");
    assert_eq!(sharing["gpc_opt_out"], true);
    assert!(notice["rights"].as_array().unwrap().len() >= 6);
    assert!(
        notice["profiling_logic"]
            .as_str()
            .unwrap()
            .contains("no model is trained yet")
    );

    assert_eq!(
        api.call(
            "GET",
            "/v1/reports/processing-record",
            Some(&api.service),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, record) = api
        .call("GET", "/v1/reports/processing-record", Some(&api.dpo), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["activities"].as_array().unwrap().len(), 5);
    assert!(record["security_measures"].as_array().unwrap().len() >= 5);

    let (status, gpc) = api.call("GET", "/.well-known/gpc.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gpc, json!({"gpc": true, "lastUpdate": "2026-11-01"}));

    api.grant(
        "t1",
        json!({"personalize.content.profiling": true, "third_party_sharing": true}),
    )
    .await;
    api.call("POST", "/v1/events", Some(&api.service), Some(json!([{"subject": "t1", "item": "i1", "type": "view"}, {"subject": "t1", "item": "i2", "type": "purchase", "value": 1}]))).await;
    let (status, report) = api
        .call(
            "GET",
            "/v1/subjects/t1/transparency",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let purchases = &report["categories"]["user.behavior.purchase_history"];
    assert_eq!(purchases["events"], 1);
    let uses = purchases["purposes"].as_array().unwrap();
    let sharing = uses
        .iter()
        .find(|p| p["purpose"] == "third_party_sharing")
        .unwrap();
    assert_eq!(sharing["consent"], "granted");
    assert!(sharing["consent_expires_at"].is_string());
    assert!(
        uses.iter()
            .any(|p| p["purpose"] == "analytics.reporting" && p["consent"] == "none")
    );
    assert!(purchases["oldest_deleted_by"].is_string());
    assert_eq!(report["restricted"], false);
    let (status, body) = api
        .call(
            "GET",
            "/v1/subjects/nobody/transparency",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_subject")
    );
}

#[tokio::test]
async fn requests_over_http() {
    let api = api().await;
    api.grant("q1", json!({"personalize.content.profiling": true}))
        .await;
    api.call(
        "POST",
        "/v1/events",
        Some(&api.service),
        Some(json!({"subject": "q1", "item": "i1", "type": "view"})),
    )
    .await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/requests",
            Some(&api.service),
            Some(json!({"kind": "telepathy", "subject": "q1", "jurisdiction": "gdpr"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "unknown_kind")
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/requests",
            Some(&api.service),
            Some(json!({"kind": "access", "subject": "q1", "jurisdiction": "mars"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "unknown_jurisdiction")
    );
    let long_ago = candor_domain::Timestamp(
        candor_domain::Timestamp::now().0 - 40 * candor_domain::timestamp::DAY_MS,
    )
    .to_rfc3339();
    let (status, request) = api
        .call("POST", "/v1/requests", Some(&api.service), Some(json!({"kind": "access", "subject": "q1", "jurisdiction": "gdpr", "received_at": long_ago})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{request}");
    assert_eq!(request["overdue"], true);
    assert_eq!(
        api.call("GET", "/v1/requests?overdue=true", Some(&api.service), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, list) = api
        .call("GET", "/v1/requests?overdue=true", Some(&api.dpo), None)
        .await;
    assert_eq!(list["requests"][0]["id"], request["id"]);
    let id = request["id"].as_str().unwrap();
    let (status, done) = api
        .call(
            "POST",
            &format!("/v1/requests/{id}/fulfil"),
            Some(&api.dpo),
            Some(json!({"subject": "q1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["request"]["status"], "completed");
    assert_eq!(done["outcome"]["schema"], "candor.export/1");
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/requests/{id}/extend"),
            Some(&api.dpo),
            Some(json!({"reason": "late"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "already_completed")
    );
    let (_, list) = api
        .call("GET", "/v1/requests?overdue=true", Some(&api.dpo), None)
        .await;
    assert!(list["requests"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn audit_tree_heads_and_proofs_over_http() {
    let api = api().await;
    let (_, first) = api
        .call("GET", "/v1/audit/tree-head", Some(&api.service), None)
        .await;
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/t9/consent",
            Some(&api.service),
            Some(json!({"purposes": {"analytics.reporting": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let receipt: candor_engine::ConsentReceipt =
        serde_json::from_value(body["receipt"].clone()).unwrap();
    let key = api.engine.verifying_key();
    let path = format!("/v1/audit/receipts/{}/proof", receipt.consent_receipt_id);
    let (status, proof) = api.call("GET", &path, Some(&api.service), None).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let proof: candor_engine::InclusionProof = serde_json::from_value(proof).unwrap();
    proof.check_receipt(&receipt, &key).unwrap();
    let (status, _) = api.call("GET", &path, Some(&api.analyst), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let first: candor_engine::TreeHead = serde_json::from_value(first).unwrap();
    let (status, growth) = api
        .call(
            "GET",
            &format!("/v1/audit/consistency?first={}", first.tree_size),
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{growth}");
    let growth: candor_engine::ConsistencyProof = serde_json::from_value(growth).unwrap();
    growth.check(&first, &key).unwrap();
    let (status, entry) = api
        .call("GET", "/v1/audit/entries/1/proof", Some(&api.dpo), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    for (path, want) in [
        ("/v1/audit/entries/0/proof", StatusCode::NOT_FOUND),
        ("/v1/audit/entries/x/proof", StatusCode::BAD_REQUEST),
        (
            "/v1/audit/consistency?first=999999",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/audit/tree-head?size=999999", StatusCode::NOT_FOUND),
        ("/v1/audit/receipts/nothex/proof", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = api.call("GET", path, Some(&api.dpo), None).await;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, report) = api
        .call("GET", "/v1/audit/verify", Some(&api.dpo), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["checked_from"], growth.tree_head.tree_size,
        "incremental"
    );
    let (_, full) = api
        .call("GET", "/v1/audit/verify?full=true", Some(&api.dpo), None)
        .await;
    assert_eq!(
        (full["ok"].as_bool(), full["checked_from"].as_u64()),
        (Some(true), Some(0))
    );
}

#[tokio::test]
async fn receipts_over_http() {
    let api = api().await;
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/c9/consent",
            Some(&api.service),
            Some(json!({"purposes": {"analytics.reporting": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let receipt = body["receipt"].clone();
    assert_eq!(receipt["version"], "KI-CR-v1.1.0");
    let (_, key) = api.call("GET", "/v1/keys/receipts", None, None).await;
    assert_eq!(key["public_key"], receipt["publicKey"]);
    let (status, verdict) = api
        .call("POST", "/v1/receipts/verify", None, Some(receipt.clone()))
        .await;
    assert_eq!(
        (status, verdict["valid"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let mut changed = receipt.clone();
    changed["collectionMethod"] = json!("banner");
    assert_eq!(
        api.call("POST", "/v1/receipts/verify", None, Some(changed))
            .await
            .1["valid"],
        false
    );
    let (status, body) = api
        .call(
            "POST",
            "/v1/receipts/verify",
            None,
            Some(json!({"version": "x"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    // TC strings: refused with a code when no vendor id is configured, or when mixed with purposes.
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/c9/consent",
            Some(&api.service),
            Some(json!({"tc_string": "CQuci4AQuci4AAKABBENABEgAI0AAAAAAAYgF5wAgAVALzAAAAAA"})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "tcf_not_configured")
    );
    let (status, body) = api
        .call(
            "PUT",
            "/v1/subjects/c9/consent",
            Some(&api.service),
            Some(json!({"tc_string": "x", "purposes": {"analytics.reporting": true}})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_field")
    );
    // GET responses carry no receipt: only changes do.
    let (_, view) = api
        .call("GET", "/v1/subjects/c9/consent", Some(&api.service), None)
        .await;
    assert!(view.get("receipt").is_none());
}

#[tokio::test]
async fn sharing_needs_live_consent_and_gpc_stops_it() {
    let api = api().await;
    api.grant(
        "sh1",
        json!({"personalize.content.profiling": true, "third_party_sharing": true}),
    )
    .await;
    api.call(
        "POST",
        "/v1/events",
        Some(&api.service),
        Some(json!({"subject": "sh1", "item": "i2", "type": "purchase", "value": 2})),
    )
    .await;
    let path = "/v1/subjects/sh1/share/Partner%20Logistics%20GmbH";
    let (status, shared) = api.call("POST", path, Some(&api.service), None).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_eq!(shared["purpose"], "third_party_sharing");
    assert_eq!(shared["events"][0]["item"], "i2");
    let (status, body) = api
        .call(
            "POST",
            "/v1/subjects/sh1/share/Nobody%20Inc",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_recipient")
    );
    // A CCPA do-not-sell (here: the GPC signal) withdraws it; sharing then fails.
    api.call_with(
        "GET",
        "/v1/subjects/sh1/consent",
        Some(&api.service),
        None,
        &[("sec-gpc", "1")],
    )
    .await;
    let (status, body) = api.call("POST", path, Some(&api.service), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "consent_required")
    );
}

#[tokio::test]
async fn privacy_budget_planner() {
    let api = api().await;
    assert_eq!(
        api.call(
            "GET",
            "/v1/analytics/plan?mechanism=gaussian&sigma=1",
            Some(&api.service),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, plan) = api
        .call(
            "GET",
            "/v1/analytics/plan?mechanism=gaussian&sigma=1&compositions=1&delta=0.00001",
            Some(&api.analyst),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert!((plan["epsilon"].as_f64().unwrap() - 4.7285).abs() < 0.001);
    let (_, plan) = api
        .call(
            "GET",
            "/v1/analytics/plan?mechanism=gaussian&sigma=1&compositions=1000&sampling_rate=0.01",
            Some(&api.analyst),
            None,
        )
        .await;
    assert!((plan["epsilon"].as_f64().unwrap() - 2.1014).abs() < 0.021);
    let (_, plan) = api
        .call(
            "GET",
            "/v1/analytics/plan?mechanism=laplace&scale=2&sensitivity=1&compositions=3",
            Some(&api.analyst),
            None,
        )
        .await;
    assert_eq!(plan["epsilon"], 1.5);
    assert!(plan["order"].is_null());
    for bad in [
        "mechanism=magic",
        "mechanism=gaussian",
        "mechanism=gaussian&sigma=-1",
        "mechanism=gaussian&sigma=1&delta=2",
    ] {
        let (status, body) = api
            .call(
                "GET",
                &format!("/v1/analytics/plan?{bad}"),
                Some(&api.analyst),
                None,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_field"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn analytics_queries_are_for_analysts_charged_and_checked() {
    let api = api().await;
    for s in ["a1", "a2"] {
        api.grant(s, json!({"analytics.reporting": true})).await;
        let events = json!([{"subject": s, "item": "i1", "type": "view"}]);
        api.call("POST", "/v1/events", Some(&api.service), Some(events))
            .await;
    }
    let q = json!({"kind": "count_by_item", "epsilon": 0.5});
    for key in [&api.service, &api.dpo, &api.admin] {
        let (status, _) = api
            .call("POST", "/v1/analytics/query", Some(key), Some(q.clone()))
            .await;
        // Admin passes every role check; service and dpo are not analysts.
        if key != &api.admin {
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
    }
    // A dry run states the cost and charges nothing.
    let (status, preview) = api
        .call(
            "POST",
            "/v1/analytics/query",
            Some(&api.analyst),
            Some(json!({"kind": "count_by_item", "epsilon": 0.5, "dry_run": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["rows"], json!([]));
    assert!((preview["cost"]["epsilon"].as_f64().unwrap() - 0.5).abs() < 1e-3);
    let (_, budget) = api
        .call("GET", "/v1/analytics/budget", Some(&api.analyst), None)
        .await;
    let spent_before = budget["spent_rho"].as_f64().unwrap();
    let (status, answer) = api
        .call("POST", "/v1/analytics/query", Some(&api.analyst), Some(q))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per catalogue item: {answer}");
    for r in rows {
        assert!(r["noise_scale"].as_f64().unwrap() > 0.0);
        assert!(r["low"].as_f64().unwrap() <= r["high"].as_f64().unwrap());
        assert_eq!(r["confidence"], 0.95);
    }
    assert_eq!(answer["mechanism"], "discrete_gaussian");
    let (status, budget) = api
        .call("GET", "/v1/analytics/budget", Some(&api.dpo), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(budget["spent_rho"].as_f64().unwrap() > spent_before);
    assert!(budget["remaining_rho"].as_f64().unwrap() < budget["limit_rho"].as_f64().unwrap());
    assert_eq!(
        api.call("GET", "/v1/analytics/budget", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Bad queries: coded 400s, not charged.
    for (body, expected) in [
        (
            json!({"kind": "count_by_item", "epsilon": 0}),
            "invalid_field",
        ),
        (
            json!({"kind": "count_by_item", "epsilon": -2}),
            "invalid_field",
        ),
        (
            json!({"kind": "median", "epsilon": 0.1}),
            "unknown_query_kind",
        ),
        (
            json!({"kind": "mean", "epsilon": 0.1, "lower": 5, "upper": 1}),
            "bounds_out_of_order",
        ),
        (
            json!({"kind": "count_by_day", "epsilon": 0.1, "from": 10, "to": 5}),
            "bounds_out_of_order",
        ),
    ] {
        let (status, err) = api
            .call(
                "POST",
                "/v1/analytics/query",
                Some(&api.analyst),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, code(&err)),
            (StatusCode::BAD_REQUEST, expected),
            "{body}"
        );
    }
    let (status, _) = api
        .call(
            "POST",
            "/v1/analytics/query",
            Some(&api.analyst),
            Some(json!({"kind": "count_by_item", "epsilon": 0.1, "colour": "red"})),
        )
        .await;
    assert!(status.is_client_error());
    // More than what is left: refused, and the budget is unchanged.
    let (status, err) = api
        .call(
            "POST",
            "/v1/analytics/query",
            Some(&api.analyst),
            Some(json!({"kind": "count_by_item", "epsilon": 4.0})),
        )
        .await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::FORBIDDEN, "budget_exhausted")
    );
    let (_, after) = api
        .call("GET", "/v1/analytics/budget", Some(&api.analyst), None)
        .await;
    assert_eq!(after["spent_rho"], budget["spent_rho"]);
}

/// The operations of the OpenAPI document with the roles each declares: `None` for a public
/// operation (an empty security requirement), else the roles named for the `api_key` scheme.
fn documented_operations() -> Vec<(String, String, Option<Vec<String>>)> {
    documented_access()
        .into_iter()
        .map(|(method, path, roles, _)| (method, path, roles))
        .collect()
}

/// [`documented_operations`], with whether each admits a subject session (its security lists
/// the `subject_session` scheme).
fn documented_access() -> Vec<(String, String, Option<Vec<String>>, bool)> {
    let doc = serde_json::to_value(candor_server::openapi()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} declares no roles"));
            let public = security
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            let roles: Vec<String> = security
                .iter()
                .filter_map(|r| r["api_key"].as_array())
                .flatten()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            for role in &roles {
                assert!(Role::parse(role).is_some(), "{method} {path}: role {role}");
            }
            let session = security.iter().any(|r| {
                r.as_object()
                    .is_some_and(|o| o.contains_key("subject_session"))
            });
            assert!(
                public || session || !roles.is_empty(),
                "{method} {path} names no role and is not public"
            );
            assert!(
                !(session && public),
                "{method} {path} is public and names sessions"
            );
            out.push((
                method.to_uppercase(),
                path.clone(),
                (!public).then_some(roles),
                session,
            ));
        }
    }
    assert!(out.len() >= 39, "only {} operations documented", out.len());
    out
}

/// The role tests, generated from the document: every operation declares its roles; without a
/// key a non-public operation answers 401 before anything is parsed (no body, a body of the
/// wrong type, no query); each role's key is admitted or refused with 403 `forbidden` exactly
/// as the document says (`admin` everywhere).
#[tokio::test]
async fn roles_follow_the_openapi_document() {
    let api = api().await;
    let keys = [
        ("admin", api.admin.clone()),
        ("service", api.service.clone()),
        ("analyst", api.analyst.clone()),
        ("dpo", api.dpo.clone()),
    ];
    // A session of subject x1, and one of x2: on x1's data the first is admitted exactly where
    // the document lists sessions, the second never (it is not x1's); everywhere else both are
    // refused. Each operation gets fresh sessions, as one may end them (erasure, sign-out).
    for (method, path, roles, session) in documented_access() {
        let concrete = path
            .replace("{id}", "x1")
            .replace("{event}", "1")
            .replace("{recipient}", "partner");
        if roles.is_some() {
            for (body, headers) in [
                (None, vec![]),
                (
                    Some("not json".to_string()),
                    vec![("content-type", "text/plain")],
                ),
            ] {
                let (status, err) = api
                    .call_with(&method, &concrete, None, body, &headers)
                    .await;
                assert_eq!(
                    (status, code(&err)),
                    (StatusCode::UNAUTHORIZED, "unauthorized"),
                    "{method} {path} without a key"
                );
            }
        }
        for (role, key) in &keys {
            let (status, body) = api
                .call_with(&method, &concrete, Some(key), None, &[])
                .await;
            let refused = status == StatusCode::FORBIDDEN && code(&body) == "forbidden";
            let admitted = match &roles {
                None => true,
                Some(roles) => *role == "admin" || roles.iter().any(|r| r == role),
            };
            assert_eq!(
                refused, !admitted,
                "{method} {path} with a {role} key: {status} {body}"
            );
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} ({role})");
        }
        let own = open_session(&api, "x1").await;
        let other = open_session(&api, "x2").await;
        // Where the subject is in the body (filing a request), the extractor admits any
        // session and the handler refuses another subject's (tested apart).
        let admits_other = session && !path.contains("{id}");
        for (token, admitted) in [
            (&own, session && roles.is_some()),
            (&other, admits_other && roles.is_some()),
        ] {
            let (status, body) = api
                .call_with(&method, &concrete, Some(token), None, &[])
                .await;
            let refused = status == StatusCode::FORBIDDEN && code(&body) == "forbidden";
            if roles.is_some() {
                assert_eq!(
                    refused, !admitted,
                    "{method} {path} with a session (admitted: {admitted}): {status} {body}"
                );
            }
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} (session)"
            );
        }
    }
}

/// Opens a session for `subject` with the service key and returns its token.
async fn open_session(api: &Api, subject: &str) -> String {
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/subjects/{subject}/sessions"),
            Some(&api.service),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// The role matrix in `docs/roles.md` is generated from the OpenAPI document (which the
/// test above enforces), so the documented matrix is the enforced one. The decisions it
/// records: the service role (the business's backend) writes events and consent and reads
/// what serving needs, but neither a subject's whole export nor their consent history, which
/// go to the dpo (an access request) and, in time, to the subject's own session.
#[test]
fn docs_roles_md_is_in_sync() {
    let doc = serde_json::to_value(candor_server::openapi()).unwrap();
    let mut rows = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().unwrap();
            let public = security
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            let roles: Vec<&str> = security
                .iter()
                .filter_map(|r| r["api_key"].as_array())
                .flatten()
                .filter_map(|r| r.as_str())
                .collect();
            let cell = |role: &str| {
                if role == "admin" || roles.contains(&role) {
                    "yes"
                } else if public {
                    "public"
                } else {
                    ""
                }
            };
            let session = security.iter().any(|r| {
                r.as_object()
                    .is_some_and(|o| o.contains_key("subject_session"))
            });
            let session = if session {
                "own"
            } else if public {
                "public"
            } else {
                ""
            };
            rows.push(format!(
                "| `{} {}` | {} | {} | {} | {} | {} |",
                method.to_uppercase(),
                path,
                cell("admin"),
                cell("service"),
                cell("analyst"),
                cell("dpo"),
                session
            ));
        }
    }
    let generated = format!(
        "# Roles\n\n\
         Which key role may call each operation, generated from the OpenAPI document's \
         security requirements (`cargo test -p candor-server --test http docs_roles`; \
         `UPDATE_DOCS=1` rewrites it). `yes`: admitted; `public`: anyone, without a key \
         (`GET /v1/models/current` shows admin and dpo keys the exact training statistics \
         too); empty: 403 `forbidden`. Without a key every non-public operation answers 401 \
         before anything else is read.\n\n\
         The service role is the business's backend: it sends events and consent, runs the \
         catalogue and asks for recommendations, and may file rights requests and apply a \
         person's restriction, objection or rectification. It does not read a person's whole \
         export or consent history: those go to the dpo, who answers access requests, and to \
         the person's own session.\n\n\
         A subject session (`cs1.…`, opened by the service with `POST /v1/subjects/{{id}}/sessions`) \
         is the person's own credential: `own` marks what it may do, for its own subject only \
         (another subject's id answers 403); every other operation answers it 403.\n\n\
         | operation | admin | service | analyst | dpo | session |\n|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    for narrowed in [
        "`GET /v1/subjects/{id}/export` | yes |  |  | yes | own |",
        "`GET /v1/subjects/{id}/consent/history` | yes |  |  | yes | own |",
    ] {
        assert!(generated.contains(narrowed), "{narrowed}");
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/roles.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/roles.md is out of date: run `UPDATE_DOCS=1 cargo test -p candor-server --test http docs`"
    );
}

/// Invariant 6 at the edge: no operation on a subject's data admits analyst keys; analysts
/// get only the analytics endpoints (and the catalogue and item similarity, which are not
/// personal).
#[tokio::test]
async fn analyst_keys_cannot_reach_raw_subject_data() {
    let api = api().await;
    api.grant(
        "s1",
        json!({"personalize.content.profiling": true, "analytics.reporting": true}),
    )
    .await;
    let mut checked = 0;
    for (method, path, roles) in documented_operations() {
        let Some(roles) = roles else { continue };
        let personal = path.starts_with("/v1/subjects/")
            || path.starts_with("/v1/requests")
            || path.starts_with("/v1/audit")
            || path == "/v1/events";
        if !personal {
            continue;
        }
        assert!(
            !roles.iter().any(|r| r == "analyst"),
            "{method} {path} admits analysts"
        );
        let concrete = path
            .replace("{id}", "s1")
            .replace("{event}", "1")
            .replace("{recipient}", "partner");
        let (status, err) = api.call(&method, &concrete, Some(&api.analyst), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {concrete}: {err}");
        checked += 1;
    }
    assert!(
        checked >= 14,
        "only {checked} per-subject operations checked"
    );
}

/// A request body that counts the bytes anyone reads from it.
struct CountingBody {
    remaining: usize,
    read: Arc<std::sync::atomic::AtomicUsize>,
}

impl axum::body::HttpBody for CountingBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        const CHUNK: usize = 1 << 20;
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK);
        self.remaining -= n;
        self.read.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        let chunk = axum::body::Bytes::from(vec![b' '; n]);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}

/// Without a key, a 14 MiB body is answered 401 before a byte of it is read or parsed (it
/// was read and parsed first, and refused 413 or 415 ahead of the 401).
#[tokio::test]
async fn authentication_comes_before_the_body_is_read() {
    let api = api().await;
    for content_type in [None, Some("application/json"), Some("text/plain")] {
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body = CountingBody {
            remaining: 14 << 20,
            read: read.clone(),
        };
        let mut req = Request::builder().method("POST").uri("/v1/events");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Body::new(body)).unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{content_type:?}");
        assert_eq!(
            read.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no byte of the body is read before the key is checked"
        );
    }
    let (status, _) = api.call("GET", "/v1/analytics/plan", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no query, no key: 401");
}

/// Every response says `no-store` and `nosniff`; cross-origin pages can read nothing unless
/// their origin is configured, and then only that origin.
#[tokio::test]
async fn responses_are_not_cached_sniffed_or_shared_cross_origin() {
    let api = api().await;
    let request = |method: &str, path: &str, origin: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("authorization", format!("Bearer {}", api.dpo))
            .body(Body::empty())
            .unwrap()
    };
    for path in ["/v1/policy", "/v1/subjects/s1/consent", "/nowhere"] {
        let resp = api
            .app
            .clone()
            .oneshot(request("GET", path, "https://evil.example"))
            .await
            .unwrap();
        let headers = resp.headers();
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "{path}: no origin is allowed by default"
        );
    }
    let shop = axum::http::HeaderValue::from_static("https://shop.example");
    let allowed = app(AppState::new(api.engine.clone(), MAX_BODY).allow_origins(vec![shop]));
    let preflight = allowed
        .clone()
        .oneshot(request("OPTIONS", "/v1/policy", "https://shop.example"))
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let other = allowed
        .oneshot(request("GET", "/v1/policy", "https://evil.example"))
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

/// Keys over HTTP: created with an expiry, listed without secrets, revoked (then 401), and
/// every refused authentication is counted in the metrics.
#[tokio::test]
async fn keys_are_listed_revoked_and_failures_counted() {
    let api = api().await;
    let (status, created) = api
        .call(
            "POST",
            "/v1/keys",
            Some(&api.admin),
            Some(json!({"role": "service", "label": "temp", "expires_in_days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].is_string());
    let (status, _) = api.call("GET", "/v1/items", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = api.call("GET", "/v1/keys", Some(&api.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["keys"].as_array().unwrap().len() >= 5);
    assert!(!list.to_string().contains(&key), "no secret is listed");
    let (status, _) = api
        .call("DELETE", &format!("/v1/keys/{id}"), Some(&api.admin), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call("GET", "/v1/items", Some(&key), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, body) = api
        .call("DELETE", &format!("/v1/keys/{id}"), Some(&api.admin), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_key")
    );
    let (status, _) = api
        .call(
            "POST",
            "/v1/keys",
            Some(&api.admin),
            Some(json!({"role": "service", "expires_in_days": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, metrics) = api.call("GET", "/metrics", Some(&api.admin), None).await;
    let metrics = metrics.as_str().unwrap();
    let invalid = metrics
        .lines()
        .find(|l| l.starts_with("candor_auth_failures_total{reason=\"invalid\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(!invalid.ends_with(" 0"), "{invalid}");
}

/// Over its per-key budget a key gets 429 `rate_limited` with `Retry-After`, before its
/// request is read; another key is unaffected. (Per-address limits need a real socket and
/// are applied by the same check.)
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let api = api().await;
    let limits = candor_server::ratelimit::RateLimits {
        per_address: None,
        per_key: std::num::NonZeroU32::new(3),
    };
    let limited = app(AppState::new(api.engine.clone(), MAX_BODY).rate_limits(limits));
    let get = |key: &str| {
        Request::builder()
            .uri("/v1/items")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(limited.clone().oneshot(get(&api.service)).await.unwrap());
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let refused = statuses.pop().unwrap();
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let bytes = refused.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    check_error_table("GET", "/v1/items", StatusCode::TOO_MANY_REQUESTS, &body);
    assert_eq!(code(&body), "rate_limited");
    let other = limited.clone().oneshot(get(&api.analyst)).await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another key has its own budget"
    );
}

/// A subject session is the person's own credential: sealed (no id in it), admitted only on
/// its own subject's data and only where sessions are listed, refused once expired, revoked or
/// erased, and unable to record an import or a backdated request.
#[tokio::test]
async fn subject_sessions_act_for_their_own_subject_only_on_sqlite() {
    subject_sessions_act_for_their_own_subject_only(api().await).await;
}

#[tokio::test]
async fn subject_sessions_act_for_their_own_subject_only_on_postgres() {
    if let Some(api) = api_postgres().await {
        subject_sessions_act_for_their_own_subject_only(api).await;
    }
}

async fn subject_sessions_act_for_their_own_subject_only(api: Api) {
    let (status, opened) = api
        .call(
            "POST",
            "/v1/subjects/alice-77/sessions",
            Some(&api.service),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let token = opened["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cs1."));
    assert!(!token.contains("alice-77"));
    assert_eq!(opened["link"], format!("/privacy?session={token}"));
    let expires =
        candor_domain::Timestamp::parse_rfc3339(opened["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.0 - api.engine.now().0;
    assert!(
        (899_000..=900_000).contains(&ttl),
        "default 15 minutes: {ttl} ms"
    );

    // Only services open sessions, within the configured length, and a session cannot open
    // another.
    for (key, body, expected) in [
        (&api.service, json!({"ttl_seconds": 59}), "invalid_field"),
        (&api.service, json!({"ttl_seconds": 901}), "invalid_field"),
        (&api.dpo, json!({}), "forbidden"),
        (&token, json!({}), "forbidden"),
    ] {
        let (_, err) = api
            .call(
                "POST",
                "/v1/subjects/alice-77/sessions",
                Some(key),
                Some(body),
            )
            .await;
        assert_eq!(code(&err), expected);
    }

    // The person's own consent, changed and read back with a receipt.
    let (status, changed) = api
        .call(
            "PUT",
            "/v1/subjects/alice-77/consent",
            Some(&token),
            Some(json!({"purposes": {"personalize.content.profiling": true}, "method": "form"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert!(changed["receipt"]["consentReceiptId"].is_string());
    let (_, err) = api
        .call(
            "PUT",
            "/v1/subjects/alice-77/consent",
            Some(&token),
            Some(json!({"purposes": {"analytics.reporting": true}, "method": "import"})),
        )
        .await;
    assert_eq!(code(&err), "invalid_field");
    for path in [
        "/v1/subjects/alice-77/consent",
        "/v1/subjects/alice-77/consent/history",
        "/v1/subjects/alice-77/transparency",
        "/v1/subjects/alice-77/recommendations",
        "/v1/subjects/alice-77/export",
        "/v1/subjects/alice-77/requests",
    ] {
        let (status, body) = api.call("GET", path, Some(&token), None).await;
        // No model is trained here: recommendations answer that, not a refusal of the caller.
        assert!(
            status == StatusCode::OK || code(&body) == "model_not_trained",
            "{path}: {status} {body}"
        );
    }
    // Another subject, and what only operators may do: 403 before anything else.
    for (method, path) in [
        ("GET", "/v1/subjects/bob-78/consent"),
        ("PUT", "/v1/subjects/bob-78/consent"),
        ("DELETE", "/v1/subjects/bob-78"),
        ("DELETE", "/v1/subjects/bob-78/sessions"),
        ("POST", "/v1/events"),
        ("GET", "/v1/requests"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/keys"),
        ("GET", "/metrics"),
        ("POST", "/v1/analytics/query"),
    ] {
        let (status, err) = api
            .call_with(method, path, Some(&token), Some("not json".into()), &[])
            .await;
        assert_eq!(
            (status, code(&err)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
    }

    // Filing a request: for oneself only, and received now.
    let request =
        |subject: &str| json!({"kind": "access", "subject": subject, "jurisdiction": "gdpr"});
    let (status, filed) = api
        .call(
            "POST",
            "/v1/requests",
            Some(&token),
            Some(request("alice-77")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{filed}");
    let (_, err) = api
        .call(
            "POST",
            "/v1/requests",
            Some(&token),
            Some(request("bob-78")),
        )
        .await;
    assert_eq!(code(&err), "forbidden");
    let mut backdated = request("alice-77");
    backdated["received_at"] = json!("2026-01-01T00:00:00Z");
    let (_, err) = api
        .call("POST", "/v1/requests", Some(&token), Some(backdated))
        .await;
    assert_eq!(code(&err), "invalid_field");
    let (_, mine) = api
        .call("GET", "/v1/subjects/alice-77/requests", Some(&token), None)
        .await;
    assert_eq!(mine["requests"][0]["id"], filed["id"]);

    // The audit log names the session, never the token.
    let entries = api.engine.audit_entries(0, 1000).await.unwrap();
    assert!(entries.iter().any(|e| e.action == "session.open"));
    assert!(entries.iter().any(|e| e.actor.starts_with("session:")));

    // Expiry: a short session stops at its end.
    let (_, short) = api
        .call(
            "POST",
            "/v1/subjects/alice-77/sessions",
            Some(&api.service),
            Some(json!({"ttl_seconds": 60})),
        )
        .await;
    let short = short["token"].as_str().unwrap().to_owned();
    let consent = "/v1/subjects/alice-77/consent";
    assert_eq!(
        api.call("GET", consent, Some(&short), None).await.0,
        StatusCode::OK
    );
    api.clock.advance(61_000);
    let (status, err) = api.call("GET", consent, Some(&short), None).await;
    assert_eq!(
        (status, code(&err)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    // Revocation by the service ends every session of the subject.
    assert_eq!(
        api.call("GET", consent, Some(&token), None).await.0,
        StatusCode::OK
    );
    let (status, revoked) = api
        .call(
            "DELETE",
            "/v1/subjects/alice-77/sessions",
            Some(&api.service),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked["revoked"], 2);
    assert_eq!(
        api.call("GET", consent, Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Signing out, and erasure from the person's own session: both end it.
    let token = open_session(&api, "alice-77").await;
    let (_, out) = api
        .call(
            "DELETE",
            "/v1/subjects/alice-77/sessions",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(out["revoked"], 1);
    assert_eq!(
        api.call("GET", consent, Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let token = open_session(&api, "alice-77").await;
    let (status, certificate) = api
        .call("DELETE", "/v1/subjects/alice-77", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{certificate}");
    assert!(certificate["certificate_id"].is_string());
    assert_eq!(
        api.call("GET", consent, Some(&token), None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Garbage and forged tokens are plain 401s.
    for bad in [
        "cs1.",
        "cs1.AAAA",
        &format!("{}A", &token[..token.len() - 1]),
    ] {
        let (status, err) = api.call("GET", consent, Some(bad), None).await;
        assert_eq!(
            (status, code(&err)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{bad}"
        );
    }
}
