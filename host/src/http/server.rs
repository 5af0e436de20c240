//! The listening socket and the guards in front of the router, where a
//! hostile or broken client is stopped before it costs a handler anything:
//!
//! - a cap on open connections: one over it is answered 503 with
//!   `Retry-After` and closed;
//! - a request head larger than `header_limit_bytes` or with more than
//!   `max_headers` fields: 431 (hyper's own answer; 400 and 414 likewise for
//!   malformed heads and over-long URIs);
//! - a head that is not complete `header_timeout_ms` after its first byte
//!   (slowloris), or a new connection silent that long: 408 and closed;
//! - a kept-alive connection idle for `idle_timeout_ms`: closed;
//! - a request not answered within `request_timeout_ms`: 503 with
//!   `Retry-After`.
//!
//! Body read time is the intake handler's to bound, as it reads the body.
//! Every refusal is counted in `webhook_http_rejections_total`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::error::ApiError;
use crate::config::HttpSettings;
use crate::telemetry::count_rejection;

/// A complete answer written straight to the socket, outside hyper.
fn canned(status: &str, extra_headers: &str, error: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "status": "rejected", "error": error, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra_headers}connection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What a connection over the cap gets before it is closed.
static TOO_MANY_CONNECTIONS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        "503 Service Unavailable",
        "retry-after: 1\r\n",
        "connection_limit",
        "too many open connections; retry later",
    )
});

/// What a client too slow to send its request head gets before the close.
static HEAD_TIMEOUT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    canned(
        "408 Request Timeout",
        "",
        "header_timeout",
        "the request head came too slowly",
    )
});

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets open requests finish and returns once every connection
/// has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let limits = Limits::from(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset while queued:
                    // pause instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (router, closed) = (router.clone(), closed.clone());
                tokio::spawn(async move {
                    connection(stream, router, limits, closed).await;
                    drop(slot);
                });
            }
            Err(_) => {
                count_rejection("connection_limit");
                tokio::spawn(refuse(stream));
            }
        }
    }
    let _ = closing.send(true);
    // Each connection holds a slot until it closes.
    let _ = slots.acquire_many(settings.max_connections as u32).await;
    Ok(())
}

/// The limits one connection enforces.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_bytes: usize,
    max_headers: usize,
    head: Duration,
    idle: Duration,
    request: Duration,
}

impl From<&HttpSettings> for Limits {
    fn from(s: &HttpSettings) -> Self {
        Self {
            header_bytes: s.header_limit_bytes,
            max_headers: s.max_headers,
            head: Duration::from_millis(s.header_timeout_ms),
            idle: Duration::from_millis(s.idle_timeout_ms),
            request: Duration::from_millis(s.request_timeout_ms),
        }
    }
}

async fn connection(stream: TcpStream, router: Router, limits: Limits, mut closing: watch::Receiver<bool>) {
    let dispatched = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Guarded::new(stream, dispatched.clone(), limits));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        dispatched.fetch_add(1, Ordering::Relaxed);
        // A Router is always ready, so it is called without waiting.
        let mut router = router.clone();
        deadline(router.call(request.map(Body::new)), limits.request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(limits.header_bytes)
        .max_headers(limits.max_headers)
        .header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { drop(closing.wait_for(|closing| *closing).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended: {e}");
    }
}

/// Answers a connection over the cap and closes it.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(&TOO_MANY_CONNECTIONS).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// Answers 503 with `Retry-After` when the router takes longer than
/// `limit` to answer (the work under way is dropped with the future; an
/// intake commit already queued still completes, and a retry is a
/// duplicate). It wraps the router's future where hyper calls it, not
/// each route as a layer would, so a request pays for no boxed service.
async fn deadline(
    answer: impl Future<Output = Result<Response, Infallible>>,
    limit: Duration,
) -> Result<Response, Infallible> {
    match tokio::time::timeout(limit, answer).await {
        Ok(answer) => answer,
        Err(_) => {
            count_rejection("request_timeout");
            tracing::warn!("request not answered within {} ms", limit.as_millis());
            Ok(ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request_timeout",
                    format!("the request took over {} ms; retry later", limit.as_millis()),
                )
            }
            .into_response())
        }
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's first byte (the timer: `head` on a new
    /// connection, `idle` after an answer).
    Idle,
    /// A head has started and is not complete (the timer: `head`).
    Head,
    /// A request is with the router (no timer: the body and request limits
    /// apply).
    Busy,
}

/// The socket as hyper sees it, timing the request heads: hyper tells
/// nothing about a head in progress, but every byte passes through here and
/// the service counts each head it is handed (`dispatched`).
struct Guarded {
    inner: TcpStream,
    dispatched: Arc<AtomicU64>,
    seen: u64,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    limits: Limits,
    expired: bool,
}

impl Guarded {
    fn new(inner: TcpStream, dispatched: Arc<AtomicU64>, limits: Limits) -> Self {
        Self {
            inner,
            dispatched,
            seen: 0,
            phase: Phase::Idle,
            timer: Box::pin(tokio::time::sleep(limits.head)),
            limits,
            expired: false,
        }
    }

    /// Moves to `Busy` when the service took a new request.
    fn sync(&mut self) {
        let dispatched = self.dispatched.load(Ordering::Relaxed);
        if dispatched != self.seen {
            self.seen = dispatched;
            self.phase = Phase::Busy;
        }
    }

    fn enter(&mut self, phase: Phase, limit: Duration) {
        self.phase = phase;
        self.timer.as_mut().reset(Instant::now() + limit);
    }
}

impl AsyncRead for Guarded {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.sync();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.phase == Phase::Idle {
                    this.enter(Phase::Head, this.limits.head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.phase == Phase::Busy => Poll::Pending,
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.expired = true;
                if this.phase == Phase::Head {
                    count_rejection("header_timeout");
                    // Best effort: a client this slow may not read either.
                    let _ = Pin::new(&mut this.inner).poll_write(cx, &HEAD_TIMEOUT);
                }
                // The end of the stream: hyper closes the connection.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sync();
        match this.phase {
            // An answer with no request handed over: hyper refusing a head.
            Phase::Head => {
                count_rejection(match data.get(9..12) {
                    Some(b"400") => "head_400",
                    Some(b"414") => "head_414",
                    Some(b"431") => "head_431",
                    _ => "head_other",
                });
                this.enter(Phase::Idle, this.limits.idle);
            }
            Phase::Busy => this.enter(Phase::Idle, this.limits.idle),
            Phase::Idle => {}
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sync();
        if this.phase != Phase::Idle {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            if this.phase == Phase::Head {
                return Pin::new(this).poll_write(cx, first);
            }
            this.enter(Phase::Idle, this.limits.idle);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
