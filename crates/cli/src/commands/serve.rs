//! `candor serve`: the HTTP server (TLS when `[server] tls_cert` is set, reloaded on SIGHUP;
//! stops on SIGINT or SIGTERM) with its background jobs (training, model refresh, tree heads,
//! retention sweep). [`serve`] is shared with `candor demo`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use candor_engine::{Engine, Periodic, spawn_periodic};
use clap::Args as ClapArgs;
use tokio::signal::unix::{SignalKind, signal};

use super::{Common, init_tracing, load_settings, open_engine};
use crate::settings::Settings;

/// Flags of `candor serve`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<String>,
}

/// Runs the server until interrupted.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let settings = load_settings(&args.common, args.listen)?;
    init_tracing(&settings);
    let engine = open_engine(&settings).await?;
    serve(&settings, engine, None).await
}

/// What the demo prints once the server listens.
pub struct Demo {
    /// A fresh admin key.
    pub admin_key: String,
    /// Subject session tokens for the privacy center, each with who it is for.
    pub sessions: Vec<(&'static str, String)>,
    /// How long they last.
    pub session_minutes: u64,
}

/// Starts the background jobs and serves the API; with `demo`, prints its key, privacy
/// center links and commands to try once the server listens.
pub async fn serve(
    settings: &Settings,
    engine: Arc<Engine>,
    demo: Option<Demo>,
) -> anyhow::Result<()> {
    let weak = Arc::downgrade(&engine);
    if settings.models.train_interval_secs > 0 {
        spawn_periodic(
            weak.clone(),
            Periodic::Training,
            Duration::from_secs(settings.models.train_interval_secs),
        );
    }
    spawn_periodic(
        weak.clone(),
        Periodic::ModelRefresh,
        // A version check costs one indexed query: a model trained on another server (or
        // withdrawn after an erasure) is served here within a second.
        Duration::from_secs(1),
    );
    spawn_periodic(
        weak.clone(),
        Periodic::TreeHead,
        // The first run verifies the whole log in the background; later ones only what it
        // gained, so a tree head is published every minute the log grows.
        Duration::from_secs(60),
    );
    spawn_periodic(
        weak,
        Periodic::RetentionSweep,
        Duration::from_secs(settings.retention.sweep_interval_secs),
    );
    let listener = tokio::net::TcpListener::bind(&settings.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
    let addr = listener.local_addr()?;
    let tls = tls(settings)?;
    let state = candor_server::AppState::new(engine.clone(), settings.server.max_body_bytes)
        .secure_cookies(tls.is_some())
        .allow_origins(settings.allowed_origins()?)
        .rate_limits(candor_server::ratelimit::RateLimits {
            per_address: std::num::NonZeroU32::new(settings.server.rate_limit_per_address),
            per_key: std::num::NonZeroU32::new(settings.server.rate_limit_per_key),
        });
    let limiter = state.limiter();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            limiter.shrink();
        }
    });
    let app = candor_server::app(state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "listening on {scheme}://{addr} (store: {})",
        engine.backend()
    );
    if let Some(demo) = demo {
        print_demo_commands(&format!("{scheme}://{addr}"), &demo);
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    if let Some(tls) = tls.clone() {
        let mut hangups = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                    Err(error) => {
                        tracing::error!(%error, "SIGHUP: kept the TLS certificate in force")
                    }
                }
            }
        });
    }
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let limits = candor_server::listen::Limits {
        header_read: Duration::from_secs(settings.server.header_timeout_secs.max(1)),
        body: Duration::from_secs(settings.server.body_timeout_secs.max(1)),
        ..Default::default()
    };
    candor_server::listen::serve(listener, app, tls, limits, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    })
    .await;
    Ok(())
}

/// TLS from `[server] tls_cert` and `tls_key`: both or neither.
fn tls(settings: &Settings) -> anyhow::Result<Option<Arc<candor_server::listen::Tls>>> {
    match (&settings.server.tls_cert, &settings.server.tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(Arc::new(candor_server::listen::Tls::from_files(
            cert, key,
        )?))),
        _ => anyhow::bail!("set both server.tls_cert and server.tls_key, or neither"),
    }
}

/// The demo's ready-to-paste commands, then the admin key (the line scripts wait for).
fn print_demo_commands(base: &str, demo: &Demo) {
    let key = &demo.admin_key;
    let auth = "-H \"Authorization: Bearer $KEY\"";
    let json = "-H 'Content-Type: application/json'";
    println!(
        "privacy center (each link lasts {} minutes):",
        demo.session_minutes
    );
    for (who, token) in &demo.sessions {
        println!("  {who}: {base}/privacy?session={token}");
    }
    println!(
        "  a new link: curl -s -X POST {auth} {json} -d '{{}}' {base}/v1/subjects/user-0001/sessions"
    );
    println!("operator console: {base}/console (sign in with the admin key below)");
    println!("try:");
    println!("  export KEY={key}");
    println!("  curl -s {base}/v1/policy");
    println!("  curl -s {auth} {base}/v1/subjects/user-0001/consent");
    println!(
        "  curl -s -X POST {auth} {json} \
         -d '{{\"subject\":\"user-0001\",\"item\":\"item-00001\",\"type\":\"view\"}}' {base}/v1/events"
    );
    println!(
        "  curl -s -X POST {auth} {json} \
         -d '{{\"subject\":\"user-0008\",\"item\":\"item-00001\",\"type\":\"view\"}}' {base}/v1/events   # no consent: refused"
    );
    println!("  curl -s {auth} '{base}/v1/subjects/user-0001/recommendations?n=5'");
    println!(
        "  curl -s {auth} '{base}/v1/subjects/user-0008/recommendations?n=5&context=item-00001'   # no consent: contextual"
    );
    println!("  curl -s {base}/v1/models/current");
    println!("  curl -s {auth} {base}/v1/audit/verify");
    println!(
        "  curl -s -X POST {auth} {json} \
         -d '{{\"kind\":\"top_k\",\"epsilon\":0.5,\"k\":5}}' {base}/v1/analytics/query   # DP, charged to the budget"
    );
    println!("  curl -s {auth} {base}/v1/analytics/budget");
    println!("  curl -s {auth} {base}/metrics | grep candor_events");
    println!("admin key: {key}");
}
