//! A plugin that misbehaves on purpose, so the host's isolation can be tested
//! against a real component.
//!
//! The event body is JSON `{"mode": "..."}`:
//! - `ok`: succeeds;
//! - `trap`: panics (a Wasm trap);
//! - `loop`: spins forever;
//! - `oom`: allocates without bound;
//! - `retry` / `invalid`: returns that handler error;
//! - `print`: writes to stdout and stderr, then succeeds;
//! - `effect`: inserts a row into `plugin_effects` and succeeds;
//! - `slow`: spins for half a second, then does what `effect` does;
//! - `write`: inserts a row into `plugin_effects` and then traps, so the
//!   host's rollback can be observed;
//! - `hostile`: tries to drop a table, read the host's inbox, leave its
//!   database role and update a table it was not granted; records each
//!   outcome as a row in `plugin_effects` and succeeds;
//! - `reach`: GETs each space-separated URL of `targets` through wasi:http and
//!   records `<url> ok <status>` or `<url> refused: <error>`;
//! - `blob`: puts each space-separated key of `keys` and records the outcome;
//! - `tagged`: records `<config tag> <event id>` (which version ran it),
//!   after spinning `spin_ms` milliseconds when given;
//! - `presign`: puts `presigned data` at `key` and records its presigned URL;
//! - `answer`: records the effect and answers `{"answered":"<delivery id>","attempt":n}`;
//! - `kv`: `set-if-absent(key, event id, ttl)` then `increment("count")`,
//!   recording `kv <key> first|again count=<n>`;
//! - `span`: busy for `ms` milliseconds, then records `span <key> <start>
//!   <end> <event id>` (wall-clock milliseconds), so that a test can tell
//!   which events ran at the same time; with `"flaky":"1"` its first
//!   attempt asks to be retried instead.

// The generated bindings take many arguments in places; that is theirs.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "scheduled-handler",
});

use webhook::plugin::{blob, db, kv};

struct Misbehave;

fn record_effect(event: &Event) -> Result<u64, HandlerError> {
    db::execute(
        "INSERT INTO plugin_effects (event_id) VALUES ($1)",
        &[db::Value::Text(event.id.clone())],
    )
    .map_err(HandlerError::Fatal)
}

/// A string field of the JSON body; a tiny scan keeps this plugin free of a
/// JSON dependency.
fn field_of(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.split(&format!("\"{name}\""))
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_string)
}

fn mode_of(body: &[u8]) -> String {
    field_of(body, "mode").unwrap_or_else(|| "ok".into())
}

/// Recurses until wasm's own call stack runs out.
fn recurse(depth: u64) -> u64 {
    // Never true at run time; the compiler cannot tell.
    if std::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    recurse(std::hint::black_box(depth + 1)) + 1
}

/// Recurses with a buffer in every frame, so that the stack Rust keeps in
/// linear memory runs out first (it grows down past the memory's start).
fn recurse_with_frames(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 256]);
    // Never true at run time; the compiler cannot tell.
    if std::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    let below = recurse_with_frames(std::hint::black_box(depth + 1));
    below + frame[(depth % 256) as usize] as u64
}

/// Busy for the body's `ms` (500 by default).
fn spin_ms(body: &[u8]) {
    let ms = field_of(body, "ms").and_then(|n| n.parse().ok()).unwrap_or(500);
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(ms) {
        std::hint::spin_loop();
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_millis())
}

fn record(line: String) -> Result<(), HandlerError> {
    db::execute(
        "INSERT INTO plugin_effects (event_id) VALUES ($1)",
        &[db::Value::Text(line)],
    )
    .map(|_| ())
    .map_err(HandlerError::Fatal)
}

