//! The host while a plugin attacks it (`cargo bench -p webhook-host --bench
//! attack`; prints, asserts nothing): the release binary on SQLite, intake
//! latency of a well-behaved route measured alone, then again while another
//! route's events run test-misbehave's hostile corpus (endless loop,
//! unbounded allocation, both kinds of stack overflow, a log flood, a huge
//! return value, a db call storm) without pause; and the host's memory
//! before, at the worst of the attack, and after it.

#[path = "../../tests/suite/workspace.rs"]
#[allow(dead_code)]
mod workspace;

#[path = "support/loadgen.rs"]
mod loadgen;

#[path = "support/host.rs"]
mod host;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use webhook_host::verify::unix_now;
use workspace::workspace;

const RUN: Duration = Duration::from_secs(5);
const CONNECTIONS: usize = 8;
const CORPUS: [&str; 7] = [
    "loop",
    "oom",
    "recurse",
    "recurse-frames",
    "flood",
    "huge-return",
    "db-storm",
];

const CONFIG: &str = r#"
[worker]
concurrency = 4
max_attempts = 1
poll_interval_ms = 100

[[routes]]
name = "ok"
plugin = "test-misbehave"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]

[[routes]]
name = "attack"
plugin = "test-misbehave"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
"#;

/// Events not finished yet, read from the host's metrics.
async fn backlog(addr: SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("webhook_inbox_events{")
                && (l.contains("\"pending\"") || l.contains("\"processing\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn drain(addr: SocketAddr) {
    while backlog(addr).await > 0.0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The well-behaved route's intake under load: (req/s, p50, p99).
async fn intake(addr: SocketAddr, tag: &str) -> (f64, Duration, Duration) {
    let requests = loadgen::signed_requests(tag, 200_000, &addr.to_string(), "/hooks/ok", |_| {
        r#"{"mode":"ok"}"#.to_string()
    });
    loadgen::blast(loadgen::Target::Plain(addr), Arc::new(requests), CONNECTIONS, RUN).await
}

/// Posts the hostile corpus round and round until `stop`; the highest
/// resident memory seen.
async fn attack(addr: SocketAddr, pid: u32, stop: Arc<AtomicBool>) -> f64 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buffer = Vec::new();
    let mut peak: f64 = 0.0;
    let tag = format!("attack-{}", unix_now());
    for round in 0.. {
        for mode in CORPUS {
            if stop.load(Ordering::SeqCst) {
                return peak;
            }
            let request = loadgen::signed_requests(
                &format!("{tag}-{round}-{mode}"),
                1,
                &addr.to_string(),
                "/hooks/attack",
                |_| format!(r#"{{"mode":"{mode}","calls":"100000"}}"#),
            );
            stream.write_all(&request[0]).await.unwrap();
            loadgen::read_response(&mut stream, &mut buffer).await.unwrap();
            peak = peak.max(host::rss_mib(pid));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    peak
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        workspace::plugin_dir().join("test_misbehave.wasm"),
        plugins.join("test-misbehave.wasm"),
    )
    .unwrap();
    std::fs::copy(
        workspace().join("plugins/test-misbehave/manifest.toml"),
        plugins.join("test-misbehave.toml"),
    )
    .unwrap();
    let (mut child, addr) = host::start(dir.path(), CONFIG, "data", None);
    let pid = child.id();
    runtime.block_on(async {
        // Warm up, then let the worker catch up before each measurement.
        intake(addr, "warm").await;
        drain(addr).await;
        let (rate, p50, p99) = intake(addr, "alone").await;
        drain(addr).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = host::rss_mib(pid);

        let stop = Arc::new(AtomicBool::new(false));
        let attacker = tokio::spawn(attack(addr, pid, stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (attacked_rate, attacked_p50, attacked_p99) = intake(addr, "attacked").await;
        stop.store(true, Ordering::SeqCst);
        let peak = attacker.await.unwrap();
        drain(addr).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = host::rss_mib(pid);

        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!();
        println!("intake of a well-behaved route, {CONNECTIONS} connections, {RUN:?} each (host on SQLite, worker concurrency 4):");
        println!("{:<28} {:>9} {:>9} {:>9}", "", "req/s", "p50 ms", "p99 ms");
        println!("{:<28} {rate:>9.0} {:>9.2} {:>9.2}", "alone", ms(p50), ms(p99));
        println!(
            "{:<28} {attacked_rate:>9.0} {:>9.2} {:>9.2}",
            "during the hostile corpus",
            ms(attacked_p50),
            ms(attacked_p99)
        );
        println!("p99 during / alone: {:.2}x", ms(attacked_p99) / ms(p99));
        println!("host resident memory: before {before:.1} MiB, peak during the attack {peak:.1} MiB, after {after:.1} MiB");
    });
    let _ = child.kill();
    let _ = child.wait();
}
