//! A loopback server playing the remote side of fal-avatar-status: FAL's
//! file host and Telegram's Bot API. One per test process; tests tell their
//! traffic apart by path (files) and chat id (notices).
//!
//! - `GET /files/<any path>[?size=N]`: N bytes (default 70,000) derived from
//!   the path, so a test can recompute them with [`content`];
//! - `GET /missing/…`: 404;
//! - `GET /huge/…`: announces 2 GiB and sends a little;
//! - `GET /slow/<any path>?secs=S[&size=N]`: the same bytes, spread over S
//!   seconds;
//! - `POST /bot<token>/sendMessage`: records the call, answers `{"ok":true}`,
//!   unless the test set faults for the chat ([`Remote::fail_notices`],
//!   [`Remote::stall_notices`]);
//! - `POST /chat/<channel>`: records the body (a chat's incoming webhook);
//! - `POST /alarms/<channel>`: records the headers and the raw body (an
//!   operator's receiver of operational webhooks);
//! - `GET /queue/<app>/requests/<id>/status` and `…/requests/<id>`: FAL's
//!   queue API for the requests a test set with [`Remote::set_queue`]
//!   (404 for others), recording each call and its `Authorization`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One recorded `sendMessage` call.
#[derive(Debug, Clone)]
pub struct Notice {
    pub token: String,
    pub body: Value,
}

#[derive(Default)]
struct Recorded {
    notices: Vec<Notice>,
    /// Bodies posted to `/chat/<channel>`, by channel.
    chat: HashMap<String, Vec<Value>>,
    /// Requests posted to `/alarms/<channel>`, by channel.
    alarms: HashMap<String, Vec<Posted>>,
    /// GETs per file path.
    file_hits: HashMap<String, u64>,
    /// FAL queue requests by id: status, and the result's status and body.
    queue: HashMap<String, QueueEntry>,
    /// Queue API calls per request id, with the Authorization they carried.
    queue_calls: HashMap<String, Vec<String>>,
    /// `sendMessage` calls per chat id, answered or not.
    notice_calls: HashMap<String, u32>,
    /// Per chat id: how many first calls fail, and how many of those hang
    /// (for how long) before failing.
    notice_faults: HashMap<String, (u32, u32, std::time::Duration)>,
}

