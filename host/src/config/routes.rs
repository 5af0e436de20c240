//! The route schema of the TOML file: a route's plugin, its signature
//! schemes and their key references, its body kind, and where its
//! de-duplication id comes from.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::secret::{Secret, SecretRef};

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

/// One webhook route: of the host's config, or declared by a plugin's
/// manifest (which may set neither `path` nor `plugin`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name: served at `/hooks/{name}` and recorded on each event.
    pub name: String,
    /// An extra fixed path serving this route (the FAL URL the bot registers).
    #[serde(default)]
    pub path: Option<String>,
    /// The plugin that handles its events (required in the host's config;
    /// a plugin's own routes leave it out: they are its own).
    #[serde(default)]
    pub plugin: String,
    /// Accepted signature schemes; any one verifying accepts. Empty only with
    /// `--insecure-dev`.
    #[serde(default)]
    pub verify: Vec<VerifyConfig>,
    #[serde(default)]
    pub body: BodyKind,
    /// Attempts before an event is dead: by default `worker.max_attempts`,
    /// or one more than `retry_schedule` has waits.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The waits before the 2nd, 3rd, … attempt (`["5s", "5m", "2h"]`; the
    /// last repeats up to `max_attempts`); `[]`: exponential backoff from
    /// the `[worker]` settings. Unset: Svix's 5s, 5m, 30m, 2h, 5h, 10h, 10h
    /// when the plugin calls out (`http` or `blob`), else exponential.
    #[serde(default)]
    pub retry_schedule: Option<Vec<String>>,
    /// The longest wait a plugin's retry-after hint may ask for (`"6h"`).
    #[serde(default)]
    pub retry_after_max: Option<String>,
    /// Where the id that drops repeated deliveries comes from.
    #[serde(default)]
    pub delivery_id: DeliveryIdSource,
    /// What puts the route's events in line (`/request_id`,
    /// `json:data.object.id` or `header:X-Shop-Domain`): events with the
    /// same key run one at a time, in the order they were stored, on every
    /// instance; the others stay parallel. Unset: no order.
    #[serde(default)]
    pub order_key: Option<OrderKey>,
    /// A responder plugin asked first about every request on the route: its
    /// answer, if it gives one, is sent as is and nothing is stored.
    #[serde(default)]
    pub responder: Option<String>,
    /// The URL the provider is given for this route, for presets that sign
    /// it (Twilio, Square, HubSpot): behind a TLS proxy the host sees
    /// another scheme and host than the provider signed.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `async` (the default: 200 once stored, the plugin runs after) or
    /// `sync`: stored, then run at once, and the handler's `ok(some(bytes))`
    /// is the answer, if it comes within `sync_deadline_ms`.
    #[serde(default)]
    pub mode: RouteMode,
    /// How long a sync route's answer may take (Zoom wants one within 3 s).
    #[serde(default = "default_sync_deadline")]
    pub sync_deadline_ms: u64,
    /// The content type of a sync route's answer.
    #[serde(default = "default_sync_content_type")]
    pub sync_content_type: String,
}

/// Whether a route answers once a delivery is stored, or with its handler's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    #[default]
    Async,
    Sync,
}

fn default_sync_deadline() -> u64 {
    3000
}

fn default_sync_content_type() -> String {
    "application/json".into()
}

/// One signature scheme on a route. Keys are referenced, never inline: an
/// environment variable (`secret_env`, or `env:NAME` in `secrets`) or a file
/// (`secret_file`, or `file:/path` in `secrets`). Several keys may be given
/// while a sender rotates them.
///
/// Keys besides the common ones below are the scheme's own options (for
/// `fal-ed25519`, its JWKS): each scheme reads and checks its own when the
/// route is built, refusing any it does not know.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifyConfig {
    /// Scheme name: `fal-ed25519`, `fal-hmac`, `standard-webhooks`, `github`,
    /// `stripe`; or empty when the entry names a `provider`.
    #[serde(default)]
    pub scheme: String,
    /// A provider preset's name (`host/providers/`), instead of a scheme.
    #[serde(default)]
    pub provider: Option<String>,
    /// A verifier plugin's name, instead of a scheme or a provider: the
    /// plugin decides (it reads its own keys).
    #[serde(default)]
    pub plugin: Option<String>,
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
    /// Skip this scheme (instead of refusing to start) when its key is not set.
    #[serde(default)]
    pub optional: bool,
    /// The token a provider's handshake carries (Meta's verify token): an
    /// environment variable or a file, like the keys.
    #[serde(default)]
    pub handshake_token_env: Option<String>,
    #[serde(default)]
    pub handshake_token_file: Option<PathBuf>,
    /// The scheme's own options, as written.
    #[serde(flatten)]
    pub options: toml::Table,
}

