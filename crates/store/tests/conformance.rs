//! The Store conformance suite: one `check_store` run against SQLite always and against
//! PostgreSQL when `CANDOR_TEST_POSTGRES_URL` is set. It checks storage semantics only; the
//! cryptography of the audit chain is checked in the engine's tests.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::sync::Arc;

use candor_domain::{
    AuditAction, AuditDraft, AuditSealer, ConsentMethod, ConsentRecord, Item, Policy, Pseudonym,
    Timestamp, TreeHeadRecord,
};
use sqlx::Connection;

use candor_store::prelude::*;
use candor_store::{
    ApiKeyRecord, EventGroup, NewEvent, PostgresStore, PurposeRead, ReceiptRecord, SessionRecord,
    SqliteStore, Store,
};

/// A deterministic stand-in for the engine's sealer (storage tests need stable bytes, not
/// security).
struct PlainSealer;

impl AuditSealer for PlainSealer {
    fn digest(&self, bytes: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let mut h = DefaultHasher::new();
            (i, bytes).hash(&mut h);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    }
    fn mac(&self, hash: &[u8; 32]) -> [u8; 32] {
        self.digest(hash)
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.digest(message).to_vec()
    }
    fn commit(&self, leaves: &[[u8; 32]]) -> [u8; 32] {
        self.digest(&leaves.concat())
    }
}

fn p(n: u8) -> Pseudonym {
    Pseudonym([n; 32])
}

fn draft(detail: &str) -> AuditDraft {
    AuditDraft {
        at: Timestamp(1),
        actor: "test".into(),
        action: AuditAction::ConsentUpdate,
        subject: Some(p(1)),
        purpose: None,
        detail: detail.into(),
    }
}

fn consent(
    subject: Pseudonym,
    purpose: &str,
    category: &str,
    granted: bool,
    expires: i64,
) -> ConsentRecord {
    ConsentRecord {
        subject,
        purpose: purpose.into(),
        category: category.into(),
        granted,
        at: Timestamp(10),
        expires_at: Timestamp(expires),
        policy_version: "v1".into(),
        method: ConsentMethod::Api,
    }
}

fn event(subject: Pseudonym, category: &str, dedup: u8, expires: i64) -> NewEvent {
    NewEvent {
        subject,
        category: category.into(),
        occurred_at: Timestamp(5),
        expires_at: Timestamp(expires),
        dedup: [dedup; 16],
        payload: vec![dedup; 40],
    }
}