/// A request as it arrived: its headers (lowercase names) and raw body.
#[derive(Debug, Clone)]
pub struct Posted {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What FAL's queue says about one request.
#[derive(Clone)]
pub struct QueueEntry {
    /// `IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`; `OUTAGE` answers 503.
    pub status: String,
    pub result_status: u16,
    pub result: Value,
}

async fn queue(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (rest, wants_status) = match path.strip_suffix("/status") {
        Some(rest) => (rest, true),
        None => (path.as_str(), false),
    };
    let Some((_, id)) = rest.rsplit_once("/requests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut recorded = recorded.lock().unwrap();
    recorded.queue_calls.entry(id.to_string()).or_default().push(auth);
    let Some(entry) = recorded.queue.get(id).cloned() else {
        return (StatusCode::NOT_FOUND, r#"{"detail":"Request not found"}"#).into_response();
    };
    if entry.status == "OUTAGE" {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let (status, body) = if wants_status {
        (
            200,
            serde_json::json!({ "status": entry.status, "request_id": id }),
        )
    } else {
        (entry.result_status, entry.result)
    };
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub struct Remote {
    pub url: String,
    recorded: Arc<Mutex<Recorded>>,
}

/// The bytes `/files/<path>?size=<size>` serves.
pub fn content(path: &str, size: usize) -> Vec<u8> {
    let seed = Sha256::digest(path.as_bytes());
    seed.iter().copied().cycle().take(size).collect()
}

async fn file(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let size = query.get("size").and_then(|s| s.parse().ok()).unwrap_or(70_000);
    *recorded
        .lock()
        .unwrap()
        .file_hits
        .entry(path.clone())
        .or_default() += 1;
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        content(&path, size),
    )
        .into_response()
}

/// A file's bytes, announced and sent in 10 pieces over `secs` seconds.
async fn slow(Path(path): Path<String>, Query(query): Query<HashMap<String, String>>) -> Response {
    let size = query.get("size").and_then(|s| s.parse().ok()).unwrap_or(70_000);
    let secs: f64 = query.get("secs").and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let bytes = Bytes::from(content(&path, size));
    let pause = std::time::Duration::from_secs_f64(secs / 10.0);
    let piece = size.div_ceil(10).max(1);
    let chunks = futures_util::stream::iter(0..size.div_ceil(piece)).then(move |i| {
        let bytes = bytes.clone();
        async move {
            tokio::time::sleep(pause).await;
            Ok::<_, std::io::Error>(bytes.slice(i * piece..((i + 1) * piece).min(bytes.len())))
        }
    });
    Response::builder()
        .header(header::CONTENT_LENGTH, size.to_string())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(axum::body::Body::from_stream(chunks))
        .unwrap()
}

/// Two GiB, announced and (lazily) streamed, so the length is honest.
async fn huge() -> Response {
    let chunk = Bytes::from(vec![0u8; 1 << 20]);
    let chunks = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone())).take(2048);
    Response::builder()
        .header(header::CONTENT_LENGTH, (2u64 << 30).to_string())
        .body(axum::body::Body::from_stream(chunks))
        .unwrap()
}

async fn send_message(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(bot): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let chat_id = body["chat_id"].as_str().unwrap_or_default().to_string();
    let (call, (failing, stalling, stall)) = {
        let mut recorded = recorded.lock().unwrap();
        let calls = recorded.notice_calls.entry(chat_id.clone()).or_default();
        *calls += 1;
        let call = *calls;
        (
            call,
            recorded.notice_faults.get(&chat_id).copied().unwrap_or_default(),
        )
    };
    if call <= stalling {
        // A call that hangs (its sender may be killed meanwhile), then fails.
        tokio::time::sleep(stall).await;
    }
    if call <= failing {
        return match call {
            // Telegram's flood control says when to come back.
            1 => (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
            ),
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"ok":false,"error_code":503,"description":"Service Unavailable"}"#,
            ),
        }
        .into_response();
    }
    recorded.lock().unwrap().notices.push(Notice {
        token: bot.trim_start_matches("bot").to_string(),
        body,
    });
    (StatusCode::OK, r#"{"ok":true,"result":{}}"#).into_response()
}

async fn chat(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(channel): Path<String>,
    body: Bytes,
) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    recorded
        .lock()
        .unwrap()
        .chat
        .entry(channel)
        .or_default()
        .push(body);
    StatusCode::OK
}

async fn alarm(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(channel): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let posted = Posted {
        headers,
        body: body.to_vec(),
    };
    recorded
        .lock()
        .unwrap()
        .alarms
        .entry(channel)
        .or_default()
        .push(posted);
    StatusCode::OK
}

impl Remote {
    /// What was posted to `/alarms/<channel>`.
    #[allow(dead_code)]
    pub fn alarms(&self, channel: &str) -> Vec<Posted> {
        let recorded = self.recorded.lock().unwrap();
        recorded.alarms.get(channel).cloned().unwrap_or_default()
    }

    /// A FAL fixture body from `tests/fixtures/fal/`, with its request id
    /// replaced and its file URLs pointing at this server.
    #[allow(dead_code)]
    pub fn fixture(&self, name: &str, request_id: &str) -> Vec<u8> {
        let path = crate::workspace::workspace()
            .join("tests/fixtures/fal")
            .join(name);
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("https://v3.fal.media/", &format!("{}/", self.url));
        let mut body: Value = serde_json::from_str(&text).unwrap();
        body["request_id"] = request_id.into();
        serde_json::to_vec(&body).unwrap()
    }