impl Guest for Misbehave {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {
        match mode_of(&event.body).as_str() {
            "ok" => Ok(None),
            "trap" => panic!("test-misbehave was asked to trap"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => {
                let depth = recurse(std::hint::black_box(0));
                Err(HandlerError::Fatal(format!("recursion ended at {depth}")))
            }
            "recurse-frames" => {
                let depth = recurse_with_frames(std::hint::black_box(0));
                Err(HandlerError::Fatal(format!("recursion ended at {depth}")))
            }
            "flood" => {
                // About 2 MB in 8,000 lines.
                let filler = ".".repeat(200);
                for i in 0..8_000 {
                    println!("flood line {i} of event {} {filler}", event.id);
                }
                Ok(None)
            }
            "huge-return" => Ok(Some(vec![7u8; 8 << 20])),
            // A sync route's answer: the delivery id and the attempt, after
            // recording the effect (committed with it).
            "answer" => {
                record_effect(&event)?;
                let answer = format!(
                    r#"{{"answered":"{}","attempt":{}}}"#,
                    event.delivery_id, event.attempt
                );
                Ok(Some(answer.into_bytes()))
            }
            "db-storm" => {
                let calls: u32 = field_of(&event.body, "calls")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(5000);
                for _ in 0..calls {
                    db::query("SELECT 1", &[]).map_err(HandlerError::Fatal)?;
                }
                record(format!("{calls} db calls made"))?;
                Ok(None)
            }
            "retry" => Err(HandlerError::Retry("asked to retry".into())),
            "invalid" => Err(HandlerError::Invalid("asked to be invalid".into())),
            "print" => {
                println!("hello from {} on stdout", event.id);
                eprintln!("hello from {} on stderr", event.id);
                Ok(None)
            }
            "effect" => record_effect(&event).map(|_| None),
            // An object in storage, then the effect row (the soak's delivery).
            "stored-effect" => {
                let key = format!("misbehave/stored/{}", event.id);
                blob::put(&key, event.id.as_bytes(), Some("text/plain")).map_err(HandlerError::Retry)?;
                record_effect(&event).map(|_| None)
            }
            // Busy for `ms` (500 by default), then the effect row.
            "slow" => {
                spin_ms(&event.body);
                record_effect(&event).map(|_| None)
            }
            "span" => {
                if event.attempt == 1 && field_of(&event.body, "flaky").as_deref() == Some("1") {
                    return Err(HandlerError::Retry("flaky: the first attempt fails".into()));
                }
                let start = unix_ms();
                spin_ms(&event.body);
                let key = field_of(&event.body, "key").unwrap_or_default();
                record(format!("span {key} {start} {} {}", unix_ms(), event.id)).map(|()| None)
            }
            "hostile" => {
                let attempts = [
                    ("drop", "DROP TABLE avatars"),
                    ("read-inbox", "SELECT id FROM webhook_events"),
                    ("escape", "RESET ROLE"),
                    ("set-config", "SELECT set_config('role', 'postgres', true)"),
                    ("foreign-update", "UPDATE avatars SET status = 'error'"),
                ];
                for (name, sql) in attempts {
                    let outcome = match db::query(sql, &[]) {
                        Ok(_) => "allowed".to_string(),
                        Err(e) => format!("refused: {e}"),
                    };
                    db::execute(
                        "INSERT INTO plugin_effects (event_id) VALUES ($1)",
                        &[db::Value::Text(format!("{name} {outcome}"))],
                    )
                    .map_err(HandlerError::Fatal)?;
                }
                Ok(None)
            }
            "write" => {
                record_effect(&event)?;
                panic!("trapping after a write");
            }
            "reach" => {
                for url in field_of(&event.body, "targets")
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    let outcome = match waki::Client::new().get(url).send() {
                        Ok(response) => format!("ok {}", response.status_code()),
                        Err(e) => format!("refused: {e}"),
                    };
                    record(format!("{url} {outcome}"))?;
                }
                Ok(None)
            }
            "blob" => {
                for key in field_of(&event.body, "keys")
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    let outcome = match blob::put(key, b"data", Some("text/plain")) {
                        Ok(()) => "stored".to_string(),
                        Err(e) => format!("refused: {e}"),
                    };
                    record(format!("{key} {outcome}"))?;
                }
                Ok(None)
            }
            "tagged" => {
                // Optionally busy for `spin_ms` first (an event in flight across a swap).
                let spin = field_of(&event.body, "spin_ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(spin) {
                    std::hint::spin_loop();
                }
                let tag = webhook::plugin::config::get("tag").unwrap_or_else(|| "none".into());
                record(format!("{tag} {}", event.id))?;
                Ok(None)
            }
            "presign" => {
                let key = field_of(&event.body, "key").unwrap_or_else(|| "misbehave/presigned.txt".into());
                blob::put(&key, b"presigned data", Some("text/plain")).map_err(HandlerError::Retry)?;
                let url = blob::presign_get(&key, 60).map_err(HandlerError::Retry)?;
                record(url)?;
                Ok(None)
            }
            "kv" => {
                let key = field_of(&event.body, "key").unwrap_or_else(|| "k".into());
                let ttl = field_of(&event.body, "ttl").and_then(|t| t.parse().ok());
                let first = kv::set_if_absent(&key, event.id.as_bytes(), ttl).map_err(HandlerError::Retry)?;
                let count = kv::increment("count", 1).map_err(HandlerError::Retry)?;
                let state = if first { "first" } else { "again" };
                record(format!("kv {key} {state} count={count}"))?;
                Ok(None)
            }
            other => Err(HandlerError::Invalid(format!("unknown mode {other:?}"))),
        }
    }
}

/// Schedules (declared only by the tests that want them): `slow` is busy
/// for 300 ms and records `schedule <start ms> <end ms>`; `fail` fails.
impl exports::webhook::plugin::scheduled::Guest for Misbehave {
    fn run_scheduled(name: String) -> Result<(), HandlerError> {
        match name.as_str() {
            "slow" => {
                let start = unix_ms();
                let begun = std::time::Instant::now();
                while begun.elapsed() < std::time::Duration::from_millis(300) {
                    std::hint::spin_loop();
                }
                db::execute(
                    "INSERT INTO plugin_effects (event_id) VALUES ($1)",
                    &[db::Value::Text(format!("schedule {start} {}", unix_ms()))],
                )
                .map(|_| ())
                .map_err(HandlerError::Retry)
            }
            "fail" => Err(HandlerError::Retry("asked to fail".into())),
            other => Err(HandlerError::Invalid(format!("no schedule {other:?}"))),
        }
    }
}

export!(Misbehave);
