//! The TOML file's tunables, one struct per section (`[http]`, `[worker]`,
//! `[runtime]`, `[retention]`, `[outbound]`), with their defaults, and the
//! object storage the environment names.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::secret::Secret;

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
    pub(super) fn from_env(env: &impl Fn(&str) -> Option<String>, data_dir: &Path) -> Result<Self> {
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
    /// Events processed at once by this instance (plugins' statements have
    /// a pool of this many connections and 2 more). While busy, the worker claims
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
    /// Linear memory a pool slot keeps mapped between instances, reset in
    /// place (only the pages written, where the kernel can say which)
    /// rather than handed back and faulted in again by the next event.
    /// Tables keep a sixteenth of this. At most `max_instances` × this
    /// much stays resident; 0 hands it all back.
    pub keep_resident_kb: u64,
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
            keep_resident_kb: 1024,
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

/// Operational webhooks (`[alerts]`): where the host reports dead events
/// and a backlog past its age threshold, signed as Standard Webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// The receiver (`ALERT_WEBHOOK_URL` overrides it); none: alarms are
    /// only logged and counted.
    pub url: Option<String>,
    /// The environment variable holding the receiver's `whsec_…` secret.
    pub secret_env: String,
    /// Age of the oldest due event, in seconds, past which
    /// `backlog.too_old` is sent.
    pub backlog_age_secs: u64,
    /// How often the backlog is measured.
    pub check_interval_ms: u64,
    /// The secret itself, read from `secret_env`.
    #[serde(skip)]
    pub secret: Option<super::secret::Secret>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            url: None,
            secret_env: "ALERT_WEBHOOK_SECRET".into(),
            backlog_age_secs: 900,
            check_interval_ms: 15_000,
            secret: None,
        }
    }
}
