//! The deployment files, proven without a Docker engine: the compose file
//! parsed and checked, the nginx template run by Debian's nginx in front of
//! real host instances, and the deploy scripts run against a recording
//! fake `docker`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_yaml::Value;

use crate::harness::{Backend, Options, Signer, TestHost, fixture, request_id_of};
use crate::services::nginx::{Nginx, NginxConfig};
use crate::workspace::workspace;

const FAL_PATH: &str = "/api/v1/avatar/status_update?training_type=portrait";
const ADMIN_TOKEN: &str = "deployment-test-admin-token";

fn compose_file(name: &str) -> Value {
    let text = std::fs::read_to_string(workspace().join(name)).unwrap();
    let mut compose: Value = serde_yaml::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    compose
}

fn compose() -> Value {
    compose_file("docker-compose.webhook.prod.yml")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The services, ports, network, env file, health checks and limits the
/// deployment doc names, in keys both Docker Compose v2 and docker-compose
/// 1.29 (Debian's, the one run against podman) read.
#[test]
fn the_compose_file_describes_the_documented_cluster() {
    let compose = compose();
    let services = &compose["services"];
    for (name, port) in [
        ("aisha-webhook-api-1", "8001:8000"),
        ("aisha-webhook-api-2", "8002:8000"),
    ] {
        let api = &services[name];
        assert_eq!(api["container_name"].as_str(), Some(name));
        let image = api["image"].as_str().unwrap();
        assert!(
            image.starts_with("${REGISTRY:?") && image.contains("}/webhook-api:${TAG"),
            "{image}"
        );
        let ports = strings(&api["ports"]);
        assert!(ports.iter().any(|p| p.ends_with(port)), "{name}: {ports:?}");
        assert_eq!(api["env_file"].as_str(), Some("prod.env"), "{name}");
        assert_eq!(strings(&api["networks"]), ["aisha_webhook_cluster"], "{name}");
        assert_eq!(api["restart"].as_str(), Some("unless-stopped"));
        assert_eq!(api["read_only"].as_bool(), Some(true), "{name}");
        let test = strings(&api["healthcheck"]["test"]);
        assert_eq!(test, ["CMD", "webhook-host", "healthcheck"], "{name}");
        assert!(api["mem_limit"].as_str().is_some() && api["cpus"].as_f64().is_some());
        // The data folder (compile cache, JWKS cache) is a volume of its own.
        assert!(
            strings(&api["volumes"])
                .iter()
                .any(|v| v.ends_with(":/var/lib/webhook-host"))
        );
        // The external services are not the file's to wait for.
        assert!(api["depends_on"].is_null(), "{name}");
    }
    let nginx = &services["aisha-nginx-webhook"];
    assert_eq!(nginx["container_name"].as_str(), Some("aisha-nginx-webhook"));
    assert!(nginx["image"].as_str().unwrap().contains("/nginx-webhook:${TAG"));
    assert_eq!(strings(&nginx["ports"]), ["80:80", "443:443", "8443:8443"]);
    assert_eq!(strings(&nginx["networks"]), ["aisha_webhook_cluster"]);
    assert!(nginx["healthcheck"]["test"].as_sequence().is_some());
    assert!(nginx["mem_limit"].as_str().is_some());
    assert_eq!(nginx["read_only"].as_bool(), Some(true));
    // nginx gets its own settings, not prod.env's secrets; certificates are mounted.
    assert!(nginx["env_file"].is_null());
    assert!(
        strings(&nginx["volumes"])
            .iter()
            .any(|v| v.ends_with(":/etc/nginx/tls:ro"))
    );
    for api in ["aisha-webhook-api-1", "aisha-webhook-api-2"] {
        assert_eq!(
            nginx["depends_on"][api]["condition"].as_str(),
            Some("service_healthy")
        );
    }
    // No key docker-compose 1.29 refuses.
    assert!(compose["name"].is_null());
    let network = &compose["networks"]["aisha_webhook_cluster"];
    assert_eq!(network["name"].as_str(), Some("aisha_webhook_cluster"));
    assert_eq!(network["external"].as_bool(), Some(true));

    // The single-box services live in their own file, added with -f; there
    // the instances wait for them.
    let local = compose_file("docker-compose.webhook.local.yml");
    let local_services = &local["services"];
    for name in ["postgres", "minio", "minio-init", "redis"] {
        assert_eq!(
            strings(&local_services[name]["networks"]),
            ["aisha_webhook_cluster"],
            "{name}"
        );
    }
    for api in ["aisha-webhook-api-1", "aisha-webhook-api-2"] {
        let ready = &local_services[api]["depends_on"];
        assert_eq!(ready["postgres"]["condition"].as_str(), Some("service_healthy"));
        assert_eq!(
            ready["minio-init"]["condition"].as_str(),
            Some("service_completed_successfully")
        );
    }
    // Every service that runs all the time restarts and has a health check.
    for (name, service) in services
        .as_mapping()
        .unwrap()
        .iter()
        .chain(local_services.as_mapping().unwrap())
    {
        let name = name.as_str().unwrap();
        if name == "minio-init" || name.starts_with("aisha-webhook-api") && service["image"].is_null() {
            continue;
        }
        assert!(service["healthcheck"].is_mapping(), "{name} has no health check");
        assert_eq!(service["restart"].as_str(), Some("unless-stopped"), "{name}");
    }
}

/// prod.env.example names every variable the compose file and the host
/// read from it, with example values only.
#[test]
fn prod_env_example_lists_every_variable() {
    let text = std::fs::read_to_string(workspace().join("prod.env.example")).unwrap();
    let names: HashSet<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    for name in [
        "ENVIRONMENT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "DATABASE_URL",
        "FAL_WEBHOOK_SECRET",
        "FAL_API_KEY",
        "ADMIN_TOKEN",
        "MINIO_ENDPOINT",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
        "MINIO_BUCKET_NAME",
        "MINIO_SECURE",
        "REDIS_URL",
        "TELEGRAM_BOT_TOKEN",
        "REGISTRY",
        "TAG",
        "COMPOSE_PROJECT_NAME",
        "ADMIN_ALLOW_CIDR",
        "TLS_DIR",
        "POSTGRES_PASSWORD",
    ] {
        assert!(names.contains(name), "prod.env.example lacks {name}");
    }
    assert!(text.contains("example"), "values are marked as examples");
}

/// Posts a signed body to `url`; the status and the response.
async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    request_id: &str,
    extra: &[(&str, &str)],
) -> reqwest::Result<reqwest::Response> {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in Signer::fal(request_id).headers(body) {
        request = request.header(name, value);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await
}

fn effect() -> Vec<u8> {
    br#"{"mode":"effect"}"#.to_vec()
}

fn loopback(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, last]))
}

