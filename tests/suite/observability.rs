//! What operators see: Prometheus metrics that move with what the host
//! does, and JSON logs whose request and event spans carry the ids, while
//! secrets and bodies never reach them.

use serde_json::Value;

use crate::harness::{BOT_TOKEN, SECRET, Signer, TestHost, fixture};
use crate::services::production_env;

/// The value of the sample of `name` whose labels include every one of
/// `labels` (`key="value"` pairs); `None` when there is none.
pub(crate) fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

pub(crate) async fn scrape(host: &TestHost) -> String {
    let response = host.http.get(host.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    response.text().await.unwrap()
}

/// Requests, verification failures, outcomes, plugin failures by kind, the
/// inbox depth, the pool, JWKS fetches and the build: each metric follows
/// what happened.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_requests_outcomes_and_failures() {
    // A FAL route whose JWKS cannot be fetched: every fetch is an error.
    let config = r#"
[[routes]]
name = "fal-jwks"
plugin = "fal-avatar-status"
verify = [{ scheme = "fal-ed25519", jwks_urls = ["http://127.0.0.1:9/jwks.json"] }]
"#;
    let host = TestHost::spawn_with(config, &[]).await;
    let mut events = Vec::new();
    for mode in ["effect", "effect", "effect", "trap", "loop", "oom", "invalid"] {
        events.push((mode, host.post_mode(mode).await));
    }
    let forged = Signer {
        key: "not-the-secret",
        ..Signer::fal("forged-1")
    };
    let (status, _) = host
        .post("/hooks/misbehave", br#"{"mode":"effect"}"#, forged)
        .await;
    assert_eq!(status, 401);
    let ed25519 = [
        ("x-fal-webhook-request-id", "jwks-1".to_string()),
        ("x-fal-webhook-user-id", "user".to_string()),
        ("x-fal-webhook-timestamp", crate::harness::now_secs().to_string()),
        ("x-fal-webhook-signature", "00".repeat(64)),
    ];
    let (status, _) = host.post_with("/hooks/fal-jwks", b"{}", &ed25519).await;
    assert_eq!(status, 503, "keys unavailable");
    for (mode, event) in &events {
        let expected = if *mode == "effect" { "done" } else { "dead" };
        host.wait_for(event, expected).await;
    }

    let text = scrape(&host).await;
    let value = |name: &str, labels: &[&str]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    let misbehave = r#"route="misbehave""#;
    assert_eq!(
        value("webhook_http_requests_total", &[misbehave, r#"status="200""#]),
        7.0
    );
    assert_eq!(
        value("webhook_http_requests_total", &[misbehave, r#"status="401""#]),
        1.0
    );
    assert_eq!(
        value(
            "webhook_http_requests_total",
            &[r#"route="fal-jwks""#, r#"status="503""#]
        ),
        1.0
    );
    assert_eq!(value("webhook_verification_failures_total", &[misbehave]), 1.0);
    assert_eq!(value("webhook_jwks_fetches_total", &[r#"result="error""#]), 1.0);
    assert_eq!(value("webhook_inbox_events", &[r#"status="done""#]), 3.0);
    assert_eq!(value("webhook_inbox_events", &[r#"status="dead""#]), 4.0);
    assert_eq!(value("webhook_inbox_events", &[r#"status="pending""#]), 0.0);
    let attempts = |outcome: &str| {
        value(
            "webhook_event_attempts_total",
            &[misbehave, &format!(r#"outcome="{outcome}""#)],
        )
    };
    // trap, loop and oom: three attempts each (two retries, then dead); invalid: dead at once.
    assert_eq!(
        (attempts("done"), attempts("retry"), attempts("dead")),
        (3.0, 6.0, 4.0)
    );
    let failures = |kind: &str| {
        value(
            "webhook_plugin_failures_total",
            &[r#"plugin="test-misbehave""#, &format!(r#"kind="{kind}""#)],
        )
    };
    assert_eq!(failures("trap"), 3.0);
    assert_eq!(failures("timeout"), 3.0);
    assert_eq!(failures("memory_limit"), 3.0);
    assert_eq!(failures("invalid"), 1.0);
    assert!(text.contains("# TYPE webhook_event_duration_seconds histogram"));
    let done = [r#"plugin="test-misbehave""#, r#"outcome="done""#];
    assert_eq!(value("webhook_event_duration_seconds_count", &done), 3.0);
    assert_eq!(
        value(
            "webhook_event_duration_seconds_bucket",
            &[done[0], done[1], r#"le="+Inf""#]
        ),
        3.0
    );
    assert!(value("webhook_http_request_duration_seconds_count", &[misbehave]) >= 8.0);
    assert_eq!(value("webhook_plugin_instances_max", &[]), 16.0);
    assert_eq!(value("webhook_plugin_instances_in_use", &[]), 0.0);
    assert_eq!(value("webhook_host_build_info", &[r#"version=""#]), 1.0);

    // Scrapes are requests too.
    let again = scrape(&host).await;
    assert_eq!(
        sample(&again, "webhook_inbox_events", &[r#"status="dead""#]),
        Some(4.0)
    );
    assert!(
        sample(
            &again,
            "webhook_http_requests_total",
            &[r#"route="/metrics""#, r#"status="200""#]
        )
        .is_some_and(|n| n >= 1.0)
    );
}

/// A full run in production shape (PostgreSQL, S3, Redis, Telegram, the
/// admin API, the console, the CLI) with JSON logs at trace level for the
/// host: every line is JSON; the request span and the event span carry the
/// ids; no configured secret and no body appears anywhere in the logs.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_request_and_event_spans_and_never_secrets_or_bodies() {
    const ADMIN: &str = "observability-admin-token-5f2c";
    const MARKER: &str = "body-marker-7d1e9a";
    let (mut env, _) = production_env(ADMIN);
    env.push(("LOG_FORMAT".into(), "json".into()));
    env.push((
        "LOG_LEVEL".into(),
        "info,webhook_host=trace,sqlx=debug,reqwest=debug".into(),
    ));
    let secrets: Vec<String> = [SECRET, BOT_TOKEN, ADMIN]
        .into_iter()
        .map(str::to_string)
        .chain(
            env.iter()
                .filter(|(k, _)| k == "MINIO_SECRET_KEY")
                .map(|(_, v)| v.clone()),
        )
        .collect();
    let host = TestHost::spawn_pg_with(&env).await;

    // A FAL completion: files copied to S3, a Telegram notice with the token in its URL.
    let avatar = host.seed_avatar("obs-fal-1").await;
    let (status, answer) = host.post_fal(&fixture("ok-portrait.json", "obs-fal-1")).await;
    assert_eq!(status, 200, "{answer}");
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(host.avatar(&avatar).await.status, "completed");
    host.wait_until_all_done().await; // the notice follow-up

    // A delivery with a marker in its body and nginx's request id.
    let body = format!(r#"{{"mode":"effect","note":"{MARKER}"}}"#);
    let mut headers = Signer::fal("obs-effect-1").headers(body.as_bytes());
    headers.push(("x-request-id", "obs-request-1".into()));
    let (status, answer) = host
        .post_with("/hooks/misbehave", body.as_bytes(), &headers)
        .await;
    assert_eq!(status, 200, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_string();
    host.wait_for(&event_id, "done").await;
    // A request id the edge refuses (spaces): it makes one, and that one,
    // not the header, reaches the event.
    let mut headers = Signer::fal("obs-effect-2").headers(b"{\"mode\":\"effect\"}");
    headers.push(("x-request-id", "not acceptable".into()));
    let (status, answer) = host
        .post_with("/hooks/misbehave", b"{\"mode\":\"effect\"}", &headers)
        .await;
    assert_eq!(status, 200, "{answer}");
    let made_id_event = answer["event_id"].as_str().unwrap().to_string();
    host.wait_for(&made_id_event, "done").await;
    // The same body, forged; and the admin API, the console and the CLI, with the token.
    let forged = Signer {
        key: "wrong",
        ..Signer::fal("obs-forged")
    };
    assert_eq!(
        host.post("/hooks/misbehave", body.as_bytes(), forged).await.0,
        401
    );
    assert!(
        host.get_text(0, "/admin/v1/events", Some(ADMIN))
            .await
            .contains(&event_id)
    );
    let session = host.console_session(ADMIN).await;
    let page = host
        .http
        .get(host.url(&format!("/admin/events/{event_id}")))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(MARKER), "the console shows the body");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .args(["plugin", "list", "--server", &host.url(""), "--token", ADMIN])
        .output()
        .unwrap();
    assert!(cli.status.success());
    host.wait_until_all_done().await;

    let log = host.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_span = |message: &str, span: &str, key: &str, value: &str| {
        lines.iter().find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
                && l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["name"] == span && s[key] == value))
        })
    };
    let accepted = in_span("webhook accepted", "request", "request_id", "obs-request-1")
        .expect("the request span carries nginx's request id");
    assert_eq!(accepted["span"]["path"], "/hooks/misbehave");
    let done = in_span("event done", "event", "event_id", &event_id).expect("an event span");
    let span = &done["span"];
    assert_eq!(span["request_id"], "obs-request-1");
    assert_eq!(span["delivery_id"], "obs-effect-1");
    assert_eq!(span["route"], "misbehave");
    assert_eq!(span["plugin"], "test-misbehave");
    assert_eq!(span["version"].as_str().unwrap().len(), 12);
    let accepted = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "webhook accepted" && l["fields"]["event_id"] == made_id_event.as_str()
        })
        .expect("the second delivery was accepted");
    let made = accepted["span"]["request_id"].as_str().unwrap();
    assert!(
        made.len() == 32 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
    let done = in_span("event done", "event", "event_id", &made_id_event).expect("an event span");
    assert_eq!(
        done["span"]["request_id"], made,
        "the event carries the id the edge made, not the refused header"
    );

    let outputs = [
        log.as_str(),
        &String::from_utf8_lossy(&cli.stdout),
        &String::from_utf8_lossy(&cli.stderr),
    ];
    let session_value = session.split_once('=').unwrap().1;
    for text in outputs {
        for secret in secrets.iter().map(String::as_str).chain([session_value]) {
            assert!(
                !text.contains(secret),
                "a secret ({} chars) is in the output",
                secret.len()
            );
        }
        assert!(!text.contains(MARKER), "a body is in the output");
    }
    assert!(lines.len() > 20, "the run logged ({} lines)", lines.len());
}
