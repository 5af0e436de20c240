//! Settings: built-in defaults, then the TOML file, then the environment.
//!
//! The environment names are the deployment's (`HOST`, `PORT`, `DATABASE_URL`,
//! `FAL_WEBHOOK_SECRET`, `LOG_LEVEL`, …). Routes and the worker, runtime and
//! HTTP tunables live in the TOML file (`CONFIG_FILE`, default
//! `webhook-host.toml` when present). Secrets are read from the environment
//! variables the routes name, and are held in [`Secret`], which never prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A secret value that never appears in `Debug` or `Display` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the host needs to run, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (`HOST`); containers listen on all interfaces.
    pub host: String,
    /// Port to listen on (`PORT`); 0 picks a free one.
    pub port: u16,
    /// Where embedded state lives (`DATA_DIR`): the SQLite database.
    pub data_dir: PathBuf,
    /// Folder of `<name>.wasm` + `<name>.toml` plugins (`PLUGINS_DIR`).
    pub plugins_dir: PathBuf,
    /// Production database (`DATABASE_URL`); none means embedded SQLite.
    pub database_url: Option<Secret>,
    /// Names this process in leases, logs and `/health` (`INSTANCE_ID`).
    pub instance_id: String,
    /// Lets routes run without verification when their secret is missing.
    pub insecure_dev: bool,
    /// Bearer token of the admin API (`ADMIN_TOKEN`); none disables it.
    pub admin_token: Option<Secret>,
    pub retention: RetentionSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub runtime: RuntimeSettings,
    pub routes: Vec<RouteConfig>,
    /// Secret values by environment variable name, for the routes that name them.
    pub secrets: BTreeMap<String, Secret>,
    /// Object storage for the `blob` capability (`MINIO_*`).
    pub storage: StorageSettings,
    /// Redis for the `kv` capability (`REDIS_URL`); none keeps kv in memory.
    pub redis_url: Option<Secret>,
    /// Limits of plugins' outbound HTTP (`[outbound]`).
    pub outbound: OutboundSettings,
}

/// Where blobs live: S3/MinIO when `MINIO_ENDPOINT` is set, else a folder.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub s3: Option<S3Settings>,
    /// The bucket grants use unless they name another (`MINIO_BUCKET_NAME`).
    pub bucket: String,
    /// Embedded mode: `DATA_DIR/blobs`, one subfolder per bucket.
    pub local_dir: PathBuf,
}

/// An S3-compatible server, addressed path-style.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `http(s)://host:port`; a bare `host:port` takes its scheme from `MINIO_SECURE`.
    pub endpoint: String,
    pub access_key: Secret,
    pub secret_key: Secret,
    /// `MINIO_REGION`; MinIO accepts the default `us-east-1`.
    pub region: String,
}

impl StorageSettings {
    fn from_env(env: &impl Fn(&str) -> Option<String>, data_dir: &Path) -> Result<Self> {
        let bucket = env("MINIO_BUCKET_NAME")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "webhook-host".into());
        let s3 = match env("MINIO_ENDPOINT").filter(|v| !v.is_empty()) {
            None => None,
            Some(endpoint) => {
                let secure = match env("MINIO_SECURE")
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("") | Some("true") | Some("1") | Some("yes") => true,
                    Some("false") | Some("0") | Some("no") => false,
                    Some(other) => bail!("MINIO_SECURE={other:?} must be true or false"),
                };
                let endpoint = if endpoint.contains("://") {
                    endpoint
                } else {
                    format!("{}://{endpoint}", if secure { "https" } else { "http" })
                };
                let key = |name: &str| {
                    env(name)
                        .filter(|v| !v.is_empty())
                        .map(Secret::new)
                        .with_context(|| format!("MINIO_ENDPOINT is set but {name} is not"))
                };
                Some(S3Settings {
                    endpoint: endpoint.trim_end_matches('/').to_string(),
                    access_key: key("MINIO_ACCESS_KEY")?,
                    secret_key: key("MINIO_SECRET_KEY")?,
                    region: env("MINIO_REGION")
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| "us-east-1".into()),
                })
            }
        };
        Ok(Self {
            s3,
            bucket,
            local_dir: data_dir.join("blobs"),
        })
    }
}

