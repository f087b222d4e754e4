//! The benchmark's upstream model server stand-in: HTTP/1.1 on 127.0.0.1, one thread (the
//! benchmark pins it to the load generator's core), keep-alive, no logging. Every request's body
//! is read to the end (so a connection can be reused after a POST) and answered with
//! `200 {"ok":true}` and a quality the bandits learn from: `x-reward: 0` for a request the router
//! sent to the `chat-canary` cluster (its `x-inference-cluster`), `x-reward: 1` otherwise.
//!
//! On a second port it speaks h2c (HTTP/2 with prior knowledge, as Envoy's HTTP/2 clusters do)
//! and answers any gRPC call OK: `200`, `content-type: application/grpc`, one empty message
//! (`00 00 00 00 00`), trailers `grpc-status: 0`, once it has read the request to its end. A call
//! whose body is not exactly one uncompressed length-prefixed message, or whose content-type is
//! not gRPC, is answered `grpc-status: 3` and logged (`bad gRPC call: …`, the first 20), which
//! bench.py checks the log for: the gRPC rows' load generator cannot see trailers.
//!
//! Usage: `bench-upstream [--port-file PATH] [--grpc-port-file PATH]`. Listens on ports the
//! kernel picks and writes them to the PATHs (and to stdout).

use std::cell::Cell;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// A gRPC answer's body: one empty message, then the trailers with `grpc-status`.
struct GrpcAnswer {
    /// 0: the message is next, 1: the trailers, 2: done.
    next: u8,
    status: &'static str,
}

const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

impl Body for GrpcAnswer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.next {
            0 => Frame::data(Bytes::from_static(EMPTY_MESSAGE)),
            1 => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static(self.status));
                Frame::trailers(trailers)
            }
            _ => return Poll::Ready(None),
        };
        self.next += 1;
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= 2
    }
}

thread_local! {
    static BAD_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Why a request is not one well-formed unary gRPC call (`None`: it is).
fn malformed(content_type: Option<&HeaderValue>, body: &[u8]) -> Option<String> {
    if !content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")) {
        return Some(format!("content-type {content_type:?}"));
    }
    let Some((head, message)) = body.split_first_chunk::<5>() else {
        return Some(format!("{} bytes of body, no gRPC prefix", body.len()));
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if head[0] != 0 || len != message.len() {
        return Some(format!(
            "prefix flag {} length {len}, {} bytes of message",
            head[0],
            message.len()
        ));
    }
    None
}

async fn answer_grpc(req: Request<Incoming>) -> Result<Response<GrpcAnswer>, Infallible> {
    let content_type = req.headers().get(hyper::header::CONTENT_TYPE).cloned();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            // The client went away (a load generator stopping mid-call): nobody to answer.
            return Ok(grpc_response(match e.is_canceled() {
                true => "1",
                false => "13",
            }));
        }
    };
    let status = match malformed(content_type.as_ref(), &body) {
        None => "0",
        Some(why) => {
            let n = BAD_CALLS.with(|c| {
                c.set(c.get() + 1);
                c.get()
            });
            if n <= 20 {
                eprintln!("bad gRPC call: {path}: {why}");
            }
            "3"
        }
    };
    Ok(grpc_response(status))
}

fn grpc_response(status: &'static str) -> Response<GrpcAnswer> {
    let mut resp = Response::new(GrpcAnswer { next: 0, status });
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

struct Args {
    port_file: Option<String>,
    grpc_port_file: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        port_file: None,
        grpc_port_file: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port-file" => out.port_file = Some(args.next().ok_or("--port-file needs a path")?),
            "--grpc-port-file" => {
                out.grpc_port_file = Some(args.next().ok_or("--grpc-port-file needs a path")?)
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

async fn serve_http1(listener: TcpListener) -> std::io::Result<()> {
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

async fn serve_h2c(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(1024)
                .serve_connection(TokioIo::new(stream), service_fn(answer_grpc))
                .await;
        });
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
    let grpc_port = grpc_listener.local_addr()?.port();
    // The port files last: bench.py reads a port as soon as its file exists.
    println!("listening on 127.0.0.1:{port} (HTTP/1.1) and 127.0.0.1:{grpc_port} (h2c, gRPC)");
    if let Some(path) = args.grpc_port_file {
        std::fs::write(path, format!("{grpc_port}\n"))?;
    }
    if let Some(path) = args.port_file {
        std::fs::write(path, format!("{port}\n"))?;
    }
    tokio::try_join!(serve_http1(listener), serve_h2c(grpc_listener))?;
    Ok(())
}
