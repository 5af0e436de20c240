//! Processing on a real, durable PostgreSQL started for the run (`cargo
//! bench -p webhook-host --bench processing`; prints, asserts nothing):
//! events finished per second by two instances draining a stored backlog
//! of 10,000, at worker concurrency 8, 16 (the default) and 32, on a plugin
//! that does nothing (the host's own cost per event) and on
//! fal-avatar-status (each event copies a 4 KB "LoRA" from a loopback file
//! host into storage and updates its avatar), storage being S3 (a Garage
//! node of the run's own, a fresh bucket per run) or the local data folder.
//! Intake is measured by the campaign (`bench/run`), beside pgbench.
//!
//! Everything shares this machine's cores: the instances and PostgreSQL.
//!
//! Beside each rate, the CPU each event cost the two instances, the
//! loopback file host, PostgreSQL and Garage. `PROCESSING_CONCURRENCY=16`
//! and `PROCESSING_ONLY=fal-s3` (or `noop`, `fal-local`) narrow the run,
//! `PROCESSING_EVENTS=2000` shortens it;
//! `PROCESSING_PROFILE=FILE` records `perf` call graphs of the instances
//! (this process) while they drain.

#[path = "../../tests/suite/workspace.rs"]
mod workspace;
// The loopback stand-in for FAL's file host (the tests use more of it).
#[allow(dead_code)]
#[path = "../../tests/suite/remote.rs"]
mod remote;

#[allow(dead_code)]
#[path = "support/host.rs"]
mod host;

#[allow(dead_code)]
#[path = "support/loadgen.rs"]
mod loadgen;

#[path = "../../tests/suite/services/mod.rs"]
#[allow(dead_code, unused_imports)]
mod services;

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::Connection;

use webhook_host::app::Application;
use webhook_host::config::Settings;
use webhook_host::inbox::{Inbox, NewEvent, StoredPairs};
use workspace::workspace;

/// An instance's settings; `s3` is the object storage's environment, none
/// for the local data folder.
fn settings(url: &str, dir: &Path, instance: &str, concurrency: usize, s3: &[(String, String)]) -> Settings {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nconcurrency = {concurrency}\n[[routes]]\nname = \"fal\"\nplugin = \"fal-avatar-status\"\n\
             verify = [{{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }}]\n[[routes]]\nname = \"noop\"\nplugin = \"test-misbehave\"\n\
             verify = [{{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }}]\n"
        ),
    )
    .unwrap();
    let (url, data, plugins) = (url.to_string(), dir.join(instance), dir.join("plugins"));
    let s3 = s3.to_vec();
    let env = move |name: &str| -> Option<String> {
        if let Some((_, value)) = s3.iter().find(|(k, _)| k == name) {
            return Some(value.clone());
        }
        match name {
            "HOST" => Some("127.0.0.1".into()),
            "PORT" => Some("0".into()),
            "DATABASE_URL" => Some(url.clone()),
            "DATA_DIR" => Some(data.display().to_string()),
            "PLUGINS_DIR" => Some(plugins.display().to_string()),
            "FAL_WEBHOOK_SECRET" => Some(loadgen::SECRET.into()),
            "INSTANCE_ID" => Some(instance.into()),
            _ => None,
        }
    };
    Settings::load(Some(&config), false, env).unwrap()
}

