//! A one-shot gRPC client over h2c (HTTP/2 with prior knowledge), for bench.py's checks of the
//! gRPC rows: it sends a body read from a file, as is, `--count` times on one connection, and
//! prints each answer in full, trailers included (Python's standard library has no HTTP/2
//! client, and the load generator, h2load, does not show trailers).
//!
//! Usage: `grpc-call --port PORT --path PATH --body FILE [--header 'name: value']… [--count N]`
//!
//! Output, per call:
//!
//! ```text
//! status 200
//! header content-type: application/grpc
//! body 0000000000
//! trailer grpc-status: 0
//! end
//! ```
//!
//! Header and trailer names are lower case; the body is hex. Exit status 1 on a transport error.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

struct Args {
    port: u16,
    path: String,
    body: String,
    headers: Vec<(String, String)>,
    count: usize,
}

fn args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut port, mut path, mut body, mut headers, mut count) = (None, None, None, vec![], 1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--path" => path = Some(value()?),
            "--body" => body = Some(value()?),
            "--header" => {
                let v = value()?;
                let (name, val) = v
                    .split_once(':')
                    .ok_or(format!("--header {v:?}: expected 'name: value'"))?;
                headers.push((name.trim().to_string(), val.trim().to_string()));
            }
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        port: port.ok_or("--port is required")?,
        path: path.ok_or("--path is required")?,
        body: body.ok_or("--body is required")?,
        headers,
        count,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let body = Bytes::from(std::fs::read(&args.body)?);
    let stream = TcpStream::connect(("127.0.0.1", args.port)).await?;
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    for _ in 0..args.count {
        let mut req = Request::post(format!("http://127.0.0.1:{}{}", args.port, args.path));
        for (name, value) in &args.headers {
            req = req.header(name, value);
        }
        let resp = sender
            .send_request(req.body(Full::new(body.clone()))?)
            .await?;
        println!("status {}", resp.status().as_u16());
        for (name, value) in resp.headers() {
            println!(
                "header {name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            );
        }
        let collected = resp.into_body().collect().await?;
        let trailers = collected.trailers().cloned();
        println!("body {}", hex(&collected.to_bytes()));
        for (name, value) in trailers.iter().flatten() {
            println!(
                "trailer {name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            );
        }
        println!("end");
    }
    Ok(())
}
