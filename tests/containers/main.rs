//! The deployment doc's procedure, run for real under podman: the images
//! built from the repository's Dockerfiles by `webhook-complete.sh`, pushed
//! to a registry, the compose stack started and checked with the doc's own
//! commands, FAL deliveries through nginx, plugins deployed at runtime, and
//! the images saved and loaded back. PostgreSQL, Garage (S3), Redis and the
//! registry run natively as the external services the doc assumes, on an
//! address the containers reach.
//!
//! Its own test binary, so the image build (minutes of compiling) does not
//! compete with the suite's tests for the cores.

#[allow(dead_code)]
#[path = "../suite/remote.rs"]
mod remote;
#[allow(dead_code, unused_imports)]
#[path = "../suite/services/mod.rs"]
mod services;
mod stack;
#[allow(dead_code)]
#[path = "../suite/workspace.rs"]
mod workspace;

mod checks;
mod stream;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use webhook_host::verify::preset::Preset;

use checks::{get, objects_under, post_fal, seed_avatar, wait_all_done, wait_completed};
use stack::{CONTAINERS, Deployment, LocalAddress, NETWORK, Podman, SERVICES_ADDRESS, text};

const ADMIN_TOKEN: &str = "container-test-admin-token";
pub const FAL_SECRET: &str = "container-test-fal-secret";
const FAL_PATH: &str = "/api/v1/avatar/status_update?training_type=portrait";
const ACME_SECRET: &str = "container-test-acme-secret";

/// A provider the host image has never heard of: its preset travels in
/// the plugin's manifest, beside the route that names it.
const ACME: &str = include_str!("../fixtures/providers/acme.toml");
const ACME_ROUTE: &str = r#"
[[routes]]
name = "acme"
verify = [{ provider = "acme", secret_env = "ACME_WEBHOOK_SECRET" }]
"#;

