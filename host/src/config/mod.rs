//! Settings: built-in defaults, then the TOML file, then the environment.
//!
//! The environment names are the deployment's (`HOST`, `PORT`, `DATABASE_URL`,
//! `FAL_WEBHOOK_SECRET`, `LOG_LEVEL`, …). Routes and the worker, runtime and
//! HTTP tunables live in the TOML file (`CONFIG_FILE`, default
//! `webhook-host.toml` when present). Secrets are read from the environment
//! variables the routes name, and are held in [`Secret`], which never prints.

pub mod routes;
pub mod secret;
pub mod sections;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use self::routes::default_routes;
pub use self::routes::{BodyKind, DeliveryIdSource, OrderKey, RouteConfig, RouteMode, VerifyConfig};
pub use self::secret::{Secret, SecretRef};
pub use self::sections::{
    AlertSettings, HttpSettings, OutboundSettings, RetentionSettings, RuntimeSettings, S3Settings,
    StorageSettings, WorkerSettings,
};

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
    /// Folder of provider presets (`<name>.toml`) besides the built-in ones
    /// (`PROVIDERS_DIR`), read whenever routes are built.
    pub providers_dir: Option<PathBuf>,
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
    /// Operational webhooks (`[alerts]`, `ALERT_WEBHOOK_URL`).
    pub alerts: AlertSettings,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    host: Option<String>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    providers_dir: Option<PathBuf>,
    http: HttpSettings,
    worker: WorkerSettings,
    runtime: RuntimeSettings,
    retention: RetentionSettings,
    outbound: OutboundSettings,
    alerts: AlertSettings,
    routes: Option<Vec<RouteConfig>>,
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
            let token = verify
                .handshake_token_env
                .iter()
                .map(|n| SecretRef::Env(n.clone()));
            for reference in verify.secret_refs()?.into_iter().chain(token) {
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
        let mut alerts = file.alerts;
        if let Some(url) = env("ALERT_WEBHOOK_URL").filter(|v| !v.is_empty()) {
            alerts.url = Some(url);
        }
        alerts.secret = env(&alerts.secret_env).filter(|v| !v.is_empty()).map(Secret::new);
        if alerts.url.is_some() && alerts.secret.is_none() {
            bail!(
                "operational webhooks go to {} but {} (their whsec_ secret) is not set",
                alerts.url.as_deref().unwrap_or_default(),
                alerts.secret_env
            );
        }
        let settings = Self {
            alerts,
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
            providers_dir: env("PROVIDERS_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or(file.providers_dir),
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
            if route.plugin.is_empty() {
                bail!(
                    "route {:?}: name the plugin that handles it (plugin = \"…\")",
                    route.name
                );
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
