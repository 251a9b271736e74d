//! DESIGN §3 invariants 1, 2, 3, 5, 9 and 10 as tests, each run on SQLite and, when
//! `CANDOR_TEST_POSTGRES_URL` is set, on PostgreSQL. One test binary for the engine.

mod support;

use std::collections::BTreeMap;

use candor_domain::{
    ConsentMethod, ConsentState, ErrorClass, ErrorCode, Jurisdiction, Policy, RefusalReason,
    RequestKind, SubjectId, Timestamp,
};
use candor_engine::{
    Actor, AnalyticsBudget, AnalyticsQuery, ConsentUpdate, EngineError, EventDraft, PurposeChoice,
    QueryKind, SignedDocument,
};
use support::Harness;

const PROFILING: &str = "personalize.content.profiling";
const ANALYTICS: &str = "analytics.reporting";
const SHARING: &str = "third_party_sharing";

fn sid(raw: &str) -> SubjectId {
    SubjectId::parse(raw).unwrap()
}

fn grant(purposes: &[&str]) -> ConsentUpdate {
    ConsentUpdate::whole(purposes, true, ConsentMethod::Banner)
}

fn withdraw(purposes: &[&str]) -> ConsentUpdate {
    ConsentUpdate::whole(purposes, false, ConsentMethod::Api)
}

fn event(subject: &str, item: &str, event_type: &str) -> EventDraft {
    EventDraft {
        subject: subject.into(),
        item: item.into(),
        event_type: event_type.into(),
        value: matches!(event_type, "purchase" | "add_to_cart").then_some(1.0),
        ..Default::default()
    }
}

fn with_context(mut e: EventDraft, key: &str, value: &str) -> EventDraft {
    e.context.insert(key.into(), value.into());
    e
}

fn actor() -> Actor {
    Actor("test".into())
}

fn reasons(report: &candor_engine::IngestReport) -> Vec<RefusalReason> {
    report.refused.iter().map(|r| r.reason).collect()
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::Harness::sqlite().await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(h) = super::Harness::postgres().await {
                        super::$name(h).await;
                    }
                }
            }
        )*
    };
}

on_both_backends!(
    refused_event_leaves_no_trace,
    raw_ids_and_payloads_never_reach_the_database,
    reads_are_bound_to_purpose,
    withdrawn_or_expired_consent_stops_ingestion_at_once,
    narrowed_consent_covers_only_its_categories,
    gpc_withdraws_sharing_even_over_opt_in,
    every_consent_change_and_read_is_audited,
    audit_edit_is_detected,
    audit_delete_is_detected,
    audit_insert_is_detected,
    audit_reorder_is_detected,
    audit_truncate_is_detected,
    bad_input_changes_nothing,
    duplicates_are_refused,
    retention_sweeper_deletes_expired_events,
    wrong_keys_refuse_to_open,
    concurrent_batches_for_new_subjects_do_not_deadlock,
    recommendations_are_tiered_explained_and_consent_bound,
    erasure_is_real,
    export_holds_everything_and_is_audited,
    restriction_and_objection_stop_processing,
    requests_have_deadlines_and_run_the_rights,
    erasing_random_subjects_keeps_every_invariant,
    tcf_strings_map_to_policy_purposes,
    consent_receipts_are_signed_and_tamper_evident,
    transparency_and_sharing_follow_consent,
    analytics_answers_are_bounded_noisy_and_consent_bound,
    analytics_budget_cannot_be_overspent_under_concurrency,
    failed_analytics_queries_are_not_charged,
    analytics_budget_refills_after_its_period,
    model_release_cap_holds_and_erasure_says_when,
    dp_item_model_states_its_guarantee,
    dp_training_on_small_stores_never_fails_an_erasure,
    history_the_model_cannot_use_falls_back_visibly,
    retention_follows_the_purposes_consented_to,
    keys_expire_and_revocation_reaches_every_node,
    consent_history_tampering_is_detected,
    erasure_survives_a_restored_data_backup,
    master_key_rotation_rewraps_without_rewriting_data,
    every_node_acts_on_an_erasure_a_deleted_item_and_a_new_model,
    audit_log_is_a_merkle_tree_with_offline_proofs,
    keys_move_out_of_an_older_data_store_at_startup,
    sessions_are_sealed_narrow_and_end_on_every_node,
    receipts_are_kept_with_their_change_and_erased_with_the_subject,
    consent_counts_for_analysts_are_noisy_and_charged,
);

/// Invariant 1: a refused event is stored nowhere, not even as bytes in the WAL.
async fn refused_event_leaves_no_trace(h: Harness) {
    h.items(&["i1"]).await;
    h.engine
        .set_consent(
            &actor(),
            &sid("consenting-subject"),
            &grant(&[PROFILING]),
            false,
        )
        .await
        .unwrap();
    let marker = "refused-marker-3f9c1a";
    let drafts = vec![
        with_context(
            event("nonconsenting-subject-77", "i1", "view"),
            "page",
            marker,
        ),
        with_context(event("consenting-subject", "i1", "search"), "query", marker), // search needs personalize.content.search
        with_context(
            event("consenting-subject", "i1", "view"),
            "referrer",
            &format!("{marker}-bad-type"),
        )
        .tap_type("nonexistent"),
    ];
    let report = h.engine.ingest(&actor(), &drafts, false).await.unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(
        reasons(&report),
        vec![
            RefusalReason::ConsentRequired,
            RefusalReason::ConsentRequired,
            RefusalReason::UnknownEventType
        ]
    );
    assert_eq!(h.engine.stats().await.unwrap().events, 0);
    h.assert_absent(marker).await;
    h.assert_absent("nonconsenting-subject-77").await;
}

trait TapType {
    fn tap_type(self, t: &str) -> Self;
}
impl TapType for EventDraft {
    fn tap_type(mut self, t: &str) -> Self {
        self.event_type = t.into();
        self
    }
}