/// Defaults of plugins' outbound HTTP; an `http` grant may override them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundSettings {
    pub connect_timeout_ms: u64,
    /// Whole-request budget (connect, send, read the response).
    pub timeout_ms: u64,
    /// Largest response body handed to a plugin.
    pub max_response_bytes: u64,
    /// Requests (and `copy-from-url` downloads) one event attempt may make.
    pub max_requests_per_event: u32,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            timeout_ms: 30_000,
            max_response_bytes: 4 << 20,
            max_requests_per_event: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest accepted request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Deepest nesting of arrays and objects in a JSON body; deeper gets 400.
    pub json_max_depth: usize,
    /// Largest request head (request line and headers); larger ones get 431.
    /// At least 8192.
    pub header_limit_bytes: usize,
    /// Most header fields in a request; more get 431.
    pub max_headers: usize,
    /// From a request's first byte to the end of its head; slower ones get
    /// 408 and the connection is closed (slowloris). Also how long a new
    /// connection may stay silent.
    pub header_timeout_ms: u64,
    /// From the end of the head to the end of the body; slower ones get 408.
    pub body_timeout_ms: u64,
    /// A whole request, from head to answer; slower ones get 503 with
    /// `Retry-After` (the delivery may still have been stored; a retry is
    /// answered as a duplicate).
    pub request_timeout_ms: u64,
    /// How long a kept-alive connection may wait for its next request.
    /// Longer than the load balancer's upstream keep-alive (nginx: 30 s).
    pub idle_timeout_ms: u64,
    /// Open connections at once; the next ones get 503 and are closed.
    pub max_connections: usize,
    /// Deliveries waiting for the intake writer before new ones get 503.
    pub max_intake_waiting: usize,
    /// An intake commit slower than this (the last one, or the one under
    /// way) turns new deliveries away with 503 until commits are fast again.
    pub max_commit_ms: u64,
    /// Pending events (the worker backlog) past which new deliveries get
    /// 503; 0 turns the check off.
    pub max_backlog: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            json_max_depth: 64,
            header_limit_bytes: 16 * 1024,
            max_headers: 100,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            max_connections: 2048,
            max_intake_waiting: 2048,
            max_commit_ms: 5_000,
            max_backlog: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Whether this instance processes events at all (false: intake only).
    pub enabled: bool,
    /// Events processed at once by this instance (its database pool has
    /// this many connections and 4 more). While busy, the worker claims
    /// again once a quarter of these are free, one query for all of them.
    pub concurrency: usize,
    /// Attempts before an event is marked `dead` (routes may override).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt.
    pub backoff_base_ms: u64,
    /// Ceiling of the retry delay.
    pub backoff_max_ms: u64,
    /// How often an idle worker looks for due events without being woken.
    pub poll_interval_ms: u64,
    /// How long a claim holds an event; renewed every third of it while the
    /// event runs. A crashed instance's events are taken over after this.
    pub lease_ms: u64,
    /// Threads that run events (plugins included), apart from the threads
    /// that serve HTTP, so that a plugin burning CPU competes with intake
    /// only through the operating system's scheduler. 0: half the cores,
    /// at least one.
    pub threads: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 16,
            max_attempts: 8,
            backoff_base_ms: 2_000,
            backoff_max_ms: 10 * 60 * 1000,
            poll_interval_ms: 1_000,
            lease_ms: 30_000,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Default linear-memory ceiling per plugin instance (manifests may lower or raise it
    /// up to `max_memory_mb`).
    pub memory_limit_mb: u64,
    /// Hard ceiling any manifest may ask for; sizes the instance pool's slots.
    pub max_memory_mb: u64,
    /// Default wall-clock budget of one `handle` call.
    pub timeout_ms: u64,
    /// Instances alive at once across all plugins; sizes the pooling allocator.
    pub max_instances: u32,
    /// Epoch tick: how often running guests are checked against their deadline.
    pub epoch_tick_ms: u64,
    /// Default number of `db` calls one event (or scheduled run) may make;
    /// the next one fails. Manifests may set their own.
    pub max_db_calls: u32,
    /// Compiled plugins, keyed by component sha256 and the engine's
    /// compatibility hash, so a restart does not compile again. Default
    /// `DATA_DIR/compile-cache`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            memory_limit_mb: 64,
            max_memory_mb: 512,
            timeout_ms: 10_000,
            max_instances: 32,
            epoch_tick_ms: 10,
            max_db_calls: 1000,
            cache_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// `done` events older than this are deleted; 0 keeps them forever.
    /// `dead` events are always kept.
    pub done_after_ms: u64,
    /// How often the sweep runs.
    pub sweep_interval_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            done_after_ms: 7 * 24 * 3600 * 1000,
            sweep_interval_ms: 10 * 60 * 1000,
        }
    }
}

