//! Plugin lifecycle: compiled code is cached on disk, so a restart loads
//! plugins without compiling them again.

use std::time::Instant;

use crate::harness::{TestHost, fixture};

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_a_warm_compile_cache_does_not_compile() {
    let started = Instant::now();
    let mut host = TestHost::spawn().await;
    let cold = started.elapsed();
    let log = host.log();
    assert_eq!(log.matches("plugin compiled").count(), 2, "{log}");
    let hits = log.matches("plugin loaded from the compile cache").count();

    host.kill();
    let restarted = Instant::now();
    host.restart();
    let warm = restarted.elapsed();
    let log = host.log();
    assert_eq!(
        log.matches("plugin compiled").count(),
        2,
        "nothing compiled on restart: {log}"
    );
    assert_eq!(
        log.matches("plugin loaded from the compile cache").count(),
        hits + 2,
        "{log}"
    );
    // The same restart with the cache emptied compiles again.
    host.kill();
    std::fs::remove_dir_all(host.dir.path().join("data-0/compile-cache")).unwrap();
    let recompiled = Instant::now();
    host.restart();
    let cold_restart = recompiled.elapsed();
    assert_eq!(host.log().matches("plugin compiled").count(), 4);
    println!(
        "restart to ready: warm compile cache {warm:?}, cold {cold_restart:?} (first start incl. test setup {cold:?})"
    );

    // The cached code runs.
    let avatar = host.seed_avatar("cache-1").await;
    let (_, answer) = host.post_fal(&fixture("legacy-progress.json", "cache-1")).await;
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let row = host.avatar(&avatar).await;
    assert_eq!((row.status.as_str(), row.training_progress), ("training", 42));
}

const ADMIN: &str = "lifecycle-admin-token";

/// POSTs `body` to the admin API of instance `i` with this module's token.
async fn admin_post_as(host: &TestHost, i: usize, path: &str, body: serde_json::Value) -> serde_json::Value {
    host.admin_post(i, path, ADMIN, body).await
}

/// The test-misbehave component with a manifest whose `tag` config names the version.
pub(crate) fn tagged_upload(tag: &str) -> serde_json::Value {
    use base64::Engine as _;
    let wasm = std::fs::read(crate::harness::plugin_dir().join("test_misbehave.wasm")).unwrap();
    let manifest = format!(
        "{}\n[config]\ntag = \"{tag}\"\n",
        crate::harness::test_manifest(
            "test-misbehave",
            &[("test-misbehave", "timeout_ms = 1000", "timeout_ms = 5000")]
        )
    );
    serde_json::json!({
        "manifest": manifest,
        "component_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "activate": true,
        "by": "lifecycle-test",
    })
}

