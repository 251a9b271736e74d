//! The promises from outside, against real `candor serve` processes. kill -9: a server is
//! killed with SIGKILL in the middle of concurrent ingestion, restarted on the same store, and
//! asked what it holds; no acknowledged event may be lost, no batch may be partly stored, and
//! the audit chain must verify (SQLite, and PostgreSQL). Two servers on one PostgreSQL database:
//! each acts within a second on an erasure, a revoked key, a deleted item and a new model made
//! through the other. PostgreSQL runs when `CANDOR_TEST_POSTGRES_URL` is set, each test in a
//! database of its own created with `psql`.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Batches (one subject each) and events per batch.
const BATCHES: usize = 400;
const PER_BATCH: usize = 50;
/// Acknowledged batches after which the server is killed.
const KILL_AFTER: usize = 30;

mod support;

use support::{candor, create_key};

/// One request with a bearer key; `None` when the server is gone.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    support::http(addr, method, path, Some(key), body)
}

/// Starts `candor serve` on a free port; returns the child and its address.
fn serve(data: &str, store: &str) -> (Child, String) {
    serve_with(data, store, &[])
}

/// [`serve`] with extra environment settings (`CANDOR__SECTION__KEY`).
fn serve_with(data: &str, store: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = candor();
    cmd.envs(env.iter().copied()).args([
        "serve",
        "--data-dir",
        data,
        "--store",
        store,
        "--listen",
        "127.0.0.1:0",
    ]);
    let (child, url) = support::start(cmd);
    let addr = url.strip_prefix("http://").expect("plain HTTP").to_owned();
    (child, addr)
}

fn batch(b: usize) -> String {
    let now = candor_domain::Timestamp::now().0;
    let events: Vec<serde_json::Value> = (0..PER_BATCH)
        .map(|j| {
            serde_json::json!({
                "subject": format!("k9-{b}"),
                "item": format!("i{}", j % 5),
                "type": "view",
                "timestamp": candor_domain::Timestamp(now - (j as i64 + 1) * 1000).to_rfc3339(),
            })
        })
        .collect();
    serde_json::to_string(&events).unwrap()
}