/// Invariant 3: identifiers are keyed-hashed and payloads encrypted at rest.
async fn raw_ids_and_payloads_never_reach_the_database(h: Harness) {
    h.items(&["i1", "i2"]).await;
    let subject = "alice.raw-id-5d21@example";
    h.engine
        .set_consent(&actor(), &sid(subject), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let marker = "stored-marker-88e0b2";
    let report = h
        .engine
        .ingest(
            &actor(),
            &[with_context(event(subject, "i2", "view"), "page", marker)],
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 1, "{:?}", report.refused);
    h.assert_absent(subject).await;
    h.assert_absent(marker).await;
    // Yet the engine can read it back for a consented purpose.
    let events = h
        .engine
        .read_events(&actor(), PROFILING, Some(&sid(subject)), 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload.context["page"], marker);
    assert_eq!(events[0].payload.item, "i2");
}

/// Invariant 2: reads name a purpose and return only data consented for it, now.
async fn reads_are_bound_to_purpose(h: Harness) {
    h.items(&["i1", "i2"]).await;
    let (a, b) = (sid("subject-a"), sid("subject-b"));
    h.engine
        .set_consent(&actor(), &a, &grant(&[PROFILING]), false)
        .await
        .unwrap();
    h.engine
        .set_consent(&actor(), &b, &grant(&[ANALYTICS]), false)
        .await
        .unwrap();
    let report = h
        .engine
        .ingest(
            &actor(),
            &[
                event("subject-a", "i1", "view"),
                event("subject-a", "i2", "purchase"),
                event("subject-b", "i1", "view"),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 3, "{:?}", report.refused);
    let profiling = h
        .engine
        .read_events(&actor(), PROFILING, None, 0, 100)
        .await
        .unwrap();
    assert_eq!(profiling.len(), 2);
    assert!(profiling.iter().all(|e| e.subject == profiling[0].subject));
    let analytics = h
        .engine
        .read_events(&actor(), ANALYTICS, None, 0, 100)
        .await
        .unwrap();
    assert_eq!(analytics.len(), 1);
    assert_ne!(analytics[0].subject, profiling[0].subject);
    // A purpose that uses neither category sees nothing.
    assert!(
        h.engine
            .read_events(&actor(), SHARING, None, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Withdrawal applies to the very next read, though the rows are still stored.
    h.engine
        .set_consent(&actor(), &a, &withdraw(&[PROFILING]), false)
        .await
        .unwrap();
    assert!(
        h.engine
            .read_events(&actor(), PROFILING, None, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.engine.stats().await.unwrap().events, 3);
    // Unknown purposes are refused.
    assert!(matches!(
        h.engine
            .read_events(&actor(), "marketing.everything", None, 0, 1)
            .await,
        Err(EngineError::Refused {
            code: ErrorCode::UnknownPurpose,
            ..
        })
    ));
}

/// Invariants 1 and 9: withdrawal and expiry stop ingestion at once.
async fn withdrawn_or_expired_consent_stops_ingestion_at_once(h: Harness) {
    h.items(&["i1"]).await;
    let s = sid("subject-w");
    h.engine
        .set_consent(&actor(), &s, &grant(&[PROFILING]), false)
        .await
        .unwrap();
    assert_eq!(
        h.engine
            .ingest(&actor(), &[event("subject-w", "i1", "view")], false)
            .await
            .unwrap()
            .accepted,
        1
    );
    h.engine
        .set_consent(&actor(), &s, &withdraw(&[PROFILING]), false)
        .await
        .unwrap();
    let mut late = event("subject-w", "i1", "click");
    late.timestamp = Some(Timestamp(Timestamp::now().0 - 1000).to_rfc3339());
    let report = h.engine.ingest(&actor(), &[late], false).await.unwrap();
    assert_eq!(reasons(&report), vec![RefusalReason::ConsentRequired]);

    // A grant imported from 400 days ago has lapsed after its 365-day renewal period.
    let old = sid("subject-expired");
    let mut update = grant(&[PROFILING]);
    update.method = ConsentMethod::Import;
    update.recorded_at = Some(Timestamp(
        Timestamp::now().0 - 400 * candor_domain::timestamp::DAY_MS,
    ));
    let view = h
        .engine
        .set_consent(&actor(), &old, &update, false)
        .await
        .unwrap();
    assert_eq!(view.purposes[PROFILING].state, ConsentState::Expired);
    let report = h
        .engine
        .ingest(&actor(), &[event("subject-expired", "i1", "view")], false)
        .await
        .unwrap();
    assert_eq!(reasons(&report), vec![RefusalReason::ConsentRequired]);
    // Renewal restores it.
    h.engine
        .set_consent(&actor(), &old, &grant(&[PROFILING]), false)
        .await
        .unwrap();
    assert_eq!(
        h.engine
            .ingest(&actor(), &[event("subject-expired", "i1", "view")], false)
            .await
            .unwrap()
            .accepted,
        1
    );
    // A time may be given only for imports, and never in the future.
    let mut future = grant(&[PROFILING]);
    future.method = ConsentMethod::Import;
    future.recorded_at = Some(Timestamp(Timestamp::now().0 + 86_400_000));
    assert!(
        h.engine
            .set_consent(&actor(), &old, &future, false)
            .await
            .is_err()
    );
}

async fn narrowed_consent_covers_only_its_categories(h: Harness) {
    h.items(&["i1"]).await;
    let s = sid("subject-n");
    let update = ConsentUpdate {
        purposes: BTreeMap::from([(
            PROFILING.to_string(),
            PurposeChoice {
                granted: true,
                categories: Some(vec!["user.behavior.browsing_history".into()]),
            },
        )]),
        method: ConsentMethod::Api,
        recorded_at: None,
    };
    let view = h
        .engine
        .set_consent(&actor(), &s, &update, false)
        .await
        .unwrap();
    let cats = &view.purposes[PROFILING].categories;
    assert_eq!(
        cats.iter()
            .filter(|c| c.state == ConsentState::Granted)
            .count(),
        1
    );
    let report = h
        .engine
        .ingest(
            &actor(),
            &[
                event("subject-n", "i1", "view"),
                event("subject-n", "i1", "purchase"),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(reasons(&report), vec![RefusalReason::ConsentRequired]);
    assert_eq!(report.refused[0].index, 1);
    // A category outside the purpose is refused.
    let bad = ConsentUpdate {
        purposes: BTreeMap::from([(
            PROFILING.to_string(),
            PurposeChoice {
                granted: true,
                categories: Some(vec!["user.behavior.search_history".into()]),
            },
        )]),
        method: ConsentMethod::Api,
        recorded_at: None,
    };
    assert!(matches!(
        h.engine.set_consent(&actor(), &s, &bad, false).await,
        Err(EngineError::Refused {
            code: ErrorCode::UnknownCategory,
            ..
        })
    ));
}

/// Invariant 9: Sec-GPC withdraws sale/sharing and cross-context purposes, over an opt-in.
async fn gpc_withdraws_sharing_even_over_opt_in(h: Harness) {
    h.items(&["i1"]).await;
    let s = sid("subject-g");
    let view = h
        .engine
        .set_consent(&actor(), &s, &grant(&[PROFILING, SHARING]), false)
        .await
        .unwrap();
    assert_eq!(view.purposes[SHARING].state, ConsentState::Granted);
    // An event request with GPC: the purchase is then covered by profiling only.
    let report = h
        .engine
        .ingest(&actor(), &[event("subject-g", "i1", "purchase")], true)
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    let view = h.engine.consent(&actor(), &s, false).await.unwrap();
    assert_eq!(view.purposes[SHARING].state, ConsentState::Withdrawn);
    assert_eq!(
        view.purposes["marketing.advertising.third_party.targeted"].state,
        ConsentState::Withdrawn
    );
    assert_eq!(view.purposes[PROFILING].state, ConsentState::Granted);
    assert!(
        view.purposes[SHARING]
            .categories
            .iter()
            .all(|c| c.method == Some(ConsentMethod::Gpc))
    );
    // An opt-in sent together with GPC still ends withdrawn.
    let view = h
        .engine
        .set_consent(&actor(), &s, &grant(&[SHARING]), true)
        .await
        .unwrap();
    assert_eq!(view.purposes[SHARING].state, ConsentState::Withdrawn);
    let history = h.engine.consent_history(&actor(), &s, false).await.unwrap();
    assert!(
        history
            .iter()
            .any(|r| r.method == ConsentMethod::Gpc && r.purpose == SHARING && !r.granted)
    );
    // GPC is recorded as a method only from the signal, never from a request body.
    let mut fake = grant(&[SHARING]);
    fake.method = ConsentMethod::Gpc;
    assert!(
        h.engine
            .set_consent(&actor(), &s, &fake, false)
            .await
            .is_err()
    );
    // A repeated signal adds no records.
    let before = h.engine.stats().await.unwrap().consent_records;
    h.engine.consent(&actor(), &s, true).await.unwrap();
    assert_eq!(h.engine.stats().await.unwrap().consent_records, before);
}

/// Invariant 5: consent changes, consent reads and event reads append audit entries that
/// hold pseudonyms only.
async fn every_consent_change_and_read_is_audited(h: Harness) {
    h.items(&["i1"]).await;
    let subject = "audited-subject-41";
    let s = sid(subject);
    let n0 = h.engine.stats().await.unwrap().audit_entries;
    h.engine
        .set_consent(&actor(), &s, &grant(&[PROFILING, ANALYTICS]), false)
        .await
        .unwrap();
    let n1 = h.engine.stats().await.unwrap().audit_entries;
    assert_eq!(
        n1 - n0,
        3,
        "one entry per purpose changed, and one committing the history rows"
    );
    h.engine.consent(&actor(), &s, false).await.unwrap();
    h.engine
        .ingest(&actor(), &[event(subject, "i1", "view")], false)
        .await
        .unwrap();
    h.engine
        .read_events(&actor(), PROFILING, Some(&s), 0, 10)
        .await
        .unwrap();
    let n2 = h.engine.stats().await.unwrap().audit_entries;
    assert_eq!(n2 - n1, 3, "consent read, ingestion and event read");
    let report = h.engine.verify_audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, n2);
    h.assert_absent(subject).await;
}

async fn tamper_setup(h: &Harness) -> u64 {
    for i in 0..6 {
        h.engine
            .set_consent(
                &actor(),
                &sid(&format!("tamper-{i}")),
                &grant(&[PROFILING]),
                false,
            )
            .await
            .unwrap();
    }
    let report = h.engine.verify_audit().await.unwrap();
    assert!(report.ok, "{report:?}");
    report.entries
}

async fn expect_broken_at(h: &Harness, position: u64) {
    let report = h.engine.verify_audit().await.unwrap();
    assert!(!report.ok, "tampering went unnoticed");
    assert_eq!(report.first_bad_position, Some(position), "{report:?}");
}

async fn audit_edit_is_detected(h: Harness) {
    tamper_setup(&h).await;
    h.sql(&["UPDATE audit_log SET detail = 'granted categories=nothing method=api' WHERE seq = 3"])
        .await;
    expect_broken_at(&h, 3).await;
}

async fn audit_delete_is_detected(h: Harness) {
    tamper_setup(&h).await;
    h.sql(&["DELETE FROM audit_log WHERE seq = 4"]).await;
    expect_broken_at(&h, 4).await;
}

async fn audit_insert_is_detected(h: Harness) {
    tamper_setup(&h).await;
    // A well-formed forgery: correct position, correct link to entry 2, correct SHA-256. It
    // lacks only the server's MAC key.
    let entries = h.audit_entries().await;
    let mut forged = entries[1].clone();
    forged.seq = 3;
    forged.detail = "withdrawn method=api".into();
    forged.prev_hash = entries[1].hash;
    forged.hash = candor_crypto::sha256(&forged.canonical_bytes());
    h.sql(&[
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1003",
    ])
    .await;
    h.insert_audit_row(&forged).await;
    expect_broken_at(&h, 3).await;
}

async fn audit_reorder_is_detected(h: Harness) {
    tamper_setup(&h).await;
    h.sql(&[
        "UPDATE audit_log SET seq = 1000 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 1000",
    ])
    .await;
    expect_broken_at(&h, 2).await;
}

async fn audit_truncate_is_detected(h: Harness) {
    let n = tamper_setup(&h).await;
    h.sql(&[&format!("DELETE FROM audit_log WHERE seq >= {}", n - 1)])
        .await;
    expect_broken_at(&h, n - 1).await;
}

/// Invariant 10: bad input gets a coded error and changes nothing.
async fn bad_input_changes_nothing(h: Harness) {
    h.items(&["i1"]).await;
    let s = sid("subject-bad");
    h.engine
        .set_consent(&actor(), &s, &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let before = h.engine.stats().await.unwrap();

    let mut future = event("subject-bad", "i1", "view");
    future.timestamp = Some(Timestamp(Timestamp::now().0 + 3_600_000).to_rfc3339());
    let mut ancient = event("subject-bad", "i1", "view");
    ancient.timestamp = Some("2001-01-01T00:00:00Z".into());
    let mut garbage_time = event("subject-bad", "i1", "view");
    garbage_time.timestamp = Some("yesterday".into());
    let mut rating = event("subject-bad", "i1", "rating");
    rating.value = Some(11.0);
    let mut valued_view = event("subject-bad", "i1", "view");
    valued_view.value = Some(1.0);
    let drafts = vec![
        future,
        ancient,
        garbage_time,
        rating,
        valued_view,
        event("subject bad", "i1", "view"),
        event("subject-bad", &"x".repeat(129), "view"),
        event("subject-bad", "no-such-item", "view"),
        with_context(
            event("subject-bad", "i1", "view"),
            "email",
            "someone@example.com",
        ),
        with_context(event("subject-bad", "i1", "view"), "page", &"p".repeat(200)),
    ];
    let report = h.engine.ingest(&actor(), &drafts, false).await.unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(
        reasons(&report),
        vec![
            RefusalReason::TimestampInFuture,
            RefusalReason::TimestampTooOld,
            RefusalReason::InvalidField,
            RefusalReason::InvalidField,
            RefusalReason::InvalidField,
            RefusalReason::InvalidId,
            RefusalReason::InvalidId,
            RefusalReason::UnknownItem,
            RefusalReason::ContextNotAllowed,
            RefusalReason::ContextNotAllowed,
        ]
    );
    assert_eq!(
        report.refused.iter().map(|r| r.index).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );

    // An oversize batch is refused whole.
    let big = vec![event("subject-bad", "i1", "view"); h.engine.config().max_batch + 1];
    assert!(matches!(
        h.engine.ingest(&actor(), &big, false).await,
        Err(EngineError::Refused {
            code: ErrorCode::BatchTooLarge,
            ..
        })
    ));
    // Unknown purposes in a consent change: nothing recorded, not even the valid part.
    let mut update = grant(&[ANALYTICS]);
    update.purposes.insert(
        "no.such.purpose".into(),
        PurposeChoice {
            granted: true,
            categories: None,
        },
    );
    assert!(matches!(
        h.engine.set_consent(&actor(), &s, &update, false).await,
        Err(EngineError::Refused {
            code: ErrorCode::UnknownPurpose,
            ..
        })
    ));
    // One bad item in an import: nothing imported.
    let good = candor_domain::Item {
        id: "fresh".into(),
        title: "Fresh".into(),
        category: None,
        provider: None,
        attributes: Default::default(),
    };
    let bad = candor_domain::Item {
        id: "bad id".into(),
        ..good.clone()
    };
    assert!(h.engine.put_items(&[good, bad]).await.is_err());
    // Unknown subjects are reported as such.
    assert!(matches!(
        h.engine.consent(&actor(), &sid("never-seen"), false).await,
        Err(EngineError::Refused {
            code: ErrorCode::UnknownSubject,
            ..
        })
    ));
    assert_eq!(h.engine.stats().await.unwrap(), before);
}

async fn duplicates_are_refused(h: Harness) {
    h.items(&["i1"]).await;
    h.engine
        .set_consent(&actor(), &sid("subject-d"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let mut e = event("subject-d", "i1", "view");
    e.timestamp = Some(Timestamp(Timestamp::now().0 - 5000).to_rfc3339());
    let report = h
        .engine
        .ingest(&actor(), &[e.clone(), e.clone()], false)
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(reasons(&report), vec![RefusalReason::DuplicateEvent]);
    let report = h.engine.ingest(&actor(), &[e], false).await.unwrap();
    assert_eq!(reasons(&report), vec![RefusalReason::DuplicateEvent]);
    assert_eq!(h.engine.stats().await.unwrap().events, 1);
}

async fn retention_sweeper_deletes_expired_events(h: Harness) {
    let h = h
        .with_policy(
            Policy::from_toml(
                &candor_domain::policy::DEFAULT_POLICY_TOML
                    .replace("retention_days = 365", "retention_days = 1")
                    .replace("retention_days = 180", "retention_days = 1")
                    .replace("retention_days = 90", "retention_days = 1"),
            )
            .unwrap(),
        )
        .await;
    h.items(&["i1"]).await;
    h.engine
        .set_consent(&actor(), &sid("subject-r"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let mut old = event("subject-r", "i1", "view");
    old.timestamp =
        Some(Timestamp(Timestamp::now().0 - candor_domain::timestamp::DAY_MS + 700).to_rfc3339());
    let fresh = event("subject-r", "i1", "click");
    assert_eq!(
        h.engine
            .ingest(&actor(), &[old, fresh], false)
            .await
            .unwrap()
            .accepted,
        2
    );
    h.clock.advance(1200);
    // Expired rows are invisible to reads even before the sweep...
    assert_eq!(
        h.engine
            .read_events(&actor(), PROFILING, None, 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // ...and the sweep deletes them, audited.
    assert_eq!(h.engine.sweep_retention(&actor()).await.unwrap(), 1);
    assert_eq!(h.engine.stats().await.unwrap().events, 1);
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

async fn wrong_keys_refuse_to_open(h: Harness) {
    let err = h
        .reopen_with_other_keys()
        .await
        .err()
        .expect("opening with other keys must fail");
    assert!(matches!(err, EngineError::Setup(_)), "{err:?}");
    assert!(!format!("{err}").contains("key_file"), "{err}");
}

/// Concurrent batches creating keys for the same new subjects, in different orders: all are
/// stored once, keys are created once, and the audit chain stays whole. (Four concurrent
/// bench clients once deadlocked on PostgreSQL; the store now locks rows in key order. This
/// test checks the outcome; it did not reliably reproduce that deadlock.)
async fn concurrent_batches_for_new_subjects_do_not_deadlock(h: Harness) {
    h.items(&["i1", "i2"]).await;
    let subjects: Vec<String> = (0..100).map(|i| format!("concurrent-{i}")).collect();
    for s in &subjects {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
    }
    let batch = |offset: usize, item: &str| {
        let mut order = subjects.clone();
        order.rotate_left(offset);
        if offset % 2 == 1 {
            order.reverse();
        }
        order
            .iter()
            .map(|s| event(s, item, "view"))
            .collect::<Vec<_>>()
    };
    let (b1, b2, b3, b4) = (
        batch(0, "i1"),
        batch(7, "i2"),
        batch(13, "i1"),
        batch(29, "i2"),
    );
    let a = actor();
    let (r1, r2, r3, r4) = tokio::join!(
        h.engine.ingest(&a, &b1, false),
        h.engine.ingest(&a, &b2, false),
        h.engine.ingest(&a, &b3, false),
        h.engine.ingest(&a, &b4, false),
    );
    let accepted: usize = [r1, r2, r3, r4]
        .into_iter()
        .map(|r| r.unwrap().accepted)
        .sum();
    // Each (subject, item) pair is stored once per distinct timestamp; same-millisecond
    // repeats of a pair are refused as duplicates, never half-written.
    assert!(accepted >= 200, "{accepted}");
    assert_eq!(h.engine.stats().await.unwrap().events as usize, accepted);
    assert_eq!(h.engine.stats().await.unwrap().subjects, 100);
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Invariants 7 and 8, and issue 3's serving rules: personalization only with consent (and
/// withdrawal switches the very next response to `contextual`), every personalized item
/// explained by consented history items that exist, new events count at once, and training
/// never reads an event whose consent has lapsed.
async fn recommendations_are_tiered_explained_and_consent_bound(h: Harness) {
    use candor_engine::RecommendRequest;
    h.items(&["i1", "i2", "i3", "i4", "i5", "i6"]).await;
    let ingest = |subject: &'static str, items: &'static [&'static str]| {
        let drafts: Vec<EventDraft> = items.iter().map(|i| event(subject, i, "view")).collect();
        let engine = &h.engine;
        async move {
            engine
                .ingest(&actor(), &drafts, false)
                .await
                .unwrap()
                .accepted
        }
    };
    for s in ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "alice", "leaver"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
    }
    for s in ["c1", "c2", "c3", "c4", "c5"] {
        assert_eq!(ingest(s, &["i1", "i2", "i3"]).await, 3);
    }
    assert_eq!(ingest("c6", &["i4", "i5"]).await, 2);
    assert_eq!(ingest("c7", &["i4", "i5"]).await, 2);
    assert_eq!(ingest("alice", &["i1", "i2"]).await, 2);
    assert_eq!(ingest("leaver", &["i6", "i1"]).await, 2);
    // The leaver withdraws before training: their events must not be read.
    h.engine
        .set_consent(&actor(), &sid("leaver"), &withdraw(&[PROFILING]), false)
        .await
        .unwrap();
    let request = |n: usize| RecommendRequest {
        n,
        ..Default::default()
    };
    assert!(matches!(
        h.engine
            .recommend(&actor(), &sid("alice"), &request(3), false)
            .await,
        Err(EngineError::Refused {
            code: ErrorCode::ModelNotTrained,
            ..
        })
    ));
    let card = h.engine.train(&actor()).await.unwrap();
    assert_eq!(card.events, 5 * 3 + 2 + 2 + 2, "{card:?}");
    assert_eq!(card.subjects, 8);
    assert_eq!(card.items, 5, "i6 was only in the leaver's history");
    assert_eq!(
        card.categories,
        vec!["user.behavior.browsing_history".to_string()]
    );
    assert_eq!(h.engine.model_card().unwrap().version, card.version);

    let recs = h
        .engine
        .recommend(&actor(), &sid("alice"), &request(2), false)
        .await
        .unwrap();
    assert_eq!(recs.tier, "server");
    assert_eq!(recs.items[0].item, "i3");
    for item in &recs.items {
        assert!(
            !["i1", "i2"].contains(&item.item.as_str()),
            "history items are not recommended"
        );
    }
    let explanation = recs.items[0]
        .explanation
        .as_ref()
        .expect("server-tier items are explained");
    assert!(!explanation.because.is_empty());
    assert!(
        explanation
            .because
            .iter()
            .all(|(i, w)| ["i1", "i2"].contains(&i.as_str()) && *w > 0.0)
    );
    assert_eq!(
        explanation.categories,
        vec!["user.behavior.browsing_history".to_string()]
    );

    // New events count at once, without retraining.
    assert_eq!(ingest("alice", &["i4"]).await, 1);
    let recs = h
        .engine
        .recommend(&actor(), &sid("alice"), &request(2), false)
        .await
        .unwrap();
    assert!(recs.items.iter().any(|r| r.item == "i5"), "{recs:?}");
    let i5 = recs.items.iter().find(|r| r.item == "i5").unwrap();
    assert_eq!(i5.explanation.as_ref().unwrap().because[0].0, "i4");

    // Fairness re-ranking lifts the less popular i5 over the popular i3, among the items
    // her history supports; diversity keeps the list to them.
    let fair = h
        .engine
        .recommend(
            &actor(),
            &sid("alice"),
            &RecommendRequest {
                n: 2,
                fairness: 1.0,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_ne!(fair.items[0].item, "i3", "{fair:?}");
    assert!(fair.items.iter().all(|r| r.explanation.is_some()));
    let diverse = h
        .engine
        .recommend(
            &actor(),
            &sid("alice"),
            &RecommendRequest {
                n: 3,
                diversity: 1.0,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        diverse.items.len(),
        2,
        "only i3 and i5 have history behind them"
    );
    assert!(diverse.items.iter().all(|r| {
        r.explanation
            .as_ref()
            .is_some_and(|e| !e.because.is_empty())
    }));

    // No consent: contextual, from the request's context only.
    let stranger = h
        .engine
        .recommend(
            &actor(),
            &sid("stranger"),
            &RecommendRequest {
                n: 2,
                context: vec!["i4".into()],
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(stranger.tier, "contextual");
    assert_eq!(stranger.items[0].item, "i5");
    assert!(stranger.items.iter().all(|r| r.explanation.is_none()));
    // Withdrawal switches the very next response.
    h.engine
        .set_consent(&actor(), &sid("alice"), &withdraw(&[PROFILING]), false)
        .await
        .unwrap();
    let recs = h
        .engine
        .recommend(&actor(), &sid("alice"), &request(2), false)
        .await
        .unwrap();
    assert_eq!(recs.tier, "contextual");

    // Similar items and the anonymous contextual path.
    let similar = h.engine.similar_items("i1", 2).unwrap();
    assert!(
        similar.iter().any(|(i, _)| i == "i3" || i == "i2"),
        "{similar:?}"
    );
    let anon = h
        .engine
        .recommend_contextual(&RecommendRequest {
            n: 1,
            context: vec!["i1".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(anon.tier, "contextual");
    // Bad input.
    for (req, code) in [
        (request(0), "invalid_n"),
        (request(1001), "invalid_n"),
        (
            RecommendRequest {
                n: 3,
                context: vec!["bad id".into()],
                ..Default::default()
            },
            "invalid_field",
        ),
        (
            RecommendRequest {
                n: 3,
                diversity: 2.0,
                ..Default::default()
            },
            "invalid_field",
        ),
    ] {
        match h.engine.recommend(&actor(), &sid("c1"), &req, false).await {
            Err(EngineError::Refused { code: got, .. }) => assert_eq!(got.as_str(), code),
            other => panic!("{req:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        h.engine.similar_items("nope", 3),
        Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
    ));
    // Another server trains a newer model; this one picks it up.
    assert!(
        !h.engine.refresh_model().await.unwrap(),
        "already the newest"
    );
    let other = h.second_engine().await;
    let newer = other.train(&actor()).await.unwrap();
    assert!(newer.version > card.version);
    assert!(h.engine.refresh_model().await.unwrap());
    assert_eq!(h.engine.model_card().unwrap().version, newer.version);
    // A reopened engine serves the stored model.
    let reopened = h.with_policy(Policy::default_policy()).await;
    assert_eq!(reopened.engine.model_card().unwrap().version, newer.version);
    assert!(reopened.engine.verify_audit().await.unwrap().ok);
}

/// Invariant 4: erasure destroys the key and the rows, leaves no byte of the subject in the
/// database files (WAL included), makes the model forget them, and certifies it with a
/// signature over no personal data. A second erasure changes nothing and says so.
async fn erasure_is_real(h: Harness) {
    h.items(&["i1", "i2", "i3"]).await;
    let subject = "erase-me.7c1d@example";
    let marker = "erasure-marker-51ab";
    for s in ["keeper-1", "keeper-2", subject] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING, ANALYTICS]), false)
            .await
            .unwrap();
    }
    for s in ["keeper-1", "keeper-2"] {
        h.engine
            .ingest(
                &actor(),
                &[event(s, "i1", "view"), event(s, "i2", "view")],
                false,
            )
            .await
            .unwrap();
    }
    let drafts = vec![
        with_context(event(subject, "i1", "view"), "page", marker),
        event(subject, "i3", "view"),
    ];
    assert_eq!(
        h.engine
            .ingest(&actor(), &drafts, false)
            .await
            .unwrap()
            .accepted,
        2
    );
    let before = h.engine.train(&actor()).await.unwrap();
    assert_eq!(before.subjects, 3);
    let profiling = Policy::default_policy().purposes[PROFILING].clone();
    let read_all = || {
        let profiling = profiling.clone();
        let store = h.store.clone();
        async move {
            let read = candor_store::PurposeRead {
                purpose: &profiling,
                subject: None,
                now: Timestamp::now(),
                after_id: 0,
                limit: 1000,
            };
            store.read_events(&read).await.unwrap()
        }
    };
    let ciphertexts_before = read_all().await;
    let stats_before = h.engine.stats().await.unwrap();

    let certificate = h.engine.erase(&actor(), &sid(subject)).await.unwrap();
    assert_eq!(certificate.events_deleted, 2);
    assert!(certificate.consent_records_deleted >= 2);
    assert!(certificate.data_key_destroyed);
    assert!(certificate.verify(Some(&h.engine.verifying_key())));
    assert_eq!(
        certificate.model_retraining,
        candor_engine::ModelRetraining::Retrained
    );
    let retrained = certificate
        .model_retrained_version
        .expect("retrained at once");
    let after = h.engine.model_card().unwrap();
    assert_eq!(after.version, retrained);
    assert_eq!(
        h.store.delete_models_below(retrained).await.unwrap(),
        0,
        "no older stored model still holds what it learned from them"
    );
    assert_eq!(after.subjects, 2, "the model forgot them");
    assert_eq!(after.items, 2, "i3 was only theirs");
    // Any changed byte breaks the certificate.
    let mut forged = certificate.clone();
    forged.events_deleted = 0;
    assert!(!forged.verify(None));
    // The certificate holds no personal data, and neither does the erasure's audit entry.
    let json = serde_json::to_string(&certificate).unwrap();
    assert!(!json.contains(subject) && !json.contains("erase-me"));
    let entry = h
        .audit_entries()
        .await
        .into_iter()
        .rev()
        .find(|e| e.action == "subject.erase")
        .unwrap();
    assert_eq!(entry.subject, None);
    assert!(entry.detail.contains(&certificate.certificate_id));

    let stats = h.engine.stats().await.unwrap();
    assert_eq!(stats.events, stats_before.events - 2);
    assert_eq!(stats.subjects, stats_before.subjects - 1);
    h.assert_absent(subject).await;
    h.assert_absent(marker).await;
    // Their ciphertexts are gone from every byte of the files too (secure_delete, WAL
    // truncated), not merely unreadable.
    let remaining: Vec<Vec<u8>> = read_all().await.into_iter().map(|e| e.payload).collect();
    let erased: Vec<&Vec<u8>> = ciphertexts_before
        .iter()
        .map(|e| &e.payload)
        .filter(|p| !remaining.contains(p))
        .collect();
    assert_eq!(erased.len(), 2);
    for payload in erased {
        h.assert_absent_bytes(&payload[..]).await;
    }
    // Nothing of theirs is readable, and they get the contextual tier.
    assert!(matches!(
        h.engine.consent(&actor(), &sid(subject), false).await,
        Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
    ));
    let recs = h
        .engine
        .recommend(
            &actor(),
            &sid(subject),
            &candor_engine::RecommendRequest {
                n: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(recs.tier, "contextual");
    assert_eq!(
        h.engine
            .read_events(&actor(), PROFILING, Some(&sid(subject)), 0, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    // Idempotent: a second erasure changes nothing and says so.
    let audit_entries = h.engine.stats().await.unwrap().audit_entries;
    assert!(matches!(
        h.engine.erase(&actor(), &sid(subject)).await,
        Err(EngineError::Refused {
            code: ErrorCode::NothingHeld,
            ..
        })
    ));
    assert_eq!(h.engine.stats().await.unwrap().audit_entries, audit_entries);
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// The right of access: every stored event (also those whose consent has since been
/// withdrawn), consent and its history, purposes, recipients and retention, and the
/// recommender's logic; audited; unknown subjects get `unknown_subject`.
async fn export_holds_everything_and_is_audited(h: Harness) {
    h.items(&["i1", "i2"]).await;
    let s = sid("exporter");
    h.engine
        .set_consent(&actor(), &s, &grant(&[PROFILING, SHARING]), false)
        .await
        .unwrap();
    h.engine
        .set_consent(&actor(), &sid("other"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    h.engine
        .ingest(
            &actor(),
            &[
                with_context(event("exporter", "i1", "view"), "page", "/p1"),
                event("exporter", "i2", "purchase"),
            ],
            false,
        )
        .await
        .unwrap();
    h.engine
        .ingest(
            &actor(),
            &[event("other", "i1", "view"), event("other", "i2", "view")],
            false,
        )
        .await
        .unwrap();
    h.engine.train(&actor()).await.unwrap();
    h.engine
        .set_consent(&actor(), &s, &withdraw(&[PROFILING]), false)
        .await
        .unwrap();
    let audit_before = h.engine.stats().await.unwrap().audit_entries;
    let export = h.engine.export(&actor(), &s).await.unwrap();
    assert_eq!(export.schema, "candor.export/1");
    assert_eq!(
        export.events.len(),
        2,
        "stored events are exported even after withdrawal"
    );
    let view = export
        .events
        .iter()
        .find(|e| e.event_type == "view")
        .unwrap();
    let purchase = export
        .events
        .iter()
        .find(|e| e.event_type == "purchase")
        .unwrap();
    assert_eq!(view.context["page"], "/p1");
    assert_eq!(purchase.value, Some(1.0));
    assert!(export.consent_history.len() >= 4);
    let purchases = &export.processing["user.behavior.purchase_history"];
    assert_eq!(purchases.events, 1);
    assert!(purchases.purposes.iter().any(
        |p| p.purpose == SHARING && p.recipients == vec!["Partner Logistics GmbH".to_string()]
    ));
    let card = export.recommender_model.as_ref().expect("the model card");
    // The export is about this subject: it carries the model's logic, not exact statistics
    // of everyone else's training data.
    assert!(card.subjects.is_none() && card.events.is_none() && card.evaluation.is_none());
    assert_eq!(
        export.current_recommendations.as_ref().unwrap().tier,
        "contextual"
    );
    assert!(h.engine.stats().await.unwrap().audit_entries > audit_before);
    assert!(matches!(
        h.engine.export(&actor(), &sid("never-seen")).await,
        Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
    ));
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Art. 18 restriction stops ingestion, profiling, training and personalization until lifted;
/// Art. 21 objection withdraws personalization until the subject grants it again.
async fn restriction_and_objection_stop_processing(h: Harness) {
    use candor_engine::RecommendRequest;
    h.items(&["i1", "i2", "i3"]).await;
    for s in ["rest-1", "rest-2", "rest-3"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        h.engine
            .ingest(
                &actor(),
                &[event(s, "i1", "view"), event(s, "i2", "view")],
                false,
            )
            .await
            .unwrap();
    }
    h.engine
        .ingest(&actor(), &[event("rest-3", "i3", "view")], false)
        .await
        .unwrap();
    h.engine
        .restrict(&actor(), &sid("rest-3"), true)
        .await
        .unwrap();
    // Ingestion refused, reads skip them, training leaves them out, recommendations contextual.
    let mut later = event("rest-3", "i2", "click");
    later.timestamp = Some(Timestamp(Timestamp::now().0 - 3000).to_rfc3339());
    let report = h.engine.ingest(&actor(), &[later], false).await.unwrap();
    assert_eq!(reasons(&report), vec![RefusalReason::ProcessingRestricted]);
    assert!(
        h.engine
            .read_events(&actor(), PROFILING, Some(&sid("rest-3")), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let card = h.engine.train(&actor()).await.unwrap();
    assert_eq!(card.subjects, 2);
    assert_eq!(card.items, 2, "i3 only in the restricted history");
    let recs = h
        .engine
        .recommend(
            &actor(),
            &sid("rest-3"),
            &RecommendRequest {
                n: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(recs.tier, "contextual");
    assert!(recs.reason.contains("restricted"), "{}", recs.reason);
    // Storage continues: nothing was deleted, and the export still shows it all.
    assert_eq!(
        h.engine
            .export(&actor(), &sid("rest-3"))
            .await
            .unwrap()
            .events
            .len(),
        3
    );
    // Lifting restores processing.
    h.engine
        .restrict(&actor(), &sid("rest-3"), false)
        .await
        .unwrap();
    assert_eq!(
        h.engine
            .read_events(&actor(), PROFILING, Some(&sid("rest-3")), 0, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(matches!(
        h.engine.restrict(&actor(), &sid("nobody"), true).await,
        Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
    ));

    // Objection: personalization off, recorded as such, until a new grant.
    let view = h.engine.object(&actor(), &sid("rest-1")).await.unwrap();
    assert_eq!(view.purposes[PROFILING].state, ConsentState::Withdrawn);
    assert!(
        view.purposes[PROFILING]
            .categories
            .iter()
            .all(|c| c.method == Some(ConsentMethod::Objection))
    );
    let recs = h
        .engine
        .recommend(
            &actor(),
            &sid("rest-1"),
            &RecommendRequest {
                n: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(recs.tier, "contextual");
    let mut forged = grant(&[PROFILING]);
    forged.method = ConsentMethod::Objection;
    assert!(
        h.engine
            .set_consent(&actor(), &sid("rest-1"), &forged, false)
            .await
            .is_err()
    );
    h.engine
        .set_consent(&actor(), &sid("rest-1"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let recs = h
        .engine
        .recommend(
            &actor(),
            &sid("rest-1"),
            &RecommendRequest {
                n: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    // Her history is read again: the model links it only to what she has seen (i1 and i2
    // are the whole model), which is said, not the restriction.
    assert!(
        recs.reason
            .contains("links the subject's history to nothing"),
        "{recs:?}"
    );
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Requests: deadlines per jurisdiction, overdue listing, one extension with a reason, and
/// fulfilment that runs the right for the subject the request names.
async fn requests_have_deadlines_and_run_the_rights(h: Harness) {
    h.items(&["i1"]).await;
    let s = sid("requester");
    h.engine
        .set_consent(&actor(), &s, &grant(&[PROFILING, SHARING]), false)
        .await
        .unwrap();
    h.engine
        .ingest(&actor(), &[event("requester", "i1", "view")], false)
        .await
        .unwrap();
    let day = candor_domain::timestamp::DAY_MS;
    let old = Timestamp(Timestamp::now().0 - 40 * day);
    let gdpr = h
        .engine
        .create_request(
            &actor(),
            RequestKind::Erasure,
            &s,
            Jurisdiction::Gdpr,
            Some(old),
        )
        .await
        .unwrap();
    assert!(
        gdpr.overdue,
        "a GDPR request received 40 days ago is past its one-month deadline"
    );
    assert!(gdpr.acknowledge_by.is_none());
    let ccpa = h
        .engine
        .create_request(
            &actor(),
            RequestKind::DoNotSell,
            &s,
            Jurisdiction::Ccpa,
            None,
        )
        .await
        .unwrap();
    assert!(!ccpa.overdue);
    assert!(ccpa.acknowledge_by.is_some());
    let overdue = h.engine.list_requests(true).await.unwrap();
    assert_eq!(
        overdue.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![gdpr.id.as_str()]
    );
    let extended = h
        .engine
        .extend_request(&actor(), &gdpr.id, "complex request")
        .await
        .unwrap();
    assert!(!extended.overdue);
    assert!(matches!(
        h.engine.extend_request(&actor(), &gdpr.id, "again").await,
        Err(EngineError::Refused {
            code: ErrorCode::AlreadyExtended,
            ..
        })
    ));
    assert!(h.engine.list_requests(true).await.unwrap().is_empty());
    // Fulfilment: the subject must match; do-not-sell withdraws the GPC purposes.
    assert!(matches!(
        h.engine
            .fulfil_request(&actor(), &ccpa.id, &sid("someone-else"))
            .await,
        Err(EngineError::Refused {
            code: ErrorCode::SubjectMismatch,
            ..
        })
    ));
    let (done, _) = h
        .engine
        .fulfil_request(&actor(), &ccpa.id, &s)
        .await
        .unwrap();
    assert_eq!(done.status, candor_domain::RequestStatus::Completed);
    assert_eq!(
        h.engine
            .consent(&actor(), &s, false)
            .await
            .unwrap()
            .purposes[SHARING]
            .state,
        ConsentState::Withdrawn
    );
    let (done, certificate) = h
        .engine
        .fulfil_request(&actor(), &gdpr.id, &s)
        .await
        .unwrap();
    assert_eq!(done.status, candor_domain::RequestStatus::Completed);
    assert_eq!(certificate["events_deleted"], 1);
    assert!(matches!(
        h.engine.fulfil_request(&actor(), &gdpr.id, &s).await,
        Err(EngineError::Refused {
            code: ErrorCode::AlreadyCompleted,
            ..
        })
    ));
    // Unknown kinds and jurisdictions cannot reach the engine: they are not values of its types.
    assert_eq!(RequestKind::parse("telepathy"), None);
    assert_eq!(Jurisdiction::parse("mars"), None);
    assert!(matches!(
        h.engine.extend_request(&actor(), "nope", "x").await,
        Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
    ));
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Kantara v1.1 consent receipts: signed, pseudonymous, and any changed byte fails.
async fn consent_receipts_are_signed_and_tamper_evident(h: Harness) {
    let (view, receipt) = h
        .engine
        .set_consent_with_receipt(
            &actor(),
            &sid("receipt-holder"),
            &grant(&[PROFILING, SHARING]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(view.purposes[SHARING].state, ConsentState::Granted);
    assert_eq!(receipt.version, "KI-CR-v1.1.0");
    assert_eq!(receipt.collection_method, "banner");
    assert_eq!(receipt.services[0].purposes.len(), 2);
    let sharing = receipt.services[0]
        .purposes
        .iter()
        .find(|p| p.purpose == SHARING)
        .unwrap();
    assert!(sharing.third_party_disclosure && sharing.granted);
    assert_ne!(sharing.termination, "withdrawn");
    assert!(
        !serde_json::to_string(&receipt)
            .unwrap()
            .contains("receipt-holder"),
        "pseudonymous principal only"
    );
    assert!(receipt.verify(Some(&h.engine.verifying_key())));
    assert!(!receipt.verify(Some(&[7u8; 32])), "another server's key");
    let text = serde_json::to_string(&receipt).unwrap();
    let mut checked = 0;
    for i in 0..text.len() {
        let mut bytes = text.clone().into_bytes();
        bytes[i] = if bytes[i] == b'0' {
            b'1'
        } else if bytes[i].is_ascii_alphanumeric() {
            b'0'
        } else {
            continue;
        };
        let Ok(changed) = serde_json::from_slice::<candor_engine::ConsentReceipt>(&bytes) else {
            continue;
        };
        assert!(!changed.verify(None), "a change at byte {i} went unnoticed");
        checked += 1;
    }
    assert!(checked > 200, "{checked}");
    // A withdrawal's receipt says so.
    let (_, receipt) = h
        .engine
        .set_consent_with_receipt(
            &actor(),
            &sid("receipt-holder"),
            &withdraw(&[SHARING]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(receipt.services[0].purposes[0].termination, "withdrawn");
    assert!(!receipt.services[0].purposes[0].granted);
}

/// Property test (seeded): erase random subjects among many; the rest keep every event,
/// consent and key, the erased leave nothing readable or stored, and the audit chain and the
/// model stay consistent.
async fn erasing_random_subjects_keeps_every_invariant(h: Harness) {
    use rand::{Rng, SeedableRng};
    let items: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    let item_refs: Vec<&str> = items.iter().map(String::as_str).collect();
    h.items(&item_refs).await;
    for seed in [1u64, 2] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let subjects: Vec<String> = (0..24).map(|i| format!("prop-{seed}-{i}")).collect();
        let mut held: std::collections::HashMap<String, usize> = Default::default();
        for s in &subjects {
            h.engine
                .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
                .await
                .unwrap();
            let n = rng.gen_range(1..6);
            let drafts: Vec<EventDraft> = (0..n)
                .map(|k| {
                    let mut e = event(s, &items[rng.gen_range(0..items.len())], "view");
                    e.timestamp =
                        Some(Timestamp(Timestamp::now().0 - 10_000 - k as i64).to_rfc3339());
                    e
                })
                .collect();
            held.insert(
                s.clone(),
                h.engine
                    .ingest(&actor(), &drafts, false)
                    .await
                    .unwrap()
                    .accepted,
            );
        }
        h.engine.train(&actor()).await.unwrap();
        let erased: Vec<String> = subjects
            .iter()
            .filter(|_| rng.gen_bool(0.4))
            .cloned()
            .collect();
        for s in &erased {
            let certificate = h.engine.erase(&actor(), &sid(s)).await.unwrap();
            assert_eq!(certificate.events_deleted as usize, held[s]);
            assert!(certificate.verify(Some(&h.engine.verifying_key())));
        }
        for s in &subjects {
            let events = h
                .engine
                .read_events(&actor(), PROFILING, Some(&sid(s)), 0, 100)
                .await
                .unwrap();
            if erased.contains(s) {
                assert!(events.is_empty(), "{s} was erased");
                assert!(matches!(
                    h.engine.consent(&actor(), &sid(s), false).await,
                    Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
                ));
                h.assert_absent(s).await;
            } else {
                assert_eq!(events.len(), held[s], "{s} kept everything");
                assert_eq!(
                    h.engine
                        .consent(&actor(), &sid(s), false)
                        .await
                        .unwrap()
                        .purposes[PROFILING]
                        .state,
                    ConsentState::Granted
                );
            }
        }
        let card = h.engine.model_card().unwrap();
        let kept = subjects.iter().filter(|s| !erased.contains(s)).count();
        assert!(card.subjects >= kept, "{card:?}");
        assert!(h.engine.verify_audit().await.unwrap().ok);
    }
}

/// IAB TCF v2.2: a TC string's purposes map to the policy's purposes for this vendor; a bad
/// string is refused with the code of the failed check and changes nothing.
async fn tcf_strings_map_to_policy_purposes(h: Harness) {
    let s = sid("tcf-user");
    // Made with the IAB reference encoder: purposes 1, 5, 6, 8; vendors 42 and 755.
    let reference = "CQuci4AQuci4AAKABBENABEgAI0AAAAAAAYgF5wAgAVALzAAAAAA";
    assert!(matches!(
        h.engine
            .set_consent_tcf(&actor(), &s, reference, false)
            .await,
        Err(EngineError::Refused {
            code: ErrorCode::TcfNotConfigured,
            ..
        })
    ));
    let h = h.with_tcf_vendor(42).await;
    let view = h
        .engine
        .set_consent_tcf(&actor(), &s, reference, false)
        .await
        .unwrap();
    assert_eq!(
        view.purposes[PROFILING].state,
        ConsentState::Granted,
        "TCF 5 and 6"
    );
    assert_eq!(view.purposes[SHARING].state, ConsentState::Granted, "TCF 1");
    assert_eq!(
        view.purposes[ANALYTICS].state,
        ConsentState::Withdrawn,
        "TCF 8 but not 9"
    );
    assert_eq!(
        view.purposes["marketing.advertising.third_party.targeted"].state,
        ConsentState::Withdrawn
    );
    assert!(
        view.purposes[PROFILING]
            .categories
            .iter()
            .all(|c| c.method == Some(ConsentMethod::Tcf))
    );
    let records = h.engine.stats().await.unwrap().consent_records;
    for (bad, code) in [
        ("%%%", "tcf_encoding"),
        ("CQuci4AQ", "tcf_truncated"),
        ("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", "tcf_version"),
    ] {
        match h.engine.set_consent_tcf(&actor(), &s, bad, false).await {
            Err(EngineError::Refused { code: got, .. }) => assert_eq!(got.as_str(), code, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(h.engine.stats().await.unwrap().consent_records, records);
    // Only the TC-string path records method `tcf`.
    let mut forged = grant(&[PROFILING]);
    forged.method = ConsentMethod::Tcf;
    assert!(
        h.engine
            .set_consent(&actor(), &s, &forged, false)
            .await
            .is_err()
    );
}

/// The transparency report and sharing, on both backends.
async fn transparency_and_sharing_follow_consent(h: Harness) {
    h.items(&["i1"]).await;
    let s = sid("sharer");
    h.engine
        .set_consent(&actor(), &s, &grant(&[PROFILING, SHARING]), false)
        .await
        .unwrap();
    h.engine
        .ingest(&actor(), &[event("sharer", "i1", "purchase")], false)
        .await
        .unwrap();
    let report = h.engine.transparency(&actor(), &s).await.unwrap();
    let purchases = &report.categories["user.behavior.purchase_history"];
    assert_eq!(purchases.events, 1);
    assert!(purchases.purposes.iter().any(|p| p.purpose == SHARING
        && p.consent == ConsentState::Granted
        && p.consent_expires_at.is_some()));
    let (purpose, events) = h
        .engine
        .share(&actor(), &s, "Partner Logistics GmbH")
        .await
        .unwrap();
    assert_eq!((purpose.as_str(), events.len()), (SHARING, 1));
    assert!(matches!(
        h.engine.share(&actor(), &s, "Nobody").await,
        Err(EngineError::Refused {
            code: ErrorCode::UnknownRecipient,
            ..
        })
    ));
    h.engine.consent(&actor(), &s, true).await.unwrap(); // Sec-GPC: 1
    assert!(matches!(
        h.engine.share(&actor(), &s, "Partner Logistics GmbH").await,
        Err(EngineError::Refused {
            code: ErrorCode::ConsentRequired,
            ..
        })
    ));
    let report = h.engine.transparency(&actor(), &s).await.unwrap();
    assert!(
        report.categories["user.behavior.purchase_history"]
            .purposes
            .iter()
            .any(|p| p.purpose == SHARING && p.consent == ConsentState::Withdrawn)
    );
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

fn query(kind: &str, rho: f64) -> AnalyticsQuery {
    AnalyticsQuery {
        rho: Some(rho),
        ..AnalyticsQuery::new(QueryKind::parse(kind).unwrap())
    }
}

async fn analytics_budget(h: Harness, epsilon: f64) -> Harness {
    h.reconfigure(|c| {
        c.analytics = AnalyticsBudget {
            epsilon,
            delta: 1e-6,
            refill_ms: None,
        }
    })
    .await
}

/// Invariant 6: answers come from consented events only, each subject's contribution is
/// bounded, the noise and its interval are stated, and every charge is audited.
async fn analytics_answers_are_bounded_noisy_and_consent_bound(h: Harness) {
    // A huge budget so that ρ = 10⁶ (noise σ ≈ 0.0007) leaves counts exact.
    let h = analytics_budget(h, 1e7).await;
    h.items(&["i1", "i2", "i3"]).await;
    for s in ["a1", "a2", "a3"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[ANALYTICS]), false)
            .await
            .unwrap();
    }
    // Profiling only: stored, but never counted by analytics.
    h.engine
        .set_consent(&actor(), &sid("p1"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let mut drafts = vec![event("a1", "i1", "view"), event("a2", "i1", "view")];
    // a3 views i2 five times (five distinct timestamps) and buys i3 for 10.
    for k in 0..5 {
        let mut e = event("a3", "i2", "view");
        e.timestamp = Some(Timestamp(Timestamp::now().0 - 60_000 * (k + 1)).to_rfc3339());
        drafts.push(e);
    }
    let mut buy = event("a3", "i3", "purchase");
    buy.value = Some(10.0);
    drafts.push(buy);
    drafts.extend([event("p1", "i1", "view"), event("p1", "i3", "view")]);
    let report = h.engine.ingest(&actor(), &drafts, false).await.unwrap();
    assert_eq!(report.accepted, 10, "{:?}", report.refused);

    let exact = 1e6;
    let answer = h
        .engine
        .analytics_query(&actor(), &query("count_by_item", exact))
        .await
        .unwrap();
    let counts: BTreeMap<String, f64> = answer
        .rows
        .iter()
        .map(|r| (r.key.clone(), r.value))
        .collect();
    // Every catalogue item is a row; a3's five views of i2 count once (max_per_partition 1);
    // p1 (no analytics consent) is not counted.
    assert_eq!(counts["i1"], 2.0, "{answer:?}");
    assert_eq!(counts["i2"], 1.0);
    assert_eq!(counts["i3"], 1.0);
    for r in &answer.rows {
        assert!(r.low <= r.value && r.value <= r.high && r.confidence == 0.95);
    }
    // Sensitivity of counts with 10 contributions, 1 per row: √10.
    assert!((answer.sensitivity - 10f64.sqrt()).abs() < 1e-9);
    assert!((answer.rows[0].noise_scale - 10f64.sqrt() / (2.0 * exact).sqrt()).abs() < 1e-12);
    assert_eq!(answer.cost.rho, exact);
    assert!(answer.cost.epsilon > 0.0);

    // A looser per-row bound lets a3's views count up to it.
    let mut q = query("count_by_item", exact);
    q.max_per_partition = Some(3);
    q.max_contributions = Some(4);
    let a = h.engine.analytics_query(&actor(), &q).await.unwrap();
    let i2 = a.rows.iter().find(|r| r.key == "i2").unwrap();
    assert_eq!(i2.value, 3.0);
    assert!((a.sensitivity - 10f64.sqrt()).abs() < 1e-9, "3² + 1² = 10");

    // Categories, days, top-k, histogram and bounded mean.
    let a = h
        .engine
        .analytics_query(&actor(), &query("count_by_category", exact))
        .await
        .unwrap();
    assert_eq!(a.rows.len(), 1);
    // One row per subject at most: a1, a2 and a3 each count once.
    assert_eq!((a.rows[0].key.as_str(), a.rows[0].value), ("books", 3.0));
    let mut q = query("count_by_day", exact);
    let now = Timestamp::now().0;
    q.from = Some(now - 3 * 86_400_000);
    q.to = Some(now + 1);
    let a = h.engine.analytics_query(&actor(), &q).await.unwrap();
    assert!(a.rows.len() >= 3 && a.rows.len() <= 5, "{:?}", a.rows);
    assert!(a.rows.iter().map(|r| r.value).sum::<f64>() >= 3.0);
    let mut q = query("top_k", exact);
    q.k = Some(1);
    let a = h.engine.analytics_query(&actor(), &q).await.unwrap();
    assert_eq!(a.rows.len(), 1);
    assert_eq!(a.rows[0].key, "i1");
    let mut q = query("histogram", exact);
    q.event_type = Some("purchase".into());
    q.lower = Some(0.0);
    q.upper = Some(20.0);
    q.bins = Some(4);
    let a = h.engine.analytics_query(&actor(), &q).await.unwrap();
    let values: Vec<f64> = a.rows.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![0.0, 0.0, 1.0, 0.0], "{:?}", a.rows);
    let mut q = query("mean", exact);
    q.event_type = Some("purchase".into());
    q.lower = Some(0.0);
    q.upper = Some(8.0);
    let a = h.engine.analytics_query(&actor(), &q).await.unwrap();
    // The value 10 is clamped to the upper bound 8.
    assert_eq!(a.rows[0].key, "mean");
    let sum_noise = a.rows[1].noise_scale;
    assert!(
        a.rows[0].value <= 8.0 && a.rows[0].value >= 8.0 - 6.0 * sum_noise,
        "{:?}",
        a.rows
    );
    assert!(a.rows[0].low <= a.rows[0].value && a.rows[0].value <= a.rows[0].high);

    // A real query is noisy and says how noisy.
    let budget = h.engine.analytics_budget().await.unwrap();
    assert!(budget.spent_rho >= 7.0 * exact);
    let charges = h
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.action == "analytics.charge")
        .count();
    assert_eq!(charges, 7, "every charge is audited");
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Invariant 6: many queries at once never spend more than the budget.
async fn analytics_budget_cannot_be_overspent_under_concurrency(h: Harness) {
    let h = analytics_budget(h, 1.0).await;
    h.items(&["i1", "i2"]).await;
    h.engine
        .set_consent(&actor(), &sid("a1"), &grant(&[ANALYTICS]), false)
        .await
        .unwrap();
    h.engine
        .ingest(&actor(), &[event("a1", "i1", "view")], false)
        .await
        .unwrap();
    let limit = h.engine.analytics_budget().await.unwrap().limit_rho;
    // Each query costs a bit more than an eighth of the budget: exactly eight fit.
    let cost = limit / 8.5;
    // Two servers on the same database, twelve queries each, all at once.
    let engines = [
        std::sync::Arc::new(h.second_engine().await),
        std::sync::Arc::new(h.second_engine().await),
    ];
    let tasks: Vec<_> = (0..24)
        .map(|k| {
            let engine = engines[k % 2].clone();
            tokio::spawn(async move {
                engine
                    .analytics_query(&actor(), &query("count_by_item", cost))
                    .await
            })
        })
        .collect();
    let (mut ok, mut exhausted) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(EngineError::Refused {
                code: ErrorCode::BudgetExhausted,
                ..
            }) => exhausted += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((ok, exhausted), (8, 16));
    let budget = h.engine.analytics_budget().await.unwrap();
    assert!(budget.spent_rho <= budget.limit_rho);
    assert!((budget.spent_rho - 8.0 * cost).abs() < 1e-9);
    assert!(budget.spent_epsilon <= 1.0);
    let charges = h
        .store
        .audit_entries(0, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "analytics.charge")
        .count();
    assert_eq!(charges, 8);
    // Once the budget cannot pay, a query is refused before any event is read.
    let reads = |h: &Harness| {
        let store = h.store.clone();
        async move {
            store
                .audit_entries(0, 100_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.action == "events.read")
                .count()
        }
    };
    let before = reads(&h).await;
    assert!(matches!(
        h.engine
            .analytics_query(&actor(), &query("count_by_item", cost))
            .await,
        Err(EngineError::Refused {
            code: ErrorCode::BudgetExhausted,
            ..
        })
    ));
    assert_eq!(
        reads(&h).await,
        before,
        "no event was read for a query that cannot be paid"
    );
}

/// Invariant 10 for analytics: a refused query changes nothing and costs nothing.
async fn failed_analytics_queries_are_not_charged(h: Harness) {
    let h = analytics_budget(h, 1.0).await;
    h.items(&["i1"]).await;
    let bad = |f: fn(&mut AnalyticsQuery)| {
        let mut q = AnalyticsQuery {
            epsilon: Some(0.1),
            ..AnalyticsQuery::new(QueryKind::CountByItem)
        };
        f(&mut q);
        q
    };
    let cases: Vec<(AnalyticsQuery, &str)> = vec![
        (bad(|q| q.epsilon = Some(0.0)), "invalid_field"),
        (bad(|q| q.epsilon = Some(-1.0)), "invalid_field"),
        (bad(|q| q.epsilon = Some(f64::NAN)), "invalid_field"),
        (bad(|q| q.rho = Some(0.1)), "invalid_field"),
        (bad(|q| q.epsilon = None), "invalid_field"),
        (bad(|q| q.max_contributions = Some(0)), "invalid_field"),
        (bad(|q| q.max_per_partition = Some(11)), "invalid_field"),
        (
            bad(|q| q.event_type = Some("teleport".into())),
            "unknown_event_type",
        ),
        (
            bad(|q| {
                q.from = Some(10);
                q.to = Some(5)
            }),
            "bounds_out_of_order",
        ),
        (
            bad(|q| {
                q.kind = QueryKind::Mean;
                q.lower = Some(5.0);
                q.upper = Some(1.0)
            }),
            "bounds_out_of_order",
        ),
        (bad(|q| q.kind = QueryKind::Mean), "invalid_field"),
        // Finite bounds whose difference overflows once answered `null` and were charged.
        (
            bad(|q| {
                q.kind = QueryKind::Mean;
                q.lower = Some(-1e308);
                q.upper = Some(1e308)
            }),
            "invalid_field",
        ),
        (bad(|q| q.lower = Some(1.0)), "invalid_field"),
        (
            bad(|q| {
                q.kind = QueryKind::Histogram;
                q.lower = Some(0.0);
                q.upper = Some(1.0);
                q.bins = Some(0)
            }),
            "invalid_field",
        ),
        (
            bad(|q| {
                q.kind = QueryKind::CountByDay;
            }),
            "invalid_field",
        ),
        (
            bad(|q| {
                q.kind = QueryKind::TopK;
                q.k = Some(0)
            }),
            "invalid_field",
        ),
        (
            bad(|q| {
                q.kind = QueryKind::CountByDay;
                q.from = Some(i64::MIN);
                q.to = Some(i64::MAX)
            }),
            "invalid_field",
        ),
        (
            bad(|q| {
                q.epsilon = None;
                q.rho = Some(1e-300)
            }),
            "invalid_field",
        ),
        // More than the whole budget at once.
        (bad(|q| q.epsilon = Some(50.0)), "budget_exhausted"),
    ];
    // An unknown kind cannot reach the engine: it is no value of QueryKind (the HTTP test
    // checks its code, unknown_query_kind).
    assert_eq!(QueryKind::parse("median"), None);
    let before = h.audit_entries().await.len();
    for (q, expected) in cases {
        match h.engine.analytics_query(&actor(), &q).await {
            Err(EngineError::Refused { code, .. }) => assert_eq!(code.as_str(), expected, "{q:?}"),
            other => panic!("{q:?}: expected {expected}, got {other:?}"),
        }
    }
    // A dry run states the cost and charges nothing.
    let mut q = bad(|_| {});
    q.dry_run = true;
    let preview = h.engine.analytics_query(&actor(), &q).await.unwrap();
    assert!(preview.rows.is_empty() && preview.cost.rho > 0.0);
    assert!(
        (preview.cost.epsilon - 0.1).abs() < 1e-3,
        "{:?}",
        preview.cost
    );
    let budget = h.engine.analytics_budget().await.unwrap();
    assert_eq!(budget.spent_rho, 0.0);
    assert_eq!(h.audit_entries().await.len(), before);
}

/// DESIGN §2: the shared item model is trained with DP and its card says so; the contextual
/// tier ranks by the model's DP popularity.
async fn dp_item_model_states_its_guarantee(h: Harness) {
    use candor_engine::RecommendRequest;
    let h = h
        .reconfigure(|c| c.model_privacy = Some(candor_engine::ModelPrivacy::default()))
        .await;
    let items: Vec<String> = (0..20).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    h.items(&refs).await;
    let mut drafts = Vec::new();
    for u in 0..40 {
        let s = format!("u{u}");
        h.engine
            .set_consent(&actor(), &sid(&s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        for item in items.iter().take(1 + u % 5) {
            drafts.push(event(&s, item, "view"));
        }
    }
    assert_eq!(
        h.engine
            .ingest(&actor(), &drafts, false)
            .await
            .unwrap()
            .accepted,
        drafts.len()
    );
    let card = h.engine.train(&actor()).await.unwrap();
    assert_eq!(card.algorithm, "dp_spectral");
    let privacy = card.privacy.clone().expect("the card states the guarantee");
    assert!(
        privacy.epsilon <= 8.0 && privacy.epsilon > 7.9,
        "{privacy:?}"
    );
    assert_eq!(privacy.delta, 1e-5);
    assert!(privacy.rho > 0.0 && privacy.popularity_sigma > 0.0);
    assert_eq!(privacy.releases_rho, privacy.rho);
    // A second training is a second release: the card composes both, and both are audited.
    let again = h.engine.train(&actor()).await.unwrap().privacy.unwrap();
    assert!((again.releases_rho - 2.0 * privacy.rho).abs() < 1e-9);
    assert!(
        again.releases_epsilon > privacy.epsilon && again.releases_epsilon < 2.0 * privacy.epsilon
    );
    let releases = h
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.action == "analytics.charge" && e.detail.contains("model_releases"))
        .count();
    assert_eq!(releases, 2);
    // The analysts' budget is a different ledger.
    assert_eq!(h.engine.analytics_budget().await.unwrap().spent_rho, 0.0);
    // Personalized and contextual recommendations still work from the DP model.
    let recs = h
        .engine
        .recommend(
            &actor(),
            &sid("u1"),
            &RecommendRequest {
                n: 5,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(recs.tier, "server");
    let ctx = h
        .engine
        .recommend_contextual(&RecommendRequest {
            n: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(ctx.items.len(), 5);
}

/// A budget with a refill period starts afresh once the period has passed, not before.
async fn analytics_budget_refills_after_its_period(h: Harness) {
    let h = h
        .reconfigure(|c| {
            c.analytics = AnalyticsBudget {
                epsilon: 1.0,
                delta: 1e-6,
                refill_ms: Some(300),
            }
        })
        .await;
    h.items(&["i1"]).await;
    let limit = h.engine.analytics_budget().await.unwrap().limit_rho;
    let q = query("count_by_item", limit * 0.9);
    h.engine.analytics_query(&actor(), &q).await.unwrap();
    let status = h.engine.analytics_budget().await.unwrap();
    assert!(status.refills_at.is_some() && status.period_start.is_some());
    assert!(matches!(
        h.engine.analytics_query(&actor(), &q).await,
        Err(EngineError::Refused {
            code: ErrorCode::BudgetExhausted,
            ..
        })
    ));
    h.clock.advance(350);
    assert_eq!(h.engine.analytics_budget().await.unwrap().spent_rho, 0.0);
    let again = h.engine.analytics_query(&actor(), &q).await.unwrap();
    assert!((again.budget.spent_rho - limit * 0.9).abs() < 1e-12);
}

/// With a cap on the composed ε of model releases, a training that would pass it is refused
/// (nothing is released, the current model keeps serving), and an erasure's certificate says
/// the model forgets the subject when the cap refills.
async fn model_release_cap_holds_and_erasure_says_when(h: Harness) {
    const MONTH_MS: i64 = 30 * 86_400_000;
    let h = h
        .reconfigure(|c| {
            c.model_privacy = Some(candor_engine::ModelPrivacy {
                releases_epsilon: Some(9.0),
                releases_refill_ms: Some(MONTH_MS),
                ..Default::default()
            })
        })
        .await;
    h.items(&["i1", "i2", "i3", "i4"]).await;
    let mut drafts = Vec::new();
    for u in 0..30 {
        let s = format!("u{u}");
        h.engine
            .set_consent(&actor(), &sid(&s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        drafts.push(event(&s, ["i1", "i2", "i3", "i4"][u % 4], "view"));
        drafts.push(event(&s, "i1", "click"));
    }
    h.engine.ingest(&actor(), &drafts, false).await.unwrap();
    let first = h.engine.train(&actor()).await.unwrap();
    assert!(first.privacy.as_ref().unwrap().releases_epsilon <= 9.0);
    assert!(matches!(
        h.engine.train(&actor()).await,
        Err(EngineError::Refused {
            code: ErrorCode::BudgetExhausted,
            ..
        })
    ));
    assert_eq!(h.engine.model_card().unwrap().version, first.version);
    let certificate = h.engine.erase(&actor(), &sid("u3")).await.unwrap();
    assert_eq!(certificate.model_retrained_version, None);
    assert_eq!(
        certificate.model_retraining,
        candor_engine::ModelRetraining::BudgetExhausted
    );
    let forgets_by =
        Timestamp::parse_rfc3339(certificate.model_forgets_by.as_deref().unwrap()).unwrap();
    assert!(
        forgets_by.0 >= Timestamp::now().0 + MONTH_MS - 60_000,
        "{certificate:?}"
    );
}

/// DP training on a store of 10–20 subjects once panicked in about half of the trainings, and
/// an erasure that retrained then answered an error after committing, losing its certificate.
/// Every training of small stores succeeds, every erasure certifies what became of the model,
/// and erasing the last consenting subject withdraws the model rather than serve what it
/// learned from them.
async fn dp_training_on_small_stores_never_fails_an_erasure(h: Harness) {
    use candor_engine::ModelRetraining;
    let h = h
        .reconfigure(|c| c.model_privacy = Some(candor_engine::ModelPrivacy::default()))
        .await;
    let items: Vec<String> = (0..12).map(|i| format!("i{i}")).collect();
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    h.items(&refs).await;
    let subjects: Vec<String> = (0..16).map(|u| format!("u{u}")).collect();
    let mut drafts = Vec::new();
    for (u, s) in subjects.iter().enumerate() {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        // Skewed: everyone holds i0, few hold anything else, so few items clear the noise.
        for item in items.iter().take(1 + (u % 7 == 0) as usize * 3) {
            drafts.push(event(s, item, "view"));
        }
    }
    h.engine.ingest(&actor(), &drafts, false).await.unwrap();
    for _ in 0..12 {
        h.engine
            .train(&actor())
            .await
            .expect("a small store trains");
    }
    for s in &subjects {
        let certificate = h.engine.erase(&actor(), &sid(s)).await.unwrap();
        assert!(certificate.verify(Some(&h.engine.verifying_key())));
        let last = s == subjects.last().unwrap();
        let expected = if last {
            ModelRetraining::Withdrawn
        } else {
            ModelRetraining::Retrained
        };
        assert_eq!(certificate.model_retraining, expected, "{certificate:?}");
        assert!(certificate.model_forgets_by.is_some());
    }
    assert!(h.engine.model_card().is_err(), "the model was withdrawn");
    assert_eq!(h.store.delete_models_below(i64::MAX).await.unwrap(), 0);
}

/// A consenting subject whose history the model links to nothing once got a `server`-tier
/// list of arbitrary items with score 0 and empty explanations. Every server-tier item now
/// has history behind it, and a history the model cannot use falls back to the contextual
/// ranking with the reason said.
async fn history_the_model_cannot_use_falls_back_visibly(h: Harness) {
    use candor_engine::RecommendRequest;
    h.items(&["i1", "i2", "i3", "i4", "lonely"]).await;
    let mut drafts = Vec::new();
    for s in ["c1", "c2", "c3", "c4", "hermit", "alice"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
    }
    for s in ["c1", "c2", "c3", "c4"] {
        for i in ["i1", "i2", "i3", "i4"] {
            drafts.push(event(s, i, "view"));
        }
    }
    // Only the hermit holds `lonely`, and nothing else: the model learns no link from it.
    drafts.push(event("hermit", "lonely", "view"));
    drafts.push(event("alice", "i1", "view"));
    h.engine.ingest(&actor(), &drafts, false).await.unwrap();
    h.engine.train(&actor()).await.unwrap();
    let request = RecommendRequest {
        n: 10,
        ..Default::default()
    };
    let hermit = h
        .engine
        .recommend(&actor(), &sid("hermit"), &request, false)
        .await
        .unwrap();
    assert_eq!(hermit.tier, "contextual", "{hermit:?}");
    assert!(
        hermit
            .reason
            .contains("links the subject's history to nothing"),
        "{}",
        hermit.reason
    );
    assert!(hermit.items.iter().all(|r| r.explanation.is_none()));
    assert!(
        !hermit.items.is_empty(),
        "the contextual ranking still answers"
    );
    let alice = h
        .engine
        .recommend(&actor(), &sid("alice"), &request, false)
        .await
        .unwrap();
    assert_eq!(alice.tier, "server");
    assert!(!alice.items.is_empty());
    for item in &alice.items {
        let explanation = item.explanation.as_ref().unwrap();
        assert!(item.score > 0.0, "{item:?}");
        assert_eq!(explanation.because[0].0, "i1", "{item:?}");
    }
}

/// An event stored for a subject who consented only to a 180-day purpose was kept 365 days,
/// the longest retention of any purpose of its category. Retention now follows the purposes
/// the event is stored under: an event older than that is refused at ingestion, and a
/// younger one is swept when that retention runs out.
async fn retention_follows_the_purposes_consented_to(h: Harness) {
    use candor_domain::timestamp::DAY_MS;
    const ANALYTICS: &str = "analytics.reporting";
    h.items(&["i1"]).await;
    for (s, purposes) in [
        ("short", &[ANALYTICS][..]),
        ("long", &[ANALYTICS, PROFILING][..]),
    ] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(purposes), false)
            .await
            .unwrap();
    }
    let aged = |s: &str, item_type: &str, days: i64| {
        let mut e = event(s, "i1", item_type);
        e.timestamp = Some(Timestamp(h.engine.now().0 - days * DAY_MS).to_rfc3339());
        e
    };
    // 200 days old: past analytics' 180 days, within personalization's 365.
    let report = h
        .engine
        .ingest(
            &actor(),
            &[aged("short", "view", 200), aged("long", "view", 200)],
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(reasons(&report), vec![RefusalReason::TimestampTooOld]);
    assert_eq!(
        report.refused[0].index, 0,
        "the analytics-only subject's event"
    );
    assert!(report.refused[0].message.contains("180-day"));
    // 100 days old: stored for both, the analytics-only one for 80 more days.
    let report = h
        .engine
        .ingest(
            &actor(),
            &[aged("short", "click", 100), aged("long", "click", 100)],
            false,
        )
        .await
        .unwrap();
    assert_eq!(report.accepted, 2);
    // The transparency report gives the date the event is really deleted.
    let report = h
        .engine
        .transparency(&actor(), &sid("short"))
        .await
        .unwrap();
    let held = &report.categories["user.behavior.browsing_history"];
    let deleted_by = Timestamp::parse_rfc3339(held.oldest_deleted_by.as_deref().unwrap()).unwrap();
    assert_eq!(
        (deleted_by.0 - h.engine.now().0 + DAY_MS / 2) / DAY_MS,
        80,
        "{held:?}"
    );
    h.clock.advance(81 * DAY_MS);
    assert_eq!(h.engine.sweep_retention(&actor()).await.unwrap(), 1);
    let left = h
        .engine
        .read_events(&actor(), ANALYTICS, None, 0, 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "the long-consent subject keeps both events");
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// API keys can be listed, expire, and be revoked; a revocation on one node is refused at
/// once there and within `KEY_RECHECK_MS` on another node over the same database.
async fn keys_expire_and_revocation_reaches_every_node(h: Harness) {
    use candor_engine::{KEY_RECHECK_MS, Role};
    let a = &h.engine;
    let b = h.second_engine().await;
    let token = a
        .create_api_key(&actor(), Role::Service, "shop backend", None)
        .await
        .unwrap();
    let id = candor_engine::key_id_of(&token).unwrap().to_owned();
    assert!(a.authenticate(&token).await.unwrap().is_some());
    assert!(
        b.authenticate(&token).await.unwrap().is_some(),
        "B caches it"
    );
    a.revoke_api_key(&actor(), &id).await.unwrap();
    assert!(
        a.authenticate(&token).await.unwrap().is_none(),
        "at once on A"
    );
    h.clock.advance(KEY_RECHECK_MS);
    assert!(
        b.authenticate(&token).await.unwrap().is_none(),
        "within the recheck on B"
    );
    // Revoking again, or an unknown key, is refused with a code and writes nothing.
    let entries = h.audit_entries().await.len();
    for unknown in [id.as_str(), "nosuchkey"] {
        assert!(matches!(
            a.revoke_api_key(&actor(), unknown).await,
            Err(EngineError::Refused {
                code: ErrorCode::UnknownKey,
                ..
            })
        ));
    }
    assert_eq!(h.audit_entries().await.len(), entries);
    // An expiring key admits until its expiry and not after.
    let in_a_day = Timestamp(a.now().0 + candor_domain::timestamp::DAY_MS);
    let expiring = a
        .create_api_key(&actor(), Role::Analyst, "temp", Some(in_a_day))
        .await
        .unwrap();
    assert!(a.authenticate(&expiring).await.unwrap().is_some());
    h.clock.advance(candor_domain::timestamp::DAY_MS);
    assert!(a.authenticate(&expiring).await.unwrap().is_none());
    assert!(
        a.create_api_key(&actor(), Role::Analyst, "past", Some(in_a_day))
            .await
            .is_err()
    );
    let listed = a.list_api_keys().await.unwrap();
    let view = |id: &str| listed.iter().find(|k| k.id == id).unwrap();
    assert!(!view(&id).live && view(&id).revoked_at.is_some());
    let expiring_id = candor_engine::key_id_of(&expiring).unwrap();
    assert!(!view(expiring_id).live && view(expiring_id).expires_at.is_some());
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains(token.as_str()) && !json.contains("hash"));
    let actions: Vec<String> = h
        .audit_entries()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"key.revoke".to_string()));
    assert!(a.verify_audit().await.unwrap().ok);
}

/// Consent records are the legal proof of consent, so the audit chain covers them: an
/// edited, inserted or deleted consent-history row, or a forged erasure mark, fails
/// verification, while a real erasure does not.
async fn consent_history_tampering_is_detected(h: Harness) {
    let problem = |h: &Harness| {
        let engine = h.engine.clone();
        async move {
            let report = engine.verify_audit().await.unwrap();
            assert!(!report.ok, "tampering went unnoticed");
            assert!(report.first_bad_position.is_some());
            report.problem.unwrap()
        }
    };
    tamper_setup(&h).await;
    // A real erasure keeps the chain and the history consistent.
    h.engine.erase(&actor(), &sid("tamper-5")).await.unwrap();
    assert!(h.engine.verify_audit().await.unwrap().ok);
    // The next change after erasing the newest rows takes fresh ids, never an erased one's.
    h.engine
        .set_consent(&actor(), &sid("tamper-6"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    assert!(h.engine.verify_audit().await.unwrap().ok);

    h.sql(&["UPDATE consent_history SET granted = NOT granted WHERE id = (SELECT MIN(id) FROM consent_history)"])
        .await;
    assert!(problem(&h).await.contains("altered"), "an edited row");
    h.sql(&["UPDATE consent_history SET granted = NOT granted WHERE id = (SELECT MIN(id) FROM consent_history)"])
        .await;
    assert!(h.engine.verify_audit().await.unwrap().ok, "undone");

    h.sql(&["INSERT INTO consent_history (subject, purpose, category, granted, at, expires_at, policy_version, method) \
             SELECT subject, purpose, category, granted, at + 1, expires_at, policy_version, method \
             FROM consent_history WHERE id = (SELECT MAX(id) FROM consent_history)"])
        .await;
    assert!(problem(&h).await.contains("outside"), "an inserted row");
    h.sql(&["DELETE FROM consent_history WHERE id = (SELECT MAX(id) FROM consent_history)"])
        .await;
    assert!(h.engine.verify_audit().await.unwrap().ok, "undone");

    h.sql(&["DELETE FROM consent_history WHERE id = (SELECT MIN(id) FROM consent_history)"])
        .await;
    assert!(
        problem(&h).await.contains("not by an erasure"),
        "a deleted row"
    );
    // Passing the deletion off as an erasure miscounts that erasure.
    h.sql(&[
        "UPDATE consent_leaves SET erased_seq = (SELECT MAX(erased_seq) FROM consent_leaves) \
             WHERE id = (SELECT MIN(id) FROM consent_leaves)",
    ])
    .await;
    assert!(
        problem(&h).await.contains("accounts for"),
        "a forged erasure mark"
    );
}

/// A key store of its own for the harness: a SQLite file beside the data, on both backends.
async fn with_key_store(h: Harness) -> Harness {
    let vault = format!("sqlite://{}", h.config.data_dir.join("vault.db").display());
    h.reconfigure(|c| c.key_store_url = vault).await
}

/// Crypto-shredding is only real if the keys are not in what gets backed up: with the data
/// keys in a key store of their own, restoring a data backup taken before an erasure brings
/// back only rows nothing can decrypt, and the other subjects' data reads as before.
async fn erasure_survives_a_restored_data_backup(h: Harness) {
    let h = with_key_store(h).await;
    h.items(&["i1", "i2"]).await;
    for s in ["kept", "erased"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        h.engine
            .ingest(
                &actor(),
                &[event(s, "i1", "view"), event(s, "i2", "view")],
                false,
            )
            .await
            .unwrap();
    }
    assert!(
        h.store.subject_key_page(None, 10).await.unwrap().is_empty(),
        "no data key is in the data store"
    );
    // The backup: every table of personal data, as it was before the erasure.
    for table in [
        "events",
        "consent_current",
        "consent_history",
        "consent_leaves",
        "subject_keys",
    ] {
        h.sql(&[&format!(
            "CREATE TABLE backup_{table} AS SELECT * FROM {table}"
        )])
        .await;
    }
    h.engine.erase(&actor(), &sid("erased")).await.unwrap();
    // Restoring puts the rows back with their ids (PostgreSQL's identity columns must be
    // told so).
    let overriding = if h.is_postgres() {
        "OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    for table in [
        "events",
        "consent_current",
        "consent_history",
        "consent_leaves",
        "subject_keys",
    ] {
        h.sql(&[
            &format!("DELETE FROM {table}"),
            &format!("INSERT INTO {table} {overriding} SELECT * FROM backup_{table}"),
        ])
        .await;
    }
    let h = h.reconfigure(|_| {}).await;
    let read = |s: &'static str| {
        let engine = h.engine.clone();
        async move {
            engine
                .read_events(&actor(), PROFILING, Some(&sid(s)), 0, 100)
                .await
                .unwrap()
        }
    };
    assert!(
        read("erased").await.is_empty(),
        "the restored rows stay unreadable"
    );
    assert_eq!(read("kept").await.len(), 2);
    assert!(
        h.engine
            .export(&actor(), &sid("erased"))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    let card = h.engine.train(&actor()).await.unwrap();
    assert_eq!(card.subjects, 1, "training reads past the shredded rows");
}

/// `rotate_master` re-wraps every data key under a new master key without rewriting any
/// event: the data reads the same afterwards, the key file holds only the new key, and the
/// old key file no longer opens anything.
async fn master_key_rotation_rewraps_without_rewriting_data(h: Harness) {
    let h = with_key_store(h).await;
    h.items(&["i1"]).await;
    for s in ["r1", "r2", "r3"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        h.engine
            .ingest(&actor(), &[event(s, "i1", "view")], false)
            .await
            .unwrap();
    }
    let dir = h.config.data_dir.clone();
    let key_file = dir.join(candor_engine::keys::KEY_FILE);
    std::fs::write(&key_file, h.keys.to_key_file().as_bytes()).unwrap();
    let payloads = |h: &Harness| {
        let store = h.store.clone();
        async move {
            let page = store.subject_key_page(None, 10).await.unwrap();
            assert!(page.is_empty());
            h_events(&store).await
        }
    };
    let before = payloads(&h).await;
    let config = h.config.clone();
    let rewrapped = candor_engine::keys::rotate_master(&dir, |ring| {
        candor_engine::Engine::with_store(config, ring, h.store.clone())
    })
    .await
    .unwrap();
    assert_eq!(rewrapped, 3);
    assert_eq!(payloads(&h).await, before, "no event was rewritten");
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !text.contains("previous_master_key"),
        "the rotation finished"
    );
    let ring = std::sync::Arc::new(candor_crypto::KeyRing::from_key_file(&text).unwrap());
    let rotated = candor_engine::Engine::with_store(h.config.clone(), ring, h.store.clone())
        .await
        .unwrap();
    for s in ["r1", "r2", "r3"] {
        let events = rotated
            .read_events(&actor(), PROFILING, Some(&sid(s)), 0, 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1, "{s} reads under the new master key");
    }
    // The old master key opens nothing any more.
    let old = h.reconfigure(|_| {}).await;
    assert!(
        old.engine
            .read_events(&actor(), PROFILING, Some(&sid("r1")), 0, 10)
            .await
            .is_err()
    );
}

/// Every event's stored ciphertext, in id order.
async fn h_events(store: &std::sync::Arc<dyn candor_store::Store>) -> Vec<Vec<u8>> {
    let policy = candor_domain::Policy::default_policy();
    let read = candor_store::PurposeRead {
        purpose: &policy.purposes[PROFILING],
        subject: None,
        now: Timestamp::now(),
        after_id: 0,
        limit: 1000,
    };
    store
        .read_events(&read)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

/// Two servers on one database (the outside audit's case): B ingests for S, A erases S, S
/// consents again, B ingests again. B once sealed with the erased key from its cache, so A
/// answered 500 on S's export and recommendations. Now every write confirms its key against
/// the key store, a deleted item is refused by B within `ITEM_RECHECK_MS`, and B serves A's
/// newer model on its next refresh.
async fn every_node_acts_on_an_erasure_a_deleted_item_and_a_new_model(h: Harness) {
    use candor_engine::RecommendRequest;
    let a = h.engine.clone();
    let b = std::sync::Arc::new(h.second_engine().await);
    h.items(&["i1", "i2", "i3"]).await;
    for s in ["s", "other"] {
        a.set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
    }
    let ingest = |engine: std::sync::Arc<candor_engine::Engine>,
                  s: &'static str,
                  item: &'static str| async move {
        engine
            .ingest(&actor(), &[event(s, item, "view")], false)
            .await
            .unwrap()
    };
    assert_eq!(ingest(b.clone(), "s", "i1").await.accepted, 1);
    assert_eq!(ingest(b.clone(), "other", "i1").await.accepted, 1);
    assert_eq!(ingest(b.clone(), "other", "i2").await.accepted, 1);
    a.erase(&actor(), &sid("s")).await.unwrap();
    a.set_consent(&actor(), &sid("s"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    assert_eq!(
        ingest(b.clone(), "s", "i2").await.accepted,
        1,
        "B ingests again"
    );
    // A reads what B wrote after the erasure: one event, under the new key.
    let export = a.export(&actor(), &sid("s")).await.unwrap();
    assert_eq!(export.events.len(), 1, "{:?}", export.events);
    assert_eq!(export.events[0].item, "i2");
    let card = a.train(&actor()).await.unwrap();
    let recs = a
        .recommend(
            &actor(),
            &sid("s"),
            &RecommendRequest {
                n: 2,
                ..Default::default()
            },
            false,
        )
        .await
        .unwrap();
    assert!(!recs.items.is_empty());
    // B picks up A's model on its next refresh.
    assert!(b.refresh_model().await.unwrap() || b.model_card().unwrap().version == card.version);
    assert_eq!(b.model_card().unwrap().version, card.version);
    // An item deleted through A, though B has seen it, is refused by B within the recheck.
    assert_eq!(ingest(b.clone(), "other", "i3").await.accepted, 1);
    a.delete_item("i3").await.unwrap();
    h.clock.advance(candor_engine::items::ITEM_RECHECK_MS);
    let report = ingest(b.clone(), "other", "i3").await;
    assert_eq!(reasons(&report), vec![RefusalReason::UnknownItem]);
    assert!(a.verify_audit().await.unwrap().ok);
}

/// RFC 6962: signed tree heads, an inclusion proof that a consent receipt is in the log, a
/// consistency proof between two heads, all checked with the public key alone; incremental
/// verification starts at the checkpoint; a rewritten entry fails every proof of it.
async fn audit_log_is_a_merkle_tree_with_offline_proofs(h: Harness) {
    let code = |e: &EngineError| match e {
        EngineError::Refused { code, .. } => Some(*code),
        _ => None,
    };
    let key = h.engine.verifying_key();
    let (_, receipt) = h
        .engine
        .set_consent_with_receipt(&actor(), &sid("proof-1"), &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let first = h.engine.tree_head().await.unwrap();
    assert!(first.tree_size >= 2);
    first.check(&key).unwrap();
    assert!(first.check(&[9u8; 32]).is_err(), "another key");
    // Every server publishes the same head for the same size.
    assert_eq!(h.engine.tree_head_of(first.tree_size).await.unwrap(), first);

    let proof = h
        .engine
        .receipt_proof(&receipt.consent_receipt_id)
        .await
        .unwrap();
    proof.check_receipt(&receipt, &key).unwrap();
    let mut other = receipt.clone();
    other.consent_receipt_id = "0".repeat(32);
    assert!(
        proof.check_receipt(&other, &key).is_err(),
        "another receipt"
    );
    let mut forged = proof.clone();
    forged.entry.detail.push('x');
    assert!(forged.check(&key).is_err(), "an edited entry");
    let unknown = h.engine.receipt_proof(&"ab".repeat(16)).await.unwrap_err();
    assert_eq!(code(&unknown), Some(ErrorCode::NotFound));

    for i in 0..30 {
        h.engine
            .set_consent(
                &actor(),
                &sid(&format!("proof-{i}")),
                &grant(&[PROFILING]),
                false,
            )
            .await
            .unwrap();
    }
    let incremental = h.engine.verify_audit_incremental().await.unwrap();
    assert!(incremental.ok, "{incremental:?}");
    assert_eq!(
        incremental.checked_from, first.tree_size,
        "starts at the checkpoint"
    );
    let second = h.engine.tree_head().await.unwrap();
    assert!(second.tree_size > first.tree_size);
    let growth = h.engine.consistency_proof(first.tree_size).await.unwrap();
    growth.check(&first, &key).unwrap();
    for size in 1..second.tree_size {
        let entry = h.engine.inclusion_proof(size).await.unwrap();
        entry.check(&key).unwrap();
    }
    let mut lying = first.clone();
    lying.root_hash = second.root_hash.clone();
    assert!(growth.check(&lying, &key).is_err(), "a forged earlier head");

    // An entry rewritten after it was logged fails its proof, and the full verification.
    h.sql(&["UPDATE audit_log SET detail = 'rewritten' WHERE seq = 2"])
        .await;
    let rewritten = h.engine.inclusion_proof(2).await.unwrap();
    assert!(
        rewritten.check(&key).is_err(),
        "the proof exposes the rewrite"
    );
    assert!(!h.engine.verify_audit().await.unwrap().ok);
    let broken = h.engine.tree_head().await;
    assert!(broken.is_ok(), "the incremental check starts after entry 2");
    // The newest verified entry is checked on every incremental run.
    let last = second.tree_size;
    h.sql(&[&format!(
        "UPDATE audit_log SET actor = 'someone' WHERE seq = {last}"
    )])
    .await;
    let report = h.engine.verify_audit_incremental().await.unwrap();
    assert!(
        !report.ok
            && report
                .problem
                .unwrap()
                .contains("since this server verified")
    );
    let refused = h.engine.tree_head().await.unwrap_err();
    assert_eq!(code(&refused), Some(ErrorCode::AuditLogBroken));
}

/// An installation that kept the data keys in the data store gets a key store: at startup
/// every key moves there and leaves the data store, and the data still opens.
async fn keys_move_out_of_an_older_data_store_at_startup(h: Harness) {
    let store_url = h.config.store_url.clone();
    let h = h.reconfigure(|c| c.key_store_url = store_url).await;
    h.items(&["i1", "i2"]).await;
    for s in ["moved-1", "moved-2"] {
        h.engine
            .set_consent(&actor(), &sid(s), &grant(&[PROFILING]), false)
            .await
            .unwrap();
        h.engine
            .ingest(
                &actor(),
                &[event(s, "i1", "view"), event(s, "i2", "view")],
                false,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        h.store.subject_key_page(None, 10).await.unwrap().len(),
        2,
        "the keys start in the data store"
    );
    let h = with_key_store(h).await;
    assert!(
        h.store.subject_key_page(None, 10).await.unwrap().is_empty(),
        "no data key is left in the data store"
    );
    for s in ["moved-1", "moved-2"] {
        let export = h.engine.export(&actor(), &sid(s)).await.unwrap();
        assert_eq!(
            export.events.len(),
            2,
            "{s}'s events open with the moved key"
        );
    }
    // Opening again moves nothing and loses nothing.
    let h = with_key_store(h).await;
    assert_eq!(
        h.engine
            .export(&actor(), &sid("moved-1"))
            .await
            .unwrap()
            .events
            .len(),
        2
    );
    h.engine.erase(&actor(), &sid("moved-2")).await.unwrap();
    assert!(matches!(
        h.engine.export(&actor(), &sid("moved-2")).await,
        Err(EngineError::Refused { code, .. }) if code.class() == ErrorClass::NotFound
    ));
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Subject sessions: the token holds no raw id (nor does the database), it admits as its own
/// subject only, and a revocation or an erasure on one node ends it there at once and on
/// another node within `KEY_RECHECK_MS`.
async fn sessions_are_sealed_narrow_and_end_on_every_node(h: Harness) {
    use candor_engine::{Access, KEY_RECHECK_MS};
    let a = &h.engine;
    let b = h.second_engine().await;
    let person = sid("session-person-5e1d");
    let opened = a.open_session(&actor(), &person, None).await.unwrap();
    assert!(!opened.token.contains("session-person-5e1d"));
    h.assert_absent("session-person-5e1d").await;
    h.assert_absent(&opened.token[4..]).await;
    for node in [a, &b] {
        let principal = node.authenticate(&opened.token).await.unwrap().unwrap();
        assert_eq!(principal.access(), Access::Subject);
        assert!(principal.may_act_for(&person));
        assert!(!principal.may_act_for(&sid("someone-else")));
        assert!(!principal.admits(&candor_engine::Role::ALL));
        assert_eq!(principal.actor().0, format!("session:{}", opened.id));
    }
    // Revoked on A: at once there, within the recheck on B.
    assert_eq!(a.revoke_sessions(&actor(), &person).await.unwrap(), 1);
    assert!(a.authenticate(&opened.token).await.unwrap().is_none());
    h.clock.advance(KEY_RECHECK_MS);
    assert!(b.authenticate(&opened.token).await.unwrap().is_none());

    // Erased on A (the person had consented and been seen): every session ends.
    h.items(&["i1"]).await;
    a.set_consent(&actor(), &person, &grant(&[PROFILING]), false)
        .await
        .unwrap();
    let second = a.open_session(&actor(), &person, None).await.unwrap();
    assert!(b.authenticate(&second.token).await.unwrap().is_some());
    a.erase(&actor(), &person).await.unwrap();
    assert!(a.authenticate(&second.token).await.unwrap().is_none());
    h.clock.advance(KEY_RECHECK_MS);
    assert!(b.authenticate(&second.token).await.unwrap().is_none());

    // An expired session admits nothing, and the sweep purges its row.
    let third = a.open_session(&actor(), &person, Some(60)).await.unwrap();
    h.clock.advance(60_000);
    assert!(a.authenticate(&third.token).await.unwrap().is_none());
    assert_eq!(a.purge_expired_sessions().await.unwrap(), 1);
    let actions: Vec<String> = h
        .audit_entries()
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in ["session.open", "session.revoke", "subject.erase"] {
        assert!(actions.iter().any(|a| a == action), "{action} is audited");
    }
}

/// Every receipt is stored in the transaction of the change it proves, can be listed and
/// verified later, and goes with an erasure.
async fn receipts_are_kept_with_their_change_and_erased_with_the_subject(h: Harness) {
    use candor_engine::SignedDocument;
    h.items(&["i1"]).await;
    let person = sid("receipt-person-81");
    let mut issued = Vec::new();
    for granted in [true, false] {
        let update = ConsentUpdate::whole(&[PROFILING], granted, ConsentMethod::Form);
        let (_, receipt) = h
            .engine
            .set_consent_with_receipt(&actor(), &person, &update, false)
            .await
            .unwrap();
        issued.push(receipt);
        h.clock.advance(1);
    }
    let stored = h.engine.consent_receipts(&actor(), &person).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0], issued[1], "newest first, exactly as issued");
    assert_eq!(stored[1], issued[0]);
    let key = h.engine.verifying_key();
    assert!(stored.iter().all(|r| r.verify(Some(&key))));
    assert!(stored[0].services[0].purposes.iter().all(|p| !p.granted));
    assert!(stored[1].services[0].purposes.iter().all(|p| p.granted));
    h.engine.erase(&actor(), &person).await.unwrap();
    assert!(
        h.engine
            .consent_receipts(&actor(), &person)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.engine.verify_audit().await.unwrap().ok);
}

/// Analysts get consent counts per purpose only with differential privacy: one noisy row per
/// purpose with its interval, charged to the budget and audited; a bad cost is refused and
/// charges nothing, and one the budget cannot pay is refused.
async fn consent_counts_for_analysts_are_noisy_and_charged(h: Harness) {
    for n in 0..3 {
        h.engine
            .set_consent(
                &actor(),
                &sid(&format!("counted-{n}")),
                &grant(&[PROFILING]),
                false,
            )
            .await
            .unwrap();
    }
    let exact = h.engine.granted_counts().await.unwrap();
    assert_eq!(exact[PROFILING], 3);
    let before = h.engine.analytics_budget().await.unwrap();
    let answer = h
        .engine
        .analytics_consent_counts(&actor(), 1.0)
        .await
        .unwrap();
    assert_eq!(answer.rows.len(), h.engine.policy().purposes.len());
    assert!(
        answer
            .rows
            .iter()
            .all(|r| r.low <= r.value && r.value <= r.high)
    );
    let expected_sigma = (answer.rows.len() as f64).sqrt() / (2.0 * answer.cost.rho).sqrt();
    assert!(
        answer
            .rows
            .iter()
            .all(|r| (r.noise_scale - expected_sigma).abs() < 1e-9)
    );
    let after = h.engine.analytics_budget().await.unwrap();
    assert!((after.spent_rho - before.spent_rho - answer.cost.rho).abs() < 1e-12);
    for epsilon in [0.0, f64::NAN, -1.0, 3.2e-210] {
        assert!(matches!(
            h.engine.analytics_consent_counts(&actor(), epsilon).await,
            Err(EngineError::Refused {
                code: ErrorCode::InvalidField,
                ..
            })
        ));
    }
    assert!(matches!(
        h.engine.analytics_consent_counts(&actor(), 1e6).await,
        Err(EngineError::Refused {
            code: ErrorCode::BudgetExhausted,
            ..
        })
    ));
    let unchanged = h.engine.analytics_budget().await.unwrap();
    assert_eq!(
        unchanged.spent_rho, after.spent_rho,
        "refusals cost nothing"
    );
    let charges = h
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.action == "analytics.charge")
        .count();
    assert_eq!(charges, 1);
}