/// nginx's own rules in front of two instances on PostgreSQL: redirects,
/// 405, 413, 429, the admin allow-list and the request id the host logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_enforces_the_edge_rules() {
    let host = TestHost::start_with(Options {
        backend: Backend::Postgres,
        instances: 2,
        extra_env: &[("ADMIN_TOKEN", ADMIN_TOKEN)],
        ..Options::default()
    })
    .await;
    let nginx = Nginx::start(NginxConfig {
        upstreams: [host.addr(0), host.addr(1)],
        admin_allow: "127.0.0.2/32",
        rate: "5r/s",
        burst: 10,
    });
    let client = nginx.client(None);

    // Plain HTTP: /health answers, everything else moves to HTTPS.
    let health = client.get(nginx.http("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let moved = client.post(nginx.http(FAL_PATH)).send().await.unwrap();
    assert_eq!(moved.status(), 301);
    let location = moved.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("https://") && location.contains("/api/v1/avatar/status_update"));

    // HTTPS on both listeners; a request id comes back on every answer.
    for url in [nginx.https("/health"), nginx.fal("/health")] {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-request-id"));
        assert!(response.text().await.unwrap().contains(r#""status":"ok""#));
    }

    // Webhook paths take POST only.
    for path in [FAL_PATH, "/hooks/misbehave"] {
        let response = client.get(nginx.fal(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(response.headers()["allow"], "POST");
    }

    // The caller's request id reaches the host's log; without one, nginx's does.
    let response = post_signed(
        &client,
        &nginx.fal("/hooks/misbehave"),
        &effect(),
        "rid-1",
        &[("x-request-id", "deploy-test-request-7")],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "deploy-test-request-7");
    let response = post_signed(&client, &nginx.fal("/hooks/misbehave"), &effect(), "rid-2", &[])
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let made = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 32, "{made}");
    let log = host.log_of(0) + &host.log_of(1);
    for id in ["deploy-test-request-7", made.as_str()] {
        assert!(
            log.lines()
                .any(|l| l.contains(id) && l.contains("webhook accepted")),
            "the host's log lacks request id {id}:\n{log}"
        );
        // nginx logs a request after its answer has gone out.
        let logged = Instant::now();
        while !nginx.access_log().contains(&format!("rid={id}")) {
            assert!(
                logged.elapsed() < Duration::from_secs(5),
                "nginx's access log lacks request id {id}:\n{}",
                nginx.access_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A body over the limit stops at nginx: 413, JSON.
    let big = vec![b' '; 1536 * 1024];
    let response = post_signed(&client, &nginx.fal("/hooks/misbehave"), &big, "rid-big", &[])
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("payload_too_large"));

    // Admin paths and metrics: refused outside the allow-list, token or not.
    for path in ["/admin/v1/events", "/metrics"] {
        let refused = client
            .get(nginx.https(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path}");
    }
    let operator = nginx.client(loopback(2));
    let allowed = operator
        .get(nginx.https("/admin/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.status(),
        200,
        "the allow-listed address reaches the admin API"
    );

    // One address over its rate gets 429 with Retry-After; another is unaffected.
    let flooder = nginx.client(loopback(3));
    let mut statuses = Vec::new();
    for n in 0..40 {
        let id = format!("flood-{n}");
        let response = post_signed(&flooder, &nginx.fal("/hooks/misbehave"), &effect(), &id, &[])
            .await
            .unwrap();
        if response.status() == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert!(limited >= 10, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200 || s == 429), "{statuses:?}");
    let response = post_signed(&client, &nginx.fal("/hooks/misbehave"), &effect(), "rid-3", &[])
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "another address is not limited");

    // Unknown paths end at nginx.
    let response = client.get(nginx.https("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

/// PostgreSQL, two instances and nginx with the project's config over TLS:
/// FAL deliveries are accepted and processed, both instances take traffic,
/// and a SIGKILL of one instance during a steady stream costs nothing: every
/// failed answer is one the sender retries, every delivery ends accepted,
/// and each is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_behind_nginx_survive_a_kill_during_a_stream() {
    let host = Arc::new(
        TestHost::start_with(Options {
            backend: Backend::Postgres,
            instances: 2,
            ..Options::default()
        })
        .await,
    );
    let nginx = Nginx::start(NginxConfig {
        upstreams: [host.addr(0), host.addr(1)],
        admin_allow: "127.0.0.1/32",
        rate: "10000r/s",
        burst: 10000,
    });
    let client = nginx.client(None);
    for url in [
        nginx.http("/health"),
        nginx.https("/health"),
        nginx.fal("/health"),
    ] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
    }
    for i in 0..2 {
        assert!(
            host.get_text(i, "/health", None)
                .await
                .contains(r#""status":"ok""#)
        );
    }

    // FAL completions over TLS, on the FAL port and on 443.
    let mut avatars = Vec::new();
    for n in 0..6 {
        let request_id = format!("nginx-fal-{n}");
        let avatar = host.seed_avatar(&request_id).await;
        let body = fixture("ok-portrait.json", &request_id);
        assert_eq!(request_id_of(&body), request_id);
        let url = if n % 2 == 0 {
            nginx.fal(FAL_PATH)
        } else {
            nginx.https(FAL_PATH)
        };
        let response = post_signed(&client, &url, &body, &request_id, &[]).await.unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        avatars.push((avatar, answer["event_id"].as_str().unwrap().to_string()));
    }
    for (avatar, event) in &avatars {
        host.wait_for(event, "done").await;
        assert_eq!(host.avatar(avatar).await.status, "completed");
    }

    // A steady stream from four senders that retry like FAL: until a 2xx.
    let acked = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
    let (senders, per_sender) = (4, 75);
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let (client, url) = (client.clone(), nginx.fal("/hooks/misbehave"));
        let (acked, failures) = (acked.clone(), failures.clone());
        tasks.spawn(async move {
            for n in 0..per_sender {
                let id = format!("stream-{sender}-{n}");
                for attempt in 0.. {
                    assert!(attempt < 100, "{id} never accepted");
                    match post_signed(&client, &url, &effect(), &id, &[]).await {
                        Ok(response) if response.status().is_success() => break,
                        Ok(response) => failures.lock().unwrap().push(response.status().as_u16()),
                        Err(_) => failures.lock().unwrap().push(0),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                acked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    while acked.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..2 {
        assert!(
            host.log_of(i).contains("webhook accepted"),
            "instance {i} took no traffic"
        );
    }
    unsafe { libc::kill(host.pid(1) as i32, libc::SIGKILL) };
    let killed_at = acked.load(Ordering::SeqCst);
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    host.wait_until_all_done().await;

    let sent = senders * per_sender;
    let failures = failures.lock().unwrap().clone();
    println!(
        "killed after {killed_at} acks; {} retried answers: {failures:?}",
        failures.len()
    );
    assert!(
        failures.iter().all(|s| [502, 503, 504].contains(s)),
        "answers a sender would not retry, or no answer at all: {failures:?}"
    );
    assert_eq!(
        host.count("SELECT COUNT(*) FROM webhook_events WHERE route = 'misbehave'")
            .await,
        sent as i64
    );
    let effects = host.texts("SELECT event_id FROM plugin_effects").await;
    assert_eq!(effects.len(), sent, "one effect per delivery");
    assert_eq!(
        effects.iter().collect::<HashSet<_>>().len(),
        sent,
        "none applied twice"
    );
}

/// A `docker` (and `podman`) that records its calls (with TAG/REGISTRY for compose) and
/// answers what the scripts ask: containers report "starting" once, then
/// "healthy", unless FAKE_UNHEALTHY or FAKE_STUCK name them.
const FAKE_DOCKER: &str = r#"#!/usr/bin/env bash
if [ "$1" = compose ]; then
    echo "$* [TAG=${TAG:-} REGISTRY=${REGISTRY:-}]" >>"$FAKE_DOCKER_LOG"
else
    echo "$*" >>"$FAKE_DOCKER_LOG"
fi
last=${*: -1}
case "$1" in
compose) exit 0 ;;
network) [ "$2" = inspect ] && exit 1 ;;
inspect)
    case "$*" in "inspect --format {{.State.Status}} "*) echo running; exit 0 ;; esac
    if [ "$last" = "${FAKE_UNHEALTHY:-}" ]; then echo unhealthy; exit 0; fi
    if [ "$last" = "${FAKE_STUCK:-}" ]; then echo starting; exit 0; fi
    seen="$FAKE_STATE/$last"
    if [ -e "$seen" ]; then echo healthy; else touch "$seen"; echo starting; fi
    ;;
logs) echo "fake log of $last" ;;
exec)
    case "$*" in
    *"plugin list"*)
        echo "plugin active loaded versions"
        if [ -n "${FAKE_NOT_LOADED:-}" ]; then
            echo "fal-avatar-status 1111aaaa2222 0000bbbb0000 2"
        else
            echo "fal-avatar-status 1111aaaa2222 1111aaaa2222 2"
        fi
        ;;
    *"plugin deploy"*) echo "fal-avatar-status version 1111aaaa2222 stored and active" ;;
    *"plugin rollback"*) echo "fal-avatar-status rolled back to 1111aaaa2222" ;;
    esac
    ;;
esac
exit 0
"#;

struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    /// A work folder with the compose file, a prod.env and the fake docker.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        // podman takes the same commands; the fake records both alike.
        for cli in ["docker", "podman"] {
            std::fs::write(bin.join(cli), FAKE_DOCKER).unwrap();
            std::fs::set_permissions(bin.join(cli), std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        std::fs::copy(
            workspace().join("docker-compose.webhook.prod.yml"),
            dir.path().join("docker-compose.webhook.prod.yml"),
        )
        .unwrap();
        std::fs::copy(workspace().join("prod.env.example"), dir.path().join("prod.env")).unwrap();
        Self { dir }
    }

    fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let _ = std::fs::remove_file(self.dir.path().join("docker.log"));
        for entry in std::fs::read_dir(self.dir.path().join("state")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        Command::new(workspace().join("scripts/deploy").join(script))
            .args(args)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("FAKE_DOCKER_LOG", self.dir.path().join("docker.log"))
            .env("FAKE_STATE", self.dir.path().join("state"))
            .env("HEALTH_INTERVAL", "1")
            .env("DOCKER", "docker")
            .env_remove("REGISTRY")
            .env_remove("TAG")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// The docker calls of the last run.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("docker.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Asserts that `calls` contains calls matching each of `expected` (every
/// part of an entry appears in the call), in this order.
fn assert_sequence(calls: &[String], expected: &[&[&str]]) {
    let mut rest = calls.iter();
    for parts in expected {
        assert!(
            rest.any(|call| parts.iter().all(|part| call.contains(part))),
            "no call with {parts:?} in order; calls:\n{}",
            calls.join("\n")
        );
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const COMPOSE: &str = "compose -f docker-compose.webhook.prod.yml --env-file prod.env";

/// webhook-complete.sh: build, push, network, down, up, then a health wait
/// per container; a container that turns unhealthy or never gets healthy
/// fails the run loudly.
#[test]
fn webhook_complete_builds_pushes_replaces_and_waits_for_health() {
    let scripts = Scripts::new();
    let args = ["--tag", "t1", "--registry", "reg.test/aisha", "--timeout", "20"];
    let ok = scripts.run("webhook-complete.sh", &args, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let calls = scripts.calls();
    assert_sequence(
        &calls,
        &[
            &[
                "build -f docker/Dockerfile.webhook-api -t reg.test/aisha/webhook-api:t1",
                "-t reg.test/aisha/webhook-api:latest --label org.opencontainers.image.revision=t1 .",
            ],
            &["build -f docker/nginx/Dockerfile -t reg.test/aisha/nginx-webhook:t1"],
            &["push reg.test/aisha/webhook-api:t1"],
            &["push reg.test/aisha/webhook-api:latest"],
            &["push reg.test/aisha/nginx-webhook:t1"],
            &["push reg.test/aisha/nginx-webhook:latest"],
            &["network inspect aisha_webhook_cluster"],
            &["network create aisha_webhook_cluster"],
            &[COMPOSE, "down --remove-orphans"],
            &[COMPOSE, "up -d", "TAG=t1 REGISTRY=reg.test/aisha"],
            &["inspect", "aisha-webhook-api-1"],
            &["inspect", "aisha-webhook-api-1"],
            &["inspect", "aisha-webhook-api-2"],
            &["inspect", "aisha-nginx-webhook"],
        ],
    );
    // It waited for "starting" to become "healthy" rather than sleeping blindly.
    let inspections = calls.iter().filter(|c| c.starts_with("inspect")).count();
    assert_eq!(inspections, 6, "{calls:?}");

    let unhealthy = scripts.run(
        "webhook-complete.sh",
        &args,
        &[("FAKE_UNHEALTHY", "aisha-webhook-api-2")],
    );
    assert!(!unhealthy.status.success());
    let message = stderr(&unhealthy);
    assert!(message.contains("aisha-webhook-api-2 is unhealthy"), "{message}");
    assert!(message.contains("fake log of aisha-webhook-api-2"), "{message}");
    assert!(
        !scripts
            .calls()
            .iter()
            .any(|c| c.contains("inspect") && c.contains("nginx"))
    );

    let stuck_args = ["--tag", "t1", "--no-push", "--timeout", "2"];
    let stuck = scripts.run(
        "webhook-complete.sh",
        &stuck_args,
        &[("FAKE_STUCK", "aisha-webhook-api-1")],
    );
    assert!(!stuck.status.success());
    assert!(
        stderr(&stuck).contains("still 'starting' after 2s"),
        "{}",
        stderr(&stuck)
    );
    assert!(
        !scripts.calls().iter().any(|c| c.starts_with("push")),
        "--no-push pushed"
    );
    // Without --registry, the env file's REGISTRY.
    assert!(
        scripts
            .calls()
            .iter()
            .any(|c| c.contains("-t 192.168.0.4:5000/webhook-api:t1")),
        "{:?}",
        scripts.calls()
    );

    // Under podman: docker-format images (HEALTHCHECK kept), the build CA as
    // a secret, plain HTTP to the registry when asked.
    let ca = scripts.path().join("ca.pem");
    std::fs::write(&ca, "example CA bundle\n").unwrap();
    let podman_args = ["--tag", "t3", "--insecure-registry", "--timeout", "20"];
    let podman = scripts.run(
        "webhook-complete.sh",
        &podman_args,
        &[
            ("DOCKER", "podman"),
            ("COMPOSE", "docker compose"),
            ("BUILD_CA", ca.to_str().unwrap()),
        ],
    );
    assert!(podman.status.success(), "{}", stderr(&podman));
    let secret = format!("--secret id=build_ca,src={}", ca.display());
    assert_sequence(
        &scripts.calls(),
        &[
            &[
                "build -f docker/Dockerfile.webhook-api",
                "--format docker",
                &secret,
            ],
            &["push --tls-verify=false 192.168.0.4:5000/nginx-webhook:latest"],
        ],
    );

    std::fs::remove_file(scripts.path().join("prod.env")).unwrap();
    let no_env = scripts.run("webhook-complete.sh", &args, &[]);
    assert!(!no_env.status.success());
    assert!(
        stderr(&no_env).contains("prod.env not found"),
        "{}",
        stderr(&no_env)
    );
    assert!(
        scripts.calls().iter().all(|c| !c.starts_with("build")),
        "built without prod.env"
    );
}

/// update-webhook-images.sh replaces one instance at a time, reloading
/// nginx after each, and stops at the first unhealthy one, leaving the next
/// untouched.
#[test]
fn update_images_rolls_one_instance_at_a_time() {
    let scripts = Scripts::new();
    let args = ["--tag", "t2", "--registry", "reg.test/aisha", "--timeout", "20"];
    let ok = scripts.run("update-webhook-images.sh", &args, &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_sequence(
        &scripts.calls(),
        &[
            &["build -f docker/Dockerfile.webhook-api -t reg.test/aisha/webhook-api:t2"],
            &["push reg.test/aisha/nginx-webhook:t2"],
            &["network inspect aisha_webhook_cluster"],
            &[COMPOSE, "up -d --no-deps aisha-webhook-api-1", "TAG=t2"],
            &["inspect", "aisha-webhook-api-1"],
            // nginx finds the new container's address.
            &["kill --signal HUP aisha-nginx-webhook"],
            &[COMPOSE, "up -d --no-deps aisha-webhook-api-2"],
            &["inspect", "aisha-webhook-api-2"],
            &["kill --signal HUP aisha-nginx-webhook"],
            &[COMPOSE, "up -d --no-deps aisha-nginx-webhook"],
            &["inspect", "aisha-nginx-webhook"],
        ],
    );

    let pull = scripts.run("update-webhook-images.sh", &["--tag", "t1", "--no-build"], &[]);
    assert!(pull.status.success(), "{}", stderr(&pull));
    assert!(scripts.calls().iter().all(|c| !c.starts_with("build")));
    assert_sequence(
        &scripts.calls(),
        &[
            &["pull 192.168.0.4:5000/webhook-api:t1"],
            &["pull 192.168.0.4:5000/nginx-webhook:t1"],
            &[COMPOSE, "up -d --no-deps aisha-webhook-api-1", "TAG=t1"],
        ],
    );

    let failed = scripts.run(
        "update-webhook-images.sh",
        &args,
        &[("FAKE_UNHEALTHY", "aisha-webhook-api-1")],
    );
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("aisha-webhook-api-1 is not healthy"),
        "{}",
        stderr(&failed)
    );
    assert!(
        !scripts
            .calls()
            .iter()
            .any(|c| c.contains("up -d --no-deps aisha-webhook-api-2"))
    );
}

/// deploy-plugin.sh pushes with the host image, deploys through one
/// instance and waits until both load the active version; it rolls back.
#[test]
fn deploy_plugin_pushes_activates_and_waits_for_every_instance() {
    let scripts = Scripts::new();
    let plugin = scripts.path().join("plugin");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(plugin.join("fal-avatar-status.wasm"), b"\0asm").unwrap();
    std::fs::write(
        plugin.join("fal-avatar-status.toml"),
        "name = \"fal-avatar-status\"\n",
    )
    .unwrap();
    let args = [
        "--insecure-http",
        "--timeout",
        "5",
        "plugin/fal-avatar-status.wasm",
        "reg.test/plugins/fal-avatar-status:1.2.0",
    ];
    let env = [("REGISTRY", "reg.test/aisha"), ("TAG", "t1")];
    let ok = scripts.run("deploy-plugin.sh", &args, &env);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_sequence(
        &scripts.calls(),
        &[
            &[
                "run --rm --network host",
                "reg.test/aisha/webhook-api:t1",
                "plugin push /plugin/component/fal-avatar-status.wasm reg.test/plugins/fal-avatar-status:1.2.0",
                "--manifest /plugin/manifest/fal-avatar-status.toml --insecure-http",
            ],
            &[
                "exec",
                "aisha-webhook-api-1 webhook-host plugin deploy oci://reg.test/plugins/fal-avatar-status:1.2.0 --insecure-http",
            ],
            &["exec", "aisha-webhook-api-1 webhook-host plugin list"],
            &["exec", "aisha-webhook-api-2 webhook-host plugin list"],
        ],
    );
    // Credentials travel by name from the caller's environment, never as values.
    assert!(
        scripts
            .calls()
            .iter()
            .any(|c| c.contains("-e OCI_USERNAME -e OCI_PASSWORD"))
    );

    let lagging = scripts.run("deploy-plugin.sh", &args, &[("FAKE_NOT_LOADED", "1")]);
    assert!(!lagging.status.success());
    assert!(
        stderr(&lagging).contains("still runs fal-avatar-status"),
        "{}",
        stderr(&lagging)
    );

    let rollback = scripts.run("deploy-plugin.sh", &["--rollback", "fal-avatar-status"], &[]);
    assert!(rollback.status.success(), "{}", stderr(&rollback));
    assert_sequence(
        &scripts.calls(),
        &[
            &[
                "exec",
                "aisha-webhook-api-1 webhook-host plugin rollback fal-avatar-status",
            ],
            &["exec", "aisha-webhook-api-2 webhook-host plugin list"],
        ],
    );

    let missing = scripts.run("deploy-plugin.sh", &["plugin/nope.wasm", "reg.test/p:1"], &[]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("plugin/nope.wasm not found"));
}

/// Every script explains itself and refuses what it does not know.
#[test]
fn deploy_scripts_have_help_and_refuse_unknown_arguments() {
    let scripts = Scripts::new();
    for script in [
        "webhook-complete.sh",
        "update-webhook-images.sh",
        "deploy-plugin.sh",
    ] {
        let help = scripts.run(script, &["--help"], &[]);
        assert!(help.status.success(), "{script}");
        assert!(
            String::from_utf8_lossy(&help.stdout).starts_with("Usage"),
            "{script}"
        );
        let wrong = scripts.run(script, &["--frobnicate"], &[]);
        assert!(!wrong.status.success(), "{script}");
        assert!(stderr(&wrong).contains("--frobnicate"), "{script}");
        assert!(
            scripts.calls().is_empty(),
            "{script} called docker before refusing"
        );
    }
}
