//! Signature verification: one file per scheme, all behind [`Scheme`]
//! ([`scheme`]), registered once in [`SCHEMES`].
//!
//! A route lists the schemes it accepts; a request is authentic when any one
//! of them verifies. Verification runs on the raw body bytes, before anything
//! parses them. Each failure has a stable reason code for the answer, the
//! logs and the metrics; secrets and expected signatures never appear in any
//! of them. Every comparison of a signature is constant-time.
//!
//! | scheme | headers | key |
//! |---|---|---|
//! | `fal-ed25519` | `X-Fal-Webhook-*` | FAL's JWKS (Ed25519), cached |
//! | `fal-hmac` | `X-Fal-Webhook-*` | shared secret |
//! | `standard-webhooks` | `webhook-id/-timestamp/-signature` | `whsec_` / `whpk_` |
//! | `github` | `X-Hub-Signature-256` | shared secret |
//! | `stripe` | `Stripe-Signature` | `whsec_…` as bytes |

pub mod catalogue;
pub mod certs;
pub mod declarative;
mod describe;
pub mod explain;
pub mod fal_ed25519;
pub mod fal_hmac;
pub mod github;
pub mod handshake;
pub mod handshake_spec;
pub mod jwks;
pub mod keys;
pub mod located;
pub mod plugin;
pub mod preset;
mod preset_check;
pub mod preset_sign;
pub mod scheme;
pub mod sign;
pub mod standard_webhooks;
pub mod stripe;
pub mod template;

use std::path::Path;

use anyhow::{Result, bail};

use self::declarative::Declarative;
use self::preset::KeyEncoding;
pub use self::scheme::{Rejection, Request, Scheme, Verified, hmac_sha256, signature_matches, unix_now};
use crate::config::{Secret, VerifyConfig};
use serde::Deserialize as _;

/// One signature scheme routes can name with `scheme = "…"`: since presets
/// landed, each is a shipped preset under its older name.
pub struct SchemeEntry {
    pub name: &'static str,
    /// The preset it runs (`host/providers/<preset>.toml`).
    pub preset: &'static str,
}

/// Every scheme, by the name routes use, and the preset that runs it.
pub const SCHEMES: &[SchemeEntry] = &[
    SchemeEntry {
        name: "fal-ed25519",
        preset: "fal",
    },
    SchemeEntry {
        name: "fal-hmac",
        preset: "fal-hmac",
    },
    SchemeEntry {
        name: "standard-webhooks",
        preset: "standard-webhooks",
    },
    SchemeEntry {
        name: "github",
        preset: "github",
    },
    SchemeEntry {
        name: "stripe",
        preset: "stripe",
    },
];

/// Every header some scheme reads, for the property tests and fuzzing.
#[doc(hidden)]
pub const SIGNATURE_HEADERS: [&str; 10] = [
    fal_hmac::REQUEST_ID,
    fal_hmac::USER_ID,
    fal_hmac::TIMESTAMP,
    fal_hmac::SIGNATURE,
    standard_webhooks::ID,
    standard_webhooks::TIMESTAMP,
    standard_webhooks::SIGNATURE,
    github::SIGNATURE,
    github::DELIVERY,
    stripe::SIGNATURE,
];

/// Every scheme, keyed with `secret` (the HMAC schemes) and `public`
/// (Ed25519, in a key cache that never fetches), with `tolerance_secs`. For
/// the property tests, benchmarks and fuzzing, which exercise every parser.
#[doc(hidden)]
pub fn every_scheme(
    secret: &str,
    public: ed25519_dalek::VerifyingKey,
    tolerance_secs: u64,
) -> Vec<Box<dyn Scheme>> {
    let mut schemes: Vec<Box<dyn Scheme>> = vec![Box::new(fal_ed25519::new(
        jwks::KeyCache::offline(vec![public]),
        tolerance_secs,
    ))];
    for name in ["fal-hmac", "standard-webhooks", "github", "stripe"] {
        let preset = catalogue::builtin(name).expect("a shipped preset");
        schemes.push(Box::new(
            Declarative::new(preset, &[Secret::new(secret)], tolerance_secs, None)
                .expect("every_scheme takes a whsec_ secret"),
        ));
    }
    schemes
}

/// A shipped preset with `keys`, for tests.
#[cfg(test)]
pub(crate) fn preset_scheme(name: &str, keys: &[&str], tolerance_secs: u64) -> Declarative {
    let keys: Vec<Secret> = keys.iter().map(|k| Secret::new(*k)).collect();
    Declarative::new(catalogue::builtin(name).unwrap(), &keys, tolerance_secs, None).unwrap()
}

