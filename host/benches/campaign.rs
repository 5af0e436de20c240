//! The performance campaign's ingest table (`bench/run`, or `cargo bench -p
//! webhook-host --bench campaign`; prints, asserts nothing).
//!
//! One load generator for everything: pre-signed FAL deliveries written as
//! raw HTTP/1.1 over keep-alive connections from a single-threaded runtime
//! (so it takes one core at most), measuring each request's latency. Against:
//! - an axum handler that answers 200 and does nothing (the ceiling);
//! - the release `webhook-host` binary, intake only (verify, commit, 200), on
//!   SQLite and on a durable PostgreSQL (fsync, synchronous_commit on);
//! - production's shape: nginx (the project's template, TLS on the FAL
//!   listener, one worker) in front of two such instances on PostgreSQL;
//! - `pgbench` inserting one row per transaction (the durable-ack limit);
//! - the old stack: FastAPI + uvicorn (2 workers) + asyncpg doing the same
//!   HMAC check and INSERT (`bench/fastapi_receiver.py`; needs
//!   `BENCH_PYTHON`, which `bench/run` sets up).
//!
//! Also the host's resident memory idle and at the end of its heaviest run.
//! With `CAMPAIGN_PROFILE=FILE`, `perf record` samples the host (call
//! graphs) during its PostgreSQL runs into FILE.
//! Everything shares this machine's cores.

#[path = "../../tests/suite/workspace.rs"]
#[allow(dead_code)]
mod workspace;

#[path = "support/pgbench.rs"]
mod pgbench;

#[path = "support/loadgen.rs"]
mod loadgen;

#[path = "support/host.rs"]
mod host;

#[path = "support/floors.rs"]
mod floors;

#[path = "../../tests/suite/services/mod.rs"]
#[allow(dead_code, unused_imports)]
mod services;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::Target;
use webhook_host::verify::unix_now;
use workspace::workspace;

use loadgen::SECRET;
const RUN: Duration = Duration::from_secs(5);
const PATH: &str = "/api/v1/avatar/status_update?training_type=portrait";

/// One row of the table.
struct Row {
    scenario: String,
    connections: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// CPU seconds the load generator spent sending and reading.
    load_cpu: f64,
    /// The run's delivery ids start with this.
    tag: String,
}

/// `count` signed FAL deliveries as raw HTTP/1.1 requests, ids tagged `tag`.
fn requests(tag: &str, count: usize, host: &str) -> Vec<Vec<u8>> {
    loadgen::signed_requests(tag, count, host, PATH, loadgen::fal_training_body)
}

/// Runs the load against `target` at each concurrency; one row per run.
fn measure(
    runtime: &tokio::runtime::Runtime,
    scenario: &str,
    target: Target,
    concurrencies: &[usize],
    rows: &mut Vec<Row>,
) {
    let addr = match &target {
        Target::Plain(addr) | Target::Tls(addr, _) => *addr,
    };
    for &connections in concurrencies {
        // Enough requests for 60 k/s; signed just before the run.
        let tag = format!(
            "{}-{connections}-{}",
            scenario.replace([' ', ','], "_"),
            unix_now()
        );
        let requests = Arc::new(requests(&tag, 300_000, &addr.to_string()));
        // The load runs on this thread (a current-thread runtime).
        let cpu_before = host::thread_cpu_secs();
        let (rate, p50, p99) = runtime.block_on(loadgen::blast(target.clone(), requests, connections, RUN));
        rows.push(Row {
            scenario: scenario.to_string(),
            connections,
            rate,
            p50,
            p99,
            load_cpu: host::thread_cpu_secs() - cpu_before,
            tag,
        });
    }
}

/// The release binary serving intake only, on `database_url` or SQLite in
/// `dir/<data>`.
fn start_host(dir: &Path, data: &str, database_url: Option<&str>) -> (Child, SocketAddr) {
    host::start(
        dir,
        "[worker]\nenabled = false\n[[routes]]\nname = \"fal\"\npath = \"/api/v1/avatar/status_update\"\n\
         plugin = \"fal-avatar-status\"\nverify = [{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }]\n",
        data,
        database_url,
    )
}