/// What a route's body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// `Content-Type` must be JSON (else 415) and the body valid JSON (else 400).
    #[default]
    Json,
    /// Any bytes.
    Any,
}

/// One webhook route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name: served at `/hooks/{name}` and recorded on each event.
    pub name: String,
    /// An extra fixed path serving this route (the FAL URL the bot registers).
    #[serde(default)]
    pub path: Option<String>,
    /// The plugin that handles its events.
    pub plugin: String,
    /// Accepted signature schemes; any one verifying accepts. Empty only with
    /// `--insecure-dev`.
    #[serde(default)]
    pub verify: Vec<VerifyConfig>,
    #[serde(default)]
    pub body: BodyKind,
    /// Overrides `worker.max_attempts` for this route.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Where the id that drops repeated deliveries comes from.
    #[serde(default)]
    pub delivery_id: DeliveryIdSource,
}

/// One signature scheme on a route. Keys are referenced, never inline: an
/// environment variable (`secret_env`, or `env:NAME` in `secrets`) or a file
/// (`secret_file`, or `file:/path` in `secrets`). Several keys may be given
/// while a sender rotates them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Scheme name: `fal-ed25519`, `fal-hmac`, `standard-webhooks`, `github`, `stripe`.
    pub scheme: String,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// More key references: `env:NAME` or `file:/path`.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Accepted clock skew for timestamped schemes.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// `fal-ed25519`: JWKS URLs (default FAL's current one); keys of all are accepted.
    #[serde(default)]
    pub jwks_urls: Vec<String>,
    /// `fal-ed25519`: refresh cached keys on use once they are this old.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: u64,
    /// `fal-ed25519`: at most one JWKS fetch attempt per this many seconds.
    #[serde(default = "default_jwks_min_interval")]
    pub jwks_min_fetch_interval_secs: u64,
    /// Skip this scheme (instead of refusing to start) when its key is not set.
    #[serde(default)]
    pub optional: bool,
}

fn default_tolerance() -> u64 {
    300
}

fn default_jwks_refresh() -> u64 {
    3600
}

fn default_jwks_min_interval() -> u64 {
    60
}

/// Where one key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:/path`.
    pub fn parse(entry: &str) -> Option<Self> {
        match entry.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Some(Self::Env(name.into())),
            Some(("file", path)) if !path.is_empty() => Some(Self::File(path.into())),
            _ => None,
        }
    }

    /// Reads a file reference (trailing newline trimmed); an unreadable or
    /// empty file is an error naming the file, never its content.
    pub fn read_file(path: &Path) -> Result<Secret> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret file {}", path.display()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            bail!("the secret file {} is empty", path.display());
        }
        Ok(Secret::new(text))
    }

    /// The value now: the variable (None when unset or empty) or the file.
    pub fn read(&self) -> Result<Option<Secret>> {
        match self {
            Self::Env(name) => Ok(std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)),
            Self::File(path) => Self::read_file(path).map(Some),
        }
    }
}

