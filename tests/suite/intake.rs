//! The HTTP edge: what is accepted, what is refused, and that refused
//! requests store nothing.

use crate::harness::{Signer, TestHost, fixture};

const FAL_PATH: &str = "/api/v1/avatar/status_update?training_type=portrait";

/// Bad signature, stale timestamp and a missing header are 401 with a reason, and nothing is stored.
#[tokio::test]
async fn unauthentic_requests_are_401_and_store_nothing() {
    let host = TestHost::spawn().await;
    let body = fixture("ok-portrait.json", "req-unauthentic");
    let cases = [
        (
            Signer {
                key: "wrong-secret",
                ..Signer::fal("req-unauthentic")
            },
            "no_matching_signature",
        ),
        (
            Signer {
                skew_secs: -301,
                ..Signer::fal("req-unauthentic")
            },
            "timestamp_out_of_range",
        ),
        (
            Signer {
                skew_secs: 400,
                ..Signer::fal("req-unauthentic")
            },
            "timestamp_out_of_range",
        ),
        (
            Signer {
                omit: Some("x-fal-webhook-signature"),
                ..Signer::fal("req-unauthentic")
            },
            "missing_header",
        ),
        (
            Signer {
                omit: Some("x-fal-webhook-timestamp"),
                ..Signer::fal("req-unauthentic")
            },
            "missing_header",
        ),
    ];
    for (signer, reason) in cases {
        let (status, answer) = host.post(FAL_PATH, &body, signer).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"], "invalid_signature", "{answer}");
        assert_eq!(answer["reason"], reason, "{answer}");
    }
    // A body changed after signing does not verify either.
    let signed_for = fixture("ok-portrait.json", "req-other");
    let mut request = host
        .http
        .post(host.url(FAL_PATH))
        .header("content-type", "application/json");
    for (name, value) in Signer::fal("req-unauthentic").headers(&signed_for) {
        request = request.header(name, value);
    }
    let response = request.body(body.clone()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 0);
    assert!(
        !host.log().contains(crate::harness::SECRET),
        "the secret must never be logged"
    );
}

/// A repeat of the same delivery answers `duplicate` and has one effect.
#[tokio::test]
async fn the_same_delivery_twice_is_stored_and_applied_once() {
    let host = TestHost::spawn().await;
    let body = br#"{"mode":"effect"}"#;
    let signer = Signer::fal("delivery-twice");
    let (status, first) = host.post("/hooks/misbehave", body, signer).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (200, Some("accepted")),
        "{first}"
    );
    let event_id = first["event_id"].as_str().unwrap();
    host.wait_for(event_id, "done").await;
    let (status, second) = host.post("/hooks/misbehave", body, signer).await;
    assert_eq!(status, 200);
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["event_id"], event_id);
    // Give a wrongly re-queued event every chance to run again.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 1);
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);
}

/// Oversized bodies are 413, bad JSON 400, non-JSON content types 415, unknown routes 404.
#[tokio::test]
async fn malformed_requests_get_clear_client_errors() {
    let host = TestHost::spawn().await;
    let mut big = br#"{"request_id":"big","status":"OK","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    big.extend(br#""}"#);
    let (status, answer) = host.post(FAL_PATH, &big, Signer::fal("big")).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "body_too_large");

    let (status, answer) = host.post(FAL_PATH, b"{not json", Signer::fal("bad-json")).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_json");

    let body = fixture("ok-portrait.json", "form");
    let mut request = host
        .http
        .post(host.url(FAL_PATH))
        .header("content-type", "application/x-www-form-urlencoded");
    for (name, value) in Signer::fal("form").headers(&body) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 415);

    let (status, _) = host.post("/hooks/no-such-route", b"{}", Signer::fal("x")).await;
    assert_eq!(status, 404);
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 0);
}

/// `/health` reports instance, version, database and plugins; `/health/live` answers.
#[tokio::test]
async fn health_reports_its_checks() {
    let host = TestHost::spawn().await;
    let response = host.http.get(host.url("/health")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let health: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["instance_id"], "test-host");
    assert_eq!(health["checks"]["database"]["status"], "ok");
    let loaded = health["checks"]["plugins"]["loaded"].as_array().unwrap();
    let names: Vec<&str> = loaded.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["fal-avatar-status", "test-misbehave"]);
    assert_eq!(
        loaded[0]["version"].as_str().unwrap().len(),
        64,
        "versions are sha256 hex"
    );
    let live = host.http.get(host.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
}

/// A route whose plugin is missing makes `/health` 503 and names the plugin.
#[tokio::test]
async fn health_is_503_when_a_routes_plugin_is_missing() {
    let host = TestHost::spawn_with(
        "[[routes]]\nname = \"ghost\"\nplugin = \"ghost-plugin\"\n\
         verify = [{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }]\n",
        &[],
    )
    .await;
    let response = host.http.get(host.url("/health")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let health: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(health["checks"]["plugins"]["missing"][0], "ghost-plugin");
}

/// Without `FAL_WEBHOOK_SECRET` the host refuses to start, naming the
/// variable; `--insecure-dev` starts it with the route unverified.
#[tokio::test]
async fn a_missing_secret_stops_the_host_unless_insecure_dev() {
    let host = TestHost::spawn().await;
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
            .current_dir(host.dir.path())
            .args(["--config", "config.toml", "serve"])
            .args(extra)
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATA_DIR", host.dir.path().join("data-unsigned"))
            .env("PLUGINS_DIR", host.dir.path().join("plugins"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = run(&[]).wait_with_output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("FAL_WEBHOOK_SECRET") && stderr.contains("--insecure-dev"),
        "{stderr}"
    );

    let mut open = run(&["--insecure-dev"]);
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(open.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    open.kill().unwrap();
    open.wait().unwrap();
    assert!(
        first_line.starts_with("webhook-host listening on"),
        "{first_line}"
    );
}

/// A second host on the same data folder refuses to start.
#[tokio::test]
async fn a_second_host_on_the_same_data_folder_refuses_to_start() {
    let host = TestHost::spawn().await;
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .current_dir(host.dir.path())
        .args(["--config", "config.toml", "serve"])
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", host.dir.path().join("data-0"))
        .env("PLUGINS_DIR", host.dir.path().join("plugins"))
        .env("FAL_WEBHOOK_SECRET", crate::harness::SECRET)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another webhook-host is already serving"),
        "{stderr}"
    );
}

/// 50 copies of one delivery sent at once (landing in the same intake
/// batch or not) make one event: one `accepted`, the rest `duplicate`, all
/// naming the same event.
pub async fn concurrent_copies_make_one_event(host: TestHost) {
    let host = std::sync::Arc::new(host);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let host = host.clone();
        tasks.spawn(async move { host.post_mode_as(0, "effect", "the-same-delivery").await.1 });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.unwrap());
    }
    let accepted = answers.iter().filter(|a| a["status"] == "accepted").count();
    assert_eq!(accepted, 1, "{answers:?}");
    let ids: std::collections::HashSet<&str> =
        answers.iter().map(|a| a["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1);
    host.wait_for(ids.iter().next().unwrap(), "done").await;
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_a_delivery_make_one_event() {
    concurrent_copies_make_one_event(TestHost::spawn().await).await;
}
