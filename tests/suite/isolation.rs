//! Misbehaving plugins fail their own events and nothing else.

use crate::harness::{TestHost, fixture};

async fn health_status(host: &TestHost) -> u16 {
    host.http
        .get(host.url("/health"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Trap, endless loop and unbounded memory each end `dead` after their
/// retries with a clear error, while a normal event sent with them is done and
/// `/health` stays 200.
#[tokio::test]
async fn trapping_looping_and_hoarding_plugins_fail_only_their_events() {
    let host = TestHost::spawn().await;
    let avatar = host.seed_avatar("req-beside-the-mess").await;
    let trap = host.post_mode("trap").await;
    let spin = host.post_mode("loop").await;
    let hoard = host.post_mode("oom").await;
    let (_, normal) = host
        .post_fal(&fixture("ok-portrait.json", "req-beside-the-mess"))
        .await;

    let normal = host.wait_for(normal["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(normal.attempts, 1);
    assert_eq!(host.avatar(&avatar).await.status, "completed");
    assert_eq!(health_status(&host).await, 200, "health while plugins misbehave");

    let trap = host.wait_for(&trap, "dead").await;
    let spin = host.wait_for(&spin, "dead").await;
    let hoard = host.wait_for(&hoard, "dead").await;
    for event in [&trap, &spin, &hoard] {
        assert_eq!(event.attempts, 3, "{event:?}");
    }
    let trap_error = trap.last_error.unwrap();
    assert!(trap_error.starts_with("trap:"), "{trap_error}");
    assert!(
        trap_error.contains("asked to trap"),
        "the guest's panic message is kept: {trap_error}"
    );
    assert_eq!(
        spin.last_error.as_deref(),
        Some("timeout: the plugin ran longer than 1000 ms")
    );
    let hoard_error = hoard.last_error.unwrap();
    assert!(
        hoard_error.starts_with("memory limit:") && hoard_error.contains("limit is 16 MiB"),
        "{hoard_error}"
    );
    assert_eq!(health_status(&host).await, 200, "health after plugins misbehaved");

    // The host still processes new events normally.
    let after = host.post_mode("ok").await;
    host.wait_for(&after, "done").await;
}

/// A plugin that writes and then traps leaves no trace of its write.
#[tokio::test]
async fn a_failed_attempt_rolls_back_the_plugins_writes() {
    let host = TestHost::spawn().await;
    let event = host.post_mode("write").await;
    let event = host.wait_for(&event, "dead").await;
    assert_eq!(event.attempts, 3);
    assert!(event.last_error.unwrap().contains("trapping after a write"));
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 0);
}

/// `retry` is retried with backoff up to the limit, `invalid` is dead at once.
#[tokio::test]
async fn handler_errors_decide_retry_or_dead() {
    let host = TestHost::spawn().await;
    let retry = host.post_mode("retry").await;
    let invalid = host.post_mode("invalid").await;
    let retry = host.wait_for(&retry, "dead").await;
    assert_eq!(
        (retry.attempts, retry.last_error.as_deref()),
        (3, Some("retry: asked to retry"))
    );
    let invalid = host.wait_for(&invalid, "dead").await;
    assert_eq!(
        (invalid.attempts, invalid.last_error.as_deref()),
        (1, Some("invalid: asked to be invalid"))
    );
}

/// What a plugin prints reaches the host log, tagged with its event id.
#[tokio::test]
async fn guest_output_is_logged_with_the_event_id() {
    let host = TestHost::spawn().await;
    let event = host.post_mode("print").await;
    host.wait_for(&event, "done").await;
    let log = host.log();
    let line = log
        .lines()
        .find(|line| line.contains(&format!("hello from {event} on stdout")))
        .unwrap_or_else(|| panic!("no guest stdout line in:\n{log}"));
    assert!(line.contains(&format!("event_id={event}")), "{line}");
    assert!(log.contains(&format!("hello from {event} on stderr")));
}

/// A plugin cannot drop tables, read the host's inbox, leave its role or
/// touch tables outside its grant: each attempt fails with an error the
/// plugin sees (`denied` is the database's wording, alternatives split by
/// `|`), and the tables are intact.
pub async fn hostile_plugin_stays_inside_its_grant(host: TestHost, denied: &str) {
    host.seed_avatar("victim").await;
    let event = host.post_mode("hostile").await;
    host.wait_for(&event, "done").await;
    let outcomes = host
        .texts("SELECT event_id FROM plugin_effects ORDER BY event_id")
        .await;
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    let find = |name: &str| outcomes.iter().find(|o| o.starts_with(name)).unwrap().clone();
    for (attempt, expected) in [
        ("drop", "only SELECT"),
        ("escape", "only SELECT"),
        ("set-config", "set_config"),
        ("read-inbox", denied),
        ("foreign-update", denied),
    ] {
        let outcome = find(attempt);
        let matches = expected.split('|').any(|phrase| outcome.contains(phrase));
        assert!(outcome.contains(" refused: ") && matches, "{outcome}");
    }
    assert_eq!(
        host.count("SELECT COUNT(*) FROM avatars WHERE status = 'training'")
            .await,
        1
    );
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 1);
}

#[tokio::test]
async fn a_hostile_plugin_stays_inside_its_table_grant_on_sqlite() {
    hostile_plugin_stays_inside_its_grant(TestHost::spawn().await, "not authorized|prohibited").await;
}

/// The rest of the hostile corpus, each in its own event beside a normal
/// one: deep recursion is a trap (wasm's call stack, or Rust's stack in
/// linear memory); a log flood is cut at
/// the host's cap; a huge return value is taken and dropped; a storm of `db`
/// calls stops at the plugin's budget (`limits.max_db_calls`) while a
/// smaller one passes; a host call that blocks (an HTTP server that never
/// answers) ends at the plugin's deadline. The normal event is done, health
/// stays 200, and the host still processes afterwards.
#[tokio::test]
async fn the_hostile_corpus_is_contained() {
    let host = TestHost::start_with(crate::harness::Options {
        manifest_edits: &[
            (
                "test-misbehave",
                r#"http = { allow = ["http://*:*", "https://allowed.example"] }"#,
                r#"http = { allow = ["http://127.0.0.1:*"], allow_private = true }"#,
            ),
            (
                "test-misbehave",
                "timeout_ms = 1000",
                "timeout_ms = 1000\nmax_db_calls = 300",
            ),
        ],
        ..Default::default()
    })
    .await;
    let avatar = host.seed_avatar("req-beside-the-corpus").await;
    let post = |body: String, id: &'static str| {
        let host = &host;
        async move {
            let (status, answer) = host
                .post(
                    "/hooks/misbehave",
                    body.as_bytes(),
                    crate::harness::Signer::fal(id),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            answer["event_id"].as_str().unwrap().to_string()
        }
    };
    let recurse = host.post_mode("recurse").await;
    let frames = host.post_mode("recurse-frames").await;
    let flood = host.post_mode("flood").await;
    let huge = host.post_mode("huge-return").await;
    let storm = post(r#"{"mode":"db-storm","calls":"5000"}"#.into(), "storm-big").await;
    let within = post(r#"{"mode":"db-storm","calls":"200"}"#.into(), "storm-small").await;
    let hang_url = format!("{}/hang/forever", crate::remote::shared().url);
    let hang = post(format!(r#"{{"mode":"reach","targets":"{hang_url}"}}"#), "hang").await;
    let (_, normal) = host
        .post_fal(&fixture("ok-portrait.json", "req-beside-the-corpus"))
        .await;

    host.wait_for(normal["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(host.avatar(&avatar).await.status, "completed");
    assert_eq!(health_status(&host).await, 200, "health during the corpus");

    let recurse = host.wait_for(&recurse, "dead").await;
    let recurse_error = recurse.last_error.unwrap();
    assert!(
        recurse_error.starts_with("trap:") && recurse_error.contains("call stack exhausted"),
        "{recurse_error}"
    );
    // Rust's stack in linear memory overflows below address 0.
    let frames = host.wait_for(&frames, "dead").await;
    let frames_error = frames.last_error.unwrap();
    assert!(
        frames_error.starts_with("trap:") && frames_error.contains("out of bounds memory access"),
        "{frames_error}"
    );

    // The cap is per instance, so per attempt: under load the first attempt
    // may run out of time and the flood is logged again by the retry.
    let attempts = host.wait_for(&flood, "done").await.attempts as usize;
    let log = host.log();
    let flooded: usize = log
        .lines()
        .filter(|line| line.contains("flood line"))
        .map(str::len)
        .sum();
    assert!(flooded > 0, "some of the output is logged");
    assert!(
        flooded < attempts * 200 * 1024,
        "the flood is cut: {flooded} bytes logged in {attempts} attempts"
    );
    assert!(log.contains("guest output past 65536 bytes is dropped"));

    host.wait_for(&huge, "done").await;

    let storm = host.wait_for(&storm, "dead").await;
    let storm_error = storm.last_error.unwrap();
    assert!(
        storm_error.contains("budget of 300 db calls per event is used up"),
        "{storm_error}"
    );
    host.wait_for(&within, "done").await;
    assert_eq!(
        host.texts("SELECT event_id FROM plugin_effects").await,
        vec!["200 db calls made".to_string()],
        "the storm that ran out of budget left nothing behind"
    );

    let hang = host.wait_for(&hang, "dead").await;
    assert_eq!(
        hang.last_error.as_deref(),
        Some("timeout: the plugin ran longer than 1000 ms")
    );

    assert_eq!(health_status(&host).await, 200, "health after the corpus");
    let after = host.post_mode("ok").await;
    host.wait_for(&after, "done").await;
}

/// Twelve events at once on a pool of two instances: they wait for a slot in
/// arrival order, and the wait is not counted against their time budget, so
/// every one is done at its first attempt (each is busy 500 ms of a 1000 ms
/// budget, and the last waits seconds for its turn).
#[tokio::test]
async fn more_events_than_instances_queue_fairly() {
    let host = TestHost::start_with(crate::harness::Options {
        config_edits: &[
            ("concurrency = 4", "concurrency = 12"),
            ("max_instances = 16", "max_instances = 2"),
        ],
        ..Default::default()
    })
    .await;
    let mut events = Vec::new();
    for _ in 0..12 {
        events.push(host.post_mode("slow").await);
    }
    for id in &events {
        let row = host.wait_for(id, "done").await;
        assert_eq!(row.attempts, 1, "{id}: {row:?}");
    }
    // Finished in about the order they came: none overtaken by more than
    // the batch the worker claims at once.
    let finished = host
        .texts("SELECT event_id FROM plugin_effects ORDER BY rowid")
        .await;
    assert_eq!(finished.len(), 12);
    for (arrived, id) in events.iter().enumerate() {
        let done = finished.iter().position(|f| f == id).unwrap();
        assert!(
            done.abs_diff(arrived) <= 6,
            "event {arrived} finished {done}th: {finished:?}"
        );
    }
}