impl VerifyConfig {
    pub fn new(scheme: &str) -> Self {
        Self {
            scheme: scheme.into(),
            secret_env: None,
            secret_file: None,
            secrets: Vec::new(),
            tolerance_secs: default_tolerance(),
            jwks_urls: Vec::new(),
            jwks_refresh_secs: default_jwks_refresh(),
            jwks_min_fetch_interval_secs: default_jwks_min_interval(),
            optional: false,
        }
    }

    pub fn with_secret_env(mut self, name: &str) -> Self {
        self.secret_env = Some(name.into());
        self
    }

    /// Every key reference, in order.
    pub fn secret_refs(&self) -> Result<Vec<SecretRef>> {
        let mut refs: Vec<SecretRef> = self
            .secret_env
            .iter()
            .map(|n| SecretRef::Env(n.clone()))
            .collect();
        refs.extend(self.secret_file.iter().map(|p| SecretRef::File(p.clone())));
        for entry in &self.secrets {
            match SecretRef::parse(entry) {
                Some(reference) => refs.push(reference),
                None => bail!(
                    "scheme {:?}: secrets entry {entry:?} must be env:NAME or file:/path",
                    self.scheme
                ),
            }
        }
        Ok(refs)
    }

    /// Reads every referenced key that is set. A named file that cannot be
    /// read is an error; an unset variable is skipped.
    pub fn resolve_keys(&self, env_secret: &dyn Fn(&str) -> Option<Secret>) -> Result<Vec<Secret>> {
        let mut keys = Vec::new();
        for reference in self.secret_refs()? {
            match reference {
                SecretRef::Env(name) => keys.extend(env_secret(&name)),
                SecretRef::File(path) => keys.push(SecretRef::read_file(&path)?),
            }
        }
        Ok(keys)
    }