/// A provider preset's scheme for a route entry: the preset from the
/// catalogue with the entry's keys, or, for a JWKS preset, a key cache
/// under the data folder (the entry may name other JWKS URLs and intervals).
/// Other presets take no options. Returns whether the scheme needs keys,
/// the scheme, and the preset (for its handshakes).
fn preset_scheme_for(
    provider: &str,
    config: &VerifyConfig,
    keys: &[Secret],
    context: &BuildContext<'_>,
) -> Result<(bool, Box<dyn Scheme>, std::sync::Arc<preset::Preset>)> {
    let preset = context.providers.find(provider)?;
    let found = preset.clone();
    if preset.signature.key == KeyEncoding::Jwks {
        let mut options = jwks::JwksOptions::deserialize(toml::Value::Table(config.options.clone()))
            .map_err(|e| anyhow::anyhow!("provider {provider:?}: {e}"))?;
        if options.jwks_urls.is_empty() {
            options.jwks_urls = preset.signature.jwks_urls.clone();
        }
        let cache = jwks::KeyCache::new(jwks::JwksSettings::from_options(&options, context.data_dir));
        let scheme = Declarative::with_key_cache(preset, cache, config.tolerance_secs)?;
        return Ok((false, Box::new(scheme), found));
    }
    if let Some(option) = config.options.keys().next() {
        bail!("provider {provider:?}: unknown option `{option}`");
    }
    let needs_keys = preset.signature.key != KeyEncoding::Certificate;
    let scheme = Declarative::new(preset, keys, config.tolerance_secs, context.public_url)?;
    Ok((needs_keys, Box::new(scheme), found))
}

/// What building a route's schemes needs from the host.
#[derive(Clone, Copy)]
pub struct BuildContext<'a> {
    /// Looks up an environment secret by variable name (resolved at start).
    pub env_secret: &'a dyn Fn(&str) -> Option<Secret>,
    /// Where schemes may keep state across restarts (the JWKS cache).
    pub data_dir: &'a Path,
    /// Lets a route whose keys are missing run unverified.
    pub insecure_dev: bool,
    /// The route's public URL, for presets that sign it.
    pub public_url: Option<&'a str>,
    /// Where the route's provider presets are found.
    pub providers: catalogue::Lookup<'a>,
    /// Where verifier plugins run, where they can (the host's routes).
    pub plugins: Option<&'a plugin::GateHandle>,
}

/// The schemes one route accepts.
pub struct RouteVerifier {
    schemes: Vec<Box<dyn Scheme>>,
    /// The handshakes its providers declare, in the order of its entries.
    handshakes: Vec<handshake::Handshake>,
    /// The schemes' and providers' names, `+`-joined: the metrics' `provider` label.
    label: String,
}

impl RouteVerifier {
    /// Builds the verifier for a route. A scheme whose keys are missing is an
    /// error, unless `insecure_dev` lets the route run without it; a route left
    /// with no scheme at all is then open (and logged as such).
    pub fn build(route: &str, configs: &[VerifyConfig], context: &BuildContext<'_>) -> Result<Self> {
        let mut schemes: Vec<Box<dyn Scheme>> = Vec::new();
        let mut handshakes = Vec::new();
        let mut labels: Vec<&str> = Vec::new();
        for config in configs {
            if let Some(name) = &config.plugin {
                let alone = config.scheme.is_empty()
                    && config.provider.is_none()
                    && config.secret_refs()?.is_empty()
                    && config.options.is_empty();
                if !alone {
                    bail!(
                        "route {route:?}: a verify entry naming a plugin takes no scheme, provider, keys or options (the plugin reads its own)"
                    );
                }
                let Some(gate) = context.plugins else {
                    bail!("route {route:?}: verifier plugins run only on the host's routes");
                };
                schemes.push(Box::new(plugin::PluginScheme::new(name, route, gate.clone())));
                labels.push(config.label());
                continue;
            }
            let keys = config.resolve_keys(context.env_secret)?;
            let no_keys = keys.is_empty();
            // Built first, so that its options are checked even when its
            // keys turn out to be missing.
            let built = match &config.provider {
                Some(provider) => {
                    if !config.scheme.is_empty() {
                        bail!(
                            "route {route:?}: a verify entry names a scheme or a provider, not both ({:?} and {provider:?})",
                            config.scheme
                        );
                    }
                    preset_scheme_for(provider, config, &keys, context)
                }
                None => {
                    let Some(entry) = SCHEMES.iter().find(|s| s.name == config.scheme) else {
                        let known: Vec<&str> = SCHEMES.iter().map(|s| s.name).collect();
                        bail!(
                            "route {route:?}: unknown signature scheme {:?} (known: {})",
                            config.scheme,
                            known.join(", ")
                        );
                    };
                    let builtin = BuildContext {
                        providers: catalogue::Lookup::default(),
                        ..*context
                    };
                    preset_scheme_for(entry.preset, config, &keys, &builtin)
                }
            };
            let (needs_keys, built, preset) = built.map_err(|e| anyhow::anyhow!("route {route:?}: {e:#}"))?;
            let missing_keys = needs_keys && no_keys;
            if missing_keys {
                if config.optional {
                    tracing::info!(route, scheme = %config.label(), "optional scheme has no key; not used");
                    continue;
                }
                if context.insecure_dev {
                    tracing::warn!(route, scheme = %config.label(), "no key configured: scheme skipped (--insecure-dev)");
                    continue;
                }
                bail!(
                    "route {route:?}: scheme {:?} needs a key ({}); set it, or start with --insecure-dev to accept unverified webhooks",
                    config.label(),
                    config.key_sources()
                );
            }
            schemes.push(built);
            labels.push(config.label());
            if !preset.handshakes.is_empty() {
                let token = config.resolve_handshake_token(context.env_secret)?;
                handshakes.extend(
                    handshake::Handshake::build_all(&preset, &keys, token.as_ref())
                        .map_err(|e| anyhow::anyhow!("route {route:?}: {e:#}"))?,
                );
            }
        }
        if schemes.is_empty() {
            if !context.insecure_dev {
                bail!("route {route:?} has no signature scheme; add one, or start with --insecure-dev");
            }
            tracing::warn!(route, "route runs UNVERIFIED (--insecure-dev)");
        }
        let label = if labels.is_empty() {
            "none".to_string()
        } else {
            labels.join("+")
        };
        Ok(Self {
            schemes,
            handshakes,
            label,
        })
    }

