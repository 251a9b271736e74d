//! `candor serve` with TLS from outside: it announces https, serves the certificate in
//! `[server] tls_cert`, serves a new one after the files change and it gets SIGHUP, and marks
//! the privacy center's session cookie `Secure`.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use support::candor;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Writes a `localhost` certificate signed by a fresh CA; returns (CA, certificate).
fn issue(dir: &Path) -> (CertificateDer<'static>, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    (ca.der().clone(), leaf.der().clone())
}

/// The certificate the server presents to a client that trusts `ca` (`None`: handshake
/// failed).
/// A TLS connection to the server, trusting `ca`.
async fn connect(
    addr: &str,
    ca: &CertificateDer<'static>,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .ok()
}

/// The certificate the server presents.
async fn presented(addr: &str, ca: &CertificateDer<'static>) -> Option<CertificateDer<'static>> {
    let stream = connect(addr, ca).await?;
    stream.get_ref().1.peer_certificates().map(|c| c[0].clone())
}

/// One HTTP/1.1 request over TLS; the whole response, headers and body.
async fn https(addr: &str, ca: &CertificateDer<'static>, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect(addr, ca).await.expect("TLS connects");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn serve_speaks_tls_and_reloads_the_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, leaf1) = issue(dir.path());
    let data = dir.path().join("data");
    let mut cmd = candor();
    cmd.env("CANDOR__SERVER__TLS_CERT", dir.path().join("cert.pem"))
        .env("CANDOR__SERVER__TLS_KEY", dir.path().join("key.pem"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    let (mut child, url) = support::start(cmd);
    let addr = url
        .strip_prefix("https://")
        .expect("TLS is announced")
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(presented(&addr, &ca1)), Some(leaf1));
    // Behind TLS the privacy center's cookie is Secure (and HttpOnly, SameSite=Strict).
    let key = support::create_key(data.to_str().unwrap(), None, "service");
    let opened = rt.block_on(https(
        &addr,
        &ca1,
        &format!(
            "POST /v1/subjects/tls-person/sessions HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        ),
    ));
    let body = opened.split("\r\n\r\n").nth(1).unwrap_or_default();
    let session: serde_json::Value = serde_json::from_str(body).expect(&opened);
    let token = session["token"].as_str().unwrap();
    let exchanged = rt.block_on(https(
        &addr,
        &ca1,
        &format!(
            "GET /privacy?session={token} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ),
    ));
    let cookie = exchanged
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {exchanged}"));
    for attribute in ["candor_session=", "HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let (ca2, leaf2) = issue(dir.path());
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let start = std::time::Instant::now();
    let mut served = None;
    while start.elapsed() < Duration::from_secs(10) {
        served = rt.block_on(presented(&addr, &ca2));
        if served.is_some() {
            break;
        }
        std::thread::yield_now();
    }
    assert_eq!(served, Some(leaf2), "the new certificate after SIGHUP");
    child.kill().unwrap();
    child.wait().unwrap();
}
