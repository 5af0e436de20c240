//! Readiness and alarms: a dead event sends one operational webhook,
//! signed as Standard Webhooks, to the operator's receiver; a backlog past
//! its age threshold sends another and shows in the gauges; a background
//! task that dies turns `/health` to 503 and stops the process; `/health`
//! reports storage, Redis and fetched keys.

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::{Options, TestHost, now_secs};
use crate::remote::{self, Posted};
use crate::verification::{JwksServer, fal_route, key, key_hex};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A fresh receiver channel on the loopback remote: its URL and name.
fn receiver() -> (String, String) {
    let channel = uuid::Uuid::now_v7().simple().to_string();
    (format!("{}/alarms/{channel}", remote::shared().url), channel)
}

/// Waits until `channel` has received `n` alarms (failing after 20 s).
async fn alarms(channel: &str, n: usize) -> Vec<Posted> {
    let started = Instant::now();
    loop {
        let posted = remote::shared().alarms(channel);
        if posted.len() >= n {
            return posted;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} alarms of {n}",
            posted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /health`: its status and JSON answer.
async fn read_health(host: &TestHost) -> (u16, Value) {
    let response = host.http.get(host.url("/health")).send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

/// Checks the Standard Webhooks signature of `posted` by the spec's rule,
/// computed here (HMAC-SHA256 over `id.timestamp.body` with the secret's
/// base64 bytes); returns its JSON body.
fn verified(posted: &Posted) -> Value {
    let id = &posted.headers["webhook-id"];
    let timestamp = &posted.headers["webhook-timestamp"];
    assert!(
        (now_secs() - timestamp.parse::<i64>().unwrap()).abs() < 60,
        "signed now: {timestamp}"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&posted.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let signatures = &posted.headers["webhook-signature"];
    assert!(
        signatures.split(' ').any(|s| s == expected),
        "{signatures} carries {expected}"
    );
    serde_json::from_slice(&posted.body).unwrap()
}

/// An invalid event (dead at once) and one retried to its limit (3
/// attempts) each send exactly one alarm, signed, naming the event; the
/// retries before the limit send none.
#[tokio::test]
async fn a_dead_event_sends_one_signed_operational_webhook() {
    let (url, channel) = receiver();
    let host = TestHost::spawn_with(
        "",
        &[
            ("ALERT_WEBHOOK_URL", url.as_str()),
            ("ALERT_WEBHOOK_SECRET", SECRET),
        ],
    )
    .await;
    let invalid = host.post_mode("invalid").await;
    let retried = host.post_mode("retry").await;
    host.wait_for(&invalid, "dead").await;
    host.wait_for(&retried, "dead").await;
    let posted = alarms(&channel, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let posted_after = remote::shared().alarms(&channel);
    assert_eq!(
        posted_after.len(),
        2,
        "one alarm per dead event, none for retries"
    );

    for (event, attempts) in [(&invalid, 1), (&retried, 3)] {
        let alarm = posted
            .iter()
            .find(|p| p.headers["webhook-id"] == format!("dead:{event}:{attempts}"))
            .unwrap_or_else(|| panic!("no alarm for {event}: {posted:?}"));
        let body = verified(alarm);
        assert_eq!(body["type"], "event.dead");
        assert_eq!(body["data"]["event_id"], event.as_str());
        assert_eq!(body["data"]["route"], "misbehave");
        assert_eq!(body["data"]["attempts"], attempts);
        assert_eq!(body["data"]["instance_id"], "test-host");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'), "{body}");
    }
}

/// With the worker off, a stored event waits: past the threshold (1 s)
/// the backlog alarm is sent once and the gauges show its age.
#[tokio::test]
async fn an_old_backlog_sends_an_alarm_and_shows_in_the_gauges() {
    let (url, channel) = receiver();
    let host = TestHost::start_with(Options {
        extra_config: "[alerts]\nbacklog_age_secs = 1\ncheck_interval_ms = 200\n",
        extra_env: &[
            ("ALERT_WEBHOOK_URL", url.as_str()),
            ("ALERT_WEBHOOK_SECRET", SECRET),
        ],
        config_edits: &[("concurrency = 4", "concurrency = 4\nenabled = false")],
        ..Options::default()
    })
    .await;
    host.post_mode("ok").await;
    let posted = alarms(&channel, 1).await;
    let body = verified(&posted[0]);
    assert_eq!(body["type"], "backlog.too_old", "{body}");
    assert!(
        body["data"]["oldest_due_age_secs"].as_f64().unwrap() >= 1.0,
        "{body}"
    );
    assert_eq!(body["data"]["runnable"], 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        remote::shared().alarms(&channel).len(),
        1,
        "raised once while it stands"
    );

    let metrics = host.get_text(0, "/metrics", None).await;
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(gauge("webhook_oldest_due_event_age_seconds") >= 1.0);
    assert!(gauge("webhook_processing_lag_seconds") >= 1.0);
    assert_eq!(gauge("webhook_dead_background_tasks"), 0.0);
}

/// The intake writer panics on its first batch (a failpoint): that
/// delivery gets 503 (nothing stored), `/health` turns 503 naming the
/// task, and the process exits non-zero by itself.
#[tokio::test]
async fn a_dead_background_task_fails_health_and_stops_the_host() {
    let mut host = TestHost::spawn_with("", &[("WEBHOOK_HOST_FAILPOINTS", "intake-writer")]).await;
    let (status, before) = read_health(&host).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["checks"]["tasks"]["status"], "ok");

    let body = br#"{"mode":"ok"}"#;
    let headers = crate::harness::Signer::fal("dies").headers(body);
    let (status, answer) = host.post_with("/hooks/misbehave", body, &headers).await;
    assert_eq!(status, 503, "{answer}");
    // The death is recorded as the task unwinds: poll for it briefly.
    let started = Instant::now();
    let (status, after) = loop {
        let (status, after) = read_health(&host).await;
        if status != 200 || started.elapsed() > Duration::from_secs(2) {
            break (status, after);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{after}");
    assert_eq!(after["status"], "fail");
    assert_eq!(
        after["checks"]["tasks"]["dead"][0]["task"], "intake writer",
        "{after}"
    );

    let exit = host
        .wait_for_exit(0, Duration::from_secs(20))
        .expect("the host stops by itself");
    assert!(!exit.success(), "{exit}");
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 0);
    let log = host.log();
    assert!(log.contains("the intake writer task died"), "{log}");
}

/// `/health` reports storage, kv and the routes' fetched keys: all ok on
/// S3 and Redis that answer; `degraded` (still 200) when Redis does not;
/// a JWKS route's keys `not_fetched` until the first delivery, then `ok`.
#[tokio::test]
async fn health_reports_storage_kv_and_keys() {
    let (env, _bucket) = crate::services::production_env("admin-test-token");
    let host = TestHost::spawn_pg_with(&env).await;
    let (_, health) = read_health(&host).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["checks"]["storage"],
        serde_json::json!({"status": "ok", "backend": "s3"})
    );
    assert_eq!(
        health["checks"]["kv"],
        serde_json::json!({"status": "ok", "backend": "redis"})
    );
    drop(host);

    let jwks = JwksServer::start(vec![key(3)]);
    // Nothing listens on port 9 of loopback.
    let host = TestHost::spawn_with(
        &fal_route("fal", &jwks, 0),
        &[("REDIS_URL", "redis://127.0.0.1:9")],
    )
    .await;
    let (status, health) = read_health(&host).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("degraded")),
        "{health}"
    );
    assert_eq!(health["checks"]["kv"]["status"], "fail", "{health}");
    assert_eq!(health["checks"]["storage"]["status"], "ok", "{health}");
    let fal = |health: &Value| health["checks"]["keys"]["routes"][0].clone();
    assert_eq!(fal(&health)["route"], "fal");
    assert_eq!(fal(&health)["keys"]["state"], "not_fetched", "{health}");

    let body = br#"{"request_id":"health-1","status":"OK"}"#;
    let headers =
        webhook_host::verify::sign::headers("fal-ed25519", &key_hex(3), "health-1", body, now_secs())
            .unwrap();
    let (status, answer) = host.post_with("/hooks/fal", body, &headers).await;
    assert_eq!(status, 200, "{answer}");
    let (_, health) = read_health(&host).await;
    assert_eq!(fal(&health)["keys"]["state"], "ok", "{health}");
    assert_eq!(fal(&health)["keys"]["keys"], 1, "{health}");
}

/// The Prometheus rules in the repo are well formed (alert, expr, severity,
/// summary) and every host metric they name is on a running host's
/// `/metrics` once it has had a dead event and a refused signature.
#[tokio::test]
async fn the_alert_rules_name_metrics_the_host_exports() {
    let host = TestHost::spawn().await;
    let dead = host.post_mode("invalid").await;
    host.wait_for(&dead, "dead").await;
    let body = br#"{"mode":"ok"}"#;
    let (status, _) = host.post_with("/hooks/misbehave", body, &[]).await;
    assert_eq!(status, 401);
    let metrics = host.get_text(0, "/metrics", None).await;

    let path = crate::workspace::workspace().join("docker/prometheus/webhook-host.rules.yml");
    let rules: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rules = rules["groups"][0]["rules"].as_sequence().unwrap();
    assert!(rules.len() >= 6);
    for rule in rules {
        let alert = rule["alert"].as_str().unwrap();
        assert!(rule["labels"]["severity"].as_str().is_some(), "{alert}");
        assert!(rule["annotations"]["summary"].as_str().is_some(), "{alert}");
        let expr = rule["expr"].as_str().unwrap();
        for metric in metric_names(expr) {
            assert!(
                metrics
                    .lines()
                    .any(|line| line.starts_with(&format!("{metric}{{"))
                        || line.starts_with(&format!("{metric} "))),
                "{alert}: {metric} is not on /metrics"
            );
        }
    }
}

/// The `webhook_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("webhook_"))
        .map(str::to_string)
        .collect()
}
