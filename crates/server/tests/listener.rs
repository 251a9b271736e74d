//! The listener over real sockets: TLS with HTTP/2 and HTTP/1.1 by ALPN, certificate reload,
//! and the header and body timeouts that bound how long a slow client holds a connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candor_engine::{Actor, Engine, EngineConfig, Role};
use candor_server::listen::{Limits, Tls, serve};
use candor_server::{AppState, app};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A CA and a `localhost` certificate it signed, written as PEM files.
struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
}

fn issue(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    Pki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
    }
}

/// Serves the app on a free port; returns its address and an admin key.
async fn start(dir: &Path, tls: Option<Arc<Tls>>, limits: Limits) -> (String, String) {
    let engine = Arc::new(Engine::open(EngineConfig::for_data_dir(dir)).await.unwrap());
    let key = engine
        .create_api_key(&Actor::cli(), Role::Admin, "test", None)
        .await
        .unwrap()
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = app(AppState::new(engine, 1 << 20));
    tokio::spawn(serve(listener, router, tls, limits, std::future::pending()));
    (addr, key)
}

async fn handshake(
    addr: &str,
    ca: &CertificateDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn policy_request() -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get("https://localhost/v1/policy")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http2_and_http1_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = issue(dir.path());
    let tls = Arc::new(
        Tls::from_files(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap(),
    );
    let (addr, _) = start(dir.path(), Some(tls.clone()), Limits::default()).await;

    let stream = handshake(&addr, &first.ca, b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(policy_request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("purposes"));

    let stream = handshake(&addr, &first.ca, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(policy_request()).await.unwrap();
    assert_eq!(
        (response.status(), response.version()),
        (hyper::StatusCode::OK, hyper::Version::HTTP_11)
    );

    // A new certificate in the files is served after a reload; a broken file is refused
    // and the certificate in force stays.
    let stream = handshake(&addr, &first.ca, b"h2").await;
    assert_eq!(
        stream.get_ref().1.peer_certificates().unwrap()[0],
        first.leaf
    );
    let second = issue(dir.path());
    tls.reload().unwrap();
    let stream = handshake(&addr, &second.ca, b"h2").await;
    assert_eq!(
        stream.get_ref().1.peer_certificates().unwrap()[0],
        second.leaf
    );
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let refused = tls.reload().unwrap_err().to_string();
    assert!(refused.contains("private key"), "{refused}");
    assert!(!refused.contains("not a key"), "no key material in errors");
    let stream = handshake(&addr, &second.ca, b"h2").await;
    assert_eq!(
        stream.get_ref().1.peer_certificates().unwrap()[0],
        second.leaf
    );
    // A key that does not belong to the certificate is refused at load.
    let other = KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("key.pem"), other.serialize_pem()).unwrap();
    assert!(tls.reload().is_err());
}

/// Reads until the server closes the connection; the bytes it sent first.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        header_read: Duration::from_millis(500),
        body: Duration::from_millis(500),
        drain: Duration::from_secs(1),
    };
    let (addr, key) = start(dir.path(), None, limits).await;

    // Silent after connecting.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(
        until_closed(&mut silent).await.is_some(),
        "a silent client is closed"
    );

    // Headers that never end.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /v1/policy HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut slow).await.is_some(),
        "unfinished headers are closed"
    );

    // A body that never arrives in full: 408 with the code, and the connection closes.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"subject\":"
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut trickle)
        .await
        .expect("the server answers and closes");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");

    // A prompt client is served as usual.
    let mut prompt = TcpStream::connect(&addr).await.unwrap();
    prompt
        .write_all(b"GET /v1/policy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut prompt).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
