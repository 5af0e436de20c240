//! What the console and every `/metrics` scrape read of the inbox, on both
//! backends: the counts per status and the last minute's traffic, exact
//! where an index bounds them; PostgreSQL's done count estimated once the
//! table is large; and the dead events listed and replayed, of one route
//! or all, through their own index.

use webhook_host::config::Secret;
use webhook_host::inbox::{DONE_COUNTED_BELOW, Filter, Finish, Inbox, NewEvent, Replay, Status, StoredPairs};

const OWNER: &str = "counts";

fn event(route: &str, n: usize, received_at_ms: i64) -> NewEvent {
    NewEvent {
        route: route.into(),
        delivery_id: format!("{route}-{n}"),
        received_at_ms,
        due_at_ms: 0,
        headers: StoredPairs::empty(),
        query: StoredPairs::empty(),
        body: b"{}".to_vec(),
        request_id: None,
        order_key: None,
    }
}

/// Stores `done`, `dead` and `pending` events of `route` (received now);
/// returns the ids of the dead ones.
async fn store(inbox: &Inbox, route: &str, done: usize, dead: usize, pending: usize) -> Vec<String> {
    let now = webhook_host::now_ms();
    let events = (0..done + dead).map(|n| event(route, n, now)).collect();
    let stored = inbox.insert_batch(events).await.unwrap();
    assert_eq!(stored.len(), done + dead);
    let claimed = inbox.claim(OWNER, done + dead, 60_000).await.unwrap();
    assert_eq!(claimed.len(), done + dead);
    let mut dead_ids = Vec::new();
    for (i, e) in claimed.iter().enumerate() {
        let finish = Finish {
            event_id: &e.id,
            owner: OWNER,
            attempt: e.attempts,
            plugin: route,
            plugin_version: None,
        };
        if i < done {
            assert!(inbox.complete_untouched(&[finish]).await.unwrap()[0]);
        } else {
            assert!(inbox.fail(finish, "gave up", None).await.unwrap());
            dead_ids.push(e.id.clone());
        }
    }
    // Pending ones wait an hour (retrying), so no claim takes them.
    let later = (0..pending)
        .map(|n| NewEvent {
            due_at_ms: now + 3_600_000,
            ..event(route, done + dead + n, now)
        })
        .collect();
    inbox.insert_batch(later).await.unwrap();
    dead_ids.sort();
    dead_ids
}

/// The ids `inbox.list` gives for `filter`, in its order.
async fn ids(inbox: &Inbox, filter: Filter<'_>, limit: u32) -> Vec<String> {
    inbox
        .list(filter, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Every count exact on a small inbox; the newest dead listed newest
/// first, of one route or all; a route's dead replayed and no others.
async fn counts_list_and_replay(inbox: Inbox) {
    let old = webhook_host::now_ms() - 3_600_000;
    let stale = (0..3).map(|n| event("old", n, old)).collect();
    inbox.insert_batch(stale).await.unwrap();
    inbox.claim(OWNER, 10, 60_000).await.unwrap();
    let fal_dead = store(&inbox, "fal", 5, 4, 2).await;
    let rare_dead = store(&inbox, "rare", 1, 2, 0).await;

    let stats = inbox.stats(webhook_host::now_ms() - 60_000).await.unwrap();
    assert!(!stats.done_estimated, "a small inbox counts its done events");
    assert_eq!(stats.count(Status::Done), 6);
    assert_eq!(stats.count(Status::Dead), 6);
    assert_eq!(stats.count(Status::Pending), 2);
    assert_eq!(stats.count(Status::Processing), 3);
    assert_eq!(
        stats.received_since, 14,
        "the three received an hour ago are not this minute's"
    );
    assert_eq!(stats.done_since, 6);

    let dead = |route| Filter {
        status: Some(Status::Dead),
        route,
    };
    let listed = ids(&inbox, dead(None), 100).await;
    let mut all_dead = [fal_dead.clone(), rare_dead.clone()].concat();
    all_dead.sort();
    all_dead.reverse();
    assert_eq!(listed, all_dead, "every dead event, newest first");
    let newest = ids(&inbox, dead(None), 2).await;
    assert_eq!(newest, all_dead[..2]);
    let rare = ids(&inbox, dead(Some("rare")), 100).await;
    assert_eq!(rare, rare_dead.iter().rev().cloned().collect::<Vec<_>>());
    let by_route = inbox
        .list(
            Filter {
                status: None,
                route: Some("rare"),
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(by_route.len(), 3, "a route's events of every status");
    assert_eq!(inbox.list(Filter::default(), 100).await.unwrap().len(), 17);

    assert_eq!(
        inbox.replay(Replay::Dead { route: Some("rare") }).await.unwrap(),
        2
    );
    for id in &rare_dead {
        assert_eq!(inbox.get(id).await.unwrap().unwrap().status, Status::Pending);
    }
    let stats = inbox.stats(webhook_host::now_ms() - 60_000).await.unwrap();
    assert_eq!(stats.count(Status::Dead), 4, "the other route's dead stay dead");
    assert_eq!(inbox.replay(Replay::Dead { route: None }).await.unwrap(), 4);
    assert!(inbox.list(dead(None), 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn counts_lists_and_replays_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    counts_list_and_replay(Inbox::open_sqlite(dir.path(), 4).await.unwrap()).await;
}

#[tokio::test]
async fn counts_lists_and_replays_on_postgres() {
    let url = crate::services::postgres::shared().create_database().await;
    counts_list_and_replay(Inbox::connect_postgres(&Secret::new(url), 4, true).await.unwrap()).await;
}

/// Past [`DONE_COUNTED_BELOW`] rows PostgreSQL's done count is its own
/// estimate of the table less the exact other counts (said to be one); the
/// others stay exact.
#[tokio::test]
async fn a_large_inbox_estimates_its_done_count_on_postgres() {
    let url = crate::services::postgres::shared().create_database().await;
    let inbox = Inbox::connect_postgres(&Secret::new(&url), 4, true)
        .await
        .unwrap();
    store(&inbox, "fal", 0, 3, 2).await;
    let rows = DONE_COUNTED_BELOW + DONE_COUNTED_BELOW / 2;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO webhook_events (id, route, delivery_id, received_at, headers, query, body, status, \
             next_attempt_at, finished_at) \
         SELECT 'evt_' || lpad(to_hex(i), 32, '0'), 'bulk', 'd-' || i, 0, '[]', '[]', '', 'done', 0, 0 \
         FROM generate_series(1, $1) AS i",
    )
    .bind(rows)
    .execute(&admin)
    .await
    .unwrap();
    sqlx::raw_sql("ANALYZE webhook_events")
        .execute(&admin)
        .await
        .unwrap();

    let stats = inbox.stats(webhook_host::now_ms() - 60_000).await.unwrap();
    assert!(stats.done_estimated, "{rows} done rows are estimated");
    let done = stats.count(Status::Done);
    assert!(
        (done - rows).abs() < rows / 10,
        "the estimate {done} is within a tenth of {rows}"
    );
    assert_eq!(stats.count(Status::Dead), 3);
    assert_eq!(stats.count(Status::Pending), 2);
    assert_eq!(stats.done_since, 0, "the bulk finished long ago");
    assert_eq!(stats.received_since, 5);
}
