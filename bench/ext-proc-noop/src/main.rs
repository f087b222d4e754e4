//! A no-op Envoy external processor: every `ProcessingRequest` on a stream gets the matching
//! empty response (status CONTINUE, no mutation), immediately. Whatever an external-process
//! router decides, it cannot cost Envoy less than this.
//!
//! Usage: `ext-proc-noop [--port-file PATH]`. gRPC (HTTP/2, plaintext) on 127.0.0.1, a port the
//! kernel picks, written to PATH (and to stdout). One thread: the benchmark pins it beside the
//! load generator.

use std::pin::Pin;

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Msg;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Reply;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, HeadersResponse, ProcessingRequest, ProcessingResponse, TrailersResponse,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

struct Noop;

fn answer(req: ProcessingRequest) -> ProcessingResponse {
    let response = req.request.map(|m| match m {
        Msg::RequestHeaders(_) => Reply::RequestHeaders(HeadersResponse::default()),
        Msg::ResponseHeaders(_) => Reply::ResponseHeaders(HeadersResponse::default()),
        Msg::RequestBody(_) => Reply::RequestBody(BodyResponse::default()),
        Msg::ResponseBody(_) => Reply::ResponseBody(BodyResponse::default()),
        Msg::RequestTrailers(_) => Reply::RequestTrailers(TrailersResponse::default()),
        Msg::ResponseTrailers(_) => Reply::ResponseTrailers(TrailersResponse::default()),
    });
    ProcessingResponse {
        response,
        ..Default::default()
    }
}

type Answers = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Noop {
    type ProcessStream = Answers;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let answers = request.into_inner().map(|m| m.map(answer));
        Ok(Response::new(Box::pin(answers) as Answers))
    }
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    if let Some(path) = port_file {
        std::fs::write(path, format!("{port}\n"))?;
    }
    println!("listening on 127.0.0.1:{port}");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(ExternalProcessorServer::new(Noop))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
