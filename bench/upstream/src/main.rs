//! The benchmark's upstream model server stand-in: HTTP/1.1 on 127.0.0.1, one thread (the
//! benchmark pins it to the load generator's core), keep-alive, no logging. Every request's body
//! is read to the end (so a connection can be reused after a POST) and answered with
//! `200 {"ok":true}` and a quality the bandits learn from: `x-reward: 0` for a request the router
//! sent to the `chat-canary` cluster (its `x-inference-cluster`), `x-reward: 1` otherwise.
//!
//! Usage: `bench-upstream [--port-file PATH]`. Listens on a port the kernel picks and writes it
//! to PATH (and to stdout).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const ANSWER: &[u8] = br#"{"ok":true}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let canary = req
        .headers()
        .get("x-inference-cluster")
        .is_some_and(|v| v.as_bytes() == b"chat-canary");
    // Drain the body: a request body left unread makes hyper close the connection.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from_static(ANSWER)));
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        "x-reward",
        hyper::header::HeaderValue::from_static(if canary { "0" } else { "1" }),
    );
    Ok(resp)
}

fn port_file() -> Result<Option<String>, String> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port-file" => out = Some(args.next().ok_or("--port-file needs a path")?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port_file = port_file()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    if let Some(path) = port_file {
        std::fs::write(path, format!("{port}\n"))?;
    }
    println!("listening on 127.0.0.1:{port}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