async fn check_store(store: &dyn Store) {
    let policy = Policy::default_policy();
    let profiling = &policy.purposes["personalize.content.profiling"];
    let browsing = "user.behavior.browsing_history";
    let purchases = "user.behavior.purchase_history";

    // Metadata.
    assert_eq!(store.get_meta("k").await.unwrap(), None);
    store.put_meta("k", "v1").await.unwrap();
    store.put_meta("k", "v2").await.unwrap();
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v2"));

    // Catalogue: upsert, get, page, existence, delete.
    let item = |id: &str, title: &str| Item {
        id: id.into(),
        title: title.into(),
        category: Some("c".into()),
        provider: None,
        attributes: serde_json::Map::from_iter([("n".to_string(), serde_json::json!(1))]),
    };
    store
        .put_items(
            &[item("a", "A"), item("b", "B"), item("c", "C")],
            Timestamp(1),
        )
        .await
        .unwrap();
    store
        .put_items(&[item("b", "B2")], Timestamp(2))
        .await
        .unwrap();
    assert_eq!(store.get_item("b").await.unwrap().unwrap().title, "B2");
    assert_eq!(
        store.get_item("b").await.unwrap().unwrap().attributes["n"],
        1
    );
    let page: Vec<String> = store
        .list_items(Some("a"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(page, ["b", "c"]);
    let missing = store.missing_items(&["a", "zz", "c"]).await.unwrap();
    assert_eq!(missing, ["zz".to_string()].into());
    assert!(store.missing_items(&[]).await.unwrap().is_empty());
    assert!(store.delete_item("c").await.unwrap());
    assert!(!store.delete_item("c").await.unwrap());

    // Subject keys: the first stored key wins; bulk lookups return only existing keys.
    assert!(store.subject_keys(&[p(1)]).await.unwrap().is_empty());
    let first = store
        .ensure_subject_keys(&[(p(1), b"first".to_vec())], Timestamp(1))
        .await
        .unwrap();
    assert_eq!(first, [(p(1), b"first".to_vec())]);
    let mut again = store
        .ensure_subject_keys(
            &[(p(1), b"second".to_vec()), (p(9), b"ninth".to_vec())],
            Timestamp(2),
        )
        .await
        .unwrap();
    again.sort();
    assert_eq!(
        again,
        [(p(1), b"first".to_vec()), (p(9), b"ninth".to_vec())]
    );
    assert_eq!(
        store.subject_keys(&[p(1), p(2)]).await.unwrap(),
        [(p(1), b"first".to_vec())]
    );

    // Consent: history is append-only, current is the latest per (subject, purpose, category).
    let name = profiling.name.as_str();
    store
        .record_consent(
            &[
                consent(p(1), name, browsing, true, 1_000),
                consent(p(1), name, purchases, true, 1_000),
            ],
            &[draft("a")],
            Some(&ReceiptRecord {
                id: "r-1".into(),
                subject: p(1),
                at: Timestamp(1),
                document: "{\"signed\":true}".into(),
            }),
        )
        .await
        .unwrap();
    let receipts = store.consent_receipts(&p(1)).await.unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r-1"]
    );
    assert_eq!(receipts[0].document, "{\"signed\":true}");
    assert!(store.consent_receipts(&p(2)).await.unwrap().is_empty());
    store
        .record_consent(
            &[consent(p(1), name, purchases, false, 10)],
            &[draft("b")],
            None,
        )
        .await
        .unwrap();
    store
        .record_consent(&[consent(p(2), name, browsing, true, 1_000)], &[], None)
        .await
        .unwrap();
    assert_eq!(store.consent_history(&p(1)).await.unwrap().len(), 3);
    let current = store.consent_current(&[p(1)]).await.unwrap();
    assert_eq!(current.len(), 2);
    assert!(
        current
            .iter()
            .any(|(_, r)| r.category == purchases && !r.granted)
    );

    // Events: dedup keys refuse repeats, within a call too; each group is audited with its
    // own count; reads are purpose- and consent-bound.
    let group = |events: Vec<NewEvent>, label: &'static str| EventGroup {
        events,
        audit: Box::new(move |n: u64| AuditDraft {
            detail: format!("{label} stored={n}"),
            ..draft("")
        }),
    };
    let flags = store
        .insert_event_groups(&[group(
            vec![
                event(p(1), browsing, 1, 500),
                event(p(1), purchases, 2, 500),
                event(p(2), browsing, 3, 500),
                event(p(3), browsing, 4, 500),
            ],
            "g1",
        )])
        .await
        .unwrap();
    assert_eq!(flags, [vec![true, true, true, true]]);
    let flags = store
        .insert_event_groups(&[
            group(
                vec![event(p(1), browsing, 1, 500), event(p(1), browsing, 5, 500)],
                "g2",
            ),
            group(vec![event(p(1), browsing, 5, 500)], "g3"),
            group(vec![event(p(2), browsing, 6, 500)], "g4"),
        ])
        .await
        .unwrap();
    assert_eq!(flags, [vec![false, true], vec![false], vec![true]]);
    let read = |subject, now, after_id| PurposeRead {
        purpose: profiling,
        subject,
        now: Timestamp(now),
        after_id,
        limit: 100,
    };
    let all = store.read_events(&read(None, 100, 0)).await.unwrap();
    // p(1) browsing (2 events) and p(2) browsing; not p(1) purchases (withdrawn), not p(3) (no consent).
    assert_eq!(
        all.iter()
            .map(|e| (e.subject, e.category.as_str()))
            .collect::<Vec<_>>(),
        [
            (p(1), browsing),
            (p(2), browsing),
            (p(1), browsing),
            (p(2), browsing)
        ]
    );
    assert_eq!(all[0].payload, vec![1; 40]);
    let p2 = p(2);
    assert_eq!(
        store
            .read_events(&read(Some(&p2), 100, 0))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .read_events(&read(None, 100, all[0].id))
            .await
            .unwrap()
            .len(),
        3
    );
    // After consent lapses (t = 1000) nothing is readable; after retention (t = 500) neither.
    assert!(
        store
            .read_events(&read(None, 1_000, 0))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .read_events(&read(None, 600, 0))
            .await
            .unwrap()
            .is_empty()
    );
    let analytics = &policy.purposes["analytics.reporting"];
    assert!(
        store
            .read_events(&PurposeRead {
                purpose: analytics,
                ..read(None, 100, 0)
            })
            .await
            .unwrap()
            .is_empty()
    );

    // Retention: expired rows go, audited.
    let sweep = |n: u64| AuditDraft {
        detail: format!("deleted={n}"),
        ..draft("")
    };
    assert_eq!(
        store
            .delete_expired_events(Timestamp(500), &sweep)
            .await
            .unwrap(),
        6
    );
    assert_eq!(store.stats().await.unwrap().events, 0);

    // Audit: positions are contiguous, links chain, the head follows the newest entry.
    store.append_audit(&[draft("c"), draft("d")]).await.unwrap();
    let entries = store.audit_entries(0, 1000).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=entries.len() as u64).collect::<Vec<_>>()
    );
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(entries[0].prev_hash, [0; 32]);
    // Every consent write commits its history rows with an entry of its own.
    let commitments: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "consent.recorded")
        .map(|e| e.detail.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        commitments,
        ["consent_rows=2", "consent_rows=1", "consent_rows=1"]
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action != "consent.recorded")
            .map(|e| e.detail.as_str())
            .collect::<Vec<_>>(),
        [
            "a",
            "b",
            "g1 stored=4",
            "g2 stored=1",
            "g4 stored=1",
            "deleted=6",
            "c",
            "d"
        ]
    );
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!(
        (head.seq, head.hash),
        (entries.len() as u64, entries.last().unwrap().hash)
    );
    assert_eq!(store.audit_entries(5, 1).await.unwrap()[0].seq, 6);
    let hashes = store.audit_hashes(1, 3).await.unwrap();
    assert_eq!(hashes, [entries[1].hash, entries[2].hash, entries[3].hash]);
    let g1 = entries.iter().find(|e| e.detail == "g1 stored=4").unwrap();
    assert_eq!(
        store
            .find_audit_entry(&g1.action, "1 stored")
            .await
            .unwrap(),
        Some(g1.seq)
    );
    for wild in ["g_ stored", "g% stored", "g!1"] {
        assert_eq!(
            store.find_audit_entry(&g1.action, wild).await.unwrap(),
            None,
            "LIKE wildcards match only themselves"
        );
    }

    // Signed tree heads: one per size, the first published wins.
    let head = TreeHeadRecord {
        size: 4,
        at: Timestamp(7),
        root: [4; 32],
        public_key: "pk".into(),
        signature: "sig".into(),
    };
    assert_eq!(store.publish_tree_head(&head).await.unwrap(), head);
    let later = TreeHeadRecord {
        at: Timestamp(8),
        root: [5; 32],
        ..head.clone()
    };
    assert_eq!(store.publish_tree_head(&later).await.unwrap(), head);
    assert_eq!(store.tree_head(Some(4)).await.unwrap(), Some(head.clone()));
    assert_eq!(store.tree_head(Some(5)).await.unwrap(), None);
    let bigger = TreeHeadRecord {
        size: 6,
        ..head.clone()
    };
    store.publish_tree_head(&bigger).await.unwrap();
    assert_eq!(store.tree_head(None).await.unwrap(), Some(bigger));

    // API keys.
    let key = ApiKeyRecord {
        id: "kid".into(),
        role: "service".into(),
        secret_hash: vec![9; 32],
        label: "l".into(),
        created_at: Timestamp(3),
        expires_at: Some(Timestamp(1_000)),
        revoked_at: None,
    };
    store.put_api_key(&key, &[]).await.unwrap();
    assert_eq!(store.get_api_key("kid").await.unwrap(), Some(key.clone()));
    assert!(
        store.put_api_key(&key, &[]).await.is_err(),
        "key ids are unique"
    );
    assert_eq!(store.get_api_key("other").await.unwrap(), None);
    assert!(
        store
            .revoke_api_key("kid", Timestamp(7), &[])
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_key("kid", Timestamp(8), &[])
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_key("other", Timestamp(8), &[])
            .await
            .unwrap()
    );
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].revoked_at,
        Some(Timestamp(7)),
        "the first revocation stands"
    );

    // Model artifacts: the newest version wins.
    assert_eq!(store.latest_model().await.unwrap(), None);
    let v1 = store
        .put_model("{\"a\":1}", &[1, 2, 3], Timestamp(5))
        .await
        .unwrap();
    let v2 = store
        .put_model("{\"a\":2}", &[4], Timestamp(6))
        .await
        .unwrap();
    assert!(v2 > v1);
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(
        (
            latest.version,
            latest.card.as_str(),
            latest.weights.as_slice()
        ),
        (v2, "{\"a\":2}", &[4u8][..])
    );

    // Consent decisions: per purpose, day and direction, distinct subjects.
    let decisions = store.consent_decisions(Timestamp(0)).await.unwrap();
    assert!(decisions.iter().any(|d| d.granted) && decisions.iter().any(|d| !d.granted));
    assert!(decisions.iter().all(|d| d.subjects >= 1 && d.day >= 0));
    assert!(
        store
            .consent_decisions(Timestamp(i64::MAX))
            .await
            .unwrap()
            .is_empty()
    );

    // Granted counts: one per purpose with a live grant, no subject named.
    let counts = store.granted_counts(Timestamp(0)).await.unwrap();
    assert!(counts.iter().all(|(_, n)| *n >= 1), "{counts:?}");
    assert!(
        store
            .granted_counts(Timestamp(i64::MAX))
            .await
            .unwrap()
            .is_empty(),
        "every grant has lapsed by then"
    );

    // Subject sessions: stored and found by id; revoked per subject; purged once expired;
    // gone with an erasure.
    let session = |id: &str, subject: Pseudonym, expires: i64| SessionRecord {
        id: id.into(),
        subject,
        created_at: Timestamp(1),
        expires_at: Timestamp(expires),
    };
    for s in [
        session("s-a1", p(7), 100),
        session("s-a2", p(7), 200),
        session("s-b1", p(8), 50),
        session("s-c1", p(200), 300),
    ] {
        store.put_session(&s, &[]).await.unwrap();
    }
    assert_eq!(
        store.get_session("s-a2").await.unwrap(),
        Some(session("s-a2", p(7), 200))
    );
    assert_eq!(store.get_session("nope").await.unwrap(), None);
    assert_eq!(store.revoke_sessions(&p(7), &[]).await.unwrap(), 2);
    assert_eq!(store.revoke_sessions(&p(7), &[]).await.unwrap(), 0);
    assert_eq!(store.get_session("s-a1").await.unwrap(), None);
    assert_eq!(
        store.purge_expired_sessions(Timestamp(50)).await.unwrap(),
        1
    );
    assert_eq!(store.get_session("s-b1").await.unwrap(), None);
    let no_audit = |_: u64| draft("never written: nothing else is held");
    store.erase_subject(&p(200), &no_audit).await.unwrap();
    assert_eq!(store.get_session("s-c1").await.unwrap(), None);

    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.subjects,
            stats.consent_records,
            stats.items,
            stats.audit_entries
        ),
        (2, 4, 2, 11),
        "eight entries written, and three consent commitments"
    );
}

