//! Production mode: hosts sharing one real PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use crate::harness::{TestHost, fixture};

/// The FAL plugin completes an avatar on PostgreSQL, running as its role.
#[tokio::test]
async fn ok_body_completes_the_avatar_on_postgres() {
    let host = TestHost::spawn_pg(1).await;
    let avatar = host.seed_avatar("pg-ok").await;
    let (status, answer) = host.post_fal(&fixture("ok-portrait.json", "pg-ok")).await;
    assert_eq!(status, 200, "{answer}");
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let row = host.avatar(&avatar).await;
    assert_eq!((row.status.as_str(), row.training_progress), ("completed", 100));
    assert!(
        row.diffusers_lora_file_url
            .unwrap()
            .ends_with("pytorch_lora_weights.safetensors")
    );
    assert!(row.training_completed_at.is_some());
    assert!(row.fal_response_data.unwrap().contains("config_file"));
    // The plugin's read of the avatar ran in a read-only transaction of its
    // own, rolled back as its connection went back to the pool: no
    // connection of the host is left inside a transaction.
    let in_transaction = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                          AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while host.count(in_transaction).await > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        host.count(in_transaction).await,
        0,
        "a host connection stayed in a transaction"
    );
    // A repeat is a duplicate; an ERROR for the same avatar later is ignored (it completed).
    let (_, again) = host.post_fal(&fixture("ok-portrait.json", "pg-ok")).await;
    assert_eq!(again["status"], "duplicate");
}

/// Two instances, 2,000 deliveries (30 % repeated ids) sent concurrently to
/// both: every distinct delivery applied exactly once, nothing left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_apply_every_delivery_exactly_once() {
    let host = Arc::new(TestHost::spawn_pg(2).await);
    let distinct = 1400;
    let mut deliveries: Vec<String> = (0..distinct).map(|i| format!("d-{i}")).collect();
    deliveries.extend((0..600).map(|i| format!("d-{}", (i * 7) % distinct)));
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, chunk) in deliveries.chunks(100).enumerate() {
        let host = host.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for (n, id) in chunk.iter().enumerate() {
                host.post_mode_as((worker + n) % 2, "effect", id).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    host.wait_until_all_done().await;
    assert_eq!(
        host.count("SELECT COUNT(*) FROM webhook_events").await,
        distinct as i64
    );
    let effects = host.texts("SELECT event_id FROM plugin_effects").await;
    assert_eq!(effects.len(), distinct, "one effect per distinct delivery");
    assert_eq!(
        effects.iter().collect::<HashSet<_>>().len(),
        distinct,
        "no event applied twice"
    );
    assert!(
        host.log_of(0).contains("event done") && host.log_of(1).contains("event done"),
        "both instances worked"
    );
}

#[tokio::test]
async fn a_hostile_plugin_stays_inside_its_database_grant_on_postgres() {
    crate::isolation::hostile_plugin_stays_inside_its_grant(TestHost::spawn_pg(1).await, "permission denied")
        .await;
}

/// `webhook-host migrate` run twice at the same time on a fresh database:
/// both succeed (the advisory lock serialises them).
#[tokio::test]
async fn migrations_applied_concurrently_do_not_fail() {
    let server = crate::services::postgres::shared();
    let url = server.create_database().await;
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (migrate(), migrate());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_name IN ('webhook_events', 'plugins', 'plugin_versions')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(tables, 3, "the inbox and the plugin store");
    db.close().await;
    crate::services::postgres::drop_database(server.bin(), server.port, url.rsplit('/').next().unwrap());
}

/// SIGKILL one instance while it processes, five rounds: the other takes
/// over its leased events after the lease expires; nothing lost, nothing
/// applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_instance_under_load_loses_nothing_and_repeats_nothing() {
    let mut host = TestHost::spawn_pg(2).await;
    let mut sent = 0;
    for round in 0..5 {
        for n in 0..40 {
            let mode = if n % 4 == 0 { "slow" } else { "effect" };
            host.post_mode_as(n % 2, mode, &format!("r{round}-{n}")).await;
            sent += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        host.kill_instance(0);
        host.restart_instance(0);
    }
    host.wait_until_all_done().await;
    let effects = host.texts("SELECT event_id FROM plugin_effects").await;
    assert_eq!(effects.len(), sent);
    assert_eq!(effects.iter().collect::<HashSet<_>>().len(), sent);
}

/// PostgreSQL stopped mid-run: `/health` and webhooks answer 503 (never a
/// 200 without a commit); when it returns, the host reconnects by itself and
/// processing resumes.
#[tokio::test]
async fn an_outage_of_postgres_is_503_and_then_heals() {
    let server = crate::services::postgres::PgServer::start();
    let host = TestHost::start_with(crate::harness::Options {
        backend: crate::harness::Backend::Postgres,
        pg: Some(&server),
        ..Default::default()
    })
    .await;
    let before = host.post_mode("effect").await;
    host.wait_for(&before, "done").await;

    server.stop();
    let health = host.http.get(host.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let body = br#"{"mode":"effect"}"#;
    let headers = crate::harness::Signer::fal("during-outage").headers(body);
    let (status, answer) = host.post_with("/hooks/misbehave", body, &headers).await;
    assert_eq!(status, 503, "{answer}");

    server.resume();
    let started = std::time::Instant::now();
    let answer = loop {
        let (status, answer) = host.post_with("/hooks/misbehave", body, &headers).await;
        if status == 200 {
            break answer;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "the host never reconnected: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let health = host.http.get(host.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_a_delivery_make_one_event_on_postgres() {
    crate::intake::concurrent_copies_make_one_event(TestHost::spawn_pg(1).await).await;
}
