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
