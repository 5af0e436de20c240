//! Provider handshakes through the real binary: every shipped preset's
//! handshake, made as its documentation shows it and signed with fixed keys
//! where the provider signs it, answered as the provider expects; refused
//! when forged (401) or carrying a wrong token (403); counted in the metrics
//! and the console; never stored. AWS SNS's confirmation GETs the
//! SubscribeURL from an allowed host only.

use std::sync::Arc;

use reqwest::Method;
use webhook_host::verify::catalogue;
use webhook_host::verify::preset::Preset;
use webhook_host::verify::preset_sign::{self, Signed, fixed_test_keys};
use webhook_host::verify::unix_now;

use crate::harness::TestHost;

const ADMIN: &str = "handshake-admin-token";

fn env_name(provider: &str) -> String {
    format!("KEY_{}", provider.to_uppercase().replace('-', "_"))
}

/// Sends `request` with `method` to `path`; status, headers and body.
async fn send(
    host: &TestHost,
    method: &str,
    path: &str,
    request: &Signed,
) -> (u16, reqwest::header::HeaderMap, String) {
    let url = match request.query.is_empty() {
        true => host.url(path),
        false => format!("{}?{}", host.url(path), request.query),
    };
    let response = host
        .http
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .headers(request.headers.clone())
        .body(request.body.clone())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// What each provider's handshake must be answered with (the body, and a
/// header that must be there): from the providers' documentation.
fn expected(provider: &str, key: &str) -> (String, Option<(&'static str, String)>) {
    match provider {
        "slack" => ("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into(), None),
        "discord" => (r#"{"type":1}"#.into(), None),
        "zoom" => {
            let plain = "qgg8vlvZRS6UYooatFL8Aw";
            let encrypted = hex::encode(webhook_host::verify::hmac_sha256(key.as_bytes(), &[plain.as_bytes()]));
            (
                serde_json::json!({ "encryptedToken": encrypted, "plainToken": plain }).to_string(),
                None,
            )
        }
        "twitch" => ("pogchamp-kappa-360noscope-vohiyo".into(), None),
        "meta" => ("1158201444".into(), None),
        "microsoft-graph" => (
            "Validation: Testing client application reachability for subscription Request-Id: 3b3f9821-ce3f-4b12-9b06-42fc49c7ed52"
                .into(),
            Some(("x-content-type-options", "nosniff".into())),
        ),
        "dropbox" => (
            "OSEqLIM5VGAPmWh9ByWcaA2DMJFpzDkGa8GsyhSTgkA".into(),
            Some(("x-content-type-options", "nosniff".into())),
        ),
        "okta" => (r#"{"verification":"Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"}"#.into(), None),
        "asana" => (
            String::new(),
            Some((
                "x-hook-secret",
                "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81".into(),
            )),
        ),
        "trello" => (String::new(), None),
        other => panic!("{other} declares a handshake this test has no expectation for"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_handshake_is_answered_as_its_provider_expects_and_nothing_is_stored() {
    let presets: Vec<Arc<Preset>> = catalogue::all_builtin()
        .iter()
        .filter(|p| !p.handshakes.is_empty() && p.name != "aws-sns")
        .cloned()
        .collect();
    assert!(presets.len() >= 10, "{} presets with handshakes", presets.len());
    let mut routes = String::new();
    let mut env: Vec<(String, String)> = vec![
        ("ADMIN_TOKEN".into(), ADMIN.into()),
        ("META_VERIFY_TOKEN".into(), "meatyhamhock".into()),
    ];
    let mut signing_keys = Vec::new();
    for preset in &presets {
        let name = &preset.name;
        let (signing, verifying) = fixed_test_keys(preset);
        let token = if name == "meta" {
            ", handshake_token_env = \"META_VERIFY_TOKEN\""
        } else {
            ""
        };
        routes.push_str(&format!(
            "[[routes]]\nname = \"h-{name}\"\nplugin = \"test-misbehave\"\npublic_url = \"https://hooks.example.com/hooks/h-{name}\"\n\
             verify = [{{ provider = \"{name}\", secret_env = \"{}\"{token} }}]\n\n",
            env_name(name)
        ));
        env.push((env_name(name), verifying.clone()));
        signing_keys.push((signing, verifying));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = TestHost::spawn_with(&routes, &env).await;
    let now = unix_now();
    for (preset, (signing, verifying)) in presets.iter().zip(&signing_keys) {
        let name = &preset.name;
        let path = format!("/hooks/h-{name}");
        let url = format!("https://hooks.example.com{path}");
        for spec in &preset.handshakes {
            let request = preset_sign::handshake(preset, spec, signing, Some(&url), None, now).unwrap();
            let started = std::time::Instant::now();
            let (status, headers, body) = send(&host, &spec.method, &path, &request).await;
            println!("{name} {}: {status} in {:?}", spec.name, started.elapsed());
            assert_eq!(status, 200, "{name} {}: {body}", spec.name);
            let (want_body, want_header) = expected(name, verifying);
            if spec.method != "HEAD" {
                assert_eq!(body, want_body, "{name} {}", spec.name);
            }
            if let Some((header_name, value)) = want_header {
                assert_eq!(header(&headers, header_name), value, "{name} {}", spec.name);
            }
            if let Some(content_type) = &spec.answer.content_type {
                assert_eq!(header(&headers, "content-type"), content_type, "{name}");
            }
            if spec.signed {
                // The same handshake forged: refused as an event would be.
                let forged =
                    preset_sign::handshake(preset, spec, &other_key(preset), Some(&url), None, now).unwrap();
                let (status, _, body) = send(&host, &spec.method, &path, &forged).await;
                assert_eq!(status, 401, "{name} {}: a forged handshake: {body}", spec.name);
            }
        }
    }
    // The tools: `providers show` names the handshake; `send --handshake` sends it.
    let run = crate::harness::run_cli;
    let (ok, show) = run(&["providers", "show", "zoom"], &[]);
    assert!(
        ok && show.contains("handshake:   endpoint.url_validation (POST body field /event"),
        "{show}"
    );
    let zoom_key = &signing_keys[presets.iter().position(|p| p.name == "zoom").unwrap()].0;
    let zoom_url = host.url("/hooks/h-zoom");
    let (ok, out) = run(
        &["send", "--provider", "zoom", "--handshake", "--url", &zoom_url],
        &[("WEBHOOK_SECRET", zoom_key)],
    );
    assert!(
        ok && out.contains("HTTP 200") && out.contains(&expected("zoom", zoom_key).0),
        "{out}"
    );
    let (ok, out) = run(
        &["send", "--provider", "zoom", "--handshake", "--url", &zoom_url],
        &[("WEBHOOK_SECRET", "not-the-secret")],
    );
    assert!(!ok && out.contains("HTTP 401"), "{out}");
    let meta_url = host.url("/hooks/h-meta");
    let (ok, out) = run(
        &[
            "send",
            "--provider",
            "meta",
            "--handshake",
            "subscribe",
            "--url",
            &meta_url,
        ],
        &[("HANDSHAKE_TOKEN", "meatyhamhock")],
    );
    assert!(
        ok && out.contains("HTTP 200") && out.contains("1158201444"),
        "{out}"
    );
    let (ok, out) = run(
        &["send", "--provider", "meta", "--handshake", "--url", &meta_url],
        &[("HANDSHAKE_TOKEN", "another-token")],
    );
    assert!(!ok && out.contains("HTTP 403"), "{out}");
    let (ok, out) = run(
        &["send", "--provider", "github", "--handshake", "--url", &meta_url],
        &[],
    );
    assert!(!ok && out.contains("has no handshake"), "{out}");

    // Meta: a wrong verify token is refused.
    let meta = catalogue::builtin("meta").unwrap();
    let wrong =
        preset_sign::handshake(&meta, &meta.handshakes[0], "", None, Some("not-the-token"), now).unwrap();
    let (status, _, body) = send(&host, "GET", "/hooks/h-meta", &wrong).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("handshake_refused"), "{body}");
    // A GET that is no handshake is not a delivery either.
    let (status, headers, _) = send(
        &host,
        "GET",
        "/hooks/h-slack",
        &Signed {
            headers: Default::default(),
            body: Vec::new(),
            query: String::new(),
        },
    )
    .await;
    assert_eq!((status, header(&headers, "allow")), (405, "POST"));

    assert_eq!(
        host.count("SELECT COUNT(*) FROM webhook_events").await,
        0,
        "a handshake stores nothing"
    );
    // Events on the same routes are still stored.
    let slack = catalogue::builtin("slack").unwrap();
    let event = preset_sign::sign(
        &slack,
        &signing_keys[presets.iter().position(|p| p.name == "slack").unwrap()].0,
        &preset_sign::Delivery {
            body: br#"{"type":"event_callback","event_id":"Ev1","mode":"ok"}"#,
            content_type: "application/json",
            url: None,
            query: "",
            certificate_url: None,
            delivery_id: "Ev1",
            now_unix: now,
        },
    )
    .unwrap();
    let (status, _, body) = send(&host, "POST", "/hooks/h-slack", &event).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("accepted"), "{body}");
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 1);

    // Counted per route (zoom: once here, once by `send`), in the metrics and on the console.
    let metrics = host.get_text(0, "/metrics", None).await;
    assert!(
        metrics.contains(r#"webhook_handshakes_total{route="h-zoom",provider="zoom",handshake="endpoint.url_validation"} 2"#),
        "{}",
        metrics.lines().filter(|l| l.contains("handshakes")).collect::<Vec<_>>().join("\n")
    );
    let cookie = host.console_session(ADMIN).await;
    let dashboard = host
        .http
        .get(host.url("/admin/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let table = dashboard
        .split("id=\"handshakes\"")
        .nth(1)
        .expect("the handshakes table");
    for preset in &presets {
        assert!(table.contains(&format!("h-{}", preset.name)), "{}", preset.name);
    }
    assert!(table.contains("endpoint.url_validation"));
}

/// A key of the right kind that is not the route's.
fn other_key(preset: &Preset) -> String {
    let (signing, _) = fixed_test_keys(preset);
    if preset.signature.algorithm.is_public_key() {
        // Another Ed25519 seed.
        return "11".repeat(32);
    }
    format!("{signing}-other")
}

/// AWS SNS: a signed SubscriptionConfirmation makes the host GET its
/// SubscribeURL (from an allowed host) and answer 200; a forged one, or one
/// naming a host not allowed, fetches nothing; a failing confirmation is 502.
#[tokio::test(flavor = "multi_thread")]
async fn an_sns_subscription_is_confirmed_by_fetching_its_subscribe_url() {
    use webhook_host::verify::preset_sign::{TEST_RSA_CERTIFICATE, TEST_RSA_PKCS8};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let confirmed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = confirmed.clone();
    let app = axum::Router::new()
        .route(
            "/SimpleNotificationService-test.pem",
            axum::routing::get(|| async { TEST_RSA_CERTIFICATE }),
        )
        .route(
            "/",
            axum::routing::get(move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let seen = seen.clone();
                async move {
                    let query = query.unwrap_or_default();
                    seen.lock().unwrap().push(query.clone());
                    if query.contains("Token=broken") {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no")
                    } else {
                        (axum::http::StatusCode::OK, "<ConfirmSubscriptionResponse/>")
                    }
                }
            }),
        );
    crate::remote::serve_on_own_thread(listener, app);

    let providers = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/providers/aws-sns.toml")).unwrap();
    let hosts = "hosts = [\"sns.*.amazonaws.com\", \"sns.*.amazonaws.com.cn\"]";
    let local = shipped
        .replace("name = \"aws-sns\"", "name = \"sns-local\"")
        .replacen(
            &format!("{hosts}\n"),
            "hosts = [\"127.0.0.1\"]\nallow_http = true\n",
            1,
        )
        .replace(
            &format!("{hosts} }}"),
            "hosts = [\"127.0.0.1\"], allow_http = true, allow_private = true }",
        );
    assert!(!local.contains("amazonaws.com\""), "{local}");
    std::fs::write(providers.path().join("sns-local.toml"), &local).unwrap();
    let dir = providers.path().display().to_string();
    let host = TestHost::spawn_with(
        "[[routes]]\nname = \"sns\"\nplugin = \"test-misbehave\"\nbody = \"any\"\nverify = [{ provider = \"sns-local\" }]\n",
        &[("PROVIDERS_DIR", dir.as_str())],
    )
    .await;
    let preset = Preset::parse(&local).unwrap();
    let certificate = format!("http://127.0.0.1:{port}/SimpleNotificationService-test.pem");
    let confirmation = |token: &str, subscribe_host: &str| {
        let body = serde_json::json!({
            "Type": "SubscriptionConfirmation", "MessageId": format!("m-{token}"), "Token": token,
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
            "Message": "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.",
            "SubscribeURL": format!("http://{subscribe_host}:{port}/?Action=ConfirmSubscription&Token={token}"),
            "Timestamp": "2012-04-26T20:45:04.751Z",
        })
        .to_string();
        preset_sign::sign(
            &preset,
            TEST_RSA_PKCS8,
            &preset_sign::Delivery {
                body: body.as_bytes(),
                content_type: "text/plain; charset=UTF-8",
                url: None,
                query: "",
                certificate_url: Some(&certificate),
                delivery_id: token,
                now_unix: unix_now(),
            },
        )
        .unwrap()
    };
    let (status, _, body) = send(&host, "POST", "/hooks/sns", &confirmation("tok1", "127.0.0.1")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"confirmed"}"#));
    assert_eq!(
        *confirmed.lock().unwrap(),
        ["Action=ConfirmSubscription&Token=tok1"]
    );

    let mut forged = confirmation("tok2", "127.0.0.1");
    forged.body = String::from_utf8(forged.body)
        .unwrap()
        .replace("tok2", "tok3")
        .into_bytes();
    let (status, _, _) = send(&host, "POST", "/hooks/sns", &forged).await;
    assert_eq!(status, 401);
    let (status, _, body) = send(&host, "POST", "/hooks/sns", &confirmation("tok4", "localhost")).await;
    assert_eq!(status, 400, "a SubscribeURL on a host not allowed: {body}");
    assert_eq!(confirmed.lock().unwrap().len(), 1, "nothing else was fetched");

    let (status, _, body) = send(&host, "POST", "/hooks/sns", &confirmation("broken", "127.0.0.1")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("confirmation_failed"), "{body}");
    assert_eq!(host.count("SELECT COUNT(*) FROM webhook_events").await, 0);
}
