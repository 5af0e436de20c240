//! Prints the numbers behind the host's speed claims (run: `cargo bench`):
//! - per-event plugin cost: fresh `Store` + instantiate + `handle`, for a
//!   plugin that does nothing and for fal-avatar-status completing an avatar
//!   (files already stored: list + SELECT + UPDATE in a real SQLite
//!   transaction, rolled back each time; the first call, which copies the
//!   files, printed apart);
//! - the same fal-avatar-status logic compiled natively (its `avatar.rs`,
//!   `body.rs`, `notice.rs` and `effects.rs`, included by path) calling the same host
//!   capabilities on the same kind of state, and the Wasm/native ratio;
//! - end-to-end in embedded mode: signed POST → 200 (ack), and POST → event
//!   `done` with the LoRA file (70 KB, from a loopback file host) copied into
//!   storage and the avatar updated, one event at a time.
//!
//! Numbers only; nothing here asserts a time.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../../tests/suite/workspace.rs"]
mod workspace;
// The loopback stand-in for FAL's file host (the tests use more of it).
#[allow(dead_code)]
#[path = "../../tests/suite/remote.rs"]
mod remote;

// fal-avatar-status's webhook logic, built natively: it reaches the host
// through `crate::webhook::plugin`, `crate::telegram`, `crate::Event` and
// `crate::HandlerError`, as in the component.
#[allow(dead_code)]
#[path = "../../plugins/fal-avatar-status/src/avatar.rs"]
mod avatar;
#[allow(dead_code, unused_imports)]
#[path = "../../plugins/fal-avatar-status/src/body.rs"]
mod body;
#[allow(dead_code)]
#[path = "../../plugins/fal-avatar-status/src/effects.rs"]
mod effects;
#[allow(unused_imports)]
#[path = "../../plugins/fal-avatar-status/src/notice.rs"]
mod notice;
#[path = "support/fal_native.rs"]
mod webhook;

/// The native build sends no Telegram notice: the notice is a follow-up,
/// which the benchmark's handle calls only queue.
mod telegram {
    pub fn post_json(_url: &str, _body: &serde_json::Value) -> Result<(u16, Vec<u8>), String> {
        Err("the native benchmark build has no outbound HTTP".into())
    }
}

use webhook_host::wit::types::{Event, HandlerError};

use webhook_host::app::Application;
use webhook_host::config::{RuntimeSettings, Settings};
use webhook_host::inbox::{Event as StoredEvent, Inbox, Status};
use webhook_host::manifest::Manifest;
use webhook_host::runtime::Runtime;
use webhook_host::verify::fal_hmac;
use workspace::{plugin_dir, workspace};

const SECRET: &str = "bench-secret";

/// Prints `samples`' percentiles; returns the median.
fn summary(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{label:<46} n={:<5} p50={:>9.1?} p90={:>9.1?} p99={:>9.1?} mean={:>9.1?}",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        mean
    );
    pct(0.50)
}

/// The median of each phase of the attempts (their sum is near, not
/// equal to, the median of the whole), and of building the WIT record
/// when `records` has its times.
fn print_phases(phases: &[webhook_host::runtime::run::Phases], records: Vec<Duration>) {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let of = |f: fn(&webhook_host::runtime::run::Phases) -> Duration| median(phases.iter().map(f).collect());
    let record = match records.is_empty() {
        true => String::new(),
        false => format!("WIT record {:.1?}, ", median(records)),
    };
    println!(
        "{:<46} p50s: {record}state (WASI, output, capabilities) {:.1?}, store {:.1?}, \
         instantiate {:.1?}, call {:.1?}, teardown {:.1?}",
        "  where the time goes",
        of(|p| p.state),
        of(|p| p.store),
        of(|p| p.instantiate),
        of(|p| p.call),
        of(|p| p.teardown),
    );
}

fn event(id: usize, route: &str, body: Vec<u8>) -> StoredEvent {
    StoredEvent {
        id: format!("evt_bench_{id}"),
        route: route.into(),
        delivery_id: format!("d{id}"),
        received_at_ms: 0,
        headers: vec![],
        query: vec![("training_type".into(), "portrait".into())],
        body,
        status: Status::Processing,
        attempts: 1,
        next_attempt_at_ms: 0,
        lease_owner: None,
        plugin: None,
        plugin_version: None,
        last_error: None,
        finished_at_ms: None,
        request_id: None,
        parent_id: None,
        task: None,
        order_key: None,
    }
}

fn load(runtime: &Runtime, dir: &Path, name: &str) -> webhook_host::runtime::LoadedPlugin {
    let manifest = if name == "fal-avatar-status" {
        workspace::loopback_fal_manifest(&remote::shared().url)
    } else {
        std::fs::read_to_string(workspace().join(format!("plugins/{name}/manifest.toml"))).unwrap()
    };
    let manifest = Manifest::parse(&manifest).unwrap();
    let bytes = std::fs::read(dir.join(format!("{}.wasm", name.replace('-', "_")))).unwrap();
    let started = Instant::now();
    let plugin = runtime
        .load(
            &manifest,
            &webhook_host::plugins::store::version_of(&bytes, name),
            &bytes,
            &RuntimeSettings::default(),
        )
        .unwrap();
    println!(
        "compile + link {name:<32} {:>9.1?} ({} KiB)",
        started.elapsed(),
        bytes.len() / 1024
    );
    plugin
}

