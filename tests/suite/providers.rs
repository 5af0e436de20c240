//! Provider presets through the real binary: every shipped preset on a route
//! of its own, signed as its provider would with fixed keys; a preset added
//! without a rebuild or a restart — in `PROVIDERS_DIR`, and inside a plugin's
//! manifest — serving on both instances in PostgreSQL mode; and the tools
//! (`providers list|show`, `send --provider`, `verify --explain`).

use std::time::{Duration, Instant};

use webhook_host::verify::catalogue;
use webhook_host::verify::preset::Preset;
use webhook_host::verify::preset_sign::{Delivery, Signed, fixed_test_keys, sign};
use webhook_host::verify::unix_now;

use crate::harness::TestHost;

const BODY: &[u8] = br#"{"id":"evt_1","event_id":"evt_1","mode":"ok","value":[{"id":"n1"}],"data":{"n":1}}"#;

fn env_name(provider: &str) -> String {
    format!("KEY_{}", provider.to_uppercase().replace('-', "_"))
}

/// A delivery for `preset` signed with `key` at `now`, for the route at `url`.
fn signed(preset: &Preset, key: &str, url: &str, id: &str, now: i64) -> Signed {
    sign(
        preset,
        key,
        &Delivery {
            body: BODY,
            content_type: "application/json",
            url: Some(url),
            query: "",
            certificate_url: None,
            delivery_id: id,
            now_unix: now,
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e:#}", preset.name))
}

/// Posts a signed delivery; the status and the answer's reason, if any.
async fn post(host: &TestHost, i: usize, path: &str, delivery: &Signed) -> (u16, String) {
    let url = match delivery.query.is_empty() {
        true => host.url_on(i, path),
        false => format!("{}?{}", host.url_on(i, path), delivery.query),
    };
    let response = host
        .http
        .post(url)
        .headers(delivery.headers.clone())
        .body(delivery.body.clone())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap_or_default();
    (status, answer["reason"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_preset_accepts_its_provider_and_refuses_changed_deliveries() {
    // Certificate presets fetch from their provider's hosts only (aws-sns:
    // SNS's); their fetching is tested below with a preset allowing loopback.
    let presets: Vec<_> = catalogue::all_builtin()
        .iter()
        .filter(|p| p.signature.key != webhook_host::verify::preset::KeyEncoding::Certificate)
        .cloned()
        .collect();
    assert!(presets.len() >= 40, "{} presets", presets.len());
    let mut routes = String::new();
    let mut keys = Vec::new();
    // JWKS presets fetch their keys: from a JWKS server on loopback, serving the test key.
    let seed: [u8; 32] = hex::decode(webhook_host::verify::preset_sign::TEST_ED25519_SEED)
        .unwrap()
        .try_into()
        .unwrap();
    let jwks = crate::verification::JwksServer::start(vec![ed25519_dalek::SigningKey::from_bytes(&seed)]);
    for preset in &presets {
        let name = &preset.name;
        let (signing, verifying) = fixed_test_keys(preset);
        let keys_from = match preset.signature.key {
            webhook_host::verify::preset::KeyEncoding::Jwks => format!("jwks_urls = [\"{}\"]", jwks.url),
            _ => format!("secret_env = \"{}\"", env_name(name)),
        };
        routes.push_str(&format!(
            "[[routes]]\nname = \"p-{name}\"\nplugin = \"test-misbehave\"\npublic_url = \"https://hooks.example.com/hooks/p-{name}\"\n\
             verify = [{{ provider = \"{name}\", {keys_from} }}]\n\n"
        ));
        keys.push((env_name(name), verifying, signing));
    }
    let env: Vec<(&str, &str)> = keys.iter().map(|(n, v, _)| (n.as_str(), v.as_str())).collect();
    let host = TestHost::spawn_with(&routes, &env).await;
    let now = unix_now();
    for (preset, (_, _, signing)) in presets.iter().zip(&keys) {
        let name = &preset.name;
        let path = format!("/hooks/p-{name}");
        let url = format!("https://hooks.example.com{path}");
        let good = signed(preset, signing, &url, &format!("{name}-1"), now);
        assert_eq!(post(&host, 0, &path, &good).await, (200, String::new()), "{name}");

        let mut changed = good.clone();
        changed.body = String::from_utf8(changed.body)
            .unwrap()
            .replace(r#""n":1"#, r#""n":2"#)
            .into_bytes();
        let signs_body = preset.signature.algorithm.signs()
            && (preset
                .signature
                .message
                .iter()
                .any(|p| matches!(p, webhook_host::verify::preset::Part::Body))
                || preset.body_hash.is_some());
        if signs_body {
            assert_eq!(
                post(&host, 0, &path, &changed).await,
                (401, "no_matching_signature".into()),
                "{name}: a changed body"
            );
        }
        let mut unsigned = good.clone();
        match &preset.signature.header {
            Some(header) => {
                unsigned.headers.remove(header.as_str());
                assert_eq!(
                    post(&host, 0, &path, &unsigned).await,
                    (401, "missing_header".into()),
                    "{name}: no signature"
                );
            }
            None => {
                unsigned.body = BODY.to_vec();
                assert_eq!(
                    post(&host, 0, &path, &unsigned).await.0,
                    401,
                    "{name}: no signature"
                );
            }
        }
        let checked = preset
            .timestamp
            .as_ref()
            .map_or(preset.listed_timestamp(), |t| t.checked);
        if checked {
            let stale = signed(preset, signing, &url, &format!("{name}-2"), now - 3600);
            assert_eq!(
                post(&host, 0, &path, &stale).await,
                (401, "timestamp_out_of_range".into()),
                "{name}: a stale timestamp"
            );
        }
    }
    // Each refusal was counted by route, provider and reason.
    let metrics = host
        .http
        .get(host.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"webhook_verification_failures_total{route="p-slack",provider="slack",reason="timestamp_out_of_range"} 1"#),
        "{}",
        metrics.lines().filter(|l| l.contains("p-slack")).collect::<Vec<_>>().join("\n")
    );
}

/// A provider no host build knows, in a plugin manifest's `[[providers]]`.
const ACME: &str = include_str!("../fixtures/providers/acme.toml");

const BETA: &str = "name = \"beta\"\ndocs = \"https://beta.test/webhooks\"\n[signature]\nalgorithm = \"hmac-sha1\"\nheader = \"X-Beta-Signature\"\nencoding = \"hex\"\n";

/// Waits until instance `i` serves `path` (anything but 404).
async fn served(host: &TestHost, i: usize, path: &str) -> Duration {
    let started = Instant::now();
    loop {
        let status = host
            .http
            .post(host.url_on(i, path))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        if status != 404 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path} never served on instance {i}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn presets_added_at_runtime_serve_on_both_instances_without_a_rebuild() {
    use base64::Engine as _;
    const ADMIN: &str = "providers-admin-token";
    let providers = tempfile::tempdir().unwrap();
    let garage = crate::services::garage();
    let bucket = garage.bucket();
    let mut env = garage.env(&bucket);
    env.extend([
        ("ADMIN_TOKEN".to_string(), ADMIN.to_string()),
        (
            "PROVIDERS_DIR".to_string(),
            providers.path().display().to_string(),
        ),
        ("ACME_SECRET".to_string(), "acme-test-secret".to_string()),
        ("BETA_SECRET".to_string(), "beta-test-secret".to_string()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = TestHost::start_with(crate::harness::Options {
        backend: crate::harness::Backend::Postgres,
        instances: 2,
        extra_env: &env,
        ..Default::default()
    })
    .await;
    for i in 0..2 {
        assert_eq!(
            host.http
                .post(host.url_on(i, "/hooks/acme"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    // The operator drops beta's preset into PROVIDERS_DIR; a plugin brings
    // acme's inside its manifest, with routes naming both.
    std::fs::write(providers.path().join("beta.toml"), BETA).unwrap();
    let manifest = format!(
        "{}\n{ACME}\n[[routes]]\nname = \"acme\"\nverify = [{{ provider = \"acme\", secret_env = \"ACME_SECRET\" }}]\n\n\
         [[routes]]\nname = \"beta\"\nverify = [{{ provider = \"beta\", secret_env = \"BETA_SECRET\" }}]\n",
        crate::harness::test_manifest("test-misbehave", &[])
    );
    let wasm = std::fs::read(crate::harness::plugin_dir().join("test_misbehave.wasm")).unwrap();
    let upload = serde_json::json!({
        "manifest": manifest,
        "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "activate": true,
    });
    host.admin_post(0, "/admin/v1/plugins", ADMIN, upload).await;
    let acme = Preset::parse(&ACME.replace("[[providers]]", "").replace("[providers.", "[")).unwrap();
    let beta = Preset::parse(BETA).unwrap();
    for i in 0..2 {
        let waited = served(&host, i, "/hooks/acme").await;
        println!("instance {i} serves the deployed preset after {waited:?}");
        let now = unix_now();
        let ok = signed(&acme, "acme-test-secret", "", &format!("acme-{i}"), now);
        assert_eq!(
            post(&host, i, "/hooks/acme", &ok).await,
            (200, String::new()),
            "instance {i}"
        );
        let forged = signed(&acme, "not-the-secret", "", &format!("acme-x{i}"), now);
        assert_eq!(
            post(&host, i, "/hooks/acme", &forged).await,
            (401, "no_matching_signature".into())
        );
        let ok = signed(&beta, "beta-test-secret", "", &format!("beta-{i}"), now);
        assert_eq!(
            post(&host, i, "/hooks/beta", &ok).await,
            (200, String::new()),
            "instance {i}"
        );
    }
    // A broken preset is refused at deploy, by name, and changes nothing.
    let broken = format!(
        "{}\n{}\n",
        crate::harness::test_manifest("test-misbehave", &[]),
        ACME.replace("hmac-sha512", "rot13")
    );
    let response = host
        .http
        .post(host.url_on(0, "/admin/v1/plugins"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "manifest": broken, "component_base64": "AA==", "activate": true }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status.is_client_error() && text.contains("rot13"),
        "{status} {text}"
    );
}

/// `providers list|show`, `send --provider` and `verify --explain`.
#[tokio::test]
async fn the_provider_tools_list_sign_and_explain() {
    let run = crate::harness::run_cli;
    let (ok, list) = run(&["providers", "list"], &[]);
    assert!(ok, "{list}");
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, catalogue::names());
    let (ok, show) = run(&["providers", "show", "twitch"], &[]);
    assert!(
        ok && show.contains("Twitch-Eventsub-Message-Signature") && show.contains("Rfc3339"),
        "{show}"
    );
    assert!(!run(&["providers", "show", "nope"], &[]).0);

    let host = TestHost::spawn_with(
        "[[routes]]\nname = \"tw\"\nplugin = \"test-misbehave\"\nbody = \"any\"\npublic_url = \"https://hooks.example.com/hooks/tw\"\n\
         verify = [{ provider = \"twilio\", secret_env = \"TWILIO_AUTH_TOKEN\" }]\n",
        &[("TWILIO_AUTH_TOKEN", "twilio-token")],
    )
    .await;
    let body = host.dir.path().join("call.form");
    std::fs::write(&body, "CallSid=CA1&From=%2B14158675309&mode=ok").unwrap();
    let url = host.url("/hooks/tw?attempt=1");
    let send = |token: &str| {
        run(
            &[
                "send",
                "--provider",
                "twilio",
                "--content-type",
                "application/x-www-form-urlencoded",
                "--file",
                body.to_str().unwrap(),
                "--url",
                &url,
                "--public-url",
                "https://hooks.example.com/hooks/tw",
            ],
            &[("WEBHOOK_SECRET", token)],
        )
    };
    let (ok, out) = send("twilio-token");
    assert!(ok && out.contains("HTTP 200"), "{out}");
    let (ok, out) = send("another-token");
    assert!(
        !ok && out.contains("HTTP 401") && out.contains("no_matching_signature"),
        "{out}"
    );

    // A captured request whose body a proxy re-serialised.
    let captured = host.dir.path().join("captured.http");
    std::fs::write(
        &captured,
        "POST /hooks/svix HTTP/1.1\r\nHost: hooks.example.com\r\nsvix-id: msg_p5jXN8AQM9LWM0D4loKWxJek\r\nsvix-timestamp: 1614265330\r\n\
         svix-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\r\n\r\n{\"test\":2432232314}",
    )
    .unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let explain = |now: &str| {
        run(
            &[
                "verify",
                "--explain",
                captured.to_str().unwrap(),
                "--provider",
                "svix",
                "--now",
                now,
            ],
            &[("WEBHOOK_SECRET", secret)],
        )
    };
    let (ok, out) = explain("1614265330");
    assert!(
        !ok && out.contains("re-serialised") && !out.contains(secret),
        "{out}"
    );
    let (ok, out) = explain("1714265330");
    assert!(!ok && out.contains("timestamp_out_of_range"), "{out}");
}

/// A certificate preset (AWS SNS's scheme, allowed to fetch from loopback):
/// the certificate the message names is fetched once and kept; a changed
/// message is refused; a certificate URL on a host not allowed is refused
/// without a fetch.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_preset_fetches_the_named_certificate_once_from_an_allowed_host() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use webhook_host::verify::preset_sign::{TEST_RSA_CERTIFICATE, TEST_RSA_PKCS8};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let app = axum::Router::new().route(
        "/SimpleNotificationService-test.pem",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { TEST_RSA_CERTIFICATE }
        }),
    );
    crate::remote::serve_on_own_thread(listener, app);

    let providers = tempfile::tempdir().unwrap();
    let local = crate::harness::sns_local_preset(providers.path(), false);
    let dir = providers.path().display().to_string();
    let host = TestHost::spawn_with(
        "[[routes]]\nname = \"sns\"\nplugin = \"test-misbehave\"\nbody = \"any\"\nverify = [{ provider = \"sns-local\" }]\n",
        &[("PROVIDERS_DIR", dir.as_str())],
    )
    .await;
    let preset = Preset::parse(&local).unwrap();
    let url = format!("http://127.0.0.1:{port}/SimpleNotificationService-test.pem");
    let notification = |id: &str, message: &str, cert: &str| {
        let body = serde_json::json!({
            "Type": "Notification", "MessageId": id, "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
            "Subject": "My First Message", "Message": message, "Timestamp": "2012-05-02T00:54:06.655Z",
            "mode": "ok",
        })
        .to_string();
        sign(
            &preset,
            TEST_RSA_PKCS8,
            &Delivery {
                body: body.as_bytes(),
                content_type: "text/plain; charset=UTF-8",
                url: None,
                query: "",
                certificate_url: Some(cert),
                delivery_id: id,
                now_unix: unix_now(),
            },
        )
        .unwrap()
    };
    for id in ["sns-1", "sns-2"] {
        let delivery = notification(id, "Hello world!", &url);
        assert_eq!(
            post(&host, 0, "/hooks/sns", &delivery).await,
            (200, String::new()),
            "{id}"
        );
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the certificate is fetched once"
    );

    let mut changed = notification("sns-3", "Hello world!", &url);
    changed.body = String::from_utf8(changed.body)
        .unwrap()
        .replace("Hello world!", "Hello world?")
        .into_bytes();
    assert_eq!(
        post(&host, 0, "/hooks/sns", &changed).await,
        (401, "no_matching_signature".into())
    );

    let elsewhere = notification("sns-4", "Hello world!", &url.replace("127.0.0.1", "localhost"));
    assert_eq!(
        post(&host, 0, "/hooks/sns", &elsewhere).await,
        (401, "bad_encoding".into())
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "nothing fetched from a host not allowed"
    );
}
