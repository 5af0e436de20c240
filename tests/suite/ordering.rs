//! Per-key ordering: on a route with an ordering key, events of one key run
//! one at a time in the order they were stored, on every instance, while
//! events of different keys run side by side; an event that retries holds
//! the later ones of its key back. Two instances on PostgreSQL, one on SQLite.

use std::collections::HashMap;
use std::sync::Arc;

use crate::harness::{Backend, Options, Signer, TestHost};

const ORDERED_ROUTE: &str = r#"
[[routes]]
name = "ordered"
plugin = "test-misbehave"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
retry_schedule = []
order_key = "/key"
"#;

/// One recorded run: its key, when it started and ended (ms), its event.
struct Span {
    key: String,
    start: u64,
    end: u64,
    event: String,
}

fn span_of(line: &str) -> Span {
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 5, "{line}");
    Span {
        key: parts[1].into(),
        start: parts[2].parse().unwrap(),
        end: parts[3].parse().unwrap(),
        event: parts[4].into(),
    }
}

/// The most spans running at one time.
fn most_at_once(spans: &[Span]) -> usize {
    let mut edges: Vec<(u64, i32)> = spans.iter().flat_map(|s| [(s.start, 1), (s.end, -1)]).collect();
    // An end before a start at the same millisecond: touching is not overlapping.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// `keys` keys with `per_key` events each, posted by one sender per key
/// (each waits for its 200 before the next), over the instances in turn;
/// every fifth key's fourth event fails its first attempt.
async fn keyed_events_run_in_line(backend: Backend, instances: usize, keys: usize, per_key: usize) {
    let host = Arc::new(
        TestHost::start_with(Options {
            backend,
            instances,
            extra_config: ORDERED_ROUTE,
            // Runs of 30 ms, but on SQLite a write may queue for the lock
            // behind many commits on 2 cores: ordering is tested, not limits.
            manifest_edits: &[("test-misbehave", "timeout_ms = 1000", "timeout_ms = 10000")],
            ..Options::default()
        })
        .await,
    );
    let started = std::time::Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for key in 0..keys {
        let host = host.clone();
        senders.spawn(async move {
            for seq in 0..per_key {
                let flaky = if key.is_multiple_of(5) && seq == 3 {
                    "1"
                } else {
                    "0"
                };
                let body = format!(r#"{{"mode":"span","key":"k{key}","ms":"30","flaky":"{flaky}"}}"#);
                let delivery = format!("ordered-{key}-{seq}");
                let headers = Signer::fal(&delivery).headers(body.as_bytes());
                let (status, answer) = host
                    .post_on(
                        (key + seq) % instances,
                        "/hooks/ordered",
                        body.as_bytes(),
                        &headers,
                    )
                    .await;
                assert_eq!(status, 200, "{answer}");
            }
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.unwrap();
    }
    host.wait_until_all_done().await;
    let elapsed = started.elapsed();

    let spans: Vec<Span> = host
        .texts("SELECT event_id FROM plugin_effects WHERE event_id LIKE 'span %'")
        .await
        .iter()
        .map(String::as_str)
        .map(span_of)
        .collect();
    assert_eq!(spans.len(), keys * per_key, "one effect per event");
    let by_event: HashMap<&str, &Span> = spans.iter().map(|s| (s.event.as_str(), s)).collect();
    assert_eq!(by_event.len(), spans.len(), "no event ran twice");
    // The stored order: by arrival, then id (the order the claim follows).
    let stored = host
        .texts(
            "SELECT id || ' ' || order_key || ' ' || CAST(attempts AS TEXT) || ' ' || delivery_id \
             FROM webhook_events WHERE route = 'ordered' ORDER BY received_at, id",
        )
        .await;
    let mut lines: HashMap<String, Vec<&Span>> = HashMap::new();
    let mut flaky_retried = 0;
    for row in &stored {
        let parts: Vec<&str> = row.split(' ').collect();
        let span = by_event[parts[0]];
        assert_eq!(span.key, parts[1], "the stored key is the body's");
        lines.entry(span.key.clone()).or_default().push(span);
        // Delivery `ordered-<key>-<seq>`: the fourth of every fifth key is flaky.
        let numbers: Vec<usize> = parts[3].rsplit('-').take(2).map(|n| n.parse().unwrap()).collect();
        if numbers[1].is_multiple_of(5) && numbers[0] == 3 {
            let attempts: u32 = parts[2].parse().unwrap();
            assert!(attempts >= 2, "{row}: the flaky event was retried");
            flaky_retried += 1;
        }
    }
    assert_eq!(flaky_retried, keys.div_ceil(5));
    assert_eq!(lines.len(), keys);
    for (key, line) in &lines {
        for pair in line.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "key {key}: {} ({}..{}) overlaps or follows {} ({}..{})",
                pair[1].event,
                pair[1].start,
                pair[1].end,
                pair[0].event,
                pair[0].start,
                pair[0].end
            );
        }
    }
    let most = most_at_once(&spans);
    eprintln!(
        "ordering ({instances} instance(s)): {} events on {keys} keys in {elapsed:.1?}, \
         at most {most} at once",
        spans.len()
    );
    assert!(most > 1, "events of different keys ran side by side");
}

#[tokio::test]
async fn keyed_events_run_in_line_across_two_postgres_instances() {
    keyed_events_run_in_line(Backend::Postgres, 2, 20, 10).await;
}

#[tokio::test]
async fn keyed_events_run_in_line_on_sqlite() {
    keyed_events_run_in_line(Backend::Sqlite, 1, 10, 10).await;
}
