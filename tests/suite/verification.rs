//! Signature schemes end to end: FAL's Ed25519 against a JWKS server on
//! loopback, and every scheme through `webhook-host send`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use webhook_host::verify::{sign, unix_now};

use crate::harness::TestHost;

/// A JWKS endpoint the test controls: which keys it serves, whether it is
/// up, and how often it was asked.
#[derive(Clone)]
pub(crate) struct JwksServer {
    pub(crate) url: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    up: Arc<AtomicBool>,
    fetches: Arc<AtomicU64>,
}

impl JwksServer {
    /// Serves from a thread of its own (see `serve_on_own_thread`).
    pub(crate) fn start(keys: Vec<SigningKey>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let server = JwksServer {
            url: format!("http://{}/jwks.json", listener.local_addr().unwrap()),
            keys: Arc::new(Mutex::new(keys)),
            up: Arc::new(AtomicBool::new(true)),
            fetches: Arc::new(AtomicU64::new(0)),
        };
        let state = server.clone();
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                let state = state.clone();
                async move {
                    state.fetches.fetch_add(1, Ordering::SeqCst);
                    if !state.up.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let keys: Vec<serde_json::Value> = state
                        .keys
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|k| {
                            let x = URL_SAFE_NO_PAD.encode(k.verifying_key().to_bytes());
                            serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "test" })
                        })
                        .collect();
                    (StatusCode::OK, serde_json::json!({ "keys": keys }).to_string())
                }
            }),
        );
        crate::remote::serve_on_own_thread(listener, app);
        server
    }

    /// Turns the server's answers on (200) or off (503).
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn key_hex(seed: u8) -> String {
    hex::encode([seed; 32])
}

/// A route verified by FAL's Ed25519 scheme against `jwks`.
pub(crate) fn fal_route(name: &str, jwks: &JwksServer, min_fetch_interval_secs: u64) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
plugin = "test-misbehave"
verify = [{{ scheme = "fal-ed25519", jwks_urls = ["{}"], jwks_min_fetch_interval_secs = {min_fetch_interval_secs} }}]
retry_schedule = []
"#,
        jwks.url
    )
}

fn fal_headers(seed: u8, request_id: &str, body: &[u8], skew: i64) -> Vec<(&'static str, String)> {
    sign::headers("fal-ed25519", &key_hex(seed), request_id, body, unix_now() + skew).unwrap()
}

/// Valid → accepted; tampered, wrong key, stale, future, missing headers,
/// non-hex and truncated signatures → 401 with the right reason.
#[tokio::test]
async fn fal_ed25519_accepts_genuine_deliveries_and_names_each_failure() {
    let jwks = JwksServer::start(vec![key(1), key(2)]);
    let host = TestHost::spawn_with(&fal_route("fal", &jwks, 60), &[]).await;
    let body = br#"{"request_id":"r-1","status":"OK"}"#;
    let (status, answer) = host
        .post_with("/hooks/fal", body, &fal_headers(2, "r-1", body, 0))
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );

    let reason = |answer: &serde_json::Value| answer["reason"].as_str().unwrap_or("").to_string();
    // Signed a minute ago, before the keys were fetched: a signature that
    // fails then is refused. (One signed after the fetch, while the rate
    // limit holds a refresh back, may be a rotation: 503, tested below.)
    let (status, answer) = host
        .post_with(
            "/hooks/fal",
            b"{\"tampered\":1}",
            &fal_headers(2, "r-2", body, -60),
        )
        .await;
    assert_eq!((status, reason(&answer).as_str()), (401, "no_matching_signature"));
    let (status, answer) = host
        .post_with("/hooks/fal", body, &fal_headers(9, "r-3", body, -60))
        .await;
    assert_eq!((status, reason(&answer).as_str()), (401, "no_matching_signature"));
    for skew in [-301, 301] {
        let (status, answer) = host
            .post_with("/hooks/fal", body, &fal_headers(2, "r-4", body, skew))
            .await;
        assert_eq!(
            (status, reason(&answer).as_str()),
            (401, "timestamp_out_of_range"),
            "skew {skew}"
        );
    }
    let good = fal_headers(2, "r-5", body, 0);
    for missing in 0..4 {
        let mut headers = good.clone();
        headers.remove(missing);
        let (status, answer) = host.post_with("/hooks/fal", body, &headers).await;
        assert_eq!(
            (status, reason(&answer).as_str()),
            (401, "missing_header"),
            "without {}",
            good[missing].0
        );
    }
    for bad_signature in ["not-hex-at-all".to_string(), good[3].1[..100].to_string()] {
        let mut headers = good.clone();
        headers[3].1 = bad_signature;
        let (status, answer) = host.post_with("/hooks/fal", body, &headers).await;
        assert_eq!((status, reason(&answer).as_str()), (401, "bad_encoding"));
        assert!(
            !answer.to_string().contains(&good[3].1),
            "the expected signature is never echoed"
        );
    }
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 1);
    let log = host.log();
    assert!(
        log.contains("webhook not verified") && log.contains("delivery_id=r-2"),
        "{log}"
    );
}

