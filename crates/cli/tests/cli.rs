//! The `candor` binary as scripts drive it: demo, keys, policy check, audit verify, settings
//! errors. One test binary for the CLI.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use support::{candor, create_key};

/// JSON lines of `candor eval --json`, and a model's NDCG@10 among them.
fn eval_rows(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ndcg_of(rows: &[serde_json::Value], model: &str) -> f64 {
    rows.iter().find(|r| r["model"] == model).unwrap()["ndcg@10"]
        .as_f64()
        .unwrap()
}

fn http_get(addr: &str, path: &str, key: Option<&str>) -> (u16, String) {
    support::http(addr, "GET", path, key, None).expect("the server answers")
}

#[test]
fn demo_prints_the_admin_key_once_ready_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = candor()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--subjects",
            "60",
            "--items",
            "120",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut key, mut stored) = (None, None, false);
    let deadline = Instant::now() + Duration::from_secs(120);
    while key.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("listening on http://") {
            addr = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.starts_with("events: ")
            && line.contains("stored")
            && line.contains("consent_required")
        {
            stored = true;
        }
        key = line.strip_prefix("admin key: ").map(str::to_owned);
    }
    let (addr, key) = (addr.expect("listening line"), key.expect("admin key line"));
    assert!(stored, "the demo reports stored and refused events");
    assert_eq!(http_get(&addr, "/healthz", None).0, 200);
    let (status, body) = http_get(&addr, "/v1/subjects/user-0001/consent", Some(&key));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"granted\""), "{body}");
    // user-0009 was imported with a consent that has since expired.
    let (_, body) = http_get(&addr, "/v1/subjects/user-0009/consent", Some(&key));
    assert!(body.contains("\"expired\""), "{body}");
    let (status, body) = http_get(&addr, "/v1/audit/verify", Some(&key));
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\":true"), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The key file was created private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["keys.toml", "candor.db", "candor.db-wal", "candor.db-shm"] {
            let path = dir.path().join(file);
            if file.ends_with("-shm") && !path.exists() {
                continue;
            }
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file} is private");
        }
    }
}

/// Runs `candor demo ARGS` (small) until it prints its admin key; returns its stdout lines.
fn demo_lines(args: &[&str]) -> Vec<String> {
    let mut child = candor()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--subjects",
            "20",
            "--items",
            "40",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("admin key: ");
        out.push(line);
        if done || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    out
}

/// `demo --fresh` empties the store the settings name, wherever it is, through the store.
#[test]
fn demo_fresh_empties_the_configured_store() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", elsewhere.path().join("shop.db").display());
    let data_dir = data.path().to_str().unwrap();
    let loaded = |lines: &[String]| lines.iter().any(|l| l.starts_with("demo shop: "));
    let first = demo_lines(&["--data-dir", data_dir, "--store", &url]);
    assert!(loaded(&first), "{first:?}");
    assert!(elsewhere.path().join("shop.db").exists());
    let again = demo_lines(&["--data-dir", data_dir, "--store", &url]);
    assert!(!loaded(&again), "a second run keeps the shop: {again:?}");
    let fresh = demo_lines(&["--data-dir", data_dir, "--store", &url, "--fresh"]);
    assert!(loaded(&fresh), "--fresh regenerates it: {fresh:?}");
}