    /// The route's schemes and providers, `+`-joined (`none` when open).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The handshake `request` (sent with `method`) is, if any.
    pub fn handshake(&self, method: &http::Method, request: &Request<'_>) -> Option<&handshake::Handshake> {
        if self.handshakes.is_empty() {
            return None;
        }
        let reader = template::Reader::new(request);
        self.handshakes.iter().find(|h| h.matches(method, &reader))
    }

    /// The state of the keys its schemes fetch (JWKS), scheme by scheme.
    pub fn fetched_keys(&self) -> Vec<(&'static str, scheme::KeyStatus)> {
        self.schemes
            .iter()
            .filter_map(|scheme| Some((scheme.name(), scheme.fetched_keys()?)))
            .collect()
    }

    /// Whether the route's presets declare any handshake.
    pub fn has_handshakes(&self) -> bool {
        !self.handshakes.is_empty()
    }

    /// True when requests on this route are accepted without verification.
    pub fn is_open(&self) -> bool {
        self.schemes.is_empty()
    }

    /// Accepts the request if any scheme verifies it. Otherwise returns a
    /// retryable reason if any scheme could not get or refresh its keys (the
    /// request may well be genuine), else the first scheme's reason.
    pub async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let mut rejection: Option<Rejection> = None;
        for scheme in &self.schemes {
            match scheme.verify(request).await {
                Ok(verified) => return Ok(verified),
                Err(retryable) if retryable.is_retryable() => rejection = Some(retryable),
                Err(other) => {
                    rejection.get_or_insert(other);
                }
            }
        }
        rejection.map_or_else(|| Ok(Verified::default()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn fal(secret_env: &str) -> Vec<VerifyConfig> {
        vec![VerifyConfig::new("fal-hmac").with_secret_env(secret_env)]
    }

    fn context<'a>(secret: &'a dyn Fn(&str) -> Option<Secret>, insecure_dev: bool) -> BuildContext<'a> {
        BuildContext {
            env_secret: secret,
            data_dir: Path::new("/nonexistent"),
            insecure_dev,
            public_url: None,
            providers: Default::default(),
            plugins: None,
        }
    }