/// JWKS changes: the new key is fetched once; the old key's signatures then fail.
#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_the_old_one_stops_working() {
    let jwks = JwksServer::start(vec![key(1)]);
    let host = TestHost::spawn_with(&fal_route("fal", &jwks, 1), &[]).await;
    let body = b"{}";
    let (status, _) = host
        .post_with("/hooks/fal", body, &fal_headers(1, "before", body, 0))
        .await;
    assert_eq!(status, 200);
    assert_eq!(jwks.fetches(), 1);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    *jwks.keys.lock().unwrap() = vec![key(3)];
    let (status, answer) = host
        .post_with("/hooks/fal", body, &fal_headers(3, "after", body, 0))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(jwks.fetches(), 2, "one refresh found the new key");

    // Signed before the keys were fetched (a request signed after them
    // would be told to retry while the rate limit holds the refresh back).
    let (status, answer) = host
        .post_with("/hooks/fal", body, &fal_headers(1, "old-key", body, -5))
        .await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("no_matching_signature"))
    );
    assert_eq!(
        jwks.fetches(),
        2,
        "the failure right after a fetch does not fetch again"
    );
}

/// A key rotated just after the last fetch: while the rate limit holds the
/// refresh back, the delivery is answered 503 keys_refreshing with
/// Retry-After (never a final 401); sent again then, it is accepted.
#[tokio::test]
async fn a_key_rotated_within_the_rate_limit_is_retried_not_refused() {
    let jwks = JwksServer::start(vec![key(1)]);
    let host = TestHost::spawn_with(&fal_route("fal", &jwks, 2), &[]).await;
    let body = b"{}";
    let (status, _) = host
        .post_with("/hooks/fal", body, &fal_headers(1, "first", body, 0))
        .await;
    assert_eq!((status, jwks.fetches()), (200, 1));
    *jwks.keys.lock().unwrap() = vec![key(2)];
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let headers = fal_headers(2, "rotated", body, 0);
    let mut request = host
        .http
        .post(host.url("/hooks/fal"))
        .header("content-type", "application/json");
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let response = request.body(body.to_vec()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["reason"], "keys_refreshing");
    assert_eq!(jwks.fetches(), 1, "the rate limit held the refresh back");

    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    let (status, answer) = host.post_with("/hooks/fal", body, &headers).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(jwks.fetches(), 2);
}

/// With the JWKS down, cached keys (in memory, and on disk across a restart) still verify.
#[tokio::test]
async fn a_jwks_outage_does_not_reject_while_cached_keys_are_fresh() {
    let jwks = JwksServer::start(vec![key(4)]);
    let mut host = TestHost::spawn_with(&fal_route("fal", &jwks, 60), &[]).await;
    let body = b"{}";
    assert_eq!(
        host.post_with("/hooks/fal", body, &fal_headers(4, "warm", body, 0))
            .await
            .0,
        200
    );
    jwks.up.store(false, Ordering::SeqCst);
    assert_eq!(
        host.post_with("/hooks/fal", body, &fal_headers(4, "during", body, 0))
            .await
            .0,
        200
    );

    host.kill();
    host.restart();
    let (status, answer) = host
        .post_with("/hooks/fal", body, &fal_headers(4, "restarted", body, 0))
        .await;
    assert_eq!(status, 200, "the disk cache verifies after a restart: {answer}");
}

/// With the JWKS down and nothing cached: 503 `keys_unavailable` with
/// Retry-After, so the sender retries later; nothing stored.
#[tokio::test]
async fn no_keys_at_all_answers_503_so_the_sender_retries() {
    let jwks = JwksServer::start(vec![key(5)]);
    jwks.up.store(false, Ordering::SeqCst);
    let host = TestHost::spawn_with(&fal_route("fal", &jwks, 60), &[]).await;
    let body = b"{}";
    let mut request = host
        .http
        .post(host.url("/hooks/fal"))
        .header("content-type", "application/json");
    for (name, value) in fal_headers(5, "cold", body, 0) {
        request = request.header(name, value);
    }
    let response = request.body(body.to_vec()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(answer["reason"], "keys_unavailable");
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 0);
}