/// The environment of the doc's `prod.env`, pointing at the test's services.
fn prod_env(database_url: &str, registry: &str, bucket: &str) -> String {
    let garage = services::garage();
    let mut lines = vec![
        "COMPOSE_PROJECT_NAME=aisha-webhook".to_string(),
        format!("REGISTRY={registry}"),
        "TAG=latest".into(),
        "ADMIN_ALLOW_CIDR=10.0.0.0/8".into(),
        // The test's streams come from one address, faster than a provider.
        "WEBHOOK_RATE=10000r/s".into(),
        "WEBHOOK_BURST=10000".into(),
        "API_BIND_ADDRESS=127.0.0.1".into(),
        "ENVIRONMENT=production".into(),
        "LOG_LEVEL=info".into(),
        "LOG_FORMAT=json".into(),
        format!("DATABASE_URL={database_url}"),
        format!("ADMIN_TOKEN={ADMIN_TOKEN}"),
        format!("FAL_WEBHOOK_SECRET={FAL_SECRET}"),
        "FAL_API_KEY=example-key-id:example-key-secret".into(),
        format!("REDIS_URL={}", services::redis().url),
        "TELEGRAM_BOT_TOKEN=123456:example-bot-token".into(),
        // The next provider's secret, provisioned before it is deployed.
        format!("ACME_WEBHOOK_SECRET={ACME_SECRET}"),
    ];
    lines.extend(garage.env(bucket).into_iter().map(|(k, v)| format!("{k}={v}")));
    lines.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deployment_doc_runs_as_written() {
    let _address = LocalAddress::add();
    services::listen_on(SERVICES_ADDRESS);
    let remote = remote::shared_at(SERVICES_ADDRESS);
    let pg = services::postgres::shared();
    let database_url = pg.create_database().await;
    let db = PgPool::connect(&database_url).await.unwrap();
    let schema =
        std::fs::read_to_string(workspace::workspace().join("examples/avatars.postgres.sql")).unwrap();
    sqlx::raw_sql(&schema).execute(&db).await.unwrap();
    // What the new provider's plugin writes, one row per delivery applied.
    sqlx::raw_sql(include_str!("../fixtures/plugin_effects.postgres.sql"))
        .execute(&db)
        .await
        .unwrap();
    let bucket = services::garage().bucket();
    let registry = services::oci_registry().address.clone();

    let podman = Podman::start();
    podman.remove_leftovers();
    let mut env = podman.env();
    // This machine's network inspects TLS: cargo inside the build needs the
    // CA bundle the machine trusts (a build secret, never in the image).
    env.push(("BUILD_CA".into(), "/etc/ssl/certs/ca-certificates.crt".into()));
    let deployment = Deployment::new(&prod_env(&database_url, &registry, &bucket), env);
    let _down = Teardown {
        deployment: &deployment,
        podman: &podman,
        registry: &registry,
    };

    // The full deployment, as the doc runs it.
    let complete = deployment.script(
        "webhook-complete.sh",
        &["--tag", "t1", "--insecure-registry", "--timeout", "300"],
        &[],
    );
    assert!(complete.status.success(), "{}", text(&complete));

    // The doc's health checks: through nginx, and each instance directly.
    for url in [
        "http://localhost/health",
        "http://localhost:8001/health",
        "http://localhost:8002/health",
    ] {
        let (status, body) = get(url).await;
        assert_eq!(status, 200, "{url}: {body}");
    }
    // docker-compose … ps: three services, each up and healthy.
    let ps = deployment.compose(&["ps"]);
    for container in CONTAINERS {
        let line = ps
            .lines()
            .find(|line| line.starts_with(container))
            .unwrap_or_else(|| panic!("{container} is not in ps:\n{ps}"));
        assert!(line.contains("Up") && line.contains("healthy"), "{line}");
    }
    // docker-compose … logs: the host logs JSON lines.
    let logs = deployment.compose(&["logs", "--no-color", "aisha-webhook-api-1"]);
    let json_lines = logs
        .lines()
        .filter_map(|line| line.split_once("| ").map(|(_, rest)| rest))
        .filter(|line| serde_json::from_str::<Value>(line).is_ok_and(|v| v["level"].is_string()))
        .count();
    assert!(json_lines > 0, "no JSON log lines:\n{logs}");
    // The registry lists both repositories with their tags.
    let (_, catalog) = get(&format!("http://{registry}/v2/_catalog")).await;
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    let repositories: Vec<&str> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for repository in ["webhook-api", "nginx-webhook"] {
        assert!(repositories.contains(&repository), "{catalog}");
        let (_, tags) = get(&format!("http://{registry}/v2/{repository}/tags/list")).await;
        let tags: Value = serde_json::from_str(&tags).unwrap();
        let tags: Vec<&str> = tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tags.contains(&"t1") && tags.contains(&"latest"),
            "{repository}: {tags:?}"
        );
    }
    // docker network ls | grep aisha_webhook_cluster
    assert!(deployment.docker(&["network", "ls"]).contains(NETWORK));
    // The image's own health check, where the doc ran curl in the container.
    deployment.docker(&["exec", "aisha-webhook-api-1", "webhook-host", "healthcheck"]);

    // The operator's copy of fal-avatar-status's manifest (FAL's file host
    // and Telegram are the test's stand-ins), deployed at runtime to both
    // instances with the doc's deploy-plugin.sh.
    let manifest = deployment.path().join("fal-avatar-status.toml");
    std::fs::write(&manifest, workspace::loopback_fal_manifest(&remote.url)).unwrap();
    let wasm = workspace::plugin_dir().join("fal_avatar_status.wasm");
    let reference = format!("{registry}/plugins/fal-avatar-status:containers");
    let deployed = deployment.script(
        "deploy-plugin.sh",
        &[
            "--insecure-http",
            "--manifest",
            manifest.to_str().unwrap(),
            "--timeout",
            "120",
            wasm.to_str().unwrap(),
            &reference,
        ],
        &[("TAG", "t1")],
    );
    assert!(deployed.status.success(), "{}", text(&deployed));

    // A signed FAL delivery through nginx on 443 and on 8443: the avatar
    // is completed in PostgreSQL and its LoRA is in the bucket.
    let ca = reqwest::Certificate::from_pem(&deployment.ca_pem).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // The doc's unsigned test POST: over plain HTTP a redirect to HTTPS,
    // over HTTPS refused for its missing signature.
    let unsigned = r#"{"status": "completed", "request_id": "test-123"}"#;
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post("http://localhost/api/v1/avatar/status_update")
        .header("content-type", "application/json")
        .body(unsigned)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    let refused = client
        .post("https://localhost/api/v1/avatar/status_update")
        .header("content-type", "application/json")
        .body(unsigned)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("invalid_signature"));
    for port in [443, 8443] {
        let request_id = format!("containers-ok-{port}");
        let avatar = seed_avatar(&db, &request_id).await;
        let body = remote.fixture("ok-portrait.json", &request_id);
        let url = format!("https://localhost:{port}{FAL_PATH}");
        let (status, answer) = post_fal(&client, &url, &body).await;
        assert_eq!(status, 200, "{url}: {answer}");
        wait_completed(&db, &avatar).await;
        let stored = objects_under(&bucket, &format!("avatars/{avatar}/lora/{request_id}")).await;
        assert!(!stored.is_empty(), "no LoRA stored for {avatar}");
    }

    // The mission in one step: a provider the image does not know goes
    // live on both instances from a plugin and its manifest alone; the
    // running containers keep their images.
    let images_before = running_images(&deployment);
    let manifest = deployment.path().join("acme.toml");
    let plugin_manifest =
        std::fs::read_to_string(workspace::workspace().join("plugins/test-misbehave/manifest.toml")).unwrap();
    std::fs::write(&manifest, format!("{plugin_manifest}\n{ACME}\n{ACME_ROUTE}")).unwrap();
    let wasm = workspace::plugin_dir().join("test_misbehave.wasm");
    let reference = format!("{registry}/plugins/acme-orders:1.0.0");
    let deployed = deployment.script(
        "deploy-plugin.sh",
        &[
            "--insecure-http",
            "--manifest",
            manifest.to_str().unwrap(),
            wasm.to_str().unwrap(),
            &reference,
        ],
        &[("TAG", "t1")],
    );
    assert!(deployed.status.success(), "{}", text(&deployed));
    let acme = Preset::parse(&ACME.replace("[[providers]]", "").replace("[providers.", "[")).unwrap();
    let acme = stream::Sender::new(client.clone(), "https://localhost/hooks/acme", acme, ACME_SECRET);
    for port in [8001, 8002] {
        let direct = stream::Sender::new(
            reqwest::Client::new(),
            &format!("http://localhost:{port}/hooks/acme"),
            acme.preset().clone(),
            ACME_SECRET,
        );
        assert_eq!(
            direct.send(&format!("acme-direct-{port}")).await,
            Some(200),
            "instance on {port}"
        );
        let forged = stream::Sender::new(
            reqwest::Client::new(),
            &format!("http://localhost:{port}/hooks/acme"),
            acme.preset().clone(),
            "not-the-secret",
        );
        assert_eq!(forged.send(&format!("acme-forged-{port}")).await, Some(401));
    }
    assert_eq!(
        running_images(&deployment),
        images_before,
        "no container was replaced"
    );

    // One API container killed during a steady stream through nginx: only
    // answers a sender retries, every delivery accepted and applied once.
    let flowing = stream::Stream::start(&acme, "kill", 4);
    flowing.wait_acked(40).await;
    tokio::task::block_in_place(|| podman.ok(&["kill", "aisha-webhook-api-2"]));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let killed = flowing.finish().await;
    println!("kill: {killed:?}");
    assert!(
        killed.failures.iter().all(|s| [502, 503, 504].contains(s)),
        "answers a sender would not retry: {:?}",
        killed.failures
    );
    assert_eq!(killed.unanswered, 0, "nginx answered every attempt");
    // The doc's restart brings it back.
    deployment.compose(&["restart", "aisha-webhook-api-2"]);
    wait_healthy(&podman, "aisha-webhook-api-2").await;

    // New images rolled in under a steady stream: nothing lost or doubled.
    let flowing = stream::Stream::start(&acme, "update", 4);
    flowing.wait_acked(20).await;
    let update = tokio::task::block_in_place(|| {
        deployment.script(
            "update-webhook-images.sh",
            &["--tag", "t2", "--insecure-registry", "--timeout", "300"],
            &[],
        )
    });
    assert!(update.status.success(), "{}", text(&update));
    let updated = flowing.finish().await;
    println!("update: {updated:?}");
    // Only answers a sender retries; no answer at all only while nginx
    // itself is replaced.
    assert!(
        updated.failures.iter().all(|s| [502, 503, 504].contains(s)),
        "answers a sender would not retry: {:?}",
        updated.failures
    );
    let images_after = running_images(&deployment);
    for (container, (before, after)) in CONTAINERS.iter().zip(images_before.iter().zip(&images_after)) {
        assert_ne!(before, after, "{container} runs a new image");
    }

    let sent = killed.sent + updated.sent + 2;
    let routed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events WHERE route = 'acme'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(routed, sent as i64, "every accepted delivery stored once");
    wait_all_done(&db).await;
    let effects: Vec<String> = sqlx::query_scalar("SELECT event_id FROM plugin_effects")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(effects.len(), sent, "one effect per delivery");
    assert_eq!(
        effects.iter().collect::<HashSet<_>>().len(),
        effects.len(),
        "none applied twice"
    );

    // The doc's backup, its commands as written: docker save of both
    // images, then (the tag gone) docker load back.
    for repository in ["webhook-api", "nginx-webhook"] {
        let image = format!("{registry}/{repository}:latest");
        let id = deployment.docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
        deployment.shell(&format!("docker save {image} > {repository}-backup.tar"));
        podman.ok(&["untag", &image, &image]);
        assert!(!podman.run(&["image", "exists", &image]).status.success());
        let loaded = deployment.shell(&format!("docker load < {repository}-backup.tar"));
        assert!(loaded.contains(repository), "{loaded}");
        let again = deployment.docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
        assert_eq!(id.trim(), again.trim(), "{repository} round-trips");
    }
}

