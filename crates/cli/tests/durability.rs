//! kill -9 durability, from outside: `candor serve` is killed with SIGKILL in the middle of
//! concurrent ingestion, restarted on the same store, and asked what it holds. No acknowledged
//! event may be lost, no batch may be partly stored, and the audit chain must verify. Runs on
//! SQLite, and on PostgreSQL when `CANDOR_TEST_POSTGRES_URL` is set (in a database of its own,
//! created with `psql`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Batches (one subject each) and events per batch.
const BATCHES: usize = 400;
const PER_BATCH: usize = 50;
/// Acknowledged batches after which the server is killed.
const KILL_AFTER: usize = 30;

fn candor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candor"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CANDOR_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// One HTTP/1.1 request; `None` when the connection fails (the server is gone).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((status, body))
}

/// Starts `candor serve` on a free port; returns the child and its address.
fn serve(data: &str, store: &str) -> (Child, String) {
    let mut child = candor()
        .args([
            "serve",
            "--data-dir",
            data,
            "--store",
            store,
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
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
    let out = candor()
        .args([
            "keys",
            "create",
            "--role",
            "admin",
            "--data-dir",
            data,
            "--store",
            store,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
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

#[test]
fn kill_9_mid_ingest_loses_no_acknowledged_event_on_postgres() {
    let Ok(url) = std::env::var("CANDOR_TEST_POSTGRES_URL") else {
        eprintln!("note: PostgreSQL kill -9 test skipped: CANDOR_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("candor_k9_{:08x}", std::process::id() ^ 0x5eed);
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([url.as_str(), "-q", "-c", sql])
            .output()
            .expect("psql is installed where the PostgreSQL suite runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("DROP DATABASE IF EXISTS {name}"));
    psql(&format!("CREATE DATABASE {name}"));
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    kill_mid_ingest(&format!("{base}/{name}"));
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}
