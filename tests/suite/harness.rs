//! The test harness: real host processes on loopback, each with its own
//! temporary data folder (SQLite), plugin folder (real components built for
//! wasm32-wasip2) and config, stopped when the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{PgPool, SqlitePool};
use webhook_host::verify::fal_hmac;

use crate::services::postgres::PgServer;
pub use crate::workspace::{plugin_dir, workspace};

/// The signing secret every test host is configured with.
pub const SECRET: &str = "test-secret-not-for-production";
/// How long a test waits for an event to reach a state before failing.
const WAIT: Duration = Duration::from_secs(60);

/// The host config every test host uses: the FAL route and a route for the
/// misbehaving test plugin, fast retries (`retry_schedule = []`: the
/// `[worker]` backoff, not the hours-long default of plugins that call out).
const CONFIG: &str = r#"
[worker]
concurrency = 4
max_attempts = 3
backoff_base_ms = 50
backoff_max_ms = 200
poll_interval_ms = 100
lease_ms = 3000

[runtime]
max_instances = 16

[[routes]]
name = "fal-avatar-status"
path = "/api/v1/avatar/status_update"
plugin = "fal-avatar-status"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
retry_schedule = []

[[routes]]
name = "misbehave"
plugin = "test-misbehave"
verify = [{ scheme = "fal-hmac", secret_env = "FAL_WEBHOOK_SECRET" }]
retry_schedule = []
"#;

/// Which database the hosts run on.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Sqlite,
    Postgres,
}

/// How to start a test host.
#[derive(Default)]
pub struct Options<'a> {
    pub backend: Backend,
    /// Host processes sharing the database (PostgreSQL only; 1 by default).
    pub instances: usize,
    /// Appended to the config; `{dir}` is replaced by the test folder.
    pub extra_config: &'a str,
    pub extra_env: &'a [(&'a str, &'a str)],
    /// A private PostgreSQL server (default: the shared one).
    pub pg: Option<&'a PgServer>,
    /// Text replacements in a plugin's manifest: (plugin, from, to).
    pub manifest_edits: &'a [(&'a str, &'a str, &'a str)],
    /// Plugins to install besides fal-avatar-status and test-misbehave.
    pub extra_plugins: &'a [&'a str],
    /// More plugins made of a built component under another manifest:
    /// (name, component's crate name, manifest).
    pub plugin_copies: &'a [(&'a str, &'a str, &'a str)],
    /// Text replacements in the base config (its `[worker]` and `[runtime]`
    /// values): (from, to).
    pub config_edits: &'a [(&'a str, &'a str)],
}

/// The bot token every test host's fal-avatar-status uses.
pub const BOT_TOKEN: &str = "123456:test-bot-token";

/// The test edition of a plugin's manifest: fal-avatar-status reaches the
/// loopback remote (FAL's files, Telegram) instead of the real hosts.
pub fn test_manifest(name: &str, edits: &[(&str, &str, &str)]) -> String {
    let mut text = if name == "fal-avatar-status" {
        crate::workspace::loopback_fal_manifest(&crate::remote::shared().url)
    } else {
        std::fs::read_to_string(workspace().join(format!("plugins/{name}/manifest.toml"))).unwrap()
    };
    let mut all: Vec<(&str, &str, String)> = Vec::new();
    all.extend(edits.iter().map(|(p, from, to)| (*p, *from, to.to_string())));
    for (plugin, from, to) in all {
        if plugin == name {
            assert!(text.contains(from), "the {name} manifest has no {from:?}");
            text = text.replace(from, &to);
        }
    }
    text
}

/// The test's view of the database the hosts use.
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same sqlx expression on whichever pool the test has.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::harness::Db::Sqlite($pool) => $body,
            $crate::harness::Db::Postgres($pool) => $body,
        }
    };
}

/// Running host processes and their folder.
pub struct TestHost {
    pub dir: tempfile::TempDir,
    /// One per instance: the process and where it listens.
    instances: Vec<(Child, SocketAddr)>,
    pub http: reqwest::Client,
    pub db: Db,
    pub backend: Backend,
    /// (port, database) to drop at the end, for PostgreSQL.
    pg_database: Option<(PathBuf, u16, String)>,
}

impl TestHost {
    /// One host on SQLite.
    pub async fn spawn() -> TestHost {
        Self::start_with(Options::default()).await
    }

