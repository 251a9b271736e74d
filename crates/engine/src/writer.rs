//! Group commit. Every ingestion call hands its sealed events, and every audited read its
//! audit entry, to a writer task, which takes whatever is waiting and stores it in as few
//! transactions as it can (one for the events of all waiting calls, one for all waiting audit
//! entries), so concurrent small requests share a durable commit instead of each paying for
//! its own. Each call still gets its own audit entry and its own per-event outcome, is
//! answered only after its commit, and a failed transaction fails every call in it with
//! nothing written.

use std::sync::Arc;

use candor_domain::AuditDraft;
use candor_store::{EventGroup, Store, StoreError};
use tokio::sync::{Mutex, mpsc, oneshot};

/// Most events one group transaction takes before it commits.
const GROUP_MAX_EVENTS: usize = 20_000;
/// Calls that may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T, Arc<StoreError>>>;

enum Job {
    Events(EventGroup, Reply<Vec<bool>>),
    Audit(Vec<AuditDraft>, Reply<()>),
}

impl Job {
    fn events(&self) -> usize {
        match self {
            Job::Events(group, _) => group.events.len(),
            Job::Audit(drafts, _) => drafts.len(),
        }
    }
}

/// The handle through which calls reach the writer tasks.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> Arc<StoreError> {
    Arc::new(StoreError::Corrupt("the writer stopped"))
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
        self.jobs
            .send(Job::Events(group, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Appends audit entries in the next group transaction and waits for its commit.
    pub(crate) async fn audit(&self, drafts: Vec<AuditDraft>) -> Result<(), Arc<StoreError>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Audit(drafts, reply))
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
            let mut size = first.events();
            let mut jobs = vec![first];
            while size < GROUP_MAX_EVENTS {
                let Ok(job) = rx.try_recv() else { break };
                size += job.events();
                jobs.push(job);
            }
            jobs
        };
        let mut groups = Vec::new();
        let mut group_replies = Vec::new();
        let mut drafts = Vec::new();
        let mut audit_replies = Vec::new();
        for job in jobs {
            match job {
                Job::Events(group, reply) => {
                    groups.push(group);
                    group_replies.push(reply);
                }
                Job::Audit(mut d, reply) => {
                    drafts.append(&mut d);
                    audit_replies.push(reply);
                }
            }
        }
        if !groups.is_empty() {
            match store.insert_event_groups(&groups).await {
                Ok(flags) => {
                    for (reply, flags) in group_replies.into_iter().zip(flags) {
                        let _ = reply.send(Ok(flags));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    for reply in group_replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
        if !audit_replies.is_empty() {
            let result = store.append_audit(&drafts).await.map_err(Arc::new);
            for reply in audit_replies {
                let _ = reply.send(result.clone());
            }
        }
    }
}
