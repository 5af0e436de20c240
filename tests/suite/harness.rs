//! The test harness: real host processes on loopback, each with its own
//! temporary data folder (SQLite), plugin folder (real components built for
//! wasm32-wasip2) and config, stopped when the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use webhook_host::verify::fal_hmac;

/// The signing secret every test host is configured with.
pub const SECRET: &str = "test-secret-not-for-production";
/// How long a test waits for an event to reach a state before failing.
const WAIT: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the plugins for wasm32-wasip2 once per test run; returns their folder.
pub fn plugin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "fal-avatar-status",
                "-p",
                "test-misbehave",
            ])
            .status()
            .expect("running cargo to build the plugins");
        assert!(status.success(), "building the plugins failed");
        workspace().join("target/wasm32-wasip2/release")
    })
}

/// The host config every test host uses: the FAL route and a route for the
/// misbehaving test plugin, fast retries.
const CONFIG: &str = r#"
[worker]
concurrency = 4
max_attempts = 3
backoff_base_ms = 50
backoff_max_ms = 200
poll_interval_ms = 100

[runtime]
max_instances = 16

[[routes]]
name = "fal-avatar-status"
path = "/api/v1/avatar/status_update"
plugin = "fal-avatar-status"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]

[[routes]]
name = "misbehave"
plugin = "test-misbehave"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
"#;

/// A running host process and its folder.
pub struct TestHost {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Child,
    pub http: reqwest::Client,
    pub db: SqlitePool,
}

impl TestHost {
    /// A fresh folder with the bot's schema, the plugins and the config; then
    /// the host, started.
    pub async fn spawn() -> TestHost {
        Self::spawn_with("", &[]).await
    }

