//! The route table: which plugin handles a route, how requests on it are
//! verified, and what their bodies must be. The host's config gives routes
//! for the process's life; active plugins may declare more in their
//! manifests, swapped in when a version is activated. Read without a lock by
//! the HTTP edge and the worker.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use arc_swap::ArcSwap;

use crate::config::{BodyKind, DeliveryIdSource, OrderKey, RouteConfig, RouteMode, Settings};
use crate::verify::catalogue::Lookup;
use crate::verify::plugin::{GateHandle, PluginVerifiers};
use crate::verify::preset::Preset;
use crate::verify::{BuildContext, RouteVerifier};
use crate::worker::backoff::RetryRule;

/// One configured route, ready to serve.
pub struct Route {
    pub name: String,
    /// The extra fixed path serving it, if any.
    pub path: Option<String>,
    pub plugin: String,
    pub verifier: RouteVerifier,
    pub body: BodyKind,
    /// How its failed events are retried.
    pub retry: RetryRule,
    pub delivery_id: DeliveryIdSource,
    /// What puts its events in line, if anything.
    pub order_key: Option<OrderKey>,
    /// The responder plugin asked first about each request, if any.
    pub responder: Option<String>,
    /// For a sync route: how its handler's answer is given.
    pub sync: Option<SyncAnswer>,
}

/// The retry rule a route's settings give.
fn retry_rule(config: &RouteConfig) -> Result<RetryRule> {
    RetryRule::of(
        config.max_attempts,
        config.retry_schedule.as_deref(),
        config.retry_after_max.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("route {:?}: {e}", config.name))
}

/// How a sync route answers: its handler's `ok(some(bytes))`, if the
/// attempt ends within `deadline`, with `content_type`.
#[derive(Debug, Clone)]
pub struct SyncAnswer {
    pub deadline: std::time::Duration,
    pub content_type: http::HeaderValue,
}

impl SyncAnswer {
    /// The sync answer `config` asks for, if any.
    pub fn of(config: &RouteConfig) -> Result<Option<Self>> {
        if config.mode != RouteMode::Sync {
            return Ok(None);
        }
        let content_type = http::HeaderValue::from_str(&config.sync_content_type).map_err(|_| {
            anyhow::anyhow!("route {:?}: sync_content_type is not a header value", config.name)
        })?;
        Ok(Some(Self {
            deadline: std::time::Duration::from_millis(config.sync_deadline_ms.max(1)),
            content_type,
        }))
    }
}

/// The routes: those of the host's config (fixed for the process's life)
/// and those the active plugins declare in their manifests (swapped whole
/// when a plugin version changes).
pub struct RouteTable {
    configured: HashMap<String, Arc<Route>>,
    from_plugins: ArcSwap<HashMap<String, Arc<Route>>>,
    data_dir: PathBuf,
    providers_dir: Option<PathBuf>,
    insecure_dev: bool,
    /// Where the routes' verifier plugins run (set once the runtime is up).
    gate: GateHandle,
}

impl RouteTable {
    /// Builds every configured route; fails when one cannot be verified as configured.
    pub fn build(settings: &Settings) -> Result<Self> {
        let mut configured = HashMap::new();
        let env_secret = |name: &str| settings.secrets.get(name).cloned();
        let gate = GateHandle::default();
        let context = BuildContext {
            env_secret: &env_secret,
            data_dir: &settings.data_dir,
            insecure_dev: settings.insecure_dev,
            public_url: None,
            providers: Lookup {
                declared: &[],
                dir: settings.providers_dir.as_deref(),
            },
            plugins: Some(&gate),
        };
        for config in &settings.routes {
            let context = BuildContext {
                public_url: config.public_url.as_deref(),
                ..context
            };
            let verifier = RouteVerifier::build(&config.name, &config.verify, &context)?;
            let route = Route {
                name: config.name.clone(),
                path: config.path.clone(),
                plugin: config.plugin.clone(),
                verifier,
                body: config.body,
                retry: retry_rule(config)?,
                delivery_id: config.delivery_id.clone(),
                order_key: config.order_key.clone(),
                responder: config.responder.clone(),
                sync: SyncAnswer::of(config)?,
            };
            configured.insert(route.name.clone(), Arc::new(route));
        }
        Ok(Self {
            configured,
            from_plugins: ArcSwap::default(),
            data_dir: settings.data_dir.clone(),
            providers_dir: settings.providers_dir.clone(),
            insecure_dev: settings.insecure_dev,
            gate,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Route>> {
        self.configured
            .get(name)
            .cloned()
            .or_else(|| self.from_plugins.load().get(name).cloned())
    }

    /// The configured routes (the ones that may have fixed paths).
    pub fn configured(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.configured.values()
    }

    /// Every route now, configured and declared.
    pub fn all(&self) -> Vec<Arc<Route>> {
        let mut all: Vec<Arc<Route>> = self.configured.values().cloned().collect();
        all.extend(self.from_plugins.load().values().cloned());
        all
    }

    /// A route `plugin` serves (the first by name), if any: where its
    /// scheduled runs' follow-ups go.
    pub fn serving(&self, plugin: &str) -> Option<Arc<Route>> {
        self.all()
            .into_iter()
            .filter(|r| r.plugin == plugin)
            .min_by(|a, b| a.name.cmp(&b.name))
    }

    /// Who serves route `name` now, if anyone: `None` when it is free.
    pub fn taken_by(&self, name: &str, except_plugin: &str) -> Option<String> {
        if self.configured.contains_key(name) {
            return Some("the host's config".into());
        }
        self.from_plugins
            .load()
            .get(name)
            .filter(|r| r.plugin != except_plugin)
            .map(|r| format!("plugin {}", r.plugin))
    }

    /// Builds a route a plugin's manifest declares (served at `/hooks/{name}`;
    /// keys from the process environment or files).
    pub fn build_declared(&self, plugin: &str, declared: &RouteConfig, presets: &[Preset]) -> Result<Route> {
        let env_secret = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(crate::config::Secret::new)
        };
        let context = BuildContext {
            env_secret: &env_secret,
            data_dir: &self.data_dir,
            insecure_dev: self.insecure_dev,
            public_url: declared.public_url.as_deref(),
            providers: Lookup {
                declared: presets,
                dir: self.providers_dir.as_deref(),
            },
            plugins: Some(&self.gate),
        };
        Ok(Route {
            name: declared.name.clone(),
            path: None,
            plugin: plugin.to_string(),
            verifier: RouteVerifier::build(&declared.name, &declared.verify, &context)?,
            body: declared.body,
            retry: retry_rule(declared)?,
            delivery_id: declared.delivery_id.clone(),
            order_key: declared.order_key.clone(),
            responder: declared.responder.clone(),
            sync: SyncAnswer::of(declared)?,
        })
    }

    /// Lets the routes' verifier plugins run (once, when the runtime is up).
    pub fn run_verifiers_with(&self, runner: Arc<dyn PluginVerifiers>) {
        let _ = self.gate.set(runner);
    }

    /// Replaces the declared routes.
    pub fn set_declared(&self, routes: HashMap<String, Arc<Route>>) {
        self.from_plugins.store(Arc::new(routes));
    }
}