fn default_tolerance() -> u64 {
    300
}

impl VerifyConfig {
    pub fn new(scheme: &str) -> Self {
        Self {
            scheme: scheme.into(),
            provider: None,
            plugin: None,
            secret_env: None,
            secret_file: None,
            secrets: Vec::new(),
            tolerance_secs: default_tolerance(),
            optional: false,
            handshake_token_env: None,
            handshake_token_file: None,
            options: toml::Table::new(),
        }
    }

    /// What the entry verifies with, for messages: its provider or scheme.
    pub fn label(&self) -> &str {
        self.provider
            .as_deref()
            .or(self.plugin.as_deref())
            .unwrap_or(&self.scheme)
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
                    self.label()
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

    /// The handshake token, when one is referenced and set.
    pub fn resolve_handshake_token(
        &self,
        env_secret: &dyn Fn(&str) -> Option<Secret>,
    ) -> Result<Option<Secret>> {
        if let Some(path) = &self.handshake_token_file {
            return SecretRef::read_file(path).map(Some);
        }
        Ok(self.handshake_token_env.as_deref().and_then(env_secret))
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

/// Where a delivery's ordering key comes from (see [`RouteConfig::order_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum OrderKey {
    /// A string or number of the JSON body at these object keys, written
    /// as a JSON pointer (`/a/b`, RFC 6901) or a dot path (`json:a.b`).
    Json(Vec<String>),
    /// A request header, by its lowercase name.
    Header(String),
}

impl TryFrom<String> for OrderKey {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let refused = || {
            format!(
                "order_key {text:?} must be a JSON pointer (\"/field\"), \"json:<field.path>\" \
                 or \"header:<name>\""
            )
        };
        if let Some(pointer) = text.strip_prefix('/') {
            let keys: Vec<String> = pointer
                .split('/')
                .map(|key| key.replace("~1", "/").replace("~0", "~"))
                .collect();
            return match keys.iter().any(String::is_empty) {
                true => Err(refused()),
                false => Ok(Self::Json(keys)),
            };
        }
        if let Some(path) = text.strip_prefix("json:")
            && !path.is_empty()
            && !path.split('.').any(str::is_empty)
        {
            return Ok(Self::Json(path.split('.').map(str::to_string).collect()));
        }
        match text.strip_prefix("header:").map(http::HeaderName::try_from) {
            Some(Ok(name)) => Ok(Self::Header(name.as_str().to_string())),
            _ => Err(refused()),
        }
    }
}

/// The route served when the file names none: FAL's training-status webhook,
/// verified by FAL's own Ed25519 signatures, or by `fal-hmac` when
/// `FAL_WEBHOOK_SECRET` is set.
pub fn default_routes() -> Vec<RouteConfig> {
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
        retry_schedule: None,
        retry_after_max: None,
        delivery_id: DeliveryIdSource::Scheme,
        order_key: None,
        public_url: None,
        responder: None,
        mode: RouteMode::Async,
        sync_deadline_ms: default_sync_deadline(),
        sync_content_type: default_sync_content_type(),
    }]
}

#[cfg(test)]
mod tests {
    use super::OrderKey;

    #[test]
    fn order_keys_are_json_pointers_dot_paths_or_headers() {
        let parse = |text: &str| OrderKey::try_from(text.to_string());
        let keys = |list: &[&str]| OrderKey::Json(list.iter().map(|s| s.to_string()).collect());
        assert_eq!(parse("/request_id"), Ok(keys(&["request_id"])));
        assert_eq!(parse("/data/a~1b/c~0d"), Ok(keys(&["data", "a/b", "c~d"])));
        assert_eq!(parse("json:data.object.id"), Ok(keys(&["data", "object", "id"])));
        assert_eq!(
            parse("header:X-Shop-Domain"),
            Ok(OrderKey::Header("x-shop-domain".into()))
        );
        for refused in [
            "",
            "/",
            "//a",
            "request_id",
            "json:",
            "json:a..b",
            "header:",
            "header:a b",
        ] {
            assert!(parse(refused).is_err(), "{refused:?}");
        }
    }
}
