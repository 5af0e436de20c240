//! Completions of events whose plugins never touched the database: marked
//! `done` in shared batches, on both backends, and only by the lease owner.

use tokio::task::JoinSet;
use webhook_host::config::Secret;
use webhook_host::db::EventTx;
use webhook_host::db::grants::TableGrant;
use webhook_host::inbox::complete::Completer;
use webhook_host::inbox::{Finish, Inbox, NewEvent, Status};

const PLUGIN: &str = "quiet";
const VERSION: &str = "v-batch";

fn finish<'a>(id: &'a str, owner: &'a str) -> Finish<'a> {
    Finish {
        event_id: id,
        owner,
        plugin: PLUGIN,
        plugin_version: Some(VERSION),
    }
}

/// 60 claimed events: 57 completed concurrently through the completer, one
/// by a stranger to its lease (refused), one through `complete` with a
/// transaction nobody began, one by the direct batch call with its owner.
async fn batched_completions_respect_leases(inbox: Inbox) {
    let stored = inbox
        .insert_batch(
            (0..60)
                .map(|i| NewEvent {
                    route: "quiet".into(),
                    delivery_id: format!("quiet-{i}"),
                    received_at_ms: 0,
                    due_at_ms: 0,
                    headers: vec![],
                    query: vec![],
                    body: b"{}".to_vec(),
                    request_id: None,
                })
                .collect(),
        )
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
            .complete(untouched, finish(&ids[58], "owner-a"))
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
    let url = crate::services::postgres::shared().create_database().await;
    let inbox = Inbox::connect_postgres(&Secret::new(url), 8, true).await.unwrap();
    batched_completions_respect_leases(inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_completions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open_sqlite(dir.path(), 4).await.unwrap();
    batched_completions_respect_leases(inbox).await;
}