    /// Like [`spawn`](Self::spawn), with more config (routes) appended and
    /// more environment variables; `{dir}` in the config is the test folder.
    pub async fn spawn_with(extra_config: &str, extra_env: &[(&str, &str)]) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in ["fal-avatar-status", "test-misbehave"] {
            let wasm = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
            std::fs::copy(&wasm, plugins.join(format!("{name}.wasm"))).unwrap();
            let manifest = workspace().join(format!("plugins/{name}/manifest.toml"));
            std::fs::copy(&manifest, plugins.join(format!("{name}.toml"))).unwrap();
        }
        let config = format!(
            "{CONFIG}\n{}",
            extra_config.replace("{dir}", &dir.path().display().to_string())
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let env: Vec<(String, String)> = extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        std::fs::write(dir.path().join("extra.env"), serde_json::to_string(&env).unwrap()).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(data.join("webhooks.db"))
            .create_if_missing(true);
        let db = SqlitePool::connect_with(options).await.unwrap();
        let schema = std::fs::read_to_string(workspace().join("examples/avatars.sqlite.sql")).unwrap();
        sqlx::raw_sql(&schema).execute(&db).await.unwrap();
        sqlx::raw_sql("CREATE TABLE plugin_effects (event_id TEXT NOT NULL)")
            .execute(&db)
            .await
            .unwrap();
        let (child, addr) = start(dir.path());
        TestHost {
            dir,
            addr,
            child,
            http: reqwest::Client::new(),
            db,
        }
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the host again on the same folder.
    pub fn restart(&mut self) {
        let (child, addr) = start(self.dir.path());
        self.child = child;
        self.addr = addr;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// Posts `body` to `path`, signed by `signer`; returns status and JSON answer.
    pub async fn post(&self, path: &str, body: &[u8], signer: Signer<'_>) -> (u16, Value) {
        self.post_with(path, body, &signer.headers(body)).await
    }

    /// Posts `body` to `path` with exactly these extra headers.
    pub async fn post_with(&self, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.body(body.to_vec()).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts a correctly signed FAL body to the FAL route.
    pub async fn post_fal(&self, body: &[u8]) -> (u16, Value) {
        let request_id = request_id_of(body);
        self.post(
            "/api/v1/avatar/status_update?training_type=portrait",
            body,
            Signer::fal(&request_id),
        )
        .await
    }

    /// Posts `{"mode": mode}` to the misbehaving plugin's route; returns the event id.
    pub async fn post_mode(&self, mode: &str) -> String {
        let body = format!(r#"{{"mode":"{mode}","nonce":"{}"}}"#, uuid::Uuid::now_v7());
        let request_id = format!("{mode}-{}", uuid::Uuid::now_v7());
        let (status, answer) = self
            .post("/hooks/misbehave", body.as_bytes(), Signer::fal(&request_id))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["event_id"].as_str().unwrap().to_string()
    }

    /// Waits until the event is in `status` (failing on timeout); returns its row.
    pub async fn wait_for(&self, event_id: &str, status: &str) -> EventRow {
        let started = Instant::now();
        loop {
            if let Some(row) = self.event(event_id).await
                && row.status == status
            {
                return row;
            }
            assert!(
                started.elapsed() < WAIT,
                "event {event_id} never reached {status}: {:?}",
                self.event(event_id).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn event(&self, event_id: &str) -> Option<EventRow> {
        let row: Option<(String, i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT status, attempts, last_error, plugin_version FROM webhook_events WHERE id = $1",
        )
        .bind(event_id)
        .fetch_optional(&self.db)
        .await
        .unwrap();
        row.map(|(status, attempts, last_error, plugin_version)| EventRow {
            status,
            attempts,
            last_error,
            plugin_version,
        })
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }

    /// Inserts an avatar in training for FAL request `request_id`; returns its id.
    pub async fn seed_avatar(&self, request_id: &str) -> String {
        let user = uuid::Uuid::now_v7().to_string();
        let avatar = uuid::Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO users (id, telegram_id) VALUES ($1, $2)")
            .bind(&user)
            .bind(format!("tg-{user}"))
            .execute(&self.db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO avatars (id, user_id, name, status, fal_request_id, training_progress) \
             VALUES ($1, $2, 'Test', 'training', $3, 10)",
        )
        .bind(&avatar)
        .bind(&user)
        .bind(request_id)
        .execute(&self.db)
        .await
        .unwrap();
        avatar
    }

    pub async fn avatar(&self, id: &str) -> AvatarRow {
        type Row = (
            String,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Row = sqlx::query_as(
            "SELECT status, training_progress, diffusers_lora_file_url, config_file_url, \
             training_error, training_completed_at, fal_response_data FROM avatars WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.db)
        .await
        .unwrap();
        AvatarRow {
            status: row.0,
            training_progress: row.1,
            diffusers_lora_file_url: row.2,
            config_file_url: row.3,
            training_error: row.4,
            training_completed_at: row.5,
            fal_response_data: row.6,
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `webhook-host serve` in `dir` on a free port; waits for its
/// "listening" line.
fn start(dir: &Path) -> (Child, SocketAddr) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("host.log"))
        .unwrap();
    let extra: Vec<(String, String)> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("extra.env")).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .current_dir(dir)
        .args(["--config", "config.toml", "serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", dir.join("data"))
        .env("PLUGINS_DIR", dir.join("plugins"))
        .env("FAL_WEBHOOK_SECRET", SECRET)
        .env("LOG_LEVEL", "info")
        .env("INSTANCE_ID", "test-host")
        .envs(extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("starting webhook-host");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("webhook-host listening on http://") {
                    break addr.parse().unwrap();
                }
            }
            _ => {
                let log = std::fs::read_to_string(dir.join("host.log")).unwrap_or_default();
                panic!("webhook-host exited before listening:\n{log}");
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// How a test request is signed.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    pub request_id: &'a str,
    pub key: &'a str,
    /// Seconds added to the current time in the signed timestamp.
    pub skew_secs: i64,
    /// A header to leave out.
    pub omit: Option<&'static str>,
}

impl<'a> Signer<'a> {
    pub fn fal(request_id: &'a str) -> Self {
        Self {
            request_id,
            key: SECRET,
            skew_secs: 0,
            omit: None,
        }
    }

    pub fn headers(&self, body: &[u8]) -> Vec<(&'static str, String)> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let timestamp = (now + self.skew_secs).to_string();
        let message = fal_hmac::canonical_message(self.request_id, "test-user", &timestamp, body);
        [
            (fal_hmac::REQUEST_ID, self.request_id.to_string()),
            (fal_hmac::USER_ID, "test-user".to_string()),
            (fal_hmac::TIMESTAMP, timestamp),
            (fal_hmac::SIGNATURE, fal_hmac::sign(self.key, &message)),
        ]
        .into_iter()
        .filter(|(name, _)| Some(*name) != self.omit)
        .collect()
    }
}

pub fn request_id_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["request_id"].as_str().map(str::to_string))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// A FAL fixture body from `tests/fixtures/fal/`, with its request id replaced.
pub fn fixture(name: &str, request_id: &str) -> Vec<u8> {
    let path = workspace().join("tests/fixtures/fal").join(name);
    let mut body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    body["request_id"] = request_id.into();
    serde_json::to_vec(&body).unwrap()
}

#[derive(Debug)]
pub struct EventRow {
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub plugin_version: Option<String>,
}

#[derive(Debug)]
pub struct AvatarRow {
    pub status: String,
    pub training_progress: i64,
    pub diffusers_lora_file_url: Option<String>,
    pub config_file_url: Option<String>,
    pub training_error: Option<String>,
    pub training_completed_at: Option<String>,
    pub fal_response_data: Option<String>,
}
