//! Effects that survive a partial failure: fal-avatar-status's completion
//! commits first, and its Telegram notice and photo clean-up run after it
//! as follow-ups, each a stored event with its own retries; a Telegram
//! outage or a SIGKILL in between delays the notice and never doubles it.
//! On both backends (PostgreSQL with S3 and Redis, and embedded).

use std::time::{Duration, Instant};

use crate::capabilities::{replay, telegram_id};
use crate::harness::{Backend, Options, TestHost};
use crate::remote;
use crate::services::production_env;

async fn host_on(backend: Backend) -> TestHost {
    match backend {
        Backend::Sqlite => TestHost::spawn_with("", &[("ADMIN_TOKEN", "admin-test-token")]).await,
        Backend::Postgres => {
            let (env, _bucket) = production_env("admin-test-token");
            TestHost::spawn_pg_with(&env).await
        }
    }
}

/// An avatar in training for `request_id` with three training photos
/// (upload orders 3, 1, 2); its id and its user's chat id.
async fn avatar_with_photos(host: &TestHost, request_id: &str) -> (String, String) {
    let avatar = host.seed_avatar(request_id).await;
    let id = match host.backend {
        Backend::Sqlite => "lower(hex(randomblob(16)))",
        Backend::Postgres => "gen_random_uuid()",
    };
    for (n, order) in [(1, 3), (2, 1), (3, 2)] {
        host.execute(&format!(
            "INSERT INTO avatar_photos (id, avatar_id, user_id, minio_key, upload_order) \
             SELECT {id}, a.id, a.user_id, 'avatars/{avatar}/photos/{n}.jpg', {order} FROM avatars a \
             WHERE CAST(a.id AS TEXT) = '{avatar}'"
        ))
        .await;
    }
    let chat = telegram_id(host, &avatar).await;
    (avatar, chat)
}

/// The follow-ups `parent` queued: (task, status, attempts), by task.
async fn followups_of(host: &TestHost, parent: &str) -> Vec<(String, String, i64)> {
    host.texts(&format!(
        "SELECT task || ' ' || status || ' ' || CAST(attempts AS TEXT) FROM webhook_events \
         WHERE parent_id = '{parent}' ORDER BY task"
    ))
    .await
    .into_iter()
    .map(|row| {
        let parts: Vec<&str> = row.split(' ').collect();
        (parts[0].into(), parts[1].into(), parts[2].parse().unwrap())
    })
    .collect()
}

async fn photos_left(host: &TestHost, avatar: &str) -> Vec<String> {
    host.texts(&format!(
        "SELECT minio_key FROM avatar_photos WHERE CAST(avatar_id AS TEXT) = '{avatar}'"
    ))
    .await
}