#[test]
fn keys_create_prints_only_the_key_and_audit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = candor()
        .args(["keys", "create", "--role", "service", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        stdout.starts_with("cnd_") && stdout.trim().len() > 40,
        "{stdout}"
    );
    let out = candor()
        .args(["keys", "create", "--role", "superuser", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role must be one of"));
    let out = candor()
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log verified: 1 entries"));
}

#[test]
fn policy_check_names_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, candor_domain::policy::DEFAULT_POLICY_TOML).unwrap();
    let out = candor()
        .args(["policy", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("is valid"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        candor_domain::policy::DEFAULT_POLICY_TOML.replacen(
            "consent_renewal_days = 365",
            "consent_renewal_days = 0",
            1,
        ),
    )
    .unwrap();
    let out = candor()
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line ") && stderr.contains("consent_renewal_days"),
        "{stderr}"
    );
    let out = candor()
        .args(["policy", "check", "/nonexistent/policy.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn settings_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = candor()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CANDOR__SERVER__LISEN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("lisen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("candor.toml");
    std::fs::write(&config, "[store]\nurl = \"mysql://nope\"\n").unwrap();
    let out = candor()
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsupported store URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = candor()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CANDOR_MASTER_KEY", "AAAA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("or none"));
    for (var, value, needle) in [
        ("CANDOR__MODELS__EPSILON", "0", "[models] epsilon"),
        ("CANDOR__ANALYTICS__DELTA", "2", "[analytics] epsilon"),
        ("CANDOR__MODELS__RELEASES_EPSILON", "4", "releases_epsilon"),
    ] {
        let out = candor()
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{var}: {err}");
    }
}

#[test]
fn bench_dp_runs_end_to_end() {
    let out = candor()
        .args([
            "bench",
            "dp",
            "--users",
            "300",
            "--items",
            "100",
            "--interactions",
            "6000",
            "--epsilon",
            "1,inf",
            "--reference",
            "popularity",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "dp ε=1",
        "dp ε=inf",
        "dp-served ε=inf",
        "table sampler",
        "best non-private",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}

#[test]
fn eval_runs_the_protocol_on_generated_splits() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed-1");
    std::fs::create_dir(&seed).unwrap();
    let items: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    std::fs::write(dir.path().join("items.tsv"), items.join("\n")).unwrap();
    let (mut train, mut test) = (String::new(), String::new());
    for u in 0..90 {
        // Three taste groups of 20 items; every fifth interaction is held out.
        for k in 0..10 {
            let item = (u % 3) * 20 + (u * 7 + k * 3) % 20;
            let line = format!("u{u}\tm{item}\n");
            if k % 5 == 0 {
                test.push_str(&line)
            } else {
                train.push_str(&line)
            }
        }
    }
    std::fs::write(seed.join("train.tsv"), &train).unwrap();
    std::fs::write(seed.join("test.tsv"), &test).unwrap();
    let out = candor()
        .args(["eval", "--model", "all", "--json", "--splits"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = eval_rows(&out.stdout);
    assert_eq!(rows.len(), 6);
    let ndcg = |m: &str| ndcg_of(&rows, m);
    for model in ["knn", "als", "ease", "edlae", "blend"] {
        assert!(ndcg(model) > ndcg("popularity"), "{model}: {stdout}");
    }
    // The DP models at each ε; the noiseless one beats popularity.
    let out = candor()
        .args([
            "eval",
            "--json",
            "--epsilon",
            "1,inf",
            "--delta",
            "1e-5",
            "--splits",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dp = eval_rows(&out.stdout);
    assert_eq!(dp.len(), 6, "{dp:?}");
    assert!(ndcg_of(&dp, "dp ε=inf") > ndcg("popularity"), "{dp:?}");
    for bad in [
        ["--epsilon", "0"],
        ["--epsilon", "0.5,-1"],
        ["--epsilon", "lots"],
        ["--delta", "1"],
    ] {
        let out = candor()
            .args(["eval", "--splits"])
            .arg(dir.path())
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("epsilon") || err.contains("delta"),
            "{bad:?}: {err}"
        );
    }
    let out = candor()
        .args(["eval", "--model", "magic", "--train"])
        .arg(seed.join("train.tsv"))
        .arg("--test")
        .arg(seed.join("test.tsv"))
        .arg("--items")
        .arg(dir.path().join("items.tsv"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model"));
    std::fs::write(seed.join("test.tsv"), "u1\tnot-in-catalogue\n").unwrap();
    let out = candor()
        .args(["eval", "--splits"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the catalogue"));
}

#[test]
fn receipts_verify_offline() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let receipt = rt.block_on(async {
        let engine =
            candor_engine::Engine::open(candor_engine::EngineConfig::for_data_dir(dir.path()))
                .await
                .unwrap();
        let update = candor_engine::ConsentUpdate::whole(
            &["analytics.reporting"],
            true,
            candor_domain::ConsentMethod::Api,
        );
        let subject = candor_domain::SubjectId::parse("offline-1").unwrap();
        engine
            .set_consent_with_receipt(&candor_engine::Actor::cli(), &subject, &update, false)
            .await
            .unwrap()
            .1
    });
    let good = dir.path().join("receipt.json");
    std::fs::write(&good, serde_json::to_string_pretty(&receipt).unwrap()).unwrap();
    // Without a trusted key it refuses, unless told to trust the receipt's own, and then
    // it says loudly what that does not prove.
    let out = candor()
        .args(["receipts", "verify"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a trusted key is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-key"));
    let out = candor()
        .args(["receipts", "verify", "--trust-embedded-key"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    let out = candor()
        .args(["receipts", "verify", "--public-key", &receipt.public_key])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    // Another spelling of the same signature bytes is not the signed document.
    let mut shouting = receipt.clone();
    shouting.signature = shouting.signature.to_uppercase();
    let upper = dir.path().join("upper.json");
    std::fs::write(&upper, serde_json::to_string(&shouting).unwrap()).unwrap();
    let out = candor()
        .args(["receipts", "verify", "--public-key", &receipt.public_key])
        .arg(&upper)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "upper-case hex is not canonical"
    );
    let out = candor()
        .args(["receipts", "verify", "--public-key", &"ab".repeat(32)])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let mut tampered = receipt.clone();
    tampered.consent_timestamp += 1;
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, serde_json::to_string(&tampered).unwrap()).unwrap();
    let out = candor()
        .args(["receipts", "verify", "--public-key", &receipt.public_key])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
}

#[test]
fn audit_proofs_check_offline_with_the_public_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (receipt, first, inclusion, consistency) = rt.block_on(async {
        let engine =
            candor_engine::Engine::open(candor_engine::EngineConfig::for_data_dir(dir.path()))
                .await
                .unwrap();
        let update = candor_engine::ConsentUpdate::whole(
            &["analytics.reporting"],
            true,
            candor_domain::ConsentMethod::Api,
        );
        let actor = candor_engine::Actor::cli();
        let subject = candor_domain::SubjectId::parse("logged-1").unwrap();
        let (_, receipt) = engine
            .set_consent_with_receipt(&actor, &subject, &update, false)
            .await
            .unwrap();
        let first = engine.tree_head().await.unwrap();
        for i in 0..5 {
            let other = candor_domain::SubjectId::parse(&format!("logged-{i}x")).unwrap();
            engine
                .set_consent(&actor, &other, &update, false)
                .await
                .unwrap();
        }
        let inclusion = engine
            .receipt_proof(&receipt.consent_receipt_id)
            .await
            .unwrap();
        let consistency = engine.consistency_proof(first.tree_size).await.unwrap();
        (receipt, first, inclusion, consistency)
    });
    let write = |name: &str, json: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, json).unwrap();
        path
    };
    fn json<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string_pretty(value).unwrap()
    }
    let receipt_file = write("receipt.json", json(&receipt));
    let first_file = write("first.json", json(&first));
    let inclusion_file = write("inclusion.json", json(&inclusion));
    let consistency_file = write("consistency.json", json(&consistency));
    // `candor audit check-proof [FLAG FILE] PROOF --public-key KEY`.
    let check = |key: &str, flag: Option<(&str, &std::path::Path)>, proof: &std::path::Path| {
        let mut cmd = candor();
        cmd.args(["audit", "check-proof", "--public-key", key]);
        if let Some((flag, file)) = flag {
            cmd.arg(flag).arg(file);
        }
        cmd.arg(proof).output().unwrap()
    };
    let key = receipt.public_key.as_str();
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&check(key, None, &inclusion_file));
    let said = ok(&check(
        key,
        Some(("--receipt", &receipt_file)),
        &inclusion_file,
    ));
    assert!(said.contains("is recorded in the audit log"));
    ok(&check(
        key,
        Some(("--earlier", &first_file)),
        &consistency_file,
    ));
    // Another key, an edited entry, or a head that was not the earlier one: exit 1.
    let other = "ab".repeat(32);
    assert_eq!(check(&other, None, &inclusion_file).status.code(), Some(1));
    let mut edited = inclusion.clone();
    edited.entry.at += 1;
    let edited_file = write("edited.json", json(&edited));
    assert_eq!(check(key, None, &edited_file).status.code(), Some(1));
    assert_eq!(
        check(key, Some(("--earlier", &inclusion_file)), &consistency_file)
            .status
            .code(),
        Some(1),
        "an inclusion proof is not a tree head"
    );
    // The operator exports the head from the command line.
    let out = candor()
        .args(["audit", "tree-head", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let head: candor_engine::TreeHead = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(head.tree_size, consistency.tree_head.tree_size);
    assert_eq!(head.root_hash, consistency.tree_head.root_hash);
}

#[test]
fn privacy_epsilon_planner() {
    let out = candor()
        .args([
            "privacy",
            "epsilon",
            "--mechanism",
            "gaussian",
            "--sigma",
            "2",
            "--compositions",
            "10",
            "--delta",
            "1e-5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("epsilon = 8.079"), "{stdout}");
    let out = candor()
        .args([
            "privacy",
            "epsilon",
            "--mechanism",
            "laplace",
            "--scale",
            "0.5",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("epsilon = 2.0000 (pure DP)"));
    let out = candor()
        .args(["privacy", "epsilon", "--mechanism", "gaussian"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Tidy checks over the workspace's sources: every source file opens with a `//!` line saying
/// what it is for; a file of more than about 500 lines says near its top why it is that long;
/// and no test waits on the wall clock (tests advance the engine's clock instead).
#[test]
fn sources_are_tidy() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("crates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let sleep = ["sle", "ep("].concat();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let shown = path.strip_prefix(&root).unwrap().display();
        let in_src = path.components().any(|c| c.as_os_str() == "src");
        if in_src {
            assert!(
                text.starts_with("//!"),
                "{shown} does not open with a //! line"
            );
            let lines = text.lines().count();
            let top: String = text.lines().take(24).collect::<Vec<_>>().join("\n");
            assert!(
                lines <= 520 || top.contains("Over 500 lines because"),
                "{shown} has {lines} lines and does not say why at its top"
            );
        }
        assert!(!text.contains(&sleep), "{shown} sleeps on the wall clock");
    }
}

#[test]
fn keys_rotate_master_replaces_the_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    create_key(data, None, "admin");
    let before = std::fs::read_to_string(dir.path().join("keys.toml")).unwrap();
    let out = candor()
        .args(["keys", "rotate-master", "--data-dir", data])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-wrapped"));
    let after = std::fs::read_to_string(dir.path().join("keys.toml")).unwrap();
    let master = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("master_key"))
            .unwrap()
            .to_owned()
    };
    assert_ne!(master(&before), master(&after));
    assert!(!after.contains("previous_master_key"));
    // The store still opens with the new key file (the audit verifies).
    let out = candor()
        .args(["audit", "verify", "--data-dir", data])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