fn body(id: &str) -> Vec<u8> {
    let files = &remote::shared().url;
    format!(
        r#"{{"request_id":"{id}","status":"OK","payload":{{"diffusers_lora_file":{{"url":"{files}/files/processing/{id}/l.safetensors?size=4096"}}}}}}"#
    )
        .into_bytes()
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = workspace::fal_plugin_folder(
        dir.path(),
        &workspace::loopback_fal_manifest(&remote::shared().url),
    );
    let misbehave = workspace::plugin_dir().join("test_misbehave.wasm");
    std::fs::copy(misbehave, plugins.join("test-misbehave.wasm")).unwrap();
    std::fs::copy(
        workspace().join("plugins/test-misbehave/manifest.toml"),
        plugins.join("test-misbehave.toml"),
    )
    .unwrap();

    let server = services::postgres::PgServer::start_with(true);
    let url = server.create_database().await;
    // Two connections: two instances at concurrency 32 hold 2 × (34 + 8)
    // of PostgreSQL's 100.
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let schema = std::fs::read_to_string(workspace().join("examples/avatars.postgres.sql")).unwrap();
    sqlx::raw_sql(&schema).execute(&admin).await.unwrap();
    println!("PostgreSQL {} with fsync and synchronous_commit on", server.port);

    // Processing: a backlog drained by two instances, first on a plugin that
    // does nothing (the host's own cost per event), then on fal-avatar-status.
    let total: usize = std::env::var("PROCESSING_EVENTS").map_or(10_000, |n| n.parse().unwrap());
    sqlx::raw_sql(&format!(
        "INSERT INTO users (id) VALUES ('00000000-0000-4000-8000-000000000001'); \
         INSERT INTO avatars (id, user_id, name, status, fal_request_id) \
         SELECT gen_random_uuid(), '00000000-0000-4000-8000-000000000001', 'b', 'training', 'proc-' || i \
         FROM generate_series(0, {total} - 1) AS i"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let garage = services::Garage::start();
    let concurrencies: Vec<usize> = match std::env::var("PROCESSING_CONCURRENCY") {
        Ok(list) => list.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        Err(_) => vec![8, 16, 32],
    };
    let only = std::env::var("PROCESSING_ONLY").ok();
    for concurrency in concurrencies {
        for (case, label, route, storage) in [
            ("noop", "no-op plugin", "noop", "S3"),
            ("fal-s3", "fal-avatar-status", "fal", "S3"),
            ("fal-local", "fal-avatar-status", "fal", "local folder"),
        ] {
            if only
                .as_deref()
                .is_some_and(|only| !only.split(',').any(|o| o == case))
            {
                continue;
            }
            // A fresh bucket per run: every event copies its file.
            let s3 = match storage {
                "S3" => garage.env(&garage.bucket()),
                _ => Vec::new(),
            };
            let (rate, followups, cpu) =
                processing(&admin, &url, dir.path(), route, total, concurrency, &s3).await;
            let also = match followups {
                0 => String::new(),
                n => format!(" (and their {n} follow-ups, in the same time)"),
            };
            println!(
                "two instances, worker.concurrency {concurrency:>2}, {label}, storage {storage}: \
                 {total} events = {rate:.0} events/s{also}\n    CPU per event: {}",
                cpu.per_event(total)
            );
        }
    }
    admin.close().await;
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// CPU seconds used so far by each party of a run.
#[derive(Clone, Copy)]
struct Cpu {
    instances: f64,
    files: f64,
    postgres: f64,
    garage: f64,
}

impl Cpu {
    /// `poller` is the PostgreSQL backend the bench's own polling uses: its
    /// CPU is not the instances'.
    fn now(poller: u32) -> Cpu {
        // This process holds both instances, the loopback file host's
        // thread and the bench's own polling (a query every 20 ms).
        let files = host::threads_cpu_secs(remote::THREAD);
        Cpu {
            instances: host::cpu_secs(std::process::id()) - files,
            files,
            postgres: host::cpu_secs_of_all("postgres") - host::cpu_secs(poller),
            garage: host::cpu_secs_of_all("garage"),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            instances: self.instances - before.instances,
            files: self.files - before.files,
            postgres: self.postgres - before.postgres,
            garage: self.garage - before.garage,
        }
    }

    fn per_event(self, events: usize) -> String {
        let us = |secs: f64| secs * 1e6 / events as f64;
        format!(
            "instances {:.0} µs, PostgreSQL {:.0} µs, Garage {:.0} µs, file host {:.0} µs",
            us(self.instances),
            us(self.postgres),
            us(self.garage),
            us(self.files)
        )
    }
}

/// Stores `total` events for `route`, then starts two instances and returns
/// how many events per second they finish (the clock starts once both have
/// loaded their plugins), how many follow-ups those events queued, and the
/// CPU the run cost.
async fn processing(
    admin: &sqlx::PgPool,
    url: &str,
    dir: &Path,
    route: &str,
    total: usize,
    concurrency: usize,
    s3: &[(String, String)],
) -> (f64, i64, Cpu) {
    // Migrates when the intake part did not run first.
    let inbox = Inbox::connect_postgres(&webhook_host::config::Secret::new(url.to_string()), 4, true)
        .await
        .unwrap();
    sqlx::raw_sql("TRUNCATE webhook_events")
        .execute(admin)
        .await
        .unwrap();
    let events: Vec<NewEvent> = (0..total)
        .map(|i| {
            let id = format!("proc-{i}");
            let body = match route {
                "fal" => body(&id),
                _ => br#"{"mode":"ok"}"#.to_vec(),
            };
            NewEvent {
                route: route.into(),
                delivery_id: id,
                received_at_ms: webhook_host::now_ms(),
                due_at_ms: webhook_host::now_ms(),
                headers: StoredPairs::empty(),
                query: StoredPairs::empty(),
                body,
                request_id: None,
                order_key: None,
            }
        })
        .collect();
    for chunk in events.chunks(250) {
        inbox.insert_batch(chunk.to_vec()).await.unwrap();
    }
    // The TRUNCATE left the planner without statistics, which a production
    // table always has: without them it sorts the whole backlog on every
    // claim instead of reading the due index in order.
    sqlx::raw_sql("ANALYZE webhook_events; ANALYZE avatars")
        .execute(admin)
        .await
        .unwrap();
    // Every run starts from the same state: avatars in training, no stored
    // files (each instance keeps its files under its data folder).
    sqlx::raw_sql(
        "UPDATE avatars SET status = 'training', training_progress = 0, avatar_data = NULL, \
         diffusers_lora_file_url = NULL, config_file_url = NULL, fal_response_data = NULL",
    )
    .execute(admin)
    .await
    .unwrap();
    let mut apps = Vec::new();
    for instance in ["one", "two"] {
        let _ = std::fs::remove_dir_all(dir.join(instance));
        apps.push(
            Application::build(settings(url, dir, instance, concurrency, s3))
                .await
                .unwrap(),
        );
    }
    let mut poll = sqlx::PgConnection::connect(url).await.unwrap();
    let poller: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut poll)
        .await
        .unwrap();
    let poller = poller as u32;
    let profile = host::profile("PROCESSING_PROFILE", std::process::id());
    let cpu = Cpu::now(poller);
    let started = Instant::now();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for app in apps {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        servers.push(tokio::spawn(app.run(async move {
            let _ = stopped.await;
        })));
        stops.push(stop);
    }
    loop {
        // Reads the small due index only; a full count would cost the run.
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_events WHERE status IN ('pending', 'processing')",
        )
        .fetch_one(&mut poll)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let cpu = Cpu::now(poller).since(cpu);
    drop(profile);
    // fal-avatar-status queues its photo clean-up (and, with a bot token,
    // its notice) as follow-ups: they are in the clock, and counted apart.
    let (done, followups): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE task IS NULL), COUNT(*) FILTER (WHERE task IS NOT NULL) \
         FROM webhook_events WHERE status = 'done'",
    )
    .fetch_one(admin)
    .await
    .unwrap();
    assert_eq!(done, total as i64, "every event ends done");

    for stop in stops {
        let _ = stop.send(());
    }
    for server in servers {
        server.await.unwrap().unwrap();
    }
    (total as f64 / elapsed.as_secs_f64(), followups, cpu)
}