/// 1,000 bad signatures cause at most two JWKS fetches. Signed after the
/// keys were fetched, each may be genuine (a key rotated since): it is
/// refused (401) when a refresh ran, or told to retry (503 keys_refreshing,
/// with Retry-After) while the rate limit holds the refresh back.
#[tokio::test]
async fn a_flood_of_bad_signatures_cannot_amplify_into_jwks_fetches() {
    let jwks = JwksServer::start(vec![key(6)]);
    let host = Arc::new(TestHost::spawn_with(&fal_route("fal", &jwks, 60), &[]).await);
    let mut tasks = tokio::task::JoinSet::new();
    for batch in 0..20 {
        let host = host.clone();
        tasks.spawn(async move {
            for i in 0..50 {
                let body = format!(r#"{{"n":{i}}}"#).into_bytes();
                let id = format!("bad-{batch}-{i}");
                let (status, answer) = host
                    .post_with("/hooks/fal", &body, &fal_headers(7, &id, &body, 0))
                    .await;
                assert!(
                    (status, answer["reason"].as_str()) == (401, Some("no_matching_signature"))
                        || (status, answer["reason"].as_str()) == (503, Some("keys_refreshing")),
                    "{status} {answer}"
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(
        jwks.fetches() <= 2,
        "{} fetches for 1,000 bad signatures",
        jwks.fetches()
    );
}

/// Every scheme, signed by `webhook-host send`, is accepted on its route,
/// and refused with the wrong key. Keys come from the environment and from a file.
#[tokio::test]
async fn send_signs_every_scheme_the_host_verifies() {
    let jwks = JwksServer::start(vec![key(8)]);
    let routes = format!(
        r#"{}
[[routes]]
name = "std"
plugin = "test-misbehave"
verify = [{{ scheme = "standard-webhooks", secrets = ["env:STD_OLD", "file:{{dir}}/std.secret"] }}]

[[routes]]
name = "gh"
plugin = "test-misbehave"
verify = [{{ scheme = "github", secret_env = "GH_SECRET" }}]

[[routes]]
name = "stripe"
plugin = "test-misbehave"
verify = [{{ scheme = "stripe", secret_file = "{{dir}}/stripe.secret" }}]
"#,
        // No refresh limit: the wrong key's delivery refetches and is 401.
        // With one, a delivery signed a second after the fetch would be the
        // designed 503 keys_refreshing instead, depending on the clock.
        fal_route("fal", &jwks, 0)
    );
    let std_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let env = [
        ("STD_OLD", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        ("GH_SECRET", "gh-secret"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let host = {
        // The secret files must exist before the host starts; the host's own
        // folder is created by spawn, so they go in a folder of their own.
        let routes = routes.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(dir.path().join("std.secret"), format!("{std_secret}\n")).unwrap();
        std::fs::write(dir.path().join("stripe.secret"), "whsec_stripe_test").unwrap();
        TestHost::spawn_with(&routes, &env).await
    };
    let body_file = host.dir.path().join("body.json");
    std::fs::write(&body_file, br#"{"id":"evt_send_1","mode":"ok"}"#).unwrap();
    let send = |scheme: &str, route: &str, key: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
            .args(["send", "--scheme", scheme, "--secret-env", "SEND_KEY", "--file"])
            .arg(&body_file)
            .args(["--url", &host.url(&format!("/hooks/{route}"))])
            .env("SEND_KEY", key)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    let cases = [
        ("fal-ed25519", "fal", key_hex(8), key_hex(9)),
        (
            "standard-webhooks",
            "std",
            std_secret.to_string(),
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        ),
        (
            "standard-webhooks",
            "std",
            env[0].1.to_string(),
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        ),
        ("github", "gh", "gh-secret".to_string(), "gh-wrong".to_string()),
        (
            "stripe",
            "stripe",
            "whsec_stripe_test".to_string(),
            "whsec_wrong".to_string(),
        ),
    ];
    for (scheme, route, good, bad) in cases {
        let (ok, out) = send(scheme, route, &good);
        assert!(ok && out.contains("HTTP 200"), "{scheme}: {out}");
        let (ok, out) = send(scheme, route, &bad);
        assert!(
            !ok && out.contains("HTTP 401") && out.contains("no_matching_signature"),
            "{scheme}: {out}"
        );
    }
}

/// A route may take its delivery id from a JSON field: two deliveries with
/// different signatures but the same event id are one event.
#[tokio::test]
async fn the_delivery_id_can_come_from_a_json_field() {
    let routes = r#"
[[routes]]
name = "byfield"
plugin = "test-misbehave"
delivery_id = "json:data.object.id"
verify = [{ scheme = "github", secret_env = "GH_SECRET" }]
"#;
    let host = TestHost::spawn_with(routes, &[("GH_SECRET", "k")]).await;
    let body = br#"{"data":{"object":{"id":"obj_42"}},"mode":"ok"}"#;
    let first = sign::headers("github", "k", "delivery-a", body, unix_now()).unwrap();
    let second = sign::headers("github", "k", "delivery-b", body, unix_now()).unwrap();
    let (_, a) = host.post_with("/hooks/byfield", body, &first).await;
    let (_, b) = host.post_with("/hooks/byfield", body, &second).await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("accepted"), Some("duplicate"))
    );
    assert_eq!(
        host.texts("SELECT delivery_id FROM webhook_events").await,
        ["obj_42"]
    );
}