/// The image id each container runs, in [`CONTAINERS`] order.
fn running_images(deployment: &Deployment) -> Vec<String> {
    CONTAINERS
        .iter()
        .map(|container| {
            deployment
                .docker(&["inspect", "--format", "{{.Image}}", container])
                .trim()
                .to_string()
        })
        .collect()
}

/// Waits until `container`'s health check says healthy.
async fn wait_healthy(podman: &Podman, container: &str) {
    let started = Instant::now();
    loop {
        let state = podman.ok(&["inspect", "--format", "{{.State.Health.Status}}", container]);
        if state.trim() == "healthy" {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{container} is {state}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Stops the stack when the test ends, however it ends, and removes what
/// it leaves behind: the containers, their volumes, the network and the
/// images' tags in the test's registry (the layers stay as build cache).
struct Teardown<'a> {
    deployment: &'a Deployment,
    podman: &'a Podman,
    registry: &'a str,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.deployment
                .compose(&["down", "--remove-orphans", "--volumes", "--timeout", "5"])
        }));
        self.podman.remove_leftovers();
        let tags = self
            .podman
            .ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let ours = format!("{}/", self.registry);
        for tag in tags.lines().filter(|tag| tag.starts_with(&ours)) {
            self.podman.run(&["untag", tag, tag]);
        }
    }
}
