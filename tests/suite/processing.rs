//! From an accepted FAL webhook to the avatar row, through the real plugin.

use crate::harness::{TestHost, fixture};

/// A signed FAL `OK` body completes the avatar: 100 %, stored files, completion time.
#[tokio::test]
async fn ok_body_completes_the_avatar() {
    let host = TestHost::spawn().await;
    let avatar = host.seed_avatar("req-ok").await;
    let (status, answer) = host.post_fal(&fixture("ok-portrait.json", "req-ok")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let event = host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(event.attempts, 1);
    assert_eq!(event.plugin_version.as_deref().map(str::len), Some(64));
    let row = host.avatar(&avatar).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.training_progress, 100);
    // Embedded mode: FAL's files are copied into the data folder, byte for byte.
    let blobs = host.dir.path().join("data-0/blobs/webhook-host");
    let lora = format!("avatars/{avatar}/lora/req-ok/pytorch_lora_weights.safetensors");
    assert_eq!(
        row.diffusers_lora_file_url.as_deref(),
        Some(format!("file://{}/{lora}", blobs.canonicalize().unwrap().display()).as_str())
    );
    assert_eq!(
        std::fs::read(blobs.join(&lora)).unwrap(),
        crate::remote::content("lion/Qx1/pytorch_lora_weights.safetensors", 70_000)
    );
    assert!(row.config_file_url.unwrap().ends_with("/lora/req-ok/config.json"));
    assert!(row.training_completed_at.is_some());
    assert!(row.training_error.is_none());
    assert!(row.fal_response_data.unwrap().contains("diffusers_lora_file"));
}

/// An `ERROR` body sets the avatar to `error` with FAL's message.
#[tokio::test]
async fn error_body_records_the_failure() {
    let host = TestHost::spawn().await;
    let avatar = host.seed_avatar("req-err").await;
    let (_, answer) = host.post_fal(&fixture("error-422.json", "req-err")).await;
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let row = host.avatar(&avatar).await;
    assert_eq!(row.status, "error");
    assert_eq!(row.training_error.as_deref(), Some("Invalid status code: 422"));
    assert!(row.diffusers_lora_file_url.is_none());
}

/// The other fixture shapes: extra fields, payload_error, legacy progress and completion.
#[tokio::test]
async fn every_fixture_shape_is_applied() {
    let host = TestHost::spawn().await;
    let cases = [
        ("ok-fast-training.json", "completed", 100),
        ("payload-error.json", "error", 10),
        ("legacy-progress.json", "training", 42),
        ("legacy-completed.json", "completed", 100),
    ];
    for (i, (file, status, progress)) in cases.into_iter().enumerate() {
        let request_id = format!("req-fixture-{i}");
        let avatar = host.seed_avatar(&request_id).await;
        let (_, answer) = host.post_fal(&fixture(file, &request_id)).await;
        host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
        let row = host.avatar(&avatar).await;
        assert_eq!(
            (row.status.as_str(), row.training_progress),
            (status, progress),
            "{file}"
        );
        if file == "payload-error.json" {
            assert!(row.training_error.unwrap().contains("not JSON serializable"));
        }
        if file == "legacy-completed.json" {
            assert!(row.diffusers_lora_file_url.is_none(), "no invented URLs");
        }
    }
}

/// An unknown request id is retried (the plugin's own short waits), then
/// done without error; a body of the wrong shape is dead at once.
#[tokio::test]
async fn unknown_avatars_are_done_and_malformed_bodies_are_dead_without_retry() {
    let host = TestHost::start_with(crate::harness::Options {
        manifest_edits: &[
            (
                "fal-avatar-status",
                r#"unknown_request_attempts = "4""#,
                r#"unknown_request_attempts = "2""#,
            ),
            (
                "fal-avatar-status",
                r#"unknown_request_retry_ms = "15000""#,
                r#"unknown_request_retry_ms = "100""#,
            ),
        ],
        ..Default::default()
    })
    .await;
    let (_, answer) = host.post_fal(&fixture("ok-portrait.json", "req-nobody")).await;
    let event = host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(event.attempts, 2, "one short retry first");
    assert!(event.last_error.is_none());

    let (status, answer) = host
        .post_fal(br#"{"request_id":"req-weird","status":"SOMETHING"}"#)
        .await;
    assert_eq!(
        status, 200,
        "valid JSON is accepted; the plugin judges its meaning"
    );
    let event = host.wait_for(answer["event_id"].as_str().unwrap(), "dead").await;
    assert_eq!(event.attempts, 1, "invalid events are not retried");
    assert!(event.last_error.unwrap().starts_with("invalid: unknown status"));
}