/// Rows the database itself declines to insert (here a trigger that drops events of one
/// category; in production a concurrent writer storing the same dedup key first) are reported
/// as not stored, and the group's audit entry counts only what was stored.
async fn rows_the_database_skips_are_not_reported_stored(store: &dyn Store) {
    let audit_before = store.stats().await.unwrap().audit_entries;
    let events_before = store.stats().await.unwrap().events;
    let flags = store
        .insert_event_groups(&[EventGroup {
            events: vec![
                event(p(7), "user.behavior.browsing_history", 70, 500),
                event(p(7), "skipped", 71, 500),
            ],
            audit: Box::new(|n: u64| AuditDraft {
                detail: format!("stored={n}"),
                ..draft("")
            }),
        }])
        .await
        .unwrap();
    assert_eq!(flags, [vec![true, false]]);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.events, events_before + 1);
    assert_eq!(stats.audit_entries, audit_before + 1);
    let last = store.audit_entries(audit_before, 10).await.unwrap();
    assert_eq!(last[0].detail, "stored=1");
}

#[tokio::test]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(path.to_str().unwrap(), Arc::new(PlainSealer))
        .await
        .unwrap();
    assert_eq!(store.backend(), "sqlite");
    check_store(&store).await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER skip_marked BEFORE INSERT ON events WHEN NEW.category = 'skipped' \
         BEGIN SELECT RAISE(IGNORE); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows_the_database_skips_are_not_reported_stored(&store).await;
    // Reopening migrates nothing twice and keeps the data.
    drop(store);
    let store = candor_store::open(
        &format!("sqlite://{}", path.display()),
        Arc::new(PlainSealer),
    )
    .await
    .unwrap();
    assert_eq!(store.stats().await.unwrap().items, 2);
    // Destroying it leaves nothing: the next open starts from an empty database.
    drop(store);
    let url = format!("sqlite://{}", path.display());
    candor_store::destroy(&url).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        assert!(!dir.path().join(format!("c.db{suffix}")).exists());
    }
    let store = candor_store::open(&url, Arc::new(PlainSealer))
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap(), Default::default());
}

#[tokio::test]
async fn postgres_conforms() {
    let Ok(url) = std::env::var("CANDOR_TEST_POSTGRES_URL") else {
        let _ = std::io::stderr().write_all(
            b"note: PostgreSQL store suite skipped: CANDOR_TEST_POSTGRES_URL is not set\n",
        );
        return;
    };
    let schema = format!("candor_conf_{:016x}", rand::random::<u64>());
    let store = PostgresStore::open_in_schema(&url, Some(&schema), Arc::new(PlainSealer))
        .await
        .unwrap();
    assert_eq!(store.backend(), "postgres");
    check_store(&store).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for statement in [
        format!(
            "CREATE FUNCTION {schema}.skip_marked() RETURNS trigger AS $$ BEGIN \
             IF NEW.category = 'skipped' THEN RETURN NULL; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER skip_marked BEFORE INSERT ON {schema}.events FOR EACH ROW \
             EXECUTE FUNCTION {schema}.skip_marked()"
        ),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }
    rows_the_database_skips_are_not_reported_stored(&store).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        candor_store::open("mysql://localhost/x", Arc::new(PlainSealer)).await,
        Err(candor_store::StoreError::UnsupportedUrl)
    ));
}
