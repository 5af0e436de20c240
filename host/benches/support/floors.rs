//! The campaign's floors: what intake costs with nothing but the work it
//! cannot do without, measured in the same run as the host, so that the
//! host is judged by ratios that hold from machine to machine.
//!
//! - The HTTP floor: an axum handler doing FAL's HMAC check (SHA-256 of the
//!   body, the HMAC of the canonical message, a constant-time compare, the
//!   timestamp's window) and a JSON validation of the body, storing nothing.
//! - The storage floor: the rows the host stored in a run, written again
//!   into a freshly migrated database (same table, same indexes, same
//!   sizes) without HTTP, by one task (the host has one intake writer), in
//!   the very batch sizes the host's commits had. Read back from the host's
//!   table: the rows one transaction inserted share their `xmin`.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aws_lc_rs::{digest, hmac};
use axum::http::{HeaderMap, StatusCode};
use sqlx::{Connection, PgConnection, Row};
use subtle::ConstantTimeEq;

use super::host::cpu_secs_of_all;

static KEY: LazyLock<hmac::Key> =
    LazyLock::new(|| hmac::Key::new(hmac::HMAC_SHA256, super::loadgen::SECRET.as_bytes()));

/// FAL's HMAC check and a JSON validation, as the edge makes them.
fn check(headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or("missing header")
    };
    if !header("content-type")?.starts_with("application/json") {
        return Err("not json");
    }
    let id = header("x-fal-webhook-request-id")?;
    let user = header("x-fal-webhook-user-id")?;
    let timestamp = header("x-fal-webhook-timestamp")?;
    let signature = header("x-fal-webhook-signature")?;
    let at: i64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    if webhook_host::verify::unix_now().abs_diff(at) > 300 {
        return Err("stale");
    }
    let mut body_hex = [0u8; 64];
    hex::encode_to_slice(digest::digest(&digest::SHA256, body), &mut body_hex).unwrap();
    let mut mac = hmac::Context::with_key(&KEY);
    for part in [
        id.as_bytes(),
        b"\n",
        user.as_bytes(),
        b"\n",
        timestamp.as_bytes(),
        b"\n",
        &body_hex,
    ] {
        mac.update(part);
    }
    let mut given = [0u8; 32];
    hex::decode_to_slice(signature, &mut given).map_err(|_| "bad signature")?;
    if !bool::from(mac.sign().as_ref().ct_eq(&given)) {
        return Err("wrong signature");
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|_| "bad json")?;
    Ok(())
}

/// The name of the HTTP floor's runtime threads (its CPU is theirs).
pub const HTTP_THREADS: &str = "http-floor";

/// The HTTP floor on a 2-thread runtime of its own (the host's size).
pub fn http_server() -> SocketAddr {
    serve_fal_path(
        HTTP_THREADS,
        axum::routing::post(|headers: HeaderMap, body: axum::body::Bytes| async move {
            match check(&headers, &body) {
                Ok(()) => (StatusCode::OK, r#"{"status":"accepted"}"#),
                Err(why) => (StatusCode::UNAUTHORIZED, why),
            }
        }),
    )
}

/// Serves `handler` at FAL's webhook path on a loopback port, from a
/// 2-thread runtime whose threads are named `threads`.
pub fn serve_fal_path(threads: &'static str, handler: axum::routing::MethodRouter) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(threads)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let app = axum::Router::new().route("/api/v1/avatar/status_update", handler);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            })
    };
    std::thread::Builder::new()
        .name(threads.into())
        .spawn(serve)
        .unwrap();
    addr
}

/// One stored row, as the host wrote it.
pub struct Stored {
    route: String,
    delivery_id: String,
    received_at: i64,
    headers: String,
    query: String,
    body: Vec<u8>,
    next_attempt_at: i64,
    request_id: Option<String>,
}

/// The rows whose delivery id starts with `prefix`, grouped by the
/// transaction that inserted them, in the order the host committed them.
pub async fn host_batches(url: &str, prefix: &str) -> Vec<Vec<Stored>> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query(
        "SELECT xmin::text::bigint AS tx, route, delivery_id, received_at, headers, query, body, \
                next_attempt_at, request_id \
         FROM webhook_events WHERE starts_with(delivery_id, $1) ORDER BY tx, received_at",
    )
    .bind(prefix)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut batches: Vec<(i64, Vec<Stored>)> = Vec::new();
    for row in rows {
        let tx: i64 = row.get("tx");
        let stored = Stored {
            route: row.get("route"),
            delivery_id: row.get("delivery_id"),
            received_at: row.get("received_at"),
            headers: row.get("headers"),
            query: row.get("query"),
            body: row.get("body"),
            next_attempt_at: row.get("next_attempt_at"),
            request_id: row.get("request_id"),
        };
        match batches.last_mut() {
            Some((last, batch)) if *last == tx => batch.push(stored),
            _ => batches.push((tx, vec![stored])),
        }
    }
    // Transaction ids grow with time (no wraparound in a bench's life).
    batches.into_iter().map(|(_, batch)| batch).collect()
}

