//! Prometheus metrics: request counts and latencies per route, and events accepted or refused
//! by reason. Labels hold route templates and codes only, never ids.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use candor_domain::RefusalReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    /// `missing` (no bearer token) or `invalid` (unknown, wrong, revoked or expired key).
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: String,
    reason: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The server's metrics registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    events: Family<EventLabels, Counter>,
    auth_failures: Family<AuthLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("candor");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 16)));
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "events",
            "Events accepted or refused, by reason",
            events.clone(),
        );
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused 401, by why: brute force shows here",
            auth_failures.clone(),
        );
        for reason in ["missing", "invalid"] {
            let _ = auth_failures.get_or_create(&AuthLabels {
                reason: reason.into(),
            });
        }
        for reason in RefusalReason::ALL {
            let _ = events.get_or_create(&EventLabels {
                outcome: "refused".into(),
                reason: reason.code().into(),
            });
        }
        Self {
            registry,
            requests,
            latency,
            events,
            auth_failures,
        }
    }
}

impl Metrics {
    /// Counts ingestion outcomes.
    pub fn record_events(&self, accepted: usize, refused: impl Iterator<Item = RefusalReason>) {
        self.events
            .get_or_create(&EventLabels {
                outcome: "accepted".into(),
                reason: String::new(),
            })
            .inc_by(accepted as u64);
        for reason in refused {
            self.events
                .get_or_create(&EventLabels {
                    outcome: "refused".into(),
                    reason: reason.code().into(),
                })
                .inc();
        }
    }

    /// What this server has ingested since it started: events accepted, then events refused
    /// by reason (reasons never seen are left out).
    pub fn ingest_totals(&self) -> (u64, Vec<(RefusalReason, u64)>) {
        let count = |outcome: &str, reason: &str| {
            self.events
                .get(&EventLabels {
                    outcome: outcome.into(),
                    reason: reason.into(),
                })
                .map_or(0, |c| c.get())
        };
        let refused = RefusalReason::ALL
            .into_iter()
            .map(|r| (r, count("refused", r.code())))
            .filter(|(_, n)| *n > 0)
            .collect();
        (count("accepted", ""), refused)
    }

    /// Counts a refused authentication: `missing` or `invalid`.
    pub fn record_auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&AuthLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Middleware recording each request's route, status and latency.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}