    #[test]
    fn a_route_without_its_secret_refuses_to_start_and_names_the_variable() {
        let err = RouteVerifier::build("fal", &fal("FAL_WEBHOOK_SECRET"), &context(&|_| None, false))
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(
            message.contains("FAL_WEBHOOK_SECRET") && message.contains("--insecure-dev"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn insecure_dev_opens_a_route_without_its_secret() {
        let verifier =
            RouteVerifier::build("fal", &fal("FAL_WEBHOOK_SECRET"), &context(&|_| None, true)).unwrap();
        assert!(verifier.is_open());
        let headers = HeaderMap::new();
        assert_eq!(
            verifier.verify(&Request::new(&headers, b"{}")).await,
            Ok(Verified::default())
        );
    }

    #[test]
    fn unknown_schemes_and_schemeless_routes_are_refused() {
        let configs = vec![VerifyConfig::new("rot13").with_secret_env("S")];
        let key = |_: &str| Some(Secret::new("k"));
        let err = RouteVerifier::build("r", &configs, &context(&key, false))
            .err()
            .unwrap();
        assert!(err.to_string().contains("rot13"));
        assert!(RouteVerifier::build("r", &[], &context(&|_| None, false)).is_err());
    }

    #[test]
    fn each_scheme_reads_its_own_options_and_refuses_others() {
        let parse = |entry: &str| -> VerifyConfig { toml::from_str(entry).unwrap() };
        let key = |_: &str| Some(Secret::new("k"));
        let jwks = parse(
            "scheme = \"fal-ed25519\"\njwks_urls = [\"https://keys.test/jwks.json\"]\njwks_min_fetch_interval_secs = 5\n",
        );
        assert!(RouteVerifier::build("fal", &[jwks], &context(&key, false)).is_ok());
        for (entry, named) in [
            // An option of another scheme.
            (
                "scheme = \"github\"\nsecret_env = \"S\"\njwks_urls = [\"https://x\"]\n",
                "jwks_urls",
            ),
            // A misspelt one.
            ("scheme = \"fal-ed25519\"\njwks_url = \"https://x\"\n", "jwks_url"),
            ("scheme = \"fal-hmac\"\nsecret_envv = \"S\"\n", "secret_envv"),
        ] {
            let err = RouteVerifier::build("r", &[parse(entry)], &context(&key, false))
                .err()
                .unwrap_or_else(|| panic!("{entry} was accepted"));
            assert!(format!("{err:#}").contains(named), "{err:#}");
        }
    }

    #[tokio::test]
    async fn a_route_verifies_with_a_provider_preset_by_name() {
        let parse = |entry: &str| -> VerifyConfig { toml::from_str(entry).unwrap() };
        let slack = parse("provider = \"slack\"\nsecret_env = \"SLACK_SIGNING_SECRET\"\n");
        let key = |name: &str| {
            (name == "SLACK_SIGNING_SECRET").then(|| Secret::new("8f742231b10e8888abcd99yyyzzz85a5"))
        };
        let verifier = RouteVerifier::build("slack", &[slack], &context(&key, false)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-slack-request-timestamp", "1531420618".parse().unwrap());
        headers.insert(
            "x-slack-signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
                .parse()
                .unwrap(),
        );
        let body = crate::verify::declarative::tests::SLACK_BODY.as_bytes();
        assert!(
            verifier
                .verify(&Request::at(&headers, body, 1_531_420_618))
                .await
                .is_ok()
        );
        assert!(
            verifier
                .verify(&Request::at(&headers, b"{}", 1_531_420_618))
                .await
                .is_err()
        );
        for (entry, named) in [
            ("provider = \"slak\"\nsecret_env = \"S\"\n", "slak"),
            (
                "provider = \"slack\"\nscheme = \"github\"\nsecret_env = \"S\"\n",
                "not both",
            ),
            (
                "provider = \"slack\"\nsecret_env = \"S\"\njwks_urls = []\n",
                "jwks_urls",
            ),
        ] {
            let err = RouteVerifier::build("r", &[parse(entry)], &context(&key, false))
                .err()
                .unwrap_or_else(|| panic!("{entry} was accepted"));
            assert!(format!("{err:#}").contains(named), "{err:#}");
        }
        let unkeyed = parse("provider = \"slack\"\nsecret_env = \"UNSET\"\n");
        let err = RouteVerifier::build("r", &[unkeyed], &context(&key, false))
            .err()
            .unwrap();
        assert!(err.to_string().contains("UNSET"), "{err}");
    }

    #[tokio::test]
    async fn a_configured_route_rejects_unsigned_requests() {
        let key = |_: &str| Some(Secret::new("k"));
        let verifier = RouteVerifier::build("fal", &fal("S"), &context(&key, false)).unwrap();
        let headers = HeaderMap::new();
        let rejection = verifier.verify(&Request::new(&headers, b"{}")).await.unwrap_err();
        assert_eq!(rejection.code(), "missing_header");
    }

    #[test]
    fn signatures_compare_by_value_and_length() {
        assert!(signature_matches(b"abc", b"abc"));
        assert!(!signature_matches(b"abc", b"abd"));
        assert!(!signature_matches(b"abc", b"ab"));
        assert!(!signature_matches(b"", b"a"));
    }
}

#[cfg(test)]
mod independent;
#[cfg(test)]
mod props;
#[cfg(test)]
mod props_presets;
#[cfg(test)]
mod vectors;