fn kill_mid_ingest(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = create_key(data, Some(store), "admin");
    let (mut child, addr) = serve(data, store);
    for i in 0..5 {
        let item = format!(r#"{{"title": "Item {i}", "category": "books"}}"#);
        let (status, body) =
            http(&addr, "PUT", &format!("/v1/items/i{i}"), &key, Some(&item)).unwrap();
        assert!(status < 300, "{status} {body}");
    }
    let grant = r#"{"purposes": {"personalize.content.profiling": true}}"#;
    for b in 0..BATCHES {
        let path = format!("/v1/subjects/k9-{b}/consent");
        let (status, body) = http(&addr, "PUT", &path, &key, Some(grant)).unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Four clients ingest one batch per subject; the server is killed mid-way.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (acked, next, addr, key) = (acked.clone(), next.clone(), addr.clone(), key.clone());
            std::thread::spawn(move || {
                loop {
                    let b = next.fetch_add(1, Ordering::SeqCst);
                    if b >= BATCHES {
                        return;
                    }
                    match http(&addr, "POST", "/v1/events", &key, Some(&batch(b))) {
                        Some((status, _)) if status < 300 => acked.lock().unwrap().push(b),
                        Some((status, body)) => panic!("batch {b}: {status} {body}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < KILL_AFTER && next.load(Ordering::SeqCst) < BATCHES {
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    clients.into_iter().for_each(|c| c.join().unwrap());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);
    assert!(
        acked.len() < BATCHES,
        "the server was killed before ingestion finished"
    );

    let (mut child, addr) = serve(data, store);
    let mut stored_batches = 0;
    for b in 0..BATCHES {
        let path = format!("/v1/subjects/k9-{b}/export");
        let (status, body) = http(&addr, "GET", &path, &key, None).unwrap();
        assert_eq!(status, 200, "{body}");
        let export: serde_json::Value = serde_json::from_str(&body).unwrap();
        let events = export["events"].as_array().unwrap().len();
        assert!(
            events == 0 || events == PER_BATCH,
            "batch {b} is partial: {events} events"
        );
        if acked.contains(&b) {
            assert_eq!(events, PER_BATCH, "acknowledged batch {b} was lost");
        }
        stored_batches += (events > 0) as usize;
    }
    assert!(stored_batches >= acked.len());
    eprintln!(
        "{store}: {} batches acknowledged, {stored_batches} stored of {BATCHES}",
        acked.len()
    );
    let (status, body) = http(&addr, "GET", "/v1/audit/verify", &key, None).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\":true"), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn kill_9_mid_ingest_loses_no_acknowledged_event_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_mid_ingest(&format!(
        "sqlite://{}",
        dir.path().join("candor.db").display()
    ));
}

/// A fresh PostgreSQL database for one test, dropped when the guard goes; `None` (with a
/// notice) when `CANDOR_TEST_POSTGRES_URL` is not set.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("CANDOR_TEST_POSTGRES_URL") else {
            eprintln!("note: PostgreSQL {test} test skipped: CANDOR_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("candor_{test}_{:08x}", std::process::id());
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let db = Self {
            url: format!("{base}/{name}"),
            admin_url: admin_url.clone(),
            name,
        };
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([self.admin_url.as_str(), "-q", "-c", sql])
            .output()
            .expect("psql is installed where the PostgreSQL suite runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

#[test]
fn kill_9_mid_ingest_loses_no_acknowledged_event_on_postgres() {
    if let Some(db) = PgDatabase::create("k9") {
        kill_mid_ingest(&db.url);
    }
}

/// Polls `check` until it holds or `within` has passed; returns how long it took.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() <= within {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::yield_now();
    }
    None
}

#[test]
fn two_servers_act_within_a_second_on_what_the_other_did() {
    let Some(db) = PgDatabase::create("pair") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let key = |role: &str| create_key(data, Some(&db.url), role);
    let admin = key("admin");
    let doomed = key("service");
    let (mut a_child, a) = serve(data, &db.url);
    let (mut b_child, b) = serve(data, &db.url);
    let call = |addr: &str, method: &str, path: &str, body: Option<&str>| {
        http(addr, method, path, &admin, body).expect("the server answers")
    };
    for i in 0..4 {
        let item = format!(r#"{{"title": "Item {i}", "category": "books"}}"#);
        assert!(call(&a, "PUT", &format!("/v1/items/i{i}"), Some(&item)).0 < 300);
    }
    let grant = r#"{"purposes": {"personalize.content.profiling": true}}"#;
    for s in ["s", "t"] {
        assert_eq!(
            call(&a, "PUT", &format!("/v1/subjects/{s}/consent"), Some(grant)).0,
            200
        );
    }
    let event =
        |s: &str, item: &str| format!(r#"{{"subject": "{s}", "item": "{item}", "type": "view"}}"#);
    assert_eq!(
        call(&b, "POST", "/v1/events", Some(&event("s", "i0"))).0,
        202
    );
    assert_eq!(
        call(&b, "POST", "/v1/events", Some(&event("t", "i0"))).0,
        202
    );
    assert_eq!(
        call(&b, "POST", "/v1/events", Some(&event("t", "i1"))).0,
        202
    );
    // The audit's case: A erases S, S consents again, B ingests again.
    assert_eq!(call(&a, "DELETE", "/v1/subjects/s", None).0, 200);
    assert_eq!(
        call(&a, "PUT", "/v1/subjects/s/consent", Some(grant)).0,
        200
    );
    assert_eq!(
        call(&b, "POST", "/v1/events", Some(&event("s", "i1"))).0,
        202
    );
    let (status, body) = call(&a, "GET", "/v1/subjects/s/export", None);
    assert_eq!(
        status, 200,
        "A reads what B stored after the erasure: {body}"
    );
    let export: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(export["events"].as_array().unwrap().len(), 1, "{body}");
    // A revoked key, a deleted item, a new model: B acts on each within a second.
    assert_eq!(http(&b, "GET", "/v1/items", &doomed, None).unwrap().0, 200);
    let keys: serde_json::Value =
        serde_json::from_str(&call(&a, "GET", "/v1/keys", None).1).unwrap();
    let doomed_id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "service")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&a, "DELETE", &format!("/v1/keys/{doomed_id}"), None).0,
        204
    );
    let revoked = eventually(Duration::from_secs(1), || {
        http(&b, "GET", "/v1/items", &doomed, None).unwrap().0 == 401
    });
    assert!(
        revoked.is_some(),
        "B still admits the revoked key after a second"
    );
    assert_eq!(
        call(&b, "POST", "/v1/events", Some(&event("t", "i3"))).0,
        202
    );
    assert_eq!(call(&a, "DELETE", "/v1/items/i3", None).0, 204);
    let refused = eventually(Duration::from_secs(1), || {
        let (status, body) = call(&b, "POST", "/v1/events", Some(&event("t", "i3")));
        status == 422 && body.contains("unknown_item")
    });
    assert!(
        refused.is_some(),
        "B still accepts the deleted item after a second"
    );
    let (status, card) = call(&a, "POST", "/v1/models/train?wait=true", None);
    assert_eq!(status, 200, "{card}");
    let version = serde_json::from_str::<serde_json::Value>(&card).unwrap()["version"].clone();
    let served = eventually(Duration::from_millis(1500), || {
        let (_, card) = call(&b, "GET", "/v1/models/current", None);
        serde_json::from_str::<serde_json::Value>(&card).is_ok_and(|c| c["version"] == version)
    });
    eprintln!(
        "B acted on: revoked key {revoked:?}, deleted item {refused:?}, new model {served:?}"
    );
    // The model poll runs every second; the check itself may start just after one.
    assert!(
        served.is_some(),
        "B does not serve A's new model after 1.5 s"
    );
    for child in [&mut a_child, &mut b_child] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A flood from one address is answered 429 with `Retry-After` before anything is read, on a
/// real socket (the per-address limit needs the peer address).
#[test]
fn a_flood_from_one_address_gets_429() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let store = format!("sqlite://{}", dir.path().join("candor.db").display());
    let (mut child, addr) = serve_with(
        data,
        &store,
        &[("CANDOR__SERVER__RATE_LIMIT_PER_ADDRESS", "3")],
    );
    let statuses: Vec<u16> = (0..6)
        .map(|_| http(&addr, "GET", "/v1/policy", "none", None).unwrap().0)
        .collect();
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].iter().all(|&s| s == 429), "{statuses:?}");
    let (_, body) = http(&addr, "GET", "/v1/policy", "none", None).unwrap();
    assert!(body.contains("rate_limited"), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}
