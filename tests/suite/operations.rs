//! Operating the inbox: replay (CLI and admin API) and retention.

use crate::harness::{Backend, Options, TestHost};

/// An event that died because of something outside it (a missing table) is
/// replayed by the CLI once the cause is fixed, and is then applied once.
#[tokio::test]
async fn a_dead_event_replayed_from_the_cli_runs_again() {
    let host = TestHost::spawn().await;
    host.execute("DROP TABLE plugin_effects").await;
    let event = host.post_mode("effect").await;
    let dead = host.wait_for(&event, "dead").await;
    assert!(dead.last_error.unwrap().contains("plugin_effects"));
    host.execute("CREATE TABLE plugin_effects (event_id TEXT NOT NULL)")
        .await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .args(["events", "replay", "--dead", "--route", "misbehave"])
        .env_clear()
        .env("DATA_DIR", host.dir.path().join("data-0"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("replayed 1 event"));
    let done = host.wait_for(&event, "done").await;
    assert_eq!(done.attempts, 1, "a replay starts from the first attempt");
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);
}

/// The admin API needs its bearer token, lists and shows events, and replays
/// one event or all dead ones; without `ADMIN_TOKEN` it does not exist.
#[tokio::test]
async fn the_admin_api_is_guarded_and_replays() {
    let token = "admin-token-for-tests";
    let host = TestHost::start_with(Options {
        backend: Backend::Postgres,
        extra_env: &[("ADMIN_TOKEN", token)],
        ..Options::default()
    })
    .await;
    let get = |path: &str, bearer: Option<&str>| {
        let mut request = host.http.get(host.url(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    assert_eq!(
        get("/admin/v1/events", None).await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        get("/admin/v1/events", Some("wrong"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );

    host.execute("REVOKE INSERT ON plugin_effects FROM misbehave_plugin")
        .await;
    let event = host.post_mode("effect").await;
    host.wait_for(&event, "dead").await;
    let listed: serde_json::Value = get("/admin/v1/events?status=dead", Some(token))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(listed["events"][0]["id"], event.as_str());
    let shown: serde_json::Value = get(&format!("/admin/v1/events/{event}"), Some(token))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shown["body"], r#"{"mode":"effect"}"#);

    host.execute("GRANT INSERT ON plugin_effects TO misbehave_plugin")
        .await;
    let replay = host
        .http
        .post(host.url("/admin/v1/events/replay?status=dead&route=misbehave"))
        .bearer_auth(token);
    let answer: serde_json::Value = replay
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(answer["replayed"], 1);
    host.wait_for(&event, "done").await;
    let again = host
        .http
        .post(host.url(&format!("/admin/v1/events/{event}/replay")))
        .bearer_auth(token);
    assert_eq!(again.send().await.unwrap().status().as_u16(), 200);
    host.wait_for(&event, "done").await;
    assert_eq!(
        host.count("SELECT COUNT(*) FROM plugin_effects").await,
        2,
        "a replayed done event runs again"
    );

    let plain = TestHost::spawn().await;
    let response = plain
        .http
        .get(plain.url("/admin/v1/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404, "no ADMIN_TOKEN, no admin API");
}

/// Done events are deleted after the retention age; dead ones are kept.
#[tokio::test]
async fn retention_prunes_done_events_and_keeps_dead_ones() {
    let config = "[retention]\ndone_after_ms = 300\nsweep_interval_ms = 100\n";
    let host = TestHost::spawn_with(config, &[]).await;
    let done = host.post_mode("ok").await;
    let dead = host.post_mode("invalid").await;
    host.wait_for(&dead, "dead").await;
    let started = std::time::Instant::now();
    while host.event(&done).await.is_some() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the done event was never pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(host.event(&dead).await.unwrap().status, "dead");
}
