//! An accepted webhook survives the host being killed.

use crate::harness::TestHost;

/// SIGKILL right after the 200, while the plugin is still running: after a
/// restart the event is processed, exactly once.
#[tokio::test]
async fn an_event_accepted_before_sigkill_is_processed_after_restart() {
    let mut host = TestHost::spawn().await;
    let event = host.post_mode("slow").await;
    host.kill();
    let before = host.event(&event).await.expect("the accepted event is stored");
    assert_ne!(before.status, "done", "the slow plugin cannot have finished");
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 0);

    host.restart();
    let after = host.wait_for(&event, "done").await;
    assert!(after.attempts >= 1);
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);
}

/// An event whose every attempt takes the host down (here: SIGKILL while
/// its plugin runs) is not run forever: each takeover of its expired lease
/// counts as an attempt, and past the route's limit it is `dead`, saying
/// that its attempts ended without a result.
#[tokio::test]
async fn an_event_that_keeps_killing_the_host_ends_dead() {
    let mut host = TestHost::start_with(crate::harness::Options {
        manifest_edits: &[("test-misbehave", "timeout_ms = 1000", "timeout_ms = 60000")],
        ..Default::default()
    })
    .await;
    let event = host.post_mode("loop").await;
    for attempt in 1..=3 {
        let started = std::time::Instant::now();
        loop {
            let row = host.event(&event).await.unwrap();
            if row.status == "processing" && row.attempts == attempt {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "attempt {attempt} never started: {row:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        host.kill();
        host.restart();
    }
    let dead = host.wait_for(&event, "dead").await;
    let error = dead.last_error.unwrap();
    assert!(
        error.contains("attempt 3 ended without a result")
            && error.contains("3 attempts, the route's limit is 3"),
        "{error}"
    );
    assert_eq!(dead.attempts, 4, "the takeover that found the limit passed");
    // Other events go on.
    let other = host.post_mode("effect").await;
    host.wait_for(&other, "done").await;
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);
}

/// An instance stalls (SIGSTOP) while its event runs, so its lease
/// renewals stop: the lease expires, the other instance takes the event
/// over and commits it; when the first wakes up and finishes, its attempt
/// changes nothing (its effect row is rolled back). Two attempts, one
/// effect.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_attempt_loses_its_lease_and_changes_nothing() {
    use std::time::{Duration, Instant};
    let host = TestHost::start_with(crate::harness::Options {
        backend: crate::harness::Backend::Postgres,
        instances: 2,
        manifest_edits: &[("test-misbehave", "timeout_ms = 1000", "timeout_ms = 60000")],
        ..Default::default()
    })
    .await;
    let delivery = format!("stall-{}", uuid::Uuid::now_v7().simple());
    let (status, answer) = host
        .post(
            "/hooks/misbehave",
            br#"{"mode":"slow","ms":"5000"}"#,
            crate::harness::Signer::fal(&delivery),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let event = answer["event_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let owner = loop {
        let owner = host
            .texts(&format!(
                "SELECT lease_owner FROM webhook_events WHERE id = '{event}' \
                 AND status = 'processing' AND attempts = 1"
            ))
            .await;
        if let Some(owner) = owner.into_iter().next() {
            break owner;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the event never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let first = usize::from(owner != "test-host");
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &host.pid(first).to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {name}");
    };
    signal("-STOP");
    // The lease (3 s) runs out without renewals; the other instance claims.
    while host.event(&event).await.unwrap().attempts < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "no takeover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal("-CONT");
    let done = host.wait_for(&event, "done").await;
    assert_eq!(done.attempts, 2, "{done:?}");
    // The first attempt ends too, and is refused at its commit.
    while !host.log_of(first).contains("lease lost before commit") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stalled attempt never finished: {}",
            host.log_of(first)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let effects = host
        .count(&format!(
            "SELECT COUNT(*) FROM plugin_effects WHERE event_id = '{event}'"
        ))
        .await;
    assert_eq!(effects, 1, "only the attempt that held the lease committed");
    assert_eq!(host.event(&event).await.unwrap().status, "done");
}
