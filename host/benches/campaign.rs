//! The performance campaign's ingest table (`bench/run`, or `cargo bench -p
//! webhook-host --bench campaign`; prints, asserts nothing).
//!
//! One load generator for everything: pre-signed FAL deliveries written as
//! raw HTTP/1.1 over keep-alive connections from a single-threaded runtime
//! (so it takes one core at most), measuring each request's latency. Against:
//! - an axum handler that answers 200 and does nothing (the ceiling);
//! - the release `webhook-host` binary, intake only (verify, commit, 200), on
//!   SQLite and on a durable PostgreSQL (fsync, synchronous_commit on);
//! - `pgbench` inserting one row per transaction (the durable-ack limit);
//! - the old stack: FastAPI + uvicorn (2 workers) + asyncpg doing the same
//!   HMAC check and INSERT (`bench/fastapi_receiver.py`; needs
//!   `BENCH_PYTHON`, which `bench/run` sets up).
//!
//! Also the host's resident memory idle and at the end of its heaviest run.
//! Everything shares this machine's cores.

#[path = "../../tests/suite/workspace.rs"]
#[allow(dead_code)]
mod workspace;

#[path = "support/pgbench.rs"]
mod pgbench;

#[path = "../../tests/suite/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webhook_host::verify::{sign, unix_now};
use workspace::workspace;

const SECRET: &str = "bench-secret";
const RUN: Duration = Duration::from_secs(5);
const PATH: &str = "/api/v1/avatar/status_update?training_type=portrait";

/// One row of the table.
struct Row {
    scenario: String,
    connections: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// `count` signed deliveries as raw HTTP/1.1 requests, ids tagged `tag`.
fn requests(tag: &str, count: usize, host: &str) -> Vec<Vec<u8>> {
    let now = unix_now();
    (0..count)
        .map(|n| {
            let id = format!("{tag}-{n}");
            let body = format!(
                r#"{{"request_id":"{id}","gateway_request_id":"{id}","status":"OK","payload":{{"diffusers_lora_file":{{"url":"https://v3.fal.media/files/b/{id}/pytorch_lora_weights.safetensors","content_type":"application/octet-stream","file_name":"pytorch_lora_weights.safetensors","file_size":89745224}},"config_file":{{"url":"https://v3.fal.media/files/b/{id}/config.json","content_type":"application/octet-stream","file_name":"config.json","file_size":1290}}}}}}"#
            );
            let mut head = format!("POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
            for (name, value) in sign::headers("fal-hmac", SECRET, &id, body.as_bytes(), now).unwrap() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut request = head.into_bytes();
            request.extend_from_slice(body.as_bytes());
            request
        })
        .collect()
}

/// Reads one response; its status code.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// `connections` keep-alive connections sending `requests` (each once) for
/// at most `RUN`; throughput and latency percentiles.
async fn blast(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
) -> (f64, Duration, Duration) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buffer = Vec::with_capacity(8192);
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            let mut i = c;
            while i < requests.len() && started.elapsed() < RUN {
                let sent = Instant::now();
                stream.write_all(&requests[i]).await.unwrap();
                match read_response(&mut stream, &mut buffer).await {
                    Ok(200) => latencies.push(sent.elapsed()),
                    Ok(_) => failures += 1,
                    Err(_) => {
                        failures += 1;
                        stream = TcpStream::connect(addr).await.unwrap();
                    }
                }
                i += connections;
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.extend(latencies);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(failures * 100 <= all.len(), "{failures} failed requests");
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.5), pct(0.99))
}

/// Runs the load against `addr` at each concurrency; one row per run.
fn measure(
    runtime: &tokio::runtime::Runtime,
    scenario: &str,
    addr: SocketAddr,
    concurrencies: &[usize],
    rows: &mut Vec<Row>,
) {
    for &connections in concurrencies {
        // Enough requests for 60 k/s; signed just before the run.
        let tag = format!("{}-{connections}-{}", scenario.replace(' ', "_"), unix_now());
        let requests = Arc::new(requests(&tag, 300_000, &addr.to_string()));
        let (rate, p50, p99) = runtime.block_on(blast(addr, requests, connections));
        rows.push(Row {
            scenario: scenario.to_string(),
            connections,
            rate,
            p50,
            p99,
        });
    }
}

/// The release binary serving intake only, on `database_url` or SQLite in `dir`.
fn start_host(dir: &Path, database_url: Option<&str>) -> (Child, SocketAddr) {
    let config = dir.join("campaign.toml");
    std::fs::write(
        &config,
        "[worker]\nenabled = false\n[[routes]]\nname = \"fal\"\npath = \"/api/v1/avatar/status_update\"\n\
         plugin = \"fal-avatar-status\"\nverify = [{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }]\n",
    )
    .unwrap();
    let data = dir.join(if database_url.is_some() {
        "data-pg"
    } else {
        "data-sqlite"
    });
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-host"));
    command
        .args(["--config"])
        .arg(&config)
        .arg("serve")
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", &data)
        .env("PLUGINS_DIR", dir.join("plugins"))
        .env("FAL_WEBHOOK_SECRET", SECRET)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the host exited").unwrap();
        if let Some(addr) = line.strip_prefix("webhook-host listening on http://") {
            break addr.parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// Resident memory of a process, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A 2-thread runtime serving `POST /…` with 200 and nothing else.
fn noop_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let app = axum::Router::new().route(
                    "/api/v1/avatar/status_update",
                    axum::routing::post(|_body: axum::body::Bytes| async { r#"{"status":"accepted"}"# }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            })
    });
    addr
}

/// Starts the FastAPI receiver with two uvicorn workers, when `BENCH_PYTHON`
/// names a Python that has fastapi, uvicorn and asyncpg.
fn start_fastapi(url: &str) -> Option<(Child, SocketAddr)> {
    let python = std::env::var("BENCH_PYTHON").ok()?;
    let port = pg::free_port();
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
    let server = pg::PgServer::start_with(true);
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
        noop_server(),
        &concurrencies,
        &mut rows,
    );

    let (mut sqlite_host, addr) = start_host(dir.path(), None);
    measure(&load, "host, SQLite", addr, &concurrencies, &mut rows);
    let _ = sqlite_host.kill();
    let _ = sqlite_host.wait();

    let (mut pg_host, addr) = start_host(dir.path(), Some(&url));
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_mib(pg_host.id());
    measure(&load, "host, PostgreSQL", addr, &concurrencies, &mut rows);
    let loaded = rss_mib(pg_host.id());
    let _ = pg_host.kill();
    let _ = pg_host.wait();

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
        });
    }

    match start_fastapi(&url) {
        Some((mut child, addr)) => {
            measure(&load, "FastAPI+uvicorn(2)+asyncpg", addr, &[64], &mut rows);
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
        let vs_fastapi = match (row.scenario.starts_with("host"), fastapi) {
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
}