    /// One host on SQLite with more config and environment.
    pub async fn spawn_with(extra_config: &str, extra_env: &[(&str, &str)]) -> TestHost {
        Self::start_with(Options {
            extra_config,
            extra_env,
            ..Options::default()
        })
        .await
    }

    /// `instances` hosts on one fresh PostgreSQL database.
    pub async fn spawn_pg(instances: usize) -> TestHost {
        Self::start_with(Options {
            backend: Backend::Postgres,
            instances,
            ..Options::default()
        })
        .await
    }

    /// One instance on a fresh PostgreSQL database with `env` added (for
    /// example [`crate::services::production_env`]).
    pub async fn spawn_pg_with(env: &[(String, String)]) -> TestHost {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_with(Options {
            backend: Backend::Postgres,
            extra_env: &env,
            ..Options::default()
        })
        .await
    }

    /// A fresh folder with the bot's schema, the plugins and the config; then
    /// the hosts, started.
    pub async fn start_with(options: Options<'_>) -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let names = ["fal-avatar-status", "test-misbehave"]
            .iter()
            .chain(options.extra_plugins);
        for &name in names {
            let wasm = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
            std::fs::copy(&wasm, plugins.join(format!("{name}.wasm"))).unwrap();
            let manifest = test_manifest(name, options.manifest_edits);
            std::fs::write(plugins.join(format!("{name}.toml")), manifest).unwrap();
        }
        for (name, component, manifest) in options.plugin_copies {
            let wasm = plugin_dir().join(format!("{}.wasm", component.replace('-', "_")));
            std::fs::copy(&wasm, plugins.join(format!("{name}.wasm"))).unwrap();
            std::fs::write(plugins.join(format!("{name}.toml")), manifest).unwrap();
        }
        let folder = dir.path().display().to_string();
        let mut base = CONFIG.to_string();
        for (from, to) in options.config_edits {
            assert!(base.contains(from), "the test config has no {from:?}");
            base = base.replace(from, to);
        }
        let config = format!("{base}\n{}", options.extra_config.replace("{dir}", &folder));
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let mut env: Vec<(String, String)> = vec![("TELEGRAM_BOT_TOKEN".into(), BOT_TOKEN.into())];
        env.extend(
            options
                .extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );

        let (db, pg_database) = match options.backend {
            Backend::Sqlite => {
                let data = dir.path().join("data-0");
                std::fs::create_dir_all(&data).unwrap();
                let file = data.join("webhooks.db");
                let db = SqlitePool::connect_with(
                    SqliteConnectOptions::new().filename(file).create_if_missing(true),
                )
                .await
                .unwrap();
                let schema =
                    std::fs::read_to_string(workspace().join("examples/avatars.sqlite.sql")).unwrap();
                sqlx::raw_sql(&schema).execute(&db).await.unwrap();
                sqlx::raw_sql("CREATE TABLE plugin_effects (event_id TEXT NOT NULL)")
                    .execute(&db)
                    .await
                    .unwrap();
                (Db::Sqlite(db), None)
            }
            Backend::Postgres => {
                let server = options.pg.unwrap_or_else(|| crate::services::postgres::shared());
                let url = server.create_database().await;
                let db = PgPool::connect(&url).await.unwrap();
                let schema =
                    std::fs::read_to_string(workspace().join("examples/avatars.postgres.sql")).unwrap();
                sqlx::raw_sql(&schema).execute(&db).await.unwrap();
                sqlx::raw_sql(include_str!("../fixtures/plugin_effects.postgres.sql"))
                    .execute(&db)
                    .await
                    .unwrap();
                env.push(("DATABASE_URL".into(), url.clone()));
                let name = url.rsplit('/').next().unwrap().to_string();
                (
                    Db::Postgres(db),
                    Some((server.bin().to_path_buf(), server.port, name)),
                )
            }
        };
        std::fs::write(dir.path().join("host.env"), serde_json::to_string(&env).unwrap()).unwrap();
        let instances = (0..options.instances.max(1))
            .map(|i| start(dir.path(), i, 0))
            .collect();
        let http = client();
        TestHost {
            dir,
            instances,
            http,
            db,
            backend: options.backend,
            pg_database,
        }
    }

