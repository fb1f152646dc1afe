//! `atomserve --healthcheck URL`: a one-request HTTP/1.1 client for container health checks.
//!
//! The runtime image is distroless — no shell, no curl, no wget — so Docker's `HEALTHCHECK` runs
//! the server binary itself in this mode: `GET` the URL (normally the admin `/healthz`), exit 0
//! on a `200`, 1 on anything else (another status, a refused connection, 2 s without an answer).
//! Only `http://host[:port]/path` is understood; that is all a probe of localhost needs.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long each step (connect, send, receive) may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Probes `url`; `Ok` with the status line on a 200, else why not.
pub fn probe(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let target = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: atomserve-healthcheck\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("sending: {e}"))?;
    // The status line is all we need; read until its end (or 1 KiB).
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("receiving: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("").trim().to_string();
    match line.split(' ').nth(1) {
        Some("200") => Ok(line),
        _ if line.is_empty() => Err("no response".into()),
        _ => Err(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_it_cannot_probe() {
        assert!(probe("https://127.0.0.1/healthz").is_err());
        assert!(probe("127.0.0.1:9464/healthz").is_err());
    }
}