    /// What was posted to `/chat/<channel>`.
    pub fn chat(&self, channel: &str) -> Vec<Value> {
        self.recorded
            .lock()
            .unwrap()
            .chat
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    fn start(host: &str) -> Remote {
        let listener = std::net::TcpListener::bind((host, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/files/{*path}", get(file))
            .route("/missing/{*path}", get(|| async { StatusCode::NOT_FOUND }))
            .route("/huge/{*path}", get(huge))
            // Accepts and never answers (a host call that blocks).
            .route(
                "/hang/{*path}",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                    StatusCode::OK
                }),
            )
            .route("/slow/{*path}", get(slow))
            .route("/{bot}/sendMessage", post(send_message))
            .route("/chat/{channel}", post(chat))
            .route("/alarms/{channel}", post(alarm))
            .route("/queue/{*path}", get(queue))
            .with_state(recorded.clone());
        let url = format!("http://{}", listener.local_addr().unwrap());
        serve_on_own_thread(listener, app);
        Remote { url, recorded }
    }

    /// Makes the first `calls` notices to `chat_id` fail: the first with
    /// 429 and `retry_after` 1, the others 503.
    #[allow(dead_code)]
    pub fn fail_notices(&self, chat_id: &str, calls: u32) {
        let faults = &mut self.recorded.lock().unwrap().notice_faults;
        faults.insert(chat_id.to_string(), (calls, 0, std::time::Duration::ZERO));
    }

    /// Makes the first `calls` notices to `chat_id` hang for `stall`, then
    /// fail as [`fail_notices`](Self::fail_notices)' do (nothing is
    /// delivered).
    #[allow(dead_code)]
    pub fn stall_notices(&self, chat_id: &str, calls: u32, stall: std::time::Duration) {
        let faults = &mut self.recorded.lock().unwrap().notice_faults;
        faults.insert(chat_id.to_string(), (calls, calls, stall));
    }

    /// `sendMessage` calls for `chat_id`, delivered or not.
    #[allow(dead_code)]
    pub fn notice_calls(&self, chat_id: &str) -> u32 {
        let recorded = self.recorded.lock().unwrap();
        recorded.notice_calls.get(chat_id).copied().unwrap_or_default()
    }

    /// Notices sent to `chat_id`.
    pub fn notices_to(&self, chat_id: &str) -> Vec<Notice> {
        self.recorded
            .lock()
            .unwrap()
            .notices
            .iter()
            .filter(|n| n.body["chat_id"] == chat_id)
            .cloned()
            .collect()
    }

    /// Sets what FAL's queue says about request `id`.
    pub fn set_queue(&self, id: &str, entry: QueueEntry) {
        self.recorded.lock().unwrap().queue.insert(id.to_string(), entry);
    }

    /// The `Authorization` of every queue API call about request `id`.
    pub fn queue_calls(&self, id: &str) -> Vec<String> {
        self.recorded
            .lock()
            .unwrap()
            .queue_calls
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// How often `/files/<path>` was fetched.
    pub fn file_hits(&self, path: &str) -> u64 {
        self.recorded
            .lock()
            .unwrap()
            .file_hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

/// Serves `app` from a thread and runtime of its own, so a test that blocks
/// (waiting for a child process) cannot starve it. The thread is named
/// [`THREAD`], so that a benchmark can tell its CPU from the host's.
pub fn serve_on_own_thread(listener: std::net::TcpListener, app: Router) {
    let thread = std::thread::Builder::new().name(THREAD.into());
    let spawned = thread.spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap()
        })
    });
    spawned.expect("starting the loopback server's thread");
}

/// The name of the loopback servers' threads.
pub const THREAD: &str = "loopback-server";

static SHARED: OnceLock<Remote> = OnceLock::new();

/// The process's remote server, on 127.0.0.1 unless [`shared_at`] put it
/// elsewhere first.
pub fn shared() -> &'static Remote {
    SHARED.get_or_init(|| Remote::start("127.0.0.1"))
}

/// The process's remote server, listening on `host` (a local address
/// containers reach); call it before anything asks for [`shared`].
#[allow(dead_code)]
pub fn shared_at(host: &str) -> &'static Remote {
    let remote = SHARED.get_or_init(|| Remote::start(host));
    assert!(
        remote.url.contains(host),
        "the remote already runs at {}",
        remote.url
    );
    remote
}