/// A 2-thread runtime serving `POST /…` with 200 and nothing else.
fn noop_server() -> SocketAddr {
    floors::serve_fal_path(
        "axum-ceiling",
        axum::routing::post(|_body: axum::body::Bytes| async { r#"{"status":"accepted"}"# }),
    )
}

/// Starts the FastAPI receiver with two uvicorn workers, when `BENCH_PYTHON`
/// names a Python that has fastapi, uvicorn and asyncpg.
fn start_fastapi(url: &str) -> Option<(Child, SocketAddr)> {
    let python = std::env::var("BENCH_PYTHON").ok()?;
    let port = services::free_port();
    let child = Command::new(python)
        .args([
            "-m",
            "uvicorn",
            "fastapi_receiver:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--log-level",
            "warning",
            "--no-access-log",
        ])
        .current_dir(workspace().join("bench"))
        .env("DATABASE_URL", url)
        .env("FAL_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1)); // both workers up
    Some((child, addr))
}

fn main() {
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest =
        std::fs::read_to_string(workspace().join("plugins/fal-avatar-status/manifest.toml")).unwrap();
    workspace::fal_plugin_folder(dir.path(), &manifest);
    let server = services::postgres::PgServer::start_with(true);
    let url = load.block_on(server.create_database());
    load.block_on(async {
        let admin = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE bench_ingest (id BIGSERIAL PRIMARY KEY, delivery_id TEXT UNIQUE, body BYTEA); \
             CREATE TABLE fastapi_events (id BIGSERIAL PRIMARY KEY, delivery_id TEXT UNIQUE, body BYTEA)",
        )
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
    });
    let concurrencies = [16, 64];
    let mut rows = Vec::new();

    measure(
        &load,
        "axum no-op (ceiling)",
        Target::Plain(noop_server()),
        &concurrencies,
        &mut rows,
    );

    let floor_before = host::threads_cpu_secs(floors::HTTP_THREADS);
    measure(
        &load,
        "HTTP floor (HMAC+JSON, no DB)",
        Target::Plain(floors::http_server()),
        &concurrencies,
        &mut rows,
    );
    let http_floor = host::threads_cpu_secs(floors::HTTP_THREADS) - floor_before;
    let http_floor_served = served(&rows[rows.len() - concurrencies.len()..]);

    let (mut sqlite_host, addr) = start_host(dir.path(), "data-sqlite", None);
    measure(
        &load,
        "host, SQLite",
        Target::Plain(addr),
        &concurrencies,
        &mut rows,
    );
    let _ = sqlite_host.kill();
    let _ = sqlite_host.wait();

    let (mut pg_host, addr) = start_host(dir.path(), "data-pg", Some(&url));
    std::thread::sleep(Duration::from_secs(1));
    let idle = host::rss_mib(pg_host.id());
    let cpu_before = host::cpu_secs(pg_host.id());
    let pg_cpu_before = host::cpu_secs_of_all("postgres");
    let profile = host::profile("CAMPAIGN_PROFILE", pg_host.id());
    measure(
        &load,
        "host, PostgreSQL",
        Target::Plain(addr),
        &concurrencies,
        &mut rows,
    );
    drop(profile);
    let cpu = host::cpu_secs(pg_host.id()) - cpu_before;
    let pg_cpu = host::cpu_secs_of_all("postgres") - pg_cpu_before;
    let pg_rows = &rows[rows.len() - concurrencies.len()..];
    let pg_served = served(pg_rows);
    let load_cpu: f64 = pg_rows.iter().map(|r| r.load_cpu).sum();
    let loaded = host::rss_mib(pg_host.id());
    let _ = pg_host.kill();
    let _ = pg_host.wait();

    // The storage floor: the host's rows again, in its batch sizes.
    let mut batches = Vec::new();
    for row in pg_rows {
        batches.extend(load.block_on(floors::host_batches(&url, &format!("{}-", row.tag))));
    }
    let storage_floors: Vec<(&str, floors::Floor)> = [
        ("the host's INSERT … UNNEST", floors::Write::HostInsert),
        ("COPY FROM STDIN", floors::Write::Copy),
    ]
    .into_iter()
    .map(|(name, write)| {
        let fresh = load.block_on(server.create_database());
        (name, load.block_on(floors::store(&fresh, &batches, write)))
    })
    .collect();

    let mut pair = Vec::new();
    for data in ["data-pg-1", "data-pg-2"] {
        pair.push(start_host(dir.path(), data, Some(&url)));
    }
    let nginx = services::nginx::Nginx::start(services::nginx::NginxConfig {
        upstreams: [pair[0].1, pair[1].1],
        admin_allow: "127.0.0.1/32",
        // The per-address limit is for the open internet; the load here
        // comes from one address.
        rate: "1000000r/s",
        burst: 1_000_000,
    });
    let fal = SocketAddr::from(([127, 0, 0, 1], nginx.fal_port));
    measure(
        &load,
        "nginx TLS -> host x2, PG",
        Target::tls(fal, nginx.cert_pem()),
        &concurrencies,
        &mut rows,
    );
    drop(nginx);
    for (mut child, _) in pair {
        let _ = child.kill();
        let _ = child.wait();
    }

    let mut pgbench_tps = Vec::new();
    for &clients in &concurrencies {
        let tps = pgbench::single_row_insert_tps(server.bin(), &url, clients, RUN.as_secs());
        pgbench_tps.push((clients, tps));
        rows.push(Row {
            scenario: "pgbench single-row INSERT".into(),
            connections: clients,
            rate: tps,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            load_cpu: 0.0,
            tag: String::new(),
        });
    }

    match start_fastapi(&url) {
        Some((mut child, addr)) => {
            measure(
                &load,
                "FastAPI+uvicorn(2)+asyncpg",
                Target::Plain(addr),
                &[64],
                &mut rows,
            );
            let _ = Command::new("pkill")
                .args(["-P", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        None => println!("(FastAPI receiver skipped: run bench/run, which sets BENCH_PYTHON)"),
    }

    println!();
    println!(
        "{:<30} {:>5} {:>9} {:>9} {:>9} {:>11} {:>11}",
        "scenario", "conns", "req/s", "p50", "p99", "/ pgbench", "/ FastAPI"
    );
    let fastapi = rows
        .iter()
        .find(|r| r.scenario.starts_with("FastAPI"))
        .map(|r| r.rate);
    let ms = |d: Duration| {
        if d.is_zero() {
            "-".to_string()
        } else {
            format!("{:.2} ms", d.as_secs_f64() * 1000.0)
        }
    };
    for row in &rows {
        let tps = pgbench_tps
            .iter()
            .find(|(c, _)| *c == row.connections)
            .map(|(_, t)| *t);
        let vs_pgbench = match (row.scenario.starts_with("pgbench"), tps) {
            (false, Some(tps)) => format!("{:.2}x", row.rate / tps),
            _ => "-".into(),
        };
        let is_host = row.scenario.starts_with("host") || row.scenario.starts_with("nginx");
        let vs_fastapi = match (is_host, fastapi) {
            (true, Some(f)) => format!("{:.1}x", row.rate / f),
            _ => "-".into(),
        };
        println!(
            "{:<30} {:>5} {:>9.0} {:>9} {:>9} {:>11} {:>11}",
            row.scenario,
            row.connections,
            row.rate,
            ms(row.p50),
            ms(row.p99),
            vs_pgbench,
            vs_fastapi
        );
    }
    println!("host resident memory: idle {idle:.1} MiB, after the PostgreSQL runs {loaded:.1} MiB");
    let per = |seconds: f64| seconds / pg_served * 1e6;
    let total = per(cpu) + per(pg_cpu) + per(load_cpu);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "CPU per accepted delivery (PostgreSQL runs): host {:.1} µs, PostgreSQL {:.1} µs, \
         load generator {:.1} µs; {total:.1} µs in all, so {cores} cores carry at most {:.0} req/s",
        per(cpu),
        per(pg_cpu),
        per(load_cpu),
        cores as f64 / total * 1e6
    );
    print_floors(
        per(cpu),
        per(pg_cpu),
        http_floor / http_floor_served * 1e6,
        &batches,
        &storage_floors,
    );
}

/// Deliveries answered 200 in `rows`' runs.
fn served(rows: &[Row]) -> f64 {
    rows.iter().map(|r| r.rate * RUN.as_secs_f64()).sum()
}

/// The floors beside the host, per accepted delivery, as ratios.
fn print_floors(
    host_us: f64,
    pg_us: f64,
    http_floor_us: f64,
    batches: &[Vec<floors::Stored>],
    storage: &[(&str, floors::Floor)],
) {
    let rows: usize = batches.iter().map(Vec::len).sum();
    println!(
        "floors (same run; CPU µs per accepted delivery, the host's PostgreSQL runs; host batches: {} commits, \
         {:.1} rows each on average, {} at most):",
        batches.len(),
        rows as f64 / batches.len().max(1) as f64,
        batches.iter().map(Vec::len).max().unwrap_or(0)
    );
    println!(
        "  HTTP floor (axum, FAL HMAC, JSON check, no storage): {http_floor_us:.1} µs; host {host_us:.1} µs = {:.2}x",
        host_us / http_floor_us
    );
    for (name, floor) in storage {
        let server_us = floor.server_cpu / floor.rows as f64 * 1e6;
        println!(
            "  storage floor, {name}, one task: PostgreSQL {server_us:.1} µs (client {:.1} µs, {:.0} rows/s); \
             host's PostgreSQL {pg_us:.1} µs = {:.2}x",
            floor.client_cpu / floor.rows as f64 * 1e6,
            floor.rows as f64 / floor.elapsed.as_secs_f64(),
            pg_us / server_us
        );
    }
    if let Some((_, floor)) = storage.first() {
        let sum = http_floor_us + floor.server_cpu / floor.rows as f64 * 1e6;
        println!(
            "  both floors: {sum:.1} µs; host + its PostgreSQL {:.1} µs = {:.2}x",
            host_us + pg_us,
            (host_us + pg_us) / sum
        );
    }
}