    /// Kills the first instance with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.kill_instance(0);
    }

    pub fn kill_instance(&mut self, i: usize) {
        self.instances[i].0.kill().unwrap();
        self.instances[i].0.wait().unwrap();
    }

    /// Waits up to `within` for instance `i` to exit by itself; its status.
    pub fn wait_for_exit(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.instances[i].0.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Starts the first instance again on the same folder.
    pub fn restart(&mut self) {
        self.restart_instance(0);
    }

    /// Starts instance `i` again on the same folder and the same port (a
    /// load balancer in front keeps finding it).
    pub fn restart_instance(&mut self, i: usize) {
        let port = self.instances[i].1.port();
        self.instances[i] = start(self.dir.path(), i, port);
        // Kept-alive connections to the old process are dead.
        self.http = client();
    }

    pub fn url(&self, path: &str) -> String {
        self.url_on(0, path)
    }

    /// Where instance `i` listens.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.instances[i].1
    }

    /// The process id of instance `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.instances[i].0.id()
    }

    /// A URL on instance `i`.
    pub fn url_on(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.instances[i].1)
    }

    /// The first instance's log so far.
    pub fn log(&self) -> String {
        self.log_of(0)
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("host-{i}.log"))).unwrap_or_default()
    }

    /// GETs `path` on instance `i` (with the admin token when given); the body.
    pub async fn get_text(&self, i: usize, path: &str, bearer: Option<&str>) -> String {
        let mut request = self.http.get(self.url_on(i, path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().text().await.unwrap()
    }

    /// Signs in to the console with `token`; the session cookie (`name=value`).
    pub async fn console_session(&self, token: &str) -> String {
        let login = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(self.url("/admin/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 303, "signing in");
        let cookie = login.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    /// POSTs JSON `body` to the admin API of instance `i` with `token`;
    /// the answer (the call must succeed).
    pub async fn admin_post(&self, i: usize, path: &str, token: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.url_on(i, path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// Posts `body` to `path`, signed by `signer`; returns status and JSON answer.
    pub async fn post(&self, path: &str, body: &[u8], signer: Signer<'_>) -> (u16, Value) {
        self.post_with(path, body, &signer.headers(body)).await
    }

    /// Posts `body` to `path` with exactly these extra headers.
    pub async fn post_with(&self, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
        self.post_on(0, path, body, headers).await
    }

    /// Posts to instance `i`.
    pub async fn post_on(
        &self,
        i: usize,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(self.url_on(i, path))
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
        let request_id = format!("{mode}-{}", uuid::Uuid::now_v7());
        self.post_mode_as(0, mode, &request_id).await.1["event_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Posts `{"mode": mode}` as delivery `request_id` to instance `i`.
    pub async fn post_mode_as(&self, i: usize, mode: &str, request_id: &str) -> (u16, Value) {
        let body = format!(r#"{{"mode":"{mode}"}}"#);
        let headers = Signer::fal(request_id).headers(body.as_bytes());
        let (status, answer) = self
            .post_on(i, "/hooks/misbehave", body.as_bytes(), &headers)
            .await;
        assert_eq!(status, 200, "{answer}");
        (status, answer)
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

    /// Waits until no event is pending or processing (failing after 120 s).
    pub async fn wait_until_all_done(&self) {
        let started = Instant::now();
        while self
            .count("SELECT COUNT(*) FROM webhook_events WHERE status <> 'done'")
            .await
            > 0
        {
            assert!(started.elapsed().as_secs() < 120, "events left unprocessed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn event(&self, event_id: &str) -> Option<EventRow> {
        let sql = "SELECT status, CAST(attempts AS BIGINT), last_error, plugin_version FROM webhook_events WHERE id = $1";
        let row: Option<(String, i64, Option<String>, Option<String>)> =
            on_db!(&self.db, |pool| sqlx::query_as(sql)
                .bind(event_id)
                .fetch_optional(pool)
                .await
                .unwrap());
        row.map(|(status, attempts, last_error, plugin_version)| EventRow {
            status,
            attempts,
            last_error,
            plugin_version,
        })
    }

    /// Runs a statement on the hosts' database, as its owner.
    pub async fn execute(&self, sql: &str) {
        on_db!(&self.db, |pool| {
            sqlx::raw_sql(sql).execute(pool).await.unwrap();
        });
    }

    pub async fn count(&self, sql: &str) -> i64 {
        on_db!(&self.db, |pool| sqlx::query_scalar(sql)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// Text values of a one-column query.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        on_db!(&self.db, |pool| sqlx::query_scalar(sql)
            .fetch_all(pool)
            .await
            .unwrap())
    }

    /// Inserts an avatar in training for FAL request `request_id`; returns its id.
    pub async fn seed_avatar(&self, request_id: &str) -> String {
        let user = uuid::Uuid::now_v7().to_string();
        let avatar = uuid::Uuid::now_v7().to_string();
        let (user_sql, avatar_sql) = match self.backend {
            Backend::Sqlite => (
                "INSERT INTO users (id, telegram_id) VALUES ($1, $2)",
                "INSERT INTO avatars (id, user_id, name, status, fal_request_id, training_progress) \
                 VALUES ($1, $2, 'Test', 'training', $3, 10)",
            ),
            Backend::Postgres => (
                "INSERT INTO users (id, telegram_id) VALUES (CAST($1 AS UUID), $2)",
                "INSERT INTO avatars (id, user_id, name, status, fal_request_id, training_progress) \
                 VALUES (CAST($1 AS UUID), CAST($2 AS UUID), 'Test', 'training', $3, 10)",
            ),
        };
        on_db!(&self.db, |pool| {
            sqlx::query(user_sql)
                .bind(&user)
                .bind(format!("tg-{user}"))
                .execute(pool)
                .await
                .unwrap();
            sqlx::query(avatar_sql)
                .bind(&avatar)
                .bind(&user)
                .bind(request_id)
                .execute(pool)
                .await
                .unwrap();
        });
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
        let sql = "SELECT status, CAST(training_progress AS BIGINT), diffusers_lora_file_url, config_file_url, \
             training_error, CAST(training_completed_at AS TEXT), CAST(fal_response_data AS TEXT) \
             FROM avatars WHERE CAST(id AS TEXT) = $1";
        let row: Row = on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap());
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
        for (child, _) in &mut self.instances {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((bin, port, name)) = &self.pg_database {
            crate::services::postgres::drop_database(bin, *port, name);
        }
    }
}

/// Starts instance `i` of `webhook-host serve` in `dir` on a free port;
/// waits for its "listening" line.
/// The tests' HTTP client. Every request has a deadline, so a stuck host
/// fails its test instead of hanging the run.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Starts instance `i` on `port` (0: any free one).
fn start(dir: &Path, i: usize, port: u16) -> (Child, SocketAddr) {
    let log_path = dir.join(format!("host-{i}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let env: Vec<(String, String)> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("host.env")).unwrap()).unwrap();
    let instance_id = if i == 0 {
        "test-host".to_string()
    } else {
        format!("test-host-{i}")
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .current_dir(dir)
        .args(["--config", "config.toml", "serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.join(format!("data-{i}")))
        .env("PLUGINS_DIR", dir.join("plugins"))
        .env("FAL_WEBHOOK_SECRET", SECRET)
        .env("LOG_LEVEL", "info")
        .env("INSTANCE_ID", instance_id)
        .envs(env)
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
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
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
        let now = now_secs();
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

/// Runs the `webhook-host` binary with `args` and `env`; (success, stdout + stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-host"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// AWS SNS's shipped preset as `sns-local`, allowed to fetch its
/// certificate from loopback over plain HTTP and, when `confirm` is set, to
/// confirm subscriptions there too; written into `dir` (a PROVIDERS_DIR).
pub fn sns_local_preset(dir: &std::path::Path, confirm: bool) -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/providers/aws-sns.toml")).unwrap();
    let hosts = "hosts = [\"sns.*.amazonaws.com\", \"sns.*.amazonaws.com.cn\"]";
    let mut local = shipped
        .replace("name = \"aws-sns\"", "name = \"sns-local\"")
        .replacen(
            &format!("{hosts}\n"),
            "hosts = [\"127.0.0.1\"]\nallow_http = true\n",
            1,
        );
    if confirm {
        local = local.replace(
            &format!("{hosts} }}"),
            "hosts = [\"127.0.0.1\"], allow_http = true, allow_private = true }",
        );
        assert!(!local.contains("amazonaws.com\""), "{local}");
    }
    assert_ne!(local, shipped);
    std::fs::write(dir.join("sns-local.toml"), &local).unwrap();
    local
}

/// Seconds since the epoch, as signatures carry them.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn request_id_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["request_id"].as_str().map(str::to_string))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// A FAL fixture body from `tests/fixtures/fal/`, with its request id
/// replaced and its file URLs pointing at the loopback remote.
pub fn fixture(name: &str, request_id: &str) -> Vec<u8> {
    crate::remote::shared().fixture(name, request_id)
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
