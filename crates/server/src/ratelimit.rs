//! Rate limits, checked before anything else in a request: one budget per source address and
//! one per API key id (the public part of the bearer token, before it is checked, so a flood of
//! bad keys is limited too). A request over either gets 429 `rate_limited` with `Retry-After`.
//! GCRA from the `governor` crate; state is per server, in memory.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use candor_domain::ErrorCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Requests per second (with a burst of as many) per source address and per key id; `None`
/// leaves that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Per source address.
    pub per_address: Option<NonZeroU32>,
    /// Per API key id.
    pub per_key: Option<NonZeroU32>,
}

/// The limiters of one server.
pub struct Limiter {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl Limiter {
    /// Limiters for `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            per_address: limits
                .per_address
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            per_key: limits
                .per_key
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when the request is over a limit.
    fn check(&self, address: Option<IpAddr>, key_id: Option<&str>) -> Result<(), u64> {
        let wait = |not_until: governor::NotUntil<_>| {
            not_until
                .wait_time_from(self.clock.now())
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        };
        if let (Some(limiter), Some(address)) = (&self.per_address, address) {
            limiter.check_key(&address).map_err(wait)?;
        }
        if let (Some(limiter), Some(key_id)) = (&self.per_key, key_id) {
            limiter.check_key(&key_id.to_owned()).map_err(wait)?;
        }
        Ok(())
    }

    /// Forgets keys whose budget is full again, so the maps stay small.
    pub fn shrink(&self) {
        if let Some(l) = &self.per_address {
            l.retain_recent();
        }
        if let Some(l) = &self.per_key {
            l.retain_recent();
        }
    }
}

/// Middleware: 429 with `Retry-After` for a request over a limit.
pub async fn limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let key_id = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| candor_engine::key_id_of(t.trim()))
        .map(str::to_owned);
    match limiter.check(address, key_id.as_deref()) {
        Ok(()) => next.run(req).await,
        Err(seconds) => {
            let mut response = ApiError::new(
                ErrorCode::RateLimited,
                format!("too many requests; retry in {seconds} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}