/// How the storage floor writes a batch.
#[derive(Clone, Copy)]
pub enum Write {
    /// The host's own statement: one `INSERT … SELECT FROM UNNEST(…) ON
    /// CONFLICT DO NOTHING RETURNING id` per batch (prepared once).
    HostInsert,
    /// `COPY … FROM STDIN` (text) per batch: no conflict handling at all.
    Copy,
}

/// What writing the batches cost.
pub struct Floor {
    pub rows: usize,
    pub elapsed: Duration,
    /// PostgreSQL's CPU seconds (all its processes).
    pub server_cpu: f64,
    /// This thread's CPU seconds (the client's share).
    pub client_cpu: f64,
}

/// Writes `batches` into the database at `url` (migrated by the host's
/// migrations first) from this one task, one transaction per batch.
pub async fn store(url: &str, batches: &[Vec<Stored>], write: Write) -> Floor {
    webhook_host::db::Db::connect_postgres(&webhook_host::config::secret::Secret::new(url), 2, true)
        .await
        .unwrap();
    let mut conn = PgConnection::connect(url).await.unwrap();
    let rows = batches.iter().map(Vec::len).sum();
    let (server_before, client_before) = (cpu_secs_of_all("postgres"), super::host::thread_cpu_secs());
    let started = Instant::now();
    for batch in batches {
        match write {
            Write::HostInsert => insert(&mut conn, batch).await,
            Write::Copy => copy(&mut conn, batch).await,
        }
    }
    Floor {
        rows,
        elapsed: started.elapsed(),
        server_cpu: cpu_secs_of_all("postgres") - server_before,
        client_cpu: super::host::thread_cpu_secs() - client_before,
    }
}

async fn insert(conn: &mut PgConnection, batch: &[Stored]) {
    let column = |f: &dyn Fn(&Stored) -> String| batch.iter().map(f).collect::<Vec<String>>();
    let stored: i64 = sqlx::query_scalar(webhook_host::inbox::INSERT_MANY_POSTGRES)
        .bind(column(&|_| webhook_host::inbox::new_event_id()))
        .bind(column(&|s| s.route.clone()))
        .bind(column(&|s| s.delivery_id.clone()))
        .bind(batch.iter().map(|s| s.received_at).collect::<Vec<i64>>())
        .bind(column(&|s| s.headers.clone()))
        .bind(column(&|s| s.query.clone()))
        .bind(batch.iter().map(|s| s.body.clone()).collect::<Vec<Vec<u8>>>())
        .bind(
            batch
                .iter()
                .map(|s| s.request_id.clone())
                .collect::<Vec<Option<String>>>(),
        )
        .bind(batch.iter().map(|s| s.next_attempt_at).collect::<Vec<i64>>())
        .bind(vec![None::<String>; batch.len()])
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(stored as usize, batch.len(), "the floor's rows are new");
}

/// One field of COPY's text format.
fn copy_text(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

async fn copy(conn: &mut PgConnection, batch: &[Stored]) {
    let mut data = Vec::with_capacity(batch.len() * 2048);
    for s in batch {
        let body = format!("\\x{}", hex::encode(&s.body));
        let fields = [
            webhook_host::inbox::new_event_id(),
            s.route.clone(),
            s.delivery_id.clone(),
            s.received_at.to_string(),
            s.headers.clone(),
            s.query.clone(),
            body,
            s.next_attempt_at.to_string(),
        ];
        for field in &fields {
            copy_text(&mut data, field);
            data.push(b'\t');
        }
        match &s.request_id {
            Some(id) => copy_text(&mut data, id),
            None => data.extend_from_slice(b"\\N"),
        }
        data.push(b'\n');
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY webhook_events (id, route, delivery_id, received_at, headers, query, body, \
             next_attempt_at, request_id) FROM STDIN",
        )
        .await
        .unwrap();
    copy.send(data).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), batch.len() as u64);
}
