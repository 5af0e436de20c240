//! Scheduled plugin runs: fal-avatar-status's reconciliation against a
//! loopback FAL queue API, and the host's guarantee that a schedule runs on
//! one instance at a time, backing off while it fails.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Backend, Options, TestHost, fixture};
use crate::remote::{self, QueueEntry};

const ADMIN: &str = "schedules-admin-token";

/// The fal-avatar-status manifest with a 1 s reconciliation that checks
/// avatars older than a minute, each at most once a second.
const FAST_RECONCILE: &[(&str, &str, &str)] = &[
    ("fal-avatar-status", "every_secs = 300", "every_secs = 1"),
    (
        "fal-avatar-status",
        r#"reconcile_after_secs = "1800""#,
        r#"reconcile_after_secs = "60""#,
    ),
    (
        "fal-avatar-status",
        r#"reconcile_recheck_secs = "600""#,
        r#"reconcile_recheck_secs = "1""#,
    ),
];

/// One embedded host with FAL's API key and the fast reconciliation.
async fn reconciling_host() -> TestHost {
    TestHost::start_with(Options {
        extra_env: &[("FAL_API_KEY", "test-fal-key"), ("ADMIN_TOKEN", ADMIN)],
        manifest_edits: FAST_RECONCILE,
        ..Options::default()
    })
    .await
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_json(host: &TestHost, i: usize, path: &str) -> Value {
    serde_json::from_str(&host.get_text(i, path, Some(ADMIN)).await).unwrap()
}

fn completed(id: &str, size: usize) -> QueueEntry {
    let url = &remote::shared().url;
    QueueEntry {
        status: "COMPLETED".into(),
        result_status: 200,
        result: json!({
            "diffusers_lora_file": {
                "url": format!("{url}/files/{id}/pytorch_lora_weights.safetensors?size={size}"),
                "content_type": "application/octet-stream",
                "file_name": "pytorch_lora_weights.safetensors",
                "file_size": size,
            },
            "config_file": { "url": format!("{url}/files/{id}/config.json"), "content_type": "application/json" },
        }),
    }
}

/// An avatar whose webhook never came is completed by the schedule (files,
/// notice, row); one still running at FAL is left alone and checked again;
/// one FAL failed goes to `error`; a young one is not asked about; the late
/// webhook changes nothing and sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_completes_missed_webhooks_and_leaves_running_trainings() {
    let remote = remote::shared();
    let host = reconciling_host().await;
    remote.set_queue("rec-done", completed("rec-done", 5000));
    remote.set_queue(
        "rec-running",
        QueueEntry {
            status: "IN_PROGRESS".into(),
            result_status: 400,
            result: json!({ "detail": "still running" }),
        },
    );
    remote.set_queue(
        "rec-failed",
        QueueEntry {
            status: "COMPLETED".into(),
            result_status: 422,
            result: json!({ "detail": "the training images could not be read" }),
        },
    );
    remote.set_queue("rec-young", completed("rec-young", 5000));
    let mut avatars = std::collections::HashMap::new();
    for id in ["rec-done", "rec-running", "rec-failed", "rec-young"] {
        avatars.insert(id, host.seed_avatar(id).await);
    }
    host.execute(
        "UPDATE avatars SET training_started_at = '2020-01-01 00:00:00' \
         WHERE fal_request_id IN ('rec-done', 'rec-running', 'rec-failed')",
    )
    .await;
    host.execute(
        "UPDATE avatars SET training_started_at = CURRENT_TIMESTAMP WHERE fal_request_id = 'rec-young'",
    )
    .await;
    let chat = host
        .texts(&format!(
            "SELECT CAST(u.telegram_id AS TEXT) FROM users u JOIN avatars a ON a.user_id = u.id \
             WHERE a.id = '{}'",
            avatars["rec-done"]
        ))
        .await
        .remove(0);

    wait_until("the missed completion is applied", || async {
        host.avatar(&avatars["rec-done"]).await.status == "completed"
    })
    .await;
    let done = host.avatar(&avatars["rec-done"]).await;
    assert_eq!(done.training_progress, 100);
    assert!(
        done.diffusers_lora_file_url
            .as_deref()
            .is_some_and(|u| u.ends_with("rec-done/pytorch_lora_weights.safetensors")),
        "{done:?}"
    );
    assert_eq!(remote.file_hits("rec-done/pytorch_lora_weights.safetensors"), 1);
    // The notice is a follow-up the run queued, on the plugin's route.
    wait_until("the notice is sent", || async {
        remote.notices_to(&chat).len() == 1
    })
    .await;
    wait_until("the failed training is an error", || async {
        host.avatar(&avatars["rec-failed"]).await.status == "error"
    })
    .await;
    let failed = host.avatar(&avatars["rec-failed"]).await;
    assert!(failed.training_error.unwrap().contains("could not be read"));
    // Still running at FAL: left in training, asked again on later runs.
    wait_until("the running training is checked twice", || async {
        remote.queue_calls("rec-running").len() >= 2
    })
    .await;
    assert_eq!(host.avatar(&avatars["rec-running"]).await.status, "training");
    let checked = host
        .texts("SELECT CAST(last_status_check AS TEXT) FROM avatars WHERE fal_request_id = 'rec-running'")
        .await;
    assert!(!checked[0].is_empty());
    assert!(
        remote.queue_calls("rec-young").is_empty(),
        "a young training is not asked about"
    );
    assert_eq!(host.avatar(&avatars["rec-young"]).await.status, "training");
    assert!(
        remote
            .queue_calls("rec-done")
            .iter()
            .all(|auth| auth == "Key test-fal-key"),
        "FAL's API key goes in Authorization: Key"
    );

    // The webhook that finally arrives changes nothing and sends nothing.
    let (status, answer) = host.post_fal(&fixture("ok-portrait.json", "rec-done")).await;
    assert_eq!(status, 200, "{answer}");
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let after = host.avatar(&avatars["rec-done"]).await;
    assert_eq!(after.training_completed_at, done.training_completed_at);
    assert_eq!(after.fal_response_data, done.fal_response_data);
    assert_eq!(after.diffusers_lora_file_url, done.diffusers_lora_file_url);
    assert_eq!(remote.notices_to(&chat).len(), 1, "still one notice");

    // The runs are on record, through the admin API and the CLI.
    let runs = admin_json(&host, 0, "/admin/v1/schedules/runs?plugin=fal-avatar-status").await;
    let runs = runs["runs"].as_array().unwrap();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["schedule"] == "reconcile" && r["outcome"] == "done"),
        "{runs:?}"
    );
    let schedules = admin_json(&host, 0, "/admin/v1/schedules").await;
    let reconcile = &schedules["schedules"].as_array().unwrap()[0];
    assert_eq!(
        (reconcile["schedule"].as_str(), reconcile["every_secs"].as_u64()),
        (Some("reconcile"), Some(1))
    );
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .args(["schedules", "runs", "--server", &host.url(""), "--token", ADMIN])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert!(
        printed.contains("fal-avatar-status") && printed.contains("reconcile") && printed.contains("done")
    );
}

