//! The listener: accepts connections, terminates TLS when configured (rustls; HTTP/2 and
//! HTTP/1.1 chosen by ALPN; the certificate reloaded in place, see [`Tls::reload`]), and serves
//! the app on each connection under time limits, so that a slow or silent client holds a
//! connection only briefly: the TLS handshake and the first request must start within the
//! header timeout, every request's headers must arrive within it, and a request body must
//! arrive within the body timeout (else `408 request_timeout`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, crypto::ring};
use tower::ServiceExt;

/// How long a client may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// For the TLS handshake and the first request to start, and for each request's headers.
    pub header_read: Duration,
    /// For a request's whole body, from when its headers arrived.
    pub body: Duration,
    /// For open connections to finish their requests at shutdown.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body: Duration::from_secs(30),
            drain: Duration::from_secs(10),
        }
    }
}

/// Why the TLS certificate or key could not be loaded. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("cannot read the TLS {what} from {path}: {reason}")]
    File {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (the PEM parser's message).
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refused them.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Pair(String),
}

/// TLS termination with a certificate that can be replaced while the server runs.
pub struct Tls {
    config: Arc<ServerConfig>,
    resolver: Arc<Reloadable>,
}

/// The certificate in force and where it came from.
#[derive(Debug)]
struct Reloadable {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .map_or_else(|e| e.into_inner().clone(), |c| c.clone()),
        )
    }
}

/// rustls over *ring*. The aws-lc-rs provider (with post-quantum key exchange) compiles a large
/// C library, which this project avoids; *ring* gives TLS 1.3 and 1.2 with classical suites.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let file_error = |what, path: &Path| {
        let path = path.to_owned();
        move |e: tokio_rustls::rustls::pki_types::pem::Error| TlsError::File {
            what,
            path,
            reason: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(file_error("certificate", cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(file_error("certificate", cert_path))?;
    if certs.is_empty() {
        return Err(TlsError::File {
            what: "certificate",
            path: cert_path.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(file_error("private key", key_path))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| TlsError::Pair(e.to_string()))
}

impl Tls {
    /// Loads a PEM certificate chain and private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let resolver = Arc::new(Reloadable {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: RwLock::new(Arc::new(load_pair(cert, key)?)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            resolver,
        })
    }

    /// Reads the certificate and key files again; new handshakes use them, open connections
    /// keep theirs. On an error the certificate in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.resolver.cert_path, &self.resolver.key_path)?;
        let mut current = self
            .resolver
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(pair);
        Ok(())
    }
}

/// The body timeout ran out (the rejection becomes `408 request_timeout`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct Deadline<B> {
    body: B,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// for up to `limits.drain`. Each request carries `ConnectInfo<SocketAddr>` (the rate limits
/// key on it).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_read)
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, most likely: back off a moment.
                    tracing::warn!(%error, "accept failed");
                    sleep_until(Instant::now() + Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let started = Arc::new(Notify::new());
            let first = started.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                first.notify_one();
                let deadline = Instant::now() + limits.body;
                let mut req = req.map(|body| {
                    Body::new(Deadline {
                        body,
                        deadline,
                        timer: None,
                    })
                });
                req.extensions_mut().insert(ConnectInfo(addr));
                app.clone().oneshot(req)
            });
            let until = Instant::now() + limits.header_read;
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    run(watcher.watch(conn.into_owned()), &started, until).await;
                }
                Some(tls) => {
                    let acceptor = TlsAcceptor::from(tls.config.clone());
                    let Ok(Ok(stream)) =
                        tokio::time::timeout_at(until, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    run(watcher.watch(conn.into_owned()), &started, until).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish in time; closing them");
    }
}

/// Drives a connection, closing it if no request started by `until`.
async fn run<F: Future>(conn: F, started: &Notify, until: Instant) {
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => return,
        () = started.notified() => {}
        () = sleep_until(until) => return,
    }
    conn.await;
}