/// Telegram answers 429 (retry after 1 s), then 503, then works: the
/// avatar is completed by the first attempt, its photos go once that has
/// committed, and exactly one notice arrives, on the notice's third try.
async fn a_telegram_outage_delays_only_the_notice(backend: Backend) {
    let host = host_on(backend).await;
    let remote = remote::shared();
    let request_id = format!("effects-outage-{}", uuid::Uuid::now_v7().simple());
    let (avatar, chat) = avatar_with_photos(&host, &request_id).await;
    remote.fail_notices(&chat, 2);

    let (status, answer) = host
        .post_fal(&remote.fixture("ok-portrait.json", &request_id))
        .await;
    assert_eq!(status, 200, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_string();
    let parent = host.wait_for(&event_id, "done").await;
    assert_eq!(
        parent.attempts, 1,
        "the completion does not wait for Telegram: {parent:?}"
    );
    assert_eq!(host.avatar(&avatar).await.status, "completed");

    host.wait_until_all_done().await;
    assert_eq!(
        followups_of(&host, &event_id).await,
        [
            ("notice".to_string(), "done".to_string(), 3),
            ("photo-cleanup".to_string(), "done".to_string(), 1),
        ]
    );
    assert_eq!(remote.notice_calls(&chat), 3, "429, 503, then delivered");
    assert_eq!(remote.notices_to(&chat).len(), 1, "exactly one notice");
    assert_eq!(
        photos_left(&host, &avatar).await,
        [format!("avatars/{avatar}/photos/2.jpg")],
        "only the first photo by upload order is kept"
    );

    // The same completion again, as a redelivery with a new id would bring
    // it (an operator's replay): nothing new is queued, no second notice.
    replay(&host, &event_id).await;
    host.wait_until_all_done().await;
    assert_eq!(followups_of(&host, &event_id).await.len(), 2);
    assert_eq!(remote.notices_to(&chat).len(), 1, "still one notice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_telegram_outage_delays_only_the_notice_on_postgres() {
    a_telegram_outage_delays_only_the_notice(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_telegram_outage_delays_only_the_notice_embedded() {
    a_telegram_outage_delays_only_the_notice(Backend::Sqlite).await;
}

/// SIGKILL while the notice is on its way (Telegram hangs on the first
/// call), after the avatar's commit: after a restart the notice follow-up
/// runs again and exactly one notice arrives.
async fn a_sigkill_between_the_completion_and_the_notice_sends_one_notice(backend: Backend) {
    let mut host = host_on(backend).await;
    let remote = remote::shared();
    let request_id = format!("effects-kill-{}", uuid::Uuid::now_v7().simple());
    let (avatar, chat) = avatar_with_photos(&host, &request_id).await;
    remote.stall_notices(&chat, 1, Duration::from_secs(30));

    let (_, answer) = host
        .post_fal(&remote.fixture("ok-portrait.json", &request_id))
        .await;
    let event_id = answer["event_id"].as_str().unwrap().to_string();
    host.wait_for(&event_id, "done").await;
    let started = Instant::now();
    while remote.notice_calls(&chat) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the notice never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.kill();
    assert_eq!(host.avatar(&avatar).await.status, "completed");
    assert!(
        remote.notices_to(&chat).is_empty(),
        "nothing delivered before the kill"
    );

    host.restart();
    host.wait_until_all_done().await;
    assert_eq!(
        remote.notices_to(&chat).len(),
        1,
        "exactly one notice after the restart"
    );
    let notice = followups_of(&host, &event_id).await.remove(0);
    assert_eq!((notice.0.as_str(), notice.2), ("notice", 2), "{notice:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_between_the_completion_and_the_notice_sends_one_notice_on_postgres() {
    a_sigkill_between_the_completion_and_the_notice_sends_one_notice(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_between_the_completion_and_the_notice_sends_one_notice_embedded() {
    a_sigkill_between_the_completion_and_the_notice_sends_one_notice(Backend::Sqlite).await;
}

/// FAL calls before the bot has stored the request id: the event waits
/// (a few short retries, the plugin's own retry-after) and applies once the
/// avatar row appears, instead of ending `done` with no effect.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_before_its_avatar_row_applies_once_the_row_exists() {
    let host = TestHost::start_with(Options {
        // Room for the plugin's four tries.
        config_edits: &[("max_attempts = 3", "max_attempts = 6")],
        manifest_edits: &[(
            "fal-avatar-status",
            r#"unknown_request_retry_ms = "15000""#,
            r#"unknown_request_retry_ms = "300""#,
        )],
        ..Default::default()
    })
    .await;
    let remote = remote::shared();
    let (_, answer) = host
        .post_fal(&remote.fixture("legacy-progress.json", "effects-early"))
        .await;
    let event_id = answer["event_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    while host.event(&event_id).await.unwrap().attempts < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "no retry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let avatar = host.seed_avatar("effects-early").await;
    let done = host.wait_for(&event_id, "done").await;
    assert!(done.attempts >= 2, "{done:?}");
    assert_eq!(host.avatar(&avatar).await.status, "training");
    assert_eq!(
        host.avatar(&avatar).await.training_progress,
        42,
        "the report was applied"
    );

    // An id that never appears: a few retries, then done with nothing changed.
    let (_, answer) = host
        .post_fal(&remote.fixture("legacy-progress.json", "effects-never"))
        .await;
    let never = host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(
        never.attempts, 4,
        "the plugin's unknown_request_attempts: {never:?}"
    );
}

/// PostgreSQL ends any transaction idle for 2 s, and sixteen completions
/// at once each copy a LoRA that takes 5 s to arrive. Reads before the
/// first write run outside the event's transaction, so every completion
/// commits on its first attempt; plugins' statements have a pool of their
/// own, so intake answers 200 all the while.
#[tokio::test(flavor = "multi_thread")]
async fn slow_copies_hold_no_transaction_and_leave_intake_its_connections() {
    let mut host = TestHost::start_with(Options {
        backend: Backend::Postgres,
        config_edits: &[("concurrency = 4", "concurrency = 16")],
        ..Default::default()
    })
    .await;
    host.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = ''2s''', \
         current_database()); END $$",
    )
    .await;
    host.kill();
    host.restart(); // its new sessions carry the timeout
    let remote = remote::shared();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut avatars = Vec::new();
    for i in 0..16 {
        let request_id = format!("slow-{i}-{run}");
        let avatar = host.seed_avatar(&request_id).await;
        let mut body: serde_json::Value =
            serde_json::from_slice(&remote.fixture("ok-portrait.json", &request_id)).unwrap();
        body["payload"]["diffusers_lora_file"]["url"] = format!(
            "{}/slow/{request_id}/pytorch_lora_weights.safetensors?secs=5",
            remote.url
        )
        .into();
        let (status, answer) = host.post_fal(&serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(status, 200, "{answer}");
        avatars.push(avatar);
    }
    // While the copies run, deliveries keep being stored (post_mode_as
    // asserts each 200).
    let started = Instant::now();
    let mut stored = 0;
    while started.elapsed() < Duration::from_secs(6) {
        host.post_mode_as(0, "ok", &format!("during-{stored}-{run}"))
            .await;
        stored += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.wait_until_all_done().await;
    for avatar in &avatars {
        assert_eq!(host.avatar(avatar).await.status, "completed");
    }
    let most = host
        .count(
            "SELECT MAX(CAST(attempts AS BIGINT)) FROM webhook_events \
             WHERE route = 'fal-avatar-status' AND parent_id IS NULL",
        )
        .await;
    assert_eq!(most, 1, "no completion was cut off by the idle timeout");
    assert!(stored > 20, "{stored} deliveries during the copies");
}