/// A FAL outage: every call fails, so the runs fail and the schedule backs
/// off (its interval doubles), and nothing about the avatar changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_fal_outage_backs_the_schedule_off() {
    let remote = remote::shared();
    let host = reconciling_host().await;
    remote.set_queue(
        "rec-outage",
        QueueEntry {
            status: "OUTAGE".into(),
            result_status: 503,
            result: Value::Null,
        },
    );
    let avatar = host.seed_avatar("rec-outage").await;
    host.execute("UPDATE avatars SET training_started_at = '2020-01-01 00:00:00'")
        .await;
    wait_until("two failed runs", || async {
        let runs = admin_json(&host, 0, "/admin/v1/schedules/runs").await;
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["outcome"] == "failed")
            .count()
            >= 2
    })
    .await;
    let schedules = admin_json(&host, 0, "/admin/v1/schedules").await;
    let state = &schedules["schedules"][0];
    let failures = state["failures"].as_i64().unwrap();
    assert!(failures >= 2, "{state}");
    let runs = admin_json(&host, 0, "/admin/v1/schedules/runs").await;
    let last = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "failed")
        .unwrap()
        .clone();
    assert!(
        last["error"].as_str().unwrap().contains("FAL's queue API failed"),
        "{last}"
    );
    let wait = state["next_run_at_ms"].as_i64().unwrap() - last["finished_at_ms"].as_i64().unwrap();
    assert!(
        wait >= 2000,
        "backed off only {wait} ms after {failures} failures"
    );
    assert_eq!(host.avatar(&avatar).await.status, "training");
}

/// Two instances on one PostgreSQL, a schedule that is busy 300 ms every
/// second: the run records never overlap, and every run is done.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_never_run_a_schedule_at_once() {
    let schedules = "kv = true\n\n[[schedules]]\nname = \"slow\"\nevery_secs = 1\n";
    let host = TestHost::start_with(Options {
        backend: Backend::Postgres,
        instances: 2,
        extra_env: &[("ADMIN_TOKEN", ADMIN)],
        manifest_edits: &[("test-misbehave", "kv = true", schedules)],
        ..Options::default()
    })
    .await;
    wait_until("eight runs", || async {
        host.count("SELECT COUNT(*) FROM schedule_runs WHERE schedule = 'slow' AND outcome = 'done'")
            .await
            >= 8
    })
    .await;
    let runs = admin_json(
        &host,
        1,
        "/admin/v1/schedules/runs?plugin=test-misbehave&limit=100",
    )
    .await;
    let mut runs: Vec<(i64, i64, String)> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "done")
        .map(|r| {
            (
                r["started_at_ms"].as_i64().unwrap(),
                r["finished_at_ms"].as_i64().unwrap(),
                r["instance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runs.sort();
    for pair in runs.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
    // What the plugin itself recorded agrees: its busy spans never overlap.
    let mut spans: Vec<(i64, i64)> = host
        .texts("SELECT event_id FROM plugin_effects WHERE event_id LIKE 'schedule %'")
        .await
        .iter()
        .map(|t| {
            let mut parts = t.split(' ').skip(1).map(|n| n.parse::<i64>().unwrap());
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    spans.sort();
    assert!(spans.len() >= 8);
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "plugin runs overlap: {pair:?}");
    }
    let instances: std::collections::HashSet<_> = runs.iter().map(|r| r.2.as_str()).collect();
    println!("{} runs on {} instance(s)", runs.len(), instances.len());
}
