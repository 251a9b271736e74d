//! `candor bench`: in-process benchmarks that go through the engine exactly as the API does
//! (consent check, encryption, durable commit). Figures go to `docs/benchmarks.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candor_domain::{ConsentMethod, Item, SubjectId, Timestamp};
use candor_engine::{Actor, ConsentUpdate, Engine, EventDraft};

/// The shape of an ingestion benchmark.
#[derive(Debug, Clone, Copy)]
pub struct IngestBench {
    /// Events to ingest.
    pub events: usize,
    /// Events per batch.
    pub batch: usize,
    /// Distinct subjects (all consenting).
    pub subjects: usize,
    /// Catalogue size.
    pub items: usize,
    /// Concurrent clients.
    pub concurrency: usize,
}

/// Resident set size of this process in MiB, from `/proc/self/status`.
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs the ingestion benchmark and prints its figures.
pub async fn ingest(engine: Arc<Engine>, bench: IngestBench) -> anyhow::Result<()> {
    let actor = Actor::system();
    let items: Vec<Item> = (0..bench.items)
        .map(|i| Item {
            id: format!("bench-item-{i}"),
            title: format!("Item {i}"),
            category: Some(format!("c{}", i % 20)),
            provider: None,
            attributes: Default::default(),
        })
        .collect();
    for chunk in items.chunks(5000) {
        engine.put_items(chunk).await?;
    }
    let setup = Instant::now();
    let update = ConsentUpdate::whole(&["personalize.content.profiling"], true, ConsentMethod::Api);
    for s in 0..bench.subjects {
        engine
            .set_consent(
                &actor,
                &SubjectId::parse(&format!("bench-user-{s}"))?,
                &update,
                false,
            )
            .await?;
    }
    eprintln!(
        "consent for {} subjects in {:.1} s",
        bench.subjects,
        setup.elapsed().as_secs_f64()
    );

    let base = Timestamp::now().0 - 10 * candor_domain::timestamp::DAY_MS;
    let batches: Vec<(usize, usize)> = (0..bench.events)
        .step_by(bench.batch)
        .map(|start| (start, bench.batch.min(bench.events - start)))
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // `concurrency` clients take batches in turn, as concurrent API callers would.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..bench.concurrency {
        let (engine, batches, next, actor) =
            (engine.clone(), batches.clone(), next.clone(), actor.clone());
        clients.spawn(async move {
            let mut accepted = 0usize;
            while let Some(&(start, n)) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                let drafts: Vec<EventDraft> = (start..start + n)
                    .map(|i| EventDraft {
                        subject: format!("bench-user-{}", i % bench.subjects),
                        item: format!("bench-item-{}", (i * 7919) % bench.items),
                        event_type: "view".into(),
                        value: None,
                        timestamp: Some(Timestamp(base + i as i64).to_rfc3339()),
                        context: BTreeMap::from([("device".to_string(), "mobile".to_string())]),
                    })
                    .collect();
                let report = engine.ingest(&actor, &drafts, false).await?;
                anyhow::ensure!(
                    report.refused.is_empty(),
                    "benchmark events were refused: {:?}",
                    report.refused.first()
                );
                accepted += report.accepted;
            }
            Ok::<usize, anyhow::Error>(accepted)
        });
    }
    let mut accepted = 0;
    while let Some(result) = clients.join_next().await {
        accepted += result??;
    }
    let spent = started.elapsed().as_secs_f64();
    println!(
        "ingest via engine into {}: {accepted} events in batches of {} from {} concurrent clients over {} subjects: {:.2} s, {:.0} events/s, RSS {:.0} MiB",
        engine.backend(),
        bench.batch,
        bench.concurrency,
        bench.subjects,
        spent,
        accepted as f64 / spent,
        rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
