//! Completions of events whose plugins never touched the database: marked
//! `done` in shared batches, on both backends, and only by the lease owner;
//! and every write of an attempt fenced by its claim.

use tokio::task::JoinSet;
use webhook_host::config::Secret;
use webhook_host::db::EventTx;
use webhook_host::db::grants::TableGrant;
use webhook_host::inbox::complete::Completer;
use webhook_host::inbox::{Finish, Inbox, NewEvent, Status, StoredPairs};

const PLUGIN: &str = "quiet";
const VERSION: &str = "v-batch";

fn finish<'a>(id: &'a str, owner: &'a str) -> Finish<'a> {
    Finish {
        event_id: id,
        owner,
        attempt: 1,
        plugin: PLUGIN,
        plugin_version: Some(VERSION),
    }
}

/// A due event of the "quiet" route.
fn quiet_event(delivery_id: String) -> NewEvent {
    NewEvent {
        route: "quiet".into(),
        delivery_id,
        received_at_ms: 0,
        due_at_ms: 0,
        headers: StoredPairs::empty(),
        query: StoredPairs::empty(),
        body: b"{}".to_vec(),
        request_id: None,
        order_key: None,
    }
}

/// An inbox on a fresh database of the shared PostgreSQL.
async fn postgres_inbox() -> Inbox {
    let url = crate::services::postgres::shared().create_database().await;
    Inbox::connect_postgres(&Secret::new(url), 8, true).await.unwrap()
}

/// An inbox on SQLite in `dir`.
async fn sqlite_inbox(dir: &tempfile::TempDir) -> Inbox {
    Inbox::open_sqlite(dir.path(), 4).await.unwrap()
}

/// 60 claimed events: 57 completed concurrently through the completer, one
/// by a stranger to its lease (refused), one through `complete` with a
/// transaction nobody began, one by the direct batch call with its owner.
async fn batched_completions_respect_leases(inbox: Inbox) {
    let stored = inbox
        .insert_batch((0..60).map(|i| quiet_event(format!("quiet-{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(stored.len(), 60);
    let claimed = inbox.claim("owner-a", 100, 60_000).await.unwrap();
    assert_eq!(claimed.len(), 60);
    let ids: Vec<String> = claimed.iter().map(|e| e.id.clone()).collect();

    let completer = Completer::spawn(inbox.clone());
    let mut tasks = JoinSet::new();
    for id in &ids[..57] {
        let (id, completer) = (id.clone(), completer.clone());
        tasks.spawn(async move { completer.complete(finish(&id, "owner-a")).await.unwrap() });
    }
    let stranger = completer.complete(finish(&ids[57], "owner-b")).await.unwrap();
    assert!(
        !stranger,
        "an instance that does not hold the lease must not finish the event"
    );
    while let Some(marked) = tasks.join_next().await {
        assert!(marked.unwrap(), "the lease owner's completion is marked");
    }

    let tables: &'static TableGrant = Box::leak(Box::default());
    let untouched = EventTx::new(inbox.db(), Some("no_such_role"), tables);
    assert!(
        !untouched.touched(),
        "a transaction no statement began is untouched"
    );
    assert!(
        inbox
            .complete(untouched, finish(&ids[58], "owner-a"), None)
            .await
            .unwrap()
    );
    let direct = inbox
        .complete_untouched(&[finish(&ids[59], "owner-a"), finish(&ids[59], "owner-a")])
        .await
        .unwrap();
    assert_eq!(
        direct,
        vec![true, false],
        "the second mark finds the event done already"
    );

    for (i, id) in ids.iter().enumerate() {
        let event = inbox.get(id).await.unwrap().unwrap();
        if i == 57 {
            assert_eq!(event.status, Status::Processing);
            assert_eq!(event.lease_owner.as_deref(), Some("owner-a"));
        } else {
            assert_eq!(event.status, Status::Done, "{id}");
            assert_eq!(event.plugin.as_deref(), Some(PLUGIN));
            assert_eq!(event.plugin_version.as_deref(), Some(VERSION));
            assert!(event.lease_owner.is_none() && event.finished_at_ms.is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_completions_on_postgres() {
    batched_completions_respect_leases(postgres_inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_completions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    batched_completions_respect_leases(sqlite_inbox(&dir).await).await;
}

/// Claims are fenced by attempt, not only by instance: an attempt whose
/// lease expired and was claimed again, by the same instance even, can
/// neither finish, fail, nor renew the event; the new attempt can, and the
/// takeover says why the old one ended.
async fn a_stale_attempt_changes_nothing(inbox: Inbox) {
    let stored = inbox
        .insert_batch(vec![quiet_event("fenced".into())])
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let first = inbox.claim("owner-a", 1, 1).await.unwrap().pop().unwrap();
    assert_eq!(first.attempts, 1);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = inbox.claim("owner-a", 1, 60_000).await.unwrap().pop().unwrap();
    assert_eq!((second.id.as_str(), second.attempts), (first.id.as_str(), 2));
    let why = second.last_error.clone().unwrap();
    assert!(
        why.contains("attempt 1 ended without a result") && why.contains("owner-a"),
        "{why}"
    );

    let stale = Finish {
        attempt: 1,
        ..finish(&first.id, "owner-a")
    };
    assert!(!inbox.extend_lease(&first.id, "owner-a", 1, 60_000).await.unwrap());
    inbox.fail(stale, "a stale failure", Some(0)).await.unwrap();
    assert_eq!(inbox.complete_untouched(&[stale]).await.unwrap(), vec![false]);
    let event = inbox.get(&first.id).await.unwrap().unwrap();
    assert_eq!(
        event.status,
        Status::Processing,
        "the stale failure changed nothing"
    );
    assert_eq!(event.last_error.as_deref(), Some(why.as_str()));

    assert!(inbox.extend_lease(&first.id, "owner-a", 2, 60_000).await.unwrap());
    let current = Finish {
        attempt: 2,
        ..finish(&first.id, "owner-a")
    };
    assert_eq!(inbox.complete_untouched(&[current]).await.unwrap(), vec![true]);
    let event = inbox.get(&first.id).await.unwrap().unwrap();
    assert_eq!((event.status, event.attempts), (Status::Done, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_changes_nothing_on_postgres() {
    a_stale_attempt_changes_nothing(postgres_inbox().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_changes_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_stale_attempt_changes_nothing(sqlite_inbox(&dir).await).await;
}
