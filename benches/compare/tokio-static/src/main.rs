//! A minimal static-file server on tokio, written only to compare with atomserve (docs/rust.md,
//! "Why the serving path is not async"): what an async server does per request when it does
//! nothing else.
//!
//! tokio's multi-thread runtime (`TOKIO_WORKER_THREADS`, or `--workers N`), one task per
//! connection, `httparse` for the request head, a `HashMap` from path to a response rendered at
//! start (head and body in one buffer), one `write_all` per batch of pipelined requests. Left out
//! on purpose, and what atomserve does besides: methods (every request gets the GET answer, a
//! request body is not skipped), conditional requests, ranges, content coding, timeouts, limits
//! beyond a 16 KiB head, metrics, reloads.
//!
//! It takes atomserve's flags for what it has, so the same scripts start either
//! (`benches/load/ab.sh`): `tokio-static --root DIR --listen ADDR [--workers N] [--admin-listen X]`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Responses = HashMap<String, Vec<u8>>;

fn main() {
    let mut root = String::from("frontend/dist");
    let mut listen = String::from("127.0.0.1:8080");
    let mut workers = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--root" => root = value(),
            "--listen" => listen = value(),
            "--workers" => workers = Some(value().parse().unwrap_or_else(|_| fail("--workers: a number"))),
            "--admin-listen" => drop(value()), // atomserve's flag: nothing to administer here
            other => fail(&format!("unknown flag {other}")),
        }
    }
    let mut responses = Responses::new();
    load(Path::new(&root), "", &mut responses).unwrap_or_else(|e| fail(&format!("{root}: {e}")));
    if let Some(index) = responses.get("/index.html").cloned() {
        responses.insert("/".into(), index);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        runtime.worker_threads(n);
    }
    let runtime = runtime.enable_io().build().unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let files = responses.len();
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await.unwrap_or_else(|e| fail(&format!("{listen}: {e}")));
        eprintln!("tokio-static: {files} responses, listening on http://{}", listener.local_addr().unwrap());
        let responses = Arc::new(responses);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin on a listener that stays
                    // readable.
                    eprintln!("tokio-static: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, responses.clone()));
        }
    });
}

fn fail(why: &str) -> ! {
    eprintln!("tokio-static: {why}");
    std::process::exit(2)
}

/// Renders a response for every file under `dir`, keyed by its URL path.
fn load(dir: &Path, prefix: &str, out: &mut Responses) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        if entry.file_type()?.is_dir() {
            load(&entry.path(), &path, out)?;
            continue;
        }
        let body = std::fs::read(entry.path())?;
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nServer: tokio-static\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            content_type(&name),
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        out.insert(path, response);
    }
    Ok(())
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: tokio-static\r\nContent-Length: 0\r\n\r\n";
const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// One connection: read, answer every complete request in the buffer, write them in one go.
async fn serve(mut stream: TcpStream, responses: Arc<Responses>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let mut at = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[at..filled]) {
                Ok(httparse::Status::Complete(len)) => {
                    let path = req.path.unwrap_or("/");
                    let path = path.split('?').next().unwrap_or(path);
                    out.extend_from_slice(responses.get(path).map_or(NOT_FOUND, Vec::as_slice));
                    at += len;
                }
                Ok(httparse::Status::Partial) if filled - at < buf.len() => break,
                _ => {
                    // The answers to the requests before it, then the 400, then FIN.
                    out.extend_from_slice(BAD);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}
