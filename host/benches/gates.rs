//! What is answered before anything is stored, measured through the host's
//! HTTP edge in embedded mode (`cargo bench -p webhook-host --bench gates`;
//! prints, asserts nothing), one keep-alive connection, requests one after
//! another:
//! - handshake answer latency: Slack's `url_verification` (signed), Zoom's
//!   URL validation (signed; the answer carries an HMAC), Dropbox's GET
//!   challenge (unsigned);
//! - a verifier plugin's added intake cost: the same HMAC scheme (the
//!   `test-gate` component's) as a preset and as a verifier plugin, each
//!   POST → 200 committed, and the difference.

#[path = "../../tests/suite/workspace.rs"]
#[allow(dead_code)]
mod workspace;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use webhook_host::app::Application;
use webhook_host::config::Settings;
use webhook_host::verify::catalogue;
use webhook_host::verify::preset_sign;
use workspace::plugin_dir;

const KEY: &str = "bench-gate-key";
const WARMUP: usize = 200;
const SAMPLES: usize = 2000;

/// The test-gate scheme written as a preset.
const GATE_PRESET: &str = r#"
name = "gate-preset"
docs = "https://example.test/gate"
[signature]
algorithm = "hmac-sha256"
header = "x-gate-signature"
encoding = "hex"
message = [{ header = "x-gate-timestamp" }, { literal = "." }, "body"]
[timestamp]
header = "x-gate-timestamp"
[delivery_id]
header = "x-gate-id"
"#;

const CONFIG: &str = r#"
[[routes]]
name = "h-slack"
plugin = "test-misbehave"
verify = [{ provider = "slack", secret_env = "BENCH_KEY" }]

[[routes]]
name = "h-zoom"
plugin = "test-misbehave"
verify = [{ provider = "zoom", secret_env = "BENCH_KEY" }]

[[routes]]
name = "h-dropbox"
plugin = "test-misbehave"
verify = [{ provider = "dropbox", secret_env = "BENCH_KEY" }]

[[routes]]
name = "preset"
plugin = "test-misbehave"
verify = [{ provider = "gate-preset", secret_env = "BENCH_KEY" }]

[[routes]]
name = "plugin"
plugin = "test-misbehave"
verify = [{ plugin = "test-gate" }]
"#;

fn summary(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{label:<52} n={:<5} p50={:>9.1?} p99={:>9.1?}",
        samples.len(),
        pct(0.50),
        pct(0.99)
    );
    pct(0.50)
}

/// Times `SAMPLES` requests made by `request(i)` after `WARMUP` untimed
/// ones; each must answer 200.
async fn time<F>(label: &str, request: F) -> Duration
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        let response = request(i).send().await.unwrap();
        let status = response.status();
        let _ = response.bytes().await.unwrap();
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
        assert_eq!(status, 200, "{label}");
    }
    summary(label, samples)
}

