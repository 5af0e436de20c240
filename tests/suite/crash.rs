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
