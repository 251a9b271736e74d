//! What the CLI's test binaries share: the `candor` binary with a clean environment, starting
//! a server and reading the address it announces, one HTTP/1.1 request over a plain socket,
//! and minting a key through the CLI. Each binary uses
//! part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `candor` binary, without any `CANDOR_*` variable of the caller's environment.
pub fn candor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candor"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CANDOR_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Spawns a server command (`serve` or `demo` with `--listen 127.0.0.1:0`) and returns it with
/// the URL it announces on its `listening on URL` line; its stdout is drained from then on so
/// it never blocks on a full pipe.
pub fn start(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// One HTTP/1.1 request (with a bearer key if given, and a JSON body if given); `None` when
/// the connection fails (the server is gone).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some((status, body))
}

/// Mints a key with `candor keys create` for the data directory (and store, if given) and
/// returns it.
pub fn create_key(data: &str, store: Option<&str>, role: &str) -> String {
    let mut args = vec!["keys", "create", "--role", role, "--data-dir", data];
    if let Some(store) = store {
        args.extend(["--store", store]);
    }
    let out = candor().args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