/// Deploys and activates the tagged test plugin through instance `i`; its version.
async fn deploy_tagged(host: &TestHost, i: usize, tag: &str) -> String {
    admin_post_as(host, i, "/admin/v1/plugins", tagged_upload(tag)).await["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The version of test-misbehave instance `i` reports on `/health`.
async fn loaded_version(host: &TestHost, i: usize) -> Option<String> {
    let text = host
        .http
        .get(host.url_on(i, "/health"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let health: serde_json::Value = serde_json::from_str(&text).ok()?;
    health["checks"]["plugins"]["loaded"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "test-misbehave")
        .and_then(|p| p["version"].as_str())
        .map(str::to_string)
}

/// Waits until both instances run `version`; how long that took.
async fn both_switch_to(host: &TestHost, version: &str) -> std::time::Duration {
    let started = Instant::now();
    loop {
        let (a, b) = (loaded_version(host, 0).await, loaded_version(host, 1).await);
        if a.as_deref() == Some(version) && b.as_deref() == Some(version) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{a:?} {b:?} never became {version}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_and_rollback_under_load_switch_both_instances_and_lose_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    // Deployed versions reach the other instance through shared storage.
    let garage = crate::services::garage();
    let bucket = garage.bucket();
    let mut env = garage.env(&bucket);
    env.push(("ADMIN_TOKEN".into(), ADMIN.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let host = Arc::new(
        TestHost::start_with(crate::harness::Options {
            backend: crate::harness::Backend::Postgres,
            instances: 2,
            extra_env: &env,
            ..Default::default()
        })
        .await,
    );
    let v1 = deploy_tagged(&host, 0, "v1").await;
    both_switch_to(&host, &v1).await;

    // A steady stream of deliveries, alternating between the instances.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (host, stop) = (host.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("swap-{n}");
                let body = br#"{"mode":"tagged"}"#;
                let headers = crate::harness::Signer::fal(&id).headers(body);
                statuses.push(host.post_on(n % 2, "/hooks/misbehave", body, &headers).await.0);
                n += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let v2 = deploy_tagged(&host, 1, "v2").await;
    let deploy = both_switch_to(&host, &v2).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let back = admin_post_as(
        &host,
        0,
        "/admin/v1/plugins/test-misbehave/rollback",
        serde_json::json!({}),
    )
    .await;
    assert_eq!(back["active_version"], v1.as_str());
    let rollback = both_switch_to(&host, &v1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = sender.await.unwrap();
    println!(
        "deploy → both instances on v2: {deploy:?}; rollback → both on v1: {rollback:?}; {} deliveries",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every delivery accepted: {statuses:?}"
    );
    assert!(deploy < std::time::Duration::from_secs(1) && rollback < std::time::Duration::from_secs(1));

    host.wait_until_all_done().await;
    // Every event's recorded version is the one whose effect it had.
    let rows = host
        .texts(
            "SELECT e.plugin_version || ' ' || f.event_id FROM plugin_effects f \
             JOIN webhook_events e ON f.event_id LIKE '%' || e.id",
        )
        .await;
    assert_eq!(rows.len(), statuses.len(), "one effect per delivery");
    let (mut on_v1, mut on_v2) = (0, 0);
    for row in rows {
        let mut parts = row.split(' ');
        let (version, tag) = (parts.next().unwrap(), parts.next().unwrap());
        match tag {
            "v1" => {
                assert_eq!(version, v1);
                on_v1 += 1;
            }
            "v2" => {
                assert_eq!(version, v2);
                on_v2 += 1;
            }
            other => panic!("effect tagged {other:?}"),
        }
    }
    assert!(
        on_v1 > 0 && on_v2 > 0,
        "both versions handled events: v1 {on_v1}, v2 {on_v2}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_that_fails_validation_changes_nothing() {
    use base64::Engine as _;
    let host = TestHost::spawn_with("", &[("ADMIN_TOKEN", ADMIN)]).await;
    let before = loaded_version(&host, 0).await.unwrap();
    let wasm = std::fs::read(crate::harness::plugin_dir().join("test_misbehave.wasm")).unwrap();
    let manifest = crate::harness::test_manifest("test-misbehave", &[]);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    for (label, manifest, component, expected) in [
        (
            "not a component",
            manifest.clone(),
            b64(b"\0asm not really"),
            "not a valid component",
        ),
        (
            "missing grant",
            manifest.replace("kv = true", ""),
            b64(&wasm),
            "add `kv = true`",
        ),
        (
            "bad manifest",
            "name = \"x\"\n[grants]\nroot = true\n".to_string(),
            b64(&wasm),
            "manifest is not valid",
        ),
    ] {
        let response = host
            .http
            .post(host.url("/admin/v1/plugins"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({ "manifest": manifest, "component_base64": component, "activate": true })
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{label}");
        let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(answer.to_string().contains(expected), "{label}: {answer}");
    }
    assert_eq!(loaded_version(&host, 0).await.unwrap(), before, "nothing changed");
    let listed = host
        .get_text(0, "/admin/v1/plugins/test-misbehave", Some(ADMIN))
        .await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["active_version"], before.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_mode_follows_the_plugin_folder() {
    let host = TestHost::spawn().await;
    let before = loaded_version(&host, 0).await.unwrap();
    // The operator drops in a changed manifest: a new version, live without a restart.
    let manifest = format!(
        "{}\n[config]\ntag = \"from-folder\"\n",
        crate::harness::test_manifest("test-misbehave", &[])
    );
    std::fs::write(host.dir.path().join("plugins/test-misbehave.toml"), manifest).unwrap();
    let started = Instant::now();
    let after = loop {
        let now = loaded_version(&host, 0).await.unwrap();
        if now != before {
            break now;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the change was never picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let event = host.wait_for(&host.post_mode("tagged").await, "done").await;
    assert_eq!(event.plugin_version.as_deref(), Some(after.as_str()));
    let effects = host.texts("SELECT event_id FROM plugin_effects").await;
    assert!(effects[0].starts_with("from-folder "), "{effects:?}");
}

/// Runs `webhook-host plugin …` against instance 0; (success, stdout + stderr).
fn plugin_cli(host: &TestHost, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .args(["plugin", "--server", &host.url(""), "--token", ADMIN])
        .args(args)
        .env_remove("ADMIN_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_cli_deploys_lists_rolls_back_and_removes() {
    let host = TestHost::spawn_with("", &[("ADMIN_TOKEN", ADMIN)]).await;
    let before = loaded_version(&host, 0).await.unwrap();
    let dir = host.dir.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        crate::harness::plugin_dir().join("test_misbehave.wasm"),
        dir.join("test-misbehave.wasm"),
    )
    .unwrap();
    let manifest = format!(
        "{}\n[config]\ntag = \"cli\"\n",
        crate::harness::test_manifest("test-misbehave", &[])
    );
    std::fs::write(dir.join("test-misbehave.toml"), manifest).unwrap();

    let wasm = dir.join("test-misbehave.wasm");
    let (ok, out) = plugin_cli(&host, &["deploy", wasm.to_str().unwrap()]);
    assert!(ok && out.contains("stored and active"), "{out}");
    let deployed = loaded_version(&host, 0).await.unwrap();
    assert_ne!(deployed, before);
    assert!(out.contains(&deployed), "{out}");
    // The folder watcher (every 2 s) does not undo a deploy: the folder did not change.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(loaded_version(&host, 0).await.unwrap(), deployed);

    let (ok, out) = plugin_cli(&host, &["list"]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("test-misbehave")).unwrap();
    assert!(
        line.contains(&deployed[..12]) && line.trim_end().ends_with('2'),
        "{out}"
    );

    let (ok, out) = plugin_cli(&host, &["rollback", "test-misbehave"]);
    assert!(ok && out.contains(&before), "{out}");
    assert_eq!(loaded_version(&host, 0).await.unwrap(), before);

    let (ok, out) = plugin_cli(&host, &["remove", "test-misbehave", &before[..12]]);
    assert!(
        !ok && out.contains("is active"),
        "the active version cannot be removed: {out}"
    );
    let (ok, out) = plugin_cli(&host, &["remove", "test-misbehave", &deployed[..12]]);
    assert!(ok, "{out}");
    let (ok, out) = plugin_cli(&host, &["activate", "test-misbehave", "deadbeefdeadbeef"]);
    assert!(!ok && out.contains("no version"), "{out}");
    let (ok, out) = plugin_cli(&host, &["inspect", "test-misbehave"]);
    assert!(
        ok && out.contains("webhook:plugin/kv"),
        "imports are listed: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_pushed_to_and_deployed_from_an_oci_registry() {
    let registry = crate::services::oci_registry();
    let host = TestHost::spawn_with("", &[("ADMIN_TOKEN", ADMIN)]).await;
    let dir = host.dir.path().join("oci");
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = std::fs::read(crate::harness::plugin_dir().join("test_misbehave.wasm")).unwrap();
    std::fs::write(dir.join("test-misbehave.wasm"), &wasm).unwrap();
    let manifest = format!(
        "{}\n[config]\ntag = \"oci\"\n",
        crate::harness::test_manifest("test-misbehave", &[])
    );
    std::fs::write(dir.join("test-misbehave.toml"), &manifest).unwrap();
    let target = format!("oci://{}/plugins/test-misbehave:v1", registry.address);

    let component = dir.join("test-misbehave.wasm");
    let (ok, out) = plugin_cli(
        &host,
        &["push", component.to_str().unwrap(), &target, "--insecure-http"],
    );
    assert!(ok && out.contains("pushed"), "{out}");
    let (ok, out) = plugin_cli(&host, &["deploy", &target, "--insecure-http"]);
    assert!(ok && out.contains("stored and active"), "{out}");
    let expected = webhook_host::plugins::store::version_of(&wasm, &manifest);
    assert_eq!(
        loaded_version(&host, 0).await.unwrap(),
        expected,
        "the pulled bytes are the pushed ones"
    );

    // Anything but the Wasm artifact layout is refused with a clear error.
    let (ok, out) = plugin_cli(
        &host,
        &[
            "deploy",
            &format!("oci://{}/plugins/missing:v9", registry.address),
            "--insecure-http",
        ],
    );
    assert!(!ok && out.contains("pulling"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_plugin_builds_and_plugin_test_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_webhook-host");
    let made = std::process::Command::new(bin)
        .args(["plugin", "new", "demo-plugin", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let root = dir.path().join("demo-plugin");

    // It builds for wasm32-wasip2 as generated (a target folder of its own
    // inside ours, so later runs reuse the compiled dependencies).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = crate::harness::workspace().join("target/scaffold");
    let built = std::process::Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/demo_plugin.wasm");

    let plugin_test = |payload: &str| {
        std::process::Command::new(bin)
            .args(["plugin", "test"])
            .arg(&wasm)
            .arg("--manifest")
            .arg(root.join("manifest.toml"))
            .arg("--payload")
            .arg(root.join(payload))
            .output()
            .unwrap()
    };
    let tested = plugin_test("sample.json");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(tested.status.success(), "{out}");
    assert!(out.contains("demo-plugin received 19 bytes (attempt 1)"), "{out}");
    assert!(out.contains("result: ok"), "{out}");

    // A plugin that fails says so, with the reason, and exits non-zero.
    std::fs::write(root.join("empty.json"), "").unwrap();
    let failed = plugin_test("empty.json");
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(
        !failed.status.success() && out.contains("invalid: empty body"),
        "{out}"
    );
}

/// `plugin new --kind verifier|responder` scaffolds that build, and
/// `plugin test` gives them a request and prints the verdict or the answer.
#[tokio::test(flavor = "multi_thread")]
async fn scaffolded_verifiers_and_responders_build_and_plugin_test_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = crate::harness::workspace().join("target/scaffold");
    std::fs::write(dir.path().join("body.json"), "{}").unwrap();
    let mut wasm = std::collections::HashMap::new();
    for kind in ["verifier", "responder"] {
        let name = format!("demo-{kind}");
        let (ok, out) = crate::harness::run_cli(
            &[
                "plugin",
                "new",
                &name,
                "--kind",
                kind,
                "--dir",
                dir.path().to_str().unwrap(),
            ],
            &[],
        );
        assert!(ok, "{out}");
        let built = std::process::Command::new(&cargo)
            .current_dir(dir.path().join(&name))
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        wasm.insert(
            kind,
            target.join(format!("wasm32-wasip2/release/demo_{kind}.wasm")),
        );
    }
    let test = |kind: &str, extra: &[&str], env: &[(&str, &str)]| {
        let manifest = dir.path().join(format!("demo-{kind}/manifest.toml"));
        let body = dir.path().join("body.json");
        let mut args = vec![
            "plugin",
            "test",
            wasm[kind].to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--payload",
            body.to_str().unwrap(),
        ];
        args.extend(extra);
        let (ok, out) = crate::harness::run_cli(&args, env);
        (ok, out)
    };
    let key = [("DEMO_VERIFIER_SIGNING_KEY", "demo-key")];
    let (ok, out) = test("verifier", &["--header", "x-example-token: demo-key"], &key);
    assert!(ok && out.contains("result: verified"), "{out}");
    let (ok, out) = test("verifier", &["--header", "x-example-token: another"], &key);
    assert!(
        !ok && out.contains("refused (401 plugin_rejected): the token does not match"),
        "{out}"
    );
    let (ok, out) = test("responder", &["--query", "challenge=abc123"], &[]);
    assert!(ok && out.contains("HTTP 200") && out.contains("abc123"), "{out}");
    let (ok, out) = test("responder", &[], &[]);
    assert!(ok && out.contains("no answer"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_declare_routes_and_a_taken_route_is_refused() {
    use base64::Engine as _;
    let host = TestHost::spawn_with("", &[("ADMIN_TOKEN", ADMIN)]).await;
    let route = "\n[[routes]]\nname = \"declared\"\nverify = [{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }]\n";
    let b64 = |name: &str| {
        let wasm =
            std::fs::read(crate::harness::plugin_dir().join(format!("{}.wasm", name.replace('-', "_"))))
                .unwrap();
        base64::engine::general_purpose::STANDARD.encode(wasm)
    };
    let misbehave = format!("{}{route}", crate::harness::test_manifest("test-misbehave", &[]));
    let upload = serde_json::json!({ "manifest": misbehave, "component_base64": b64("test-misbehave"), "activate": true });
    admin_post_as(&host, 0, "/admin/v1/plugins", upload).await;

    // The declared route serves at once, verified as declared.
    let body = br#"{"mode":"tagged"}"#;
    let (status, answer) = host
        .post("/hooks/declared", body, crate::harness::Signer::fal("declared-1"))
        .await;
    assert_eq!(status, 200, "{answer}");
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let forged = crate::harness::Signer {
        key: "wrong",
        ..crate::harness::Signer::fal("declared-2")
    };
    assert_eq!(host.post("/hooks/declared", body, forged).await.0, 401);

    // Another plugin cannot take it, nor a route of the host's config.
    let github = crate::harness::test_manifest("github-activity", &[]);
    for (claimed, owner) in [
        ("declared", "plugin test-misbehave"),
        ("misbehave", "the host's config"),
    ] {
        let manifest = format!(
            "{github}\n[[routes]]\nname = \"{claimed}\"\nverify = [{{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }}]\n"
        );
        let response = host
            .http
            .post(host.url("/admin/v1/plugins"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({ "manifest": manifest, "component_base64": b64("github-activity"), "activate": true })
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        let text = response.text().await.unwrap();
        assert!(text.contains(&format!("already served by {owner}")), "{text}");
    }

    // Rolled back to the folder's version (no routes): the route is gone.
    admin_post_as(
        &host,
        0,
        "/admin/v1/plugins/test-misbehave/rollback",
        serde_json::json!({}),
    )
    .await;
    let (status, _) = host
        .post("/hooks/declared", body, crate::harness::Signer::fal("declared-3"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_in_flight_finishes_on_the_version_it_began_with() {
    let host = TestHost::spawn_with("", &[("ADMIN_TOKEN", ADMIN)]).await;
    let v1 = deploy_tagged(&host, 0, "v1").await;
    // Busy for a second of its 5 s budget; v2 is activated meanwhile.
    let (_, answer) = host
        .post(
            "/hooks/misbehave",
            br#"{"mode":"tagged","spin_ms":"1000"}"#,
            crate::harness::Signer::fal("in-flight-1"),
        )
        .await;
    let slow = answer["event_id"].as_str().unwrap().to_string();
    host.wait_for(&slow, "processing").await;
    let v2 = deploy_tagged(&host, 0, "v2").await;
    let fast = host.post_mode("tagged").await;
    let slow_row = host.wait_for(&slow, "done").await;
    let fast_row = host.wait_for(&fast, "done").await;
    assert_eq!(
        slow_row.plugin_version.as_deref(),
        Some(v1.as_str()),
        "the running event kept v1"
    );
    assert_eq!(fast_row.plugin_version.as_deref(), Some(v2.as_str()));
    let mut effects = host.texts("SELECT event_id FROM plugin_effects").await;
    effects.sort();
    assert_eq!(effects, [format!("v1 {slow}"), format!("v2 {fast}")]);
}

/// A component built against the contract's first version (0.1.0, before
/// follow-ups) loads on today's host and handles its events: a minor
/// version only adds, and the linker matches the older imports.
#[tokio::test]
async fn a_component_built_against_wit_0_1_0_still_runs() {
    let wasm = std::fs::read(crate::workspace::plugin_dir().join("test_wit_0_1_0.wasm")).unwrap();
    let names = |needle: &str| wasm.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        names("webhook:plugin/db@0.1.0"),
        "the fixture imports the 0.1.0 interfaces"
    );
    assert!(!names("@0.1.1"), "and nothing newer");

    let host = TestHost::start_with(crate::harness::Options {
        extra_plugins: &["test-wit-0-1-0"],
        extra_config: r#"
[[routes]]
name = "legacy"
plugin = "test-wit-0-1-0"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
retry_schedule = []
"#,
        ..Default::default()
    })
    .await;
    let body = br#"{"legacy":true}"#;
    let headers = crate::harness::Signer::fal("legacy-1").headers(body);
    let (status, answer) = host.post_with("/hooks/legacy", body, &headers).await;
    assert_eq!(status, 200, "{answer}");
    let event = answer["event_id"].as_str().unwrap().to_string();
    host.wait_for(&event, "done").await;
    assert_eq!(
        host.texts("SELECT event_id FROM plugin_effects").await,
        vec![format!("legacy {event} attempt 1")]
    );
}