async fn dispatch_costs(wasm: &Path) {
    let data = tempfile::tempdir().unwrap();
    let inbox = Inbox::open_sqlite(data.path(), 4).await.unwrap();
    let pool = inbox.db().sqlite().unwrap();
    let schema = std::fs::read_to_string(workspace().join("examples/avatars.sqlite.sql")).unwrap();
    let seed = std::fs::read_to_string(workspace().join("examples/avatars.seed.sql")).unwrap();
    sqlx::raw_sql(&schema).execute(pool).await.unwrap();
    sqlx::raw_sql(&seed).execute(pool).await.unwrap();
    let remote = format!("{}/", remote::shared().url);
    let runtime = Runtime::new(
        &RuntimeSettings::default(),
        webhook_host::caps::Services::embedded(data.path()).unwrap(),
    )
    .unwrap();
    let noop = load(&runtime, wasm, "test-misbehave");
    let fal = load(&runtime, wasm, "fal-avatar-status");
    let ok_body = std::fs::read(workspace().join("tests/fixtures/fal/ok-portrait.json")).unwrap();
    let ok_body = String::from_utf8(ok_body)
        .unwrap()
        .replace("6a0e2b52-8f0c-4c2b-9d3e-2f7f0c1a9b10", "demo-request-1")
        .replace("https://v3.fal.media/", &remote);

    let mut wasm_fal = Duration::ZERO;
    for (label, plugin, body) in [
        (
            "instantiate + handle (no-op plugin)",
            &noop,
            br#"{"mode":"ok"}"#.to_vec(),
        ),
        (
            "instantiate + handle (fal-avatar-status OK)",
            &fal,
            ok_body.clone().into_bytes(),
        ),
    ] {
        let mut samples = Vec::new();
        let mut phases = Vec::new();
        let mut records = Vec::new();
        for i in 0..2200 {
            let tx = plugin.caps.db.begin(inbox.processing_db());
            let done = runtime
                .dispatch(plugin, &event(i, "bench", body.clone()), tx, None)
                .await;
            assert!(done.result.is_ok(), "{:?}", done.result);
            drop(done.tx); // roll back, so every iteration does the same work
            if i == 0 {
                // The first OK copies FAL's two files (70 KB each, loopback);
                // later ones find them stored and only check.
                println!("{label:<46} first call: {:?}", done.elapsed);
            }
            if i >= 200 {
                samples.push(done.elapsed);
                phases.push(done.phases);
                let stored = event(i, "bench", body.clone());
                let started = std::time::Instant::now();
                std::hint::black_box(webhook_host::runtime::run::to_wit(&stored));
                records.push(started.elapsed());
            }
        }
        wasm_fal = summary(label, samples);
        print_phases(&phases, records);
    }
    native_fal(&runtime, &inbox, &fal, ok_body.into_bytes(), wasm_fal).await;
    slot_reset_side_by_side(wasm, &inbox, data.path()).await;
}

/// The no-op plugin on a pool that hands a slot's memory back to the
/// kernel after each instance (`keep_resident_kb = 0`, what the host did
/// before) and on one that resets it in place (the default), in
/// alternating rounds so both see the same machine.
async fn slot_reset_side_by_side(wasm: &Path, inbox: &Inbox, data: &Path) {
    let runtimes: Vec<(String, Runtime)> = [0, RuntimeSettings::default().keep_resident_kb]
        .into_iter()
        .map(|kb| {
            let settings = RuntimeSettings {
                keep_resident_kb: kb,
                ..RuntimeSettings::default()
            };
            let services = webhook_host::caps::Services::embedded(data).unwrap();
            (
                format!("no-op plugin, keep_resident_kb = {kb}"),
                Runtime::new(&settings, services).unwrap(),
            )
        })
        .collect();
    let plugins: Vec<_> = runtimes
        .iter()
        .map(|(_, runtime)| load(runtime, wasm, "test-misbehave"))
        .collect();
    let mut samples = [Vec::new(), Vec::new()];
    let mut phases = [Vec::new(), Vec::new()];
    for round in 0..12 {
        for (which, ((_, runtime), plugin)) in runtimes.iter().zip(&plugins).enumerate() {
            for i in 0..200 {
                let tx = plugin.caps.db.begin(inbox.processing_db());
                let body = br#"{"mode":"ok"}"#.to_vec();
                let done = runtime.dispatch(plugin, &event(i, "bench", body), tx, None).await;
                assert!(done.result.is_ok(), "{:?}", done.result);
                if round > 0 {
                    samples[which].push(done.elapsed);
                    phases[which].push(done.phases);
                }
            }
        }
    }
    for (which, (label, _)) in runtimes.iter().enumerate() {
        summary(label, std::mem::take(&mut samples[which]));
        print_phases(&phases[which], Vec::new());
    }
}

