//! Group commit for ingestion. Every ingestion call hands its sealed events to a writer
//! task, which takes whatever calls are waiting and stores them in a single transaction, so
//! concurrent small requests share one durable commit instead of each paying for its own.
//! Each call still gets its own audit entry and its own per-event outcome, and a failed
//! transaction fails every call in it with nothing written.

use std::sync::Arc;

use candor_store::{EventGroup, Store, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Most events one group transaction takes before it commits.
const GROUP_MAX_EVENTS: usize = 20_000;
/// Calls that may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

struct Job {
    group: EventGroup,
    reply: oneshot::Sender<Result<Vec<bool>, Arc<StoreError>>>,
}

/// The handle through which ingestion calls reach the writer task.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts as many writer tasks as the store takes concurrent writers (one for SQLite);
    /// they end when the handle is dropped.
    pub(crate) fn spawn(store: Arc<dyn Store>) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..store.concurrent_writers().max(1) {
            tokio::spawn(run(store.clone(), rx.clone()));
        }
        Self { jobs }
    }

    /// Stores one call's events (with its audit entry) in the next group transaction.
    pub(crate) async fn write(&self, group: EventGroup) -> Result<Vec<bool>, Arc<StoreError>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Corrupt("the ingestion writer stopped"));
        self.jobs
            .send(Job { group, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Arc<dyn Store>, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        // Take the queue, gather a group, and let the next writer gather the next one while
        // this one commits.
        let jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut events = first.group.events.len();
            let mut jobs = vec![first];
            while events < GROUP_MAX_EVENTS {
                let Ok(job) = rx.try_recv() else { break };
                events += job.group.events.len();
                jobs.push(job);
            }
            jobs
        };
        let (groups, replies): (Vec<EventGroup>, Vec<_>) =
            jobs.into_iter().map(|j| (j.group, j.reply)).unzip();
        match store.insert_event_groups(&groups).await {
            Ok(flags) => {
                for (reply, flags) in replies.into_iter().zip(flags) {
                    let _ = reply.send(Ok(flags));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
