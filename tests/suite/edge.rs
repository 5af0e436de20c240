//! The HTTP edge under hostile clients and overload: each limit answers with
//! its status, is counted, and never costs a delivery that was accepted.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Signer, TestHost};
use crate::observability::{sample, scrape};

const LIMITS: &str = r#"
[http]
header_limit_bytes = 8192
max_headers = 40
header_timeout_ms = 700
body_timeout_ms = 700
idle_timeout_ms = 3000
max_connections = 12
"#;

/// Sends `bytes` on a fresh connection and reads the answer until the host
/// closes it (or 10 s pass).
async fn raw(host: &TestHost, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(host.addr(0)).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

fn rejections(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        "webhook_http_rejections_total",
        &[&format!("reason=\"{reason}\"")],
    )
    .unwrap_or(0.0)
}

/// A normal signed delivery still goes through (the host is not worn down).
async fn still_serves(host: &TestHost) {
    let id = uuid::Uuid::now_v7().to_string();
    let body = format!(r#"{{"mode":"ok","request_id":"{id}"}}"#);
    let (status, answer) = host
        .post("/hooks/misbehave", body.as_bytes(), Signer::fal(&id))
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn oversized_heads_get_431_and_malformed_ones_400() {
    let host = TestHost::spawn_with(LIMITS, &[]).await;
    let big = format!(
        "POST /hooks/misbehave HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let answer = raw(&host, big.as_bytes()).await;
    assert_eq!(status_of(&answer), "431", "{answer}");

    let many: String = (0..60).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = raw(
        &host,
        format!("POST /hooks/misbehave HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), "431", "{answer}");

    let answer = raw(
        &host,
        b"POST /hooks/misbehave HTTP/1.1\r\nbad header line\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), "400", "{answer}");

    still_serves(&host).await;
    let metrics = scrape(&host).await;
    assert_eq!(rejections(&metrics, "head_431"), 2.0);
    assert_eq!(rejections(&metrics, "head_400"), 1.0);
}

/// Slowloris: a head trickled a byte at a time gets 408 and the close, a
/// silent connection is closed, and neither blocks anyone else.
#[tokio::test]
async fn slow_heads_get_408_and_silent_connections_are_closed() {
    let host = TestHost::spawn_with(LIMITS, &[]).await;
    let mut slow = TcpStream::connect(host.addr(0)).await.unwrap();
    let silent = TcpStream::connect(host.addr(0)).await.unwrap();
    let started = Instant::now();
    let head = b"POST /hooks/misbehave HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
    let mut answer = String::new();
    for byte in head.iter().cycle().take(200) {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Others are served while the slow client dribbles.
        if started.elapsed() < Duration::from_millis(300) {
            still_serves(&host).await;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if n == 0 || answer.contains("}") {
                break;
            }
        }
    }
    answer.push_str(&read_to_close(&mut slow).await);
    let waited = started.elapsed();
    assert_eq!(status_of(&answer), "408", "{answer}");
    assert!(answer.contains("header_timeout"), "{answer}");
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");

    // The silent one was closed too (read gives end of stream).
    let mut silent = silent;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the silent connection is closed by the host")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is said to a connection that never spoke");

    still_serves(&host).await;
    assert_eq!(rejections(&scrape(&host).await, "header_timeout"), 1.0);
}

/// A body that stops arriving gets 408 and nothing is stored.
#[tokio::test]
async fn slow_bodies_get_408() {
    let host = TestHost::spawn_with(LIMITS, &[]).await;
    let id = "slow-body";
    let body = br#"{"mode":"ok","request_id":"slow-body"}"#;
    let mut head = format!(
        "POST /hooks/misbehave HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in Signer::fal(id).headers(body) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(host.addr(0)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(status_of(&answer), "408", "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 0);
    still_serves(&host).await;
    assert_eq!(rejections(&scrape(&host).await, "body_timeout"), 1.0);
}

/// Past the connection cap a new connection gets 503 with `Retry-After`;
/// when one closes, the next is served again.
#[tokio::test]
async fn connections_over_the_cap_get_503() {
    let host = TestHost::spawn_with(LIMITS, &[]).await;
    let mut held = Vec::new();
    for _ in 0..12 {
        let mut stream = TcpStream::connect(host.addr(0)).await.unwrap();
        // A complete request keeps each connection open and counted.
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let answer = raw(&host, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(status_of(&answer), "503", "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("connection_limit"), "{answer}");

    held.pop();
    // The host notices the close; then there is room again.
    let mut served = false;
    for _ in 0..50 {
        if status_of(
            &raw(
                &host,
                b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await,
        ) == "200"
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a freed slot is used again");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rejections(&scrape(&host).await, "connection_limit") >= 1.0);
}

/// JSON nested deeper than `json_max_depth` (64) is refused with 400 and a
/// reason, after the signature (a stranger cannot make the host parse); the
/// depth a FAL body has (a few levels) passes.
#[tokio::test]
async fn deeply_nested_json_gets_400() {
    let host = TestHost::spawn_with(LIMITS, &[]).await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let (status, answer) = host
        .post("/hooks/misbehave", deep.as_bytes(), Signer::fal("deep"))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_json");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 64 levels"),
        "{answer}"
    );
    still_serves(&host).await;
}

/// When commits stall (another writer holds the SQLite database), requests
/// time out with 503 and `Retry-After`, new ones are turned away at once
/// while the stall lasts, and every delivery that was answered 200 — or
/// retried after a 503 — ends stored exactly once.
#[tokio::test]
async fn stalled_commits_answer_503_quickly_and_lose_nothing() {
    let config = format!("{LIMITS}request_timeout_ms = 1500\nmax_commit_ms = 1000\n");
    let host = TestHost::spawn_with(&config, &[]).await;
    still_serves(&host).await;
    let file = host.dir.path().join("data-0/webhooks.db");
    let blocker = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let mut lock = blocker.begin().await.unwrap();
    sqlx::query("DELETE FROM webhook_events WHERE 0")
        .execute(&mut *lock)
        .await
        .unwrap();

    let post = |i: usize| {
        let id = format!("stall-{i}");
        let body = format!(r#"{{"mode":"ok","request_id":"{id}"}}"#);
        let host = &host;
        async move {
            let sent = Instant::now();
            let (status, answer) = host
                .post("/hooks/misbehave", body.as_bytes(), Signer::fal(&id))
                .await;
            (status, answer, sent.elapsed())
        }
    };
    let (status, answer, took) = post(0).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "request_timeout");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The stalled commit is now older than max_commit_ms: turned away at once.
    let (status, answer, took) = post(1).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "overloaded");
    assert!(took < Duration::from_millis(500), "answered in {took:?}");

    lock.rollback().await.unwrap();
    blocker.close().await;
    // The sender retries both; each is stored once.
    let mut stored = false;
    for _ in 0..100 {
        let (a, _, _) = post(0).await;
        let (b, _, _) = post(1).await;
        if a == 200 && b == 200 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "the host accepts again once commits are fast");
    for id in ["stall-0", "stall-1"] {
        let n = host
            .count(&format!(
                "SELECT COUNT(*) FROM webhook_events WHERE delivery_id = '{id}'"
            ))
            .await;
        assert_eq!(n, 1, "{id} stored exactly once");
    }
    let metrics = scrape(&host).await;
    assert!(rejections(&metrics, "request_timeout") >= 1.0);
    assert!(rejections(&metrics, "overloaded") >= 1.0);
}