fn gate_signed(client: &reqwest::Client, url: &str, id: &str) -> reqwest::RequestBuilder {
    let body = format!(r#"{{"mode":"ok","n":"{id}"}}"#);
    let timestamp = webhook_host::verify::unix_now().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-gate-timestamp", timestamp)
        .header("x-gate-signature", hex::encode(mac.finalize().into_bytes()))
        .header("x-gate-id", id)
        .body(body)
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(providers.join("gate-preset.toml"), GATE_PRESET).unwrap();
    for (name, file) in [("test-misbehave", "test_misbehave"), ("test-gate", "test_gate")] {
        std::fs::copy(
            plugin_dir().join(format!("{file}.wasm")),
            plugins.join(format!("{name}.wasm")),
        )
        .unwrap();
        let manifest =
            std::fs::read_to_string(workspace::workspace().join(format!("plugins/{name}/manifest.toml")))
                .unwrap();
        std::fs::write(plugins.join(format!("{name}.toml")), manifest).unwrap();
    }
    let config = dir.path().join("gates.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let env = |name: &str| -> Option<String> {
        match name {
            "HOST" => Some("127.0.0.1".into()),
            "PORT" => Some("0".into()),
            "DATA_DIR" => Some(data.display().to_string()),
            "PLUGINS_DIR" => Some(plugins.display().to_string()),
            "PROVIDERS_DIR" => Some(providers.display().to_string()),
            "BENCH_KEY" | "TEST_GATE_KEY" => Some(KEY.into()),
            "LOG_LEVEL" => Some("warn".into()),
            _ => None,
        }
    };
    let settings = Settings::load(Some(&config), false, env).unwrap();
    let app = Application::build(settings).await.unwrap();
    let addr = app.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let url = |route: &str| format!("http://{addr}/hooks/{route}");

    println!("== handshakes (answered, nothing stored)");
    for provider in ["slack", "zoom", "dropbox"] {
        let preset = catalogue::builtin(provider).unwrap();
        let spec = &preset.handshakes[0];
        let route = url(&format!("h-{provider}"));
        let label = format!(
            "{provider} {} ({} {})",
            spec.name,
            spec.method,
            if spec.signed { "signed" } else { "unsigned" }
        );
        time(&label, |_| {
            let signed =
                preset_sign::handshake(&preset, spec, KEY, None, None, webhook_host::verify::unix_now())
                    .unwrap();
            let target = match signed.query.is_empty() {
                true => route.clone(),
                false => format!("{route}?{}", signed.query),
            };
            client
                .request(spec.method.parse().unwrap(), target)
                .headers(signed.headers)
                .body(signed.body)
        })
        .await;
    }
    println!("== one HMAC scheme, POST -> 200 committed");
    let preset = time("as a preset", |i| {
        gate_signed(&client, &url("preset"), &format!("p-{i}"))
    })
    .await;
    let plugin = time("as a verifier plugin (fresh instance per request)", |i| {
        gate_signed(&client, &url("plugin"), &format!("v-{i}"))
    })
    .await;
    println!(
        "{:<52} {:>+9.1?} per delivery at p50",
        "added by the verifier plugin",
        plugin.saturating_sub(preset)
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The same two verifications in process, without HTTP or storage: the
/// preset's `verify`, and the verifier plugin's call (fresh instance).
async fn in_process() {
    use webhook_host::config::{RuntimeSettings, Secret};
    use webhook_host::verify::{Request, Scheme as _};
    println!("== in process, one verification");
    let data = tempfile::tempdir().unwrap();
    let inbox = webhook_host::inbox::Inbox::open_sqlite(data.path(), 2)
        .await
        .unwrap();
    let runtime = webhook_host::runtime::Runtime::new(
        &RuntimeSettings::default(),
        webhook_host::caps::Services::embedded(data.path()).unwrap(),
    )
    .unwrap();
    let text =
        std::fs::read_to_string(workspace::workspace().join("plugins/test-gate/manifest.toml")).unwrap();
    let manifest = webhook_host::manifest::Manifest::parse(&text).unwrap();
    let bytes = std::fs::read(plugin_dir().join("test_gate.wasm")).unwrap();
    let plugin = runtime
        .load(&manifest, "bench", &bytes, &RuntimeSettings::default())
        .unwrap();
    let preset = webhook_host::verify::preset::Preset::parse(GATE_PRESET).unwrap();
    let scheme = webhook_host::verify::declarative::Declarative::new(
        std::sync::Arc::new(preset),
        &[Secret::new(KEY)],
        300,
        None,
    )
    .unwrap();
    let body = br#"{"mode":"ok","n":"x"}"#;
    let timestamp = webhook_host::verify::unix_now().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-gate-timestamp", timestamp.parse().unwrap());
    headers.insert("x-gate-signature", signature.parse().unwrap());
    headers.insert("x-gate-id", "x".parse().unwrap());
    let request = Request::new(&headers, body);
    let mut preset_samples = Vec::new();
    let mut plugin_samples = Vec::new();
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        assert!(scheme.verify(&request).await.is_ok());
        let preset_took = started.elapsed();
        let started = Instant::now();
        let incoming = webhook_host::plugins::gate::incoming("plugin", &request);
        let verdict = runtime
            .verify_request(&plugin, &incoming, "bench", inbox.db())
            .await;
        let plugin_took = started.elapsed();
        assert!(matches!(verdict, Ok(Ok(_))), "{verdict:?}");
        if i >= WARMUP {
            preset_samples.push(preset_took);
            plugin_samples.push(plugin_took);
        }
    }
    let preset = summary("preset verify", preset_samples);
    let plugin = summary("verifier plugin: instantiate + verify", plugin_samples);
    println!(
        "{:<52} {:>+9.1?} per delivery at p50",
        "added by the verifier plugin",
        plugin.saturating_sub(preset)
    );
}

fn main() {
    // SAFETY: no other thread runs yet. The test-gate manifest reads its
    // key from the process environment, as a deployed manifest would.
    unsafe { std::env::set_var("TEST_GATE_KEY", KEY) };
    // Built before the clock starts.
    let _ = plugin_dir();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            run().await;
            in_process().await;
        });
}