    /// Where the keys were expected, for error messages (names, never values).
    pub fn key_sources(&self) -> String {
        let refs = self.secret_refs().unwrap_or_default();
        if refs.is_empty() {
            return "no secret_env, secret_file or secrets configured".into();
        }
        refs.iter()
            .map(|r| match r {
                SecretRef::Env(name) => format!("environment variable {name}"),
                SecretRef::File(path) => format!("file {}", path.display()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a route's de-duplication id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum DeliveryIdSource {
    /// The id the signature scheme carries, else the body's sha256.
    #[default]
    Scheme,
    /// Always the sha256 of the raw body.
    Sha256,
    /// A field of the JSON body (dot-separated path), else the scheme's id,
    /// else the body's sha256.
    JsonField(Vec<String>),
}

impl TryFrom<String> for DeliveryIdSource {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "scheme" => Ok(Self::Scheme),
            "sha256" => Ok(Self::Sha256),
            _ => match text.strip_prefix("json:") {
                Some(path) if !path.is_empty() => {
                    Ok(Self::JsonField(path.split('.').map(str::to_string).collect()))
                }
                _ => Err(format!(
                    "delivery_id {text:?} must be \"scheme\", \"sha256\" or \"json:<field>\""
                )),
            },
        }
    }
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    http: HttpSettings,
    worker: WorkerSettings,
    runtime: RuntimeSettings,
    retention: RetentionSettings,
    outbound: OutboundSettings,
    routes: Option<Vec<RouteConfig>>,
}

/// The route served when the file names none: FAL's training-status webhook,
/// verified by FAL's own Ed25519 signatures, or by `fal-hmac` when
/// `FAL_WEBHOOK_SECRET` is set.
fn default_routes() -> Vec<RouteConfig> {
    vec![RouteConfig {
        name: "fal-avatar-status".into(),
        path: Some("/api/v1/avatar/status_update".into()),
        plugin: "fal-avatar-status".into(),
        verify: vec![
            VerifyConfig::new("fal-ed25519"),
            VerifyConfig {
                optional: true,
                ..VerifyConfig::new("fal-hmac").with_secret_env("FAL_WEBHOOK_SECRET")
            },
        ],
        body: BodyKind::Json,
        max_attempts: None,
        delivery_id: DeliveryIdSource::Scheme,
    }]
}

impl Settings {
    /// Loads settings from the process environment and the file it names.
    pub fn from_env(config_file: Option<&Path>, insecure_dev: bool) -> Result<Self> {
        Self::load(config_file, insecure_dev, |name| std::env::var(name).ok())
    }

    /// Loads settings with `env` standing in for the environment.
    pub fn load(
        config_file: Option<&Path>,
        insecure_dev: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let path = config_file
            .map(Path::to_path_buf)
            .or_else(|| env("CONFIG_FILE").map(PathBuf::from))
            .or_else(|| {
                let default = PathBuf::from("webhook-host.toml");
                default.exists().then_some(default)
            });
        let file: FileConfig = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };

        let port = match env("PORT") {
            Some(p) => p.parse().with_context(|| format!("PORT={p:?} is not a port"))?,
            None => file.port.unwrap_or(8000),
        };
        let routes = file.routes.unwrap_or_else(default_routes);
        let mut secrets = BTreeMap::new();
        for verify in routes.iter().flat_map(|r| &r.verify) {
            for reference in verify.secret_refs()? {
                if let SecretRef::Env(name) = reference
                    && let Some(value) = env(&name).filter(|v| !v.is_empty())
                {
                    secrets.insert(name, Secret::new(value));
                }
            }
        }
        let data_dir: PathBuf = env("DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| "data".into());
        let mut runtime = file.runtime;
        runtime
            .cache_dir
            .get_or_insert_with(|| data_dir.join("compile-cache"));
        let settings = Self {
            storage: StorageSettings::from_env(&env, &data_dir)?,
            redis_url: env("REDIS_URL").filter(|v| !v.is_empty()).map(Secret::new),
            outbound: file.outbound,
            host: env("HOST").or(file.host).unwrap_or_else(|| "0.0.0.0".into()),
            port,
            data_dir,
            plugins_dir: env("PLUGINS_DIR")
                .map(PathBuf::from)
                .or(file.plugins_dir)
                .unwrap_or_else(|| "plugins-dist".into()),
            database_url: env("DATABASE_URL").filter(|v| !v.is_empty()).map(Secret::new),
            instance_id: env("INSTANCE_ID").unwrap_or_else(default_instance_id),
            insecure_dev,
            admin_token: env("ADMIN_TOKEN").filter(|v| !v.is_empty()).map(Secret::new),
            retention: file.retention,
            http: file.http,
            worker: file.worker,
            runtime,
            routes,
            secrets,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for route in &self.routes {
            if route.name.is_empty()
                || !route
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("route name {:?} must be letters, digits, '-' or '_'", route.name);
            }
            if !names.insert(&route.name) {
                bail!("route {:?} is configured twice", route.name);
            }
            let shadows =
                |p: &str| !p.starts_with('/') || p.starts_with("/hooks/") || p.starts_with("/health");
            if let Some(path) = route.path.as_deref().filter(|p| shadows(p)) {
                bail!(
                    "route {:?}: path {path:?} must start with '/' and not shadow /hooks or /health",
                    route.name
                );
            }
        }
        if self.http.header_limit_bytes < 8192 {
            bail!("http.header_limit_bytes must be at least 8192");
        }
        if self.http.max_connections == 0
            || self.http.max_headers == 0
            || self.http.max_intake_waiting == 0
            || self.http.json_max_depth == 0
            || [
                self.http.header_timeout_ms,
                self.http.body_timeout_ms,
                self.http.request_timeout_ms,
                self.http.idle_timeout_ms,
                self.http.max_commit_ms,
            ]
            .contains(&0)
        {
            bail!("the [http] limits and timeouts must be at least 1 (max_backlog = 0 turns that check off)");
        }
        if self.worker.concurrency == 0 || self.worker.max_attempts == 0 {
            bail!("worker.concurrency and worker.max_attempts must be at least 1");
        }
        if self.runtime.memory_limit_mb > self.runtime.max_memory_mb {
            bail!("runtime.memory_limit_mb exceeds runtime.max_memory_mb");
        }
        if let Some(url) = &self.database_url
            && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
        {
            bail!("DATABASE_URL must be a postgres:// URL (leave it unset for embedded SQLite)");
        }
        if self.worker.lease_ms < 300 {
            bail!("worker.lease_ms must be at least 300");
        }
        Ok(())
    }

    /// Attempts allowed for events on `route`.
    pub fn max_attempts(&self, route: &RouteConfig) -> u32 {
        route.max_attempts.unwrap_or(self.worker.max_attempts)
    }
}

fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_serve_the_fal_route_on_port_8000() {
        let s = Settings::load(None, false, env_of(&[("CONFIG_FILE", "/nonexistent/x.toml")]));
        assert!(s.is_err(), "a named config file that is missing is an error");
        let s = Settings::load(None, false, env_of(&[])).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 8000));
        assert_eq!(s.routes[0].path.as_deref(), Some("/api/v1/avatar/status_update"));
        assert_eq!(s.http.body_limit_bytes, 1024 * 1024);
    }

    #[test]
    fn environment_overrides_and_secrets_never_print() {
        let s = Settings::load(
            None,
            false,
            env_of(&[
                ("PORT", "9001"),
                ("HOST", "127.0.0.1"),
                ("FAL_WEBHOOK_SECRET", "hunter2"),
            ]),
        )
        .unwrap();
        assert_eq!(s.port, 9001);
        assert_eq!(s.secrets["FAL_WEBHOOK_SECRET"].expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn the_example_config_file_parses() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../webhook-host.example.toml");
        let s = Settings::load(Some(&file), false, env_of(&[("FAL_WEBHOOK_SECRET", "x")])).unwrap();
        assert_eq!(s.outbound.max_requests_per_event, 32);
        assert_eq!(s.routes[0].plugin, "fal-avatar-status");
    }

    #[test]
    fn storage_comes_from_the_minio_variables() {
        let s = Settings::load(None, false, env_of(&[("DATA_DIR", "/d")])).unwrap();
        assert!(s.storage.s3.is_none());
        assert_eq!(s.storage.local_dir, Path::new("/d/blobs"));
        let s = Settings::load(
            None,
            false,
            env_of(&[
                ("MINIO_ENDPOINT", "minio:9000"),
                ("MINIO_ACCESS_KEY", "ak"),
                ("MINIO_SECRET_KEY", "sk-value"),
                ("MINIO_BUCKET_NAME", "aisha"),
                ("MINIO_SECURE", "false"),
            ]),
        )
        .unwrap();
        let s3 = s.storage.s3.as_ref().unwrap();
        assert_eq!(s3.endpoint, "http://minio:9000");
        assert_eq!(s.storage.bucket, "aisha");
        assert!(!format!("{s:?}").contains("sk-value"), "secrets never print");
        let err = Settings::load(None, false, env_of(&[("MINIO_ENDPOINT", "minio:9000")])).unwrap_err();
        assert!(err.to_string().contains("MINIO_ACCESS_KEY"));
    }

    #[test]
    fn file_routes_replace_the_default_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[[routes]]\nname = \"bad name\"\nplugin = \"p\"\n").unwrap();
        let err = Settings::load(Some(&file), false, env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("bad name"));
        std::fs::write(
            &file,
            "[worker]\nconcurrency = 2\n[[routes]]\nname = \"gh\"\nplugin = \"p\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), false, env_of(&[])).unwrap();
        assert_eq!(s.routes.len(), 1);
        assert_eq!(s.worker.concurrency, 2);
    }
}
