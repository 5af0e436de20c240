//! pgbench's single-row INSERT rate: the durable-commit yardstick the
//! ingest benchmarks hold the host against. The table is
//! `bench_ingest (delivery_id TEXT UNIQUE, body BYTEA)`.

use std::path::Path;
use std::process::Command;

/// Transactions per second of `clients` pgbench clients, each inserting one
/// row per transaction for `seconds`, with PostgreSQL's programs in `bin`.
pub fn single_row_insert_tps(bin: &Path, url: &str, clients: usize, seconds: u64) -> f64 {
    let script = std::env::temp_dir().join(format!("webhook-host-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "\\set n random(1, 2000000000)\nINSERT INTO bench_ingest (delivery_id, body) VALUES (:client_id || '-' || :n, 'x') ON CONFLICT DO NOTHING;\n",
    )
    .unwrap();
    let output = Command::new(bin.join("pgbench"))
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("running pgbench");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| {
            panic!(
                "no tps in pgbench output:\n{text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