/// The fal logic compiled natively, on the same capabilities, inbox and
/// storage as the Wasm runs before it (so the files are already there, as
/// for those runs after their first).
async fn native_fal(
    runtime: &Runtime,
    inbox: &Inbox,
    plugin: &webhook_host::runtime::LoadedPlugin,
    body: Vec<u8>,
    wasm_p50: Duration,
) {
    // One thread of its own runs the calls: each import blocks on the runtime.
    let (to_thread, inbox_of_thread) = std::sync::mpsc::channel::<webhook_host::runtime::State>();
    let (to_bench, mut from_thread) = tokio::sync::mpsc::channel(1);
    let event = webhook_host::runtime::to_wit(&event(0, "bench", body));
    let handle = tokio::runtime::Handle::current();
    let caller = std::thread::spawn(move || {
        // Dropping a state returns its connection to the pool: a runtime task.
        let _runtime = handle.enter();
        for state in inbox_of_thread {
            let started = Instant::now();
            let (result, state) = webhook::run(state, handle.clone(), || avatar::handle(event.clone()));
            let elapsed = started.elapsed();
            assert!(result.is_ok(), "{result:?}");
            drop(state); // rolls the transaction back, as the Wasm runs do
            to_bench.blocking_send(elapsed).unwrap();
        }
    });
    let mut samples = Vec::new();
    for _ in 0..2200 {
        let started = Instant::now();
        let state = runtime.state(plugin, "native", plugin.caps.db.begin(inbox.db()));
        let built = started.elapsed();
        to_thread.send(state).unwrap();
        samples.push(built + from_thread.recv().await.unwrap());
    }
    drop(to_thread);
    caller.join().unwrap();
    let native_p50 = summary("handle natively (fal-avatar-status OK)", samples.split_off(200));
    println!(
        "{:<46} p50 Wasm / p50 native = {:.2}",
        "fal-avatar-status Wasm vs native",
        wasm_p50.as_secs_f64() / native_p50.as_secs_f64()
    );
}

async fn end_to_end(wasm: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        wasm.join("fal_avatar_status.wasm"),
        plugins.join("fal-avatar-status.wasm"),
    )
    .unwrap();
    let remote = remote::shared().url.clone();
    std::fs::write(
        plugins.join("fal-avatar-status.toml"),
        workspace::loopback_fal_manifest(&remote),
    )
    .unwrap();
    let data = dir.path().join("data");
    let env = |name: &str| -> Option<String> {
        match name {
            "HOST" => Some("127.0.0.1".into()),
            "PORT" => Some("0".into()),
            "DATA_DIR" => Some(data.display().to_string()),
            "PLUGINS_DIR" => Some(plugins.display().to_string()),
            "FAL_WEBHOOK_SECRET" => Some(SECRET.into()),
            _ => None,
        }
    };
    let settings = Settings::load(None, false, env).unwrap();
    let app = Application::build(settings).await.unwrap();
    let addr = app.local_addr().unwrap();
    let inbox = Inbox::open_sqlite(&data, 2).await.unwrap();
    let pool = inbox.db().sqlite().unwrap();
    let schema = std::fs::read_to_string(workspace().join("examples/avatars.sqlite.sql")).unwrap();
    sqlx::raw_sql(&schema).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO users (id) VALUES ('u')")
        .execute(pool)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/avatar/status_update?training_type=portrait");
    let (mut acks, mut e2e) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let request_id = format!("bench-{i}");
        sqlx::query(
            "INSERT INTO avatars (id, user_id, name, status, fal_request_id) VALUES ($1, 'u', 'b', 'training', $1)",
        )
        .bind(&request_id)
        .execute(pool)
        .await
        .unwrap();
        let body = format!(
            r#"{{"request_id":"{request_id}","status":"OK","payload":{{"diffusers_lora_file":{{"url":"{remote}/files/e2e/{request_id}/l.safetensors"}}}}}}"#
        );
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let signature = fal_hmac::sign(
            SECRET,
            &fal_hmac::canonical_message(&request_id, "u", &ts, body.as_bytes()),
        );
        let started = Instant::now();
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header(fal_hmac::REQUEST_ID, &request_id)
            .header(fal_hmac::USER_ID, "u")
            .header(fal_hmac::TIMESTAMP, &ts)
            .header(fal_hmac::SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .unwrap();
        let ack = started.elapsed();
        let answer: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        let id = answer["event_id"].as_str().unwrap().to_string();
        loop {
            if inbox
                .get(&id)
                .await
                .unwrap()
                .is_some_and(|e| e.status == Status::Done)
            {
                break;
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        if i >= 100 {
            acks.push(ack);
            e2e.push(started.elapsed());
        }
    }
    summary("HTTP POST -> 200 accepted (committed)", acks);
    summary("HTTP POST -> event done, avatar updated", e2e);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

fn main() {
    let wasm = plugin_dir().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        dispatch_costs(&wasm).await;
        end_to_end(&wasm).await;
    });
}
