//! Verifier and responder plugins through the real binary, with the
//! `test-gate` component: a scheme no preset has decided by a plugin before
//! anything is stored; the hostile corpus (loop, memory bomb, trap, slow)
//! against the verifier world answers 503 within its budget while another
//! route's deliveries are accepted; a responder answers a challenge and lets
//! deliveries go on; a verifier deployed to a running two-instance
//! PostgreSQL cluster takes effect on both, and a rollback restores the
//! previous version.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};

use crate::harness::{Backend, Options, Signer, TestHost};

const KEY: &str = "gate-test-key";
const ADMIN: &str = "gate-admin-token";

const ROUTES: &str = r#"
[[routes]]
name = "gated"
plugin = "test-misbehave"
verify = [{ plugin = "test-gate" }]

[[routes]]
name = "answered"
plugin = "test-misbehave"
responder = "test-gate-responder"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
"#;

const RESPONDER: &str = "name = \"test-gate-responder\"\nkind = \"responder\"\n\
     [grants]\nhttp = { allow = [\"http://127.0.0.1:*\"], allow_private = true }\n";

/// The headers of a delivery signed as test-gate checks it.
fn gate_headers(body: &str, id: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let timestamp = crate::harness::now_secs().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let mut headers = vec![
        ("x-gate-timestamp", timestamp),
        ("x-gate-signature", hex::encode(mac.finalize().into_bytes())),
        ("x-gate-id", id.to_string()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    headers
}

async fn post_gated(
    host: &TestHost,
    i: usize,
    id: &str,
    extra: &[(&'static str, &str)],
) -> (u16, serde_json::Value) {
    let body = format!(r#"{{"mode":"ok","n":"{id}"}}"#);
    host.post_on(
        i,
        "/hooks/gated",
        body.as_bytes(),
        &gate_headers(&body, id, extra),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verifier_plugin_guards_its_route_and_its_failures_stay_there() {
    let host = TestHost::start_with(Options {
        extra_config: ROUTES,
        extra_env: &[("TEST_GATE_KEY", KEY)],
        extra_plugins: &["test-gate"],
        plugin_copies: &[("test-gate-responder", "test-gate", RESPONDER)],
        ..Default::default()
    })
    .await;

    let (status, answer) = post_gated(&host, 0, "g-1", &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        host.texts("SELECT delivery_id FROM webhook_events WHERE route = 'gated'")
            .await,
        ["g-1"],
        "stored under the id the verifier gave"
    );
    let body = r#"{"mode":"ok","n":"g-2"}"#;
    let mut forged = gate_headers(body, "g-2", &[]);
    forged[1].1 = "00".repeat(32);
    let (status, answer) = host.post_on(0, "/hooks/gated", body.as_bytes(), &forged).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (401, Some("plugin_rejected")),
        "{answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("does not match"),
        "{answer}"
    );
    let (status, answer) = post_gated(&host, 0, "g-3", &[("x-gate-mode", "unavailable")]).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (503, Some("verifier_failed")),
        "{answer}"
    );

    // The hostile corpus, four at a time, while the other route keeps accepting.
    let hostile = async {
        let mut answers = Vec::new();
        for round in 0..2 {
            let runs = ["loop", "oom", "trap", "slow"].map(|mode| {
                let host = &host;
                async move {
                    let started = Instant::now();
                    let id = format!("h-{mode}-{round}");
                    let (status, answer) = post_gated(host, 0, &id, &[("x-gate-mode", mode)]).await;
                    (mode, status, answer, started.elapsed())
                }
            });
            answers.extend(futures_util::future::join_all(runs).await);
        }
        answers
    };
    let others = async {
        let mut statuses = Vec::new();
        for i in 0..20 {
            let id = format!("other-{i}");
            let body = format!(r#"{{"mode":"ok","request_id":"{id}"}}"#);
            statuses.push(
                host.post("/hooks/misbehave", body.as_bytes(), Signer::fal(&id))
                    .await
                    .0,
            );
        }
        statuses
    };
    let (hostile, others) = tokio::join!(hostile, others);
    for (mode, status, answer, took) in &hostile {
        println!("verifier {mode}: {status} in {took:?}");
        assert_eq!(status, &503, "{mode}: {answer}");
        assert_eq!(answer["reason"], "verifier_failed", "{mode}: {answer}");
        // The budget is 50 ms; a few seconds tells a bounded answer from a hang.
        assert!(*took < Duration::from_secs(5), "{mode} took {took:?}");
    }
    assert!(others.iter().all(|s| *s == 200), "{others:?}");
    assert_eq!(
        host.count("SELECT COUNT(*) FROM webhook_events WHERE route = 'gated'")
            .await,
        1,
        "nothing refused was stored"
    );
    // The host is whole: the verifier still verifies.
    assert_eq!(post_gated(&host, 0, "g-4", &[]).await.0, 200);
    let metrics = host.get_text(0, "/metrics", None).await;
    for kind in ["timeout", "memory_limit", "trap"] {
        assert!(
            metrics.contains(&format!(
                r#"webhook_plugin_failures_total{{plugin="test-gate",kind="{kind}"}}"#
            )),
            "{kind}: {}",
            metrics
                .lines()
                .filter(|l| l.contains("plugin_failures"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // A key the verifier fetches through its http grant is kept by the host:
    // one fetch for five deliveries (each a fresh instance).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let key_url = format!("http://{}/key", listener.local_addr().unwrap());
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/key",
        axum::routing::get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { KEY }
        }),
    );
    crate::remote::serve_on_own_thread(listener, app);
    for i in 0..5 {
        let (status, answer) = post_gated(&host, 0, &format!("k-{i}"), &[("x-gate-key-url", &key_url)]).await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the key was fetched once"
    );

    // The responder answers a challenge itself; other requests go on.
    let response = host
        .http
        .get(host.url("/hooks/answered?challenge=abc123"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-answered-by"], "test-gate 1");
    assert_eq!(response.text().await.unwrap(), "abc123");
    let body = br#"{"mode":"ok","request_id":"answered-1"}"#;
    let (status, answer) = host
        .post("/hooks/answered", body, Signer::fal("answered-1"))
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    let mut trap = Signer::fal("answered-2").headers(body);
    trap.push(("x-gate-mode", "trap".into()));
    let (status, answer) = host.post_with("/hooks/answered", body, &trap).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("responder_failed")),
        "{answer}"
    );
    assert_eq!(
        host.count("SELECT COUNT(*) FROM webhook_events WHERE route = 'answered'")
            .await,
        1
    );
}

/// Polls until instance `i` answers a delivery asking for `version` with `status`.
async fn until_version(host: &TestHost, i: usize, version: &str, status: u16) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("v{version}-{i}-{n}-{}", started.elapsed().as_nanos());
        let (got, answer) = post_gated(host, i, &id, &[("x-gate-version", version)]).await;
        if got == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "instance {i} never answered {status} for version {version}: {got} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verifier_deployed_to_a_cluster_takes_effect_on_both_and_rolls_back() {
    use base64::Engine as _;
    let garage = crate::services::garage();
    let bucket = garage.bucket();
    let mut env = garage.env(&bucket);
    env.extend([
        ("ADMIN_TOKEN".to_string(), ADMIN.to_string()),
        ("TEST_GATE_KEY".to_string(), KEY.to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = TestHost::start_with(Options {
        backend: Backend::Postgres,
        instances: 2,
        extra_config: ROUTES,
        extra_env: &env,
        ..Default::default()
    })
    .await;
    // No verifier yet: the route cannot decide, and says so.
    for i in 0..2 {
        let (status, answer) = post_gated(&host, i, &format!("none-{i}"), &[]).await;
        assert_eq!(
            (status, answer["reason"].as_str()),
            (503, Some("verifier_failed")),
            "{answer}"
        );
    }
    let wasm = std::fs::read(crate::workspace::plugin_dir().join("test_gate.wasm")).unwrap();
    let deploy = |version: &str| {
        let manifest = format!(
            "name = \"test-gate\"\nkind = \"verifier\"\n[config]\nversion = \"{version}\"\n[secrets]\nsigning_key = \"env:TEST_GATE_KEY\"\n\
             [grants]\nhttp = {{ allow = [\"http://127.0.0.1:*\"], allow_private = true }}\n"
        );
        serde_json::json!({
            "manifest": manifest,
            "component_base64": base64::engine::general_purpose::STANDARD.encode(&wasm),
            "activate": true,
        })
    };
    host.admin_post(0, "/admin/v1/plugins", ADMIN, deploy("1")).await;
    for i in 0..2 {
        let took = until_version(&host, i, "1", 200).await;
        println!("instance {i} verifies with version 1 after {took:?}");
    }
    host.admin_post(1, "/admin/v1/plugins", ADMIN, deploy("2")).await;
    for i in 0..2 {
        let took = until_version(&host, i, "2", 200).await;
        println!("instance {i} verifies with version 2 after {took:?}");
        assert_eq!(
            post_gated(&host, i, &format!("old-{i}"), &[("x-gate-version", "1")])
                .await
                .0,
            401
        );
    }
    host.admin_post(
        0,
        "/admin/v1/plugins/test-gate/rollback",
        ADMIN,
        serde_json::json!({}),
    )
    .await;
    for i in 0..2 {
        let took = until_version(&host, i, "1", 200).await;
        println!("instance {i} is back on version 1 after {took:?}");
        assert_eq!(
            post_gated(&host, i, &format!("new-{i}"), &[("x-gate-version", "2")])
                .await
                .0,
            401
        );
    }
}
