//! The HTTP/1.1 side of the Kubo RPC API on hyper: a capped number of connections, deadlines on
//! the request head and body, a bounded body, the guard's refusals, and Kubo's response headers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::call::Call;
use super::commands::Api;
use super::guard::{Asked, Policy, Refusal};
use super::multipart::MAX_UPLOAD_BYTES;
use super::{Failure, Reply, wire};
use crate::control::Handler;

/// Concurrent connections. The `ipfs` CLI opens one per command and a station's scripts run a
/// few at once; a client stuck in its request head holds a slot for at most [`HEAD_TIMEOUT`].
const MAX_CONNECTIONS: usize = 128;
/// A local client sends its request head at once; one that dribbles it (slowloris) is cut.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send the request body: the served commands take their arguments in the URL.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body of a command that takes no upload (their arguments are in the URL).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Time to send an upload: 64 MiB from a local client takes well under a second.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// The commands whose body is an upload.
const UPLOADS: &[&str] = &["add", "key/import"];
/// How long open answers (a running `ping`) may go on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The path prefix of every command.
const API_PREFIX: &str = "/api/v0/";
/// Headers go-ipfs-cmds exposes to browsers.
const EXPOSED: &str = "X-Stream-Output, X-Chunked-Output, X-Content-Length";

type Body = BoxBody<Bytes, Infallible>;

/// Accept connections until `shutdown`; each is one task on `tracker`.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    api: Arc<Api<H>>,
    policy: Policy,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let policy = Arc::new(policy);
    let stop = shutdown.clone();
    crate::relay::http::accept_loop(
        listener,
        MAX_CONNECTIONS,
        "Kubo RPC API",
        shutdown,
        tracker,
        move |socket, _| {
            let (api, policy, stop) = (api.clone(), policy.clone(), stop.clone());
            async move {
                connection(socket, api, policy, stop).await;
                Ok(())
            }
        },
    )
    .await;
}

async fn connection<H: Handler>(
    socket: tokio::net::TcpStream,
    api: Arc<Api<H>>,
    policy: Arc<Policy>,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request| {
        let (api, policy) = (api.clone(), policy.clone());
        async move { Ok::<_, Infallible>(respond(&api, &policy, request).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(TokioIo::new(socket), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("Kubo RPC API connection: {e}");
            }
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

/// One request: the guard, the body, the call, the answer.
async fn respond<H: Handler>(
    api: &Api<H>,
    policy: &Policy,
    request: Request<Incoming>,
) -> Response<Body> {
    let header =
        |name: header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    let asked = Asked {
        method: request.method().as_str(),
        path: request.uri().path(),
        origin: header(header::ORIGIN),
        referer: header(header::REFERER),
        user_agent: header(header::USER_AGENT),
        authorization: header(header::AUTHORIZATION),
    };
    match policy.check(&asked) {
        Err(refusal) => {
            tracing::warn!(path = %asked.path, "Kubo RPC API refused a request: {}", refusal.body());
            return refused(&refusal);
        }
        Ok(true) => return allow(empty(StatusCode::NO_CONTENT)),
        Ok(false) => {}
    }
    let Some(command) = request.uri().path().strip_prefix(API_PREFIX) else {
        return plain(StatusCode::NOT_FOUND, "404 page not found");
    };
    let mut call = Call::parse(command, request.uri().query());
    call.content_type = header(header::CONTENT_TYPE).map(String::from);
    let (bound, timeout) = match UPLOADS.contains(&call.command.as_str()) {
        true => (MAX_UPLOAD_BYTES, UPLOAD_TIMEOUT),
        false => (MAX_BODY_BYTES, BODY_TIMEOUT),
    };
    let declared = header(header::CONTENT_LENGTH).and_then(|n| n.parse::<u64>().ok());
    if declared.is_some_and(|n| n > bound as u64) {
        // Refused before a byte is read: the client learns at once, nothing is buffered.
        let message =
            format!("request body refused: length limit exceeded (at most {bound} bytes)");
        return failure(&Failure::client(message), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = Limited::new(request.into_body(), bound).collect();
    match tokio::time::timeout(timeout, body).await {
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            );
        }
        Ok(Err(e)) => {
            let message = format!("request body refused: {e} (at most {bound} bytes)");
            return failure(&Failure::client(message), StatusCode::PAYLOAD_TOO_LARGE);
        }
        Ok(Ok(collected)) => call.body = collected.to_bytes(),
    }
    match api.run(&call).await {
        Ok(reply) => answer(reply),
        Err(f) => failure(
            &f,
            StatusCode::from_u16(f.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        ),
    }
}

fn answer(reply: Reply) -> Response<Body> {
    let (mut content_type, mut raw) = ("application/json", false);
    let (body, chunked) = match reply {
        Reply::Json(bytes) => (Full::new(Bytes::from(bytes)).boxed(), false),
        Reply::Empty => (Full::new(Bytes::new()).boxed(), true),
        Reply::Ndjson(bytes) => (Full::new(Bytes::from(bytes)).boxed(), true),
        Reply::Lines(receiver) => (frames(receiver), true),
        Reply::Raw {
            content_type: kind,
            chunks,
        } => {
            (content_type, raw) = (kind, true);
            (frames(chunks), false)
        }
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if raw {
        headers.insert("X-Stream-Output", header::HeaderValue::from_static("1"));
    }
    headers.insert(
        "Trailer",
        header::HeaderValue::from_static("X-Stream-Error"),
    );
    headers.insert(
        "Access-Control-Allow-Headers",
        header::HeaderValue::from_static(EXPOSED),
    );
    headers.insert(
        "Access-Control-Expose-Headers",
        header::HeaderValue::from_static(EXPOSED),
    );
    if chunked {
        headers.insert("X-Chunked-Output", header::HeaderValue::from_static("1"));
    }
    with_server(response)
}

/// A body sent as its chunks come.
fn frames(receiver: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Body {
    let frames = futures::stream::unfold(receiver, |mut r| async move {
        let chunk = r.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), r))
    });
    StreamBody::new(frames).boxed()
}

/// go-ipfs-cmds' JSON error body with its status.
fn failure(f: &Failure, status: StatusCode) -> Response<Body> {
    let body = wire::ErrorBody {
        message: &f.message,
        code: f.code as u8,
        kind: "error",
    };
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    with_server(response)
}

fn refused(refusal: &Refusal) -> Response<Body> {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
    let response = plain(status, refusal.body());
    if *refusal == Refusal::Method {
        allow(response)
    } else {
        response
    }
}

/// Go's `http.Error`: the text and a newline, as text/plain.
fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        "X-Content-Type-Options",
        header::HeaderValue::from_static("nosniff"),
    );
    with_server(response)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = status;
    with_server(response)
}

fn allow(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_static("OPTIONS, POST"),
    );
    response
}

fn with_server(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::SERVER,
        header::HeaderValue::from_static(crate::node::swarm::AGENT_VERSION),
    );
    response
}
