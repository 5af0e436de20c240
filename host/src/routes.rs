//! The route table: which plugin handles a route, how requests on it are
//! verified, and what their bodies must be. Built once at start from the
//! settings; shared read-only by the HTTP edge and the worker.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;

use crate::config::{BodyKind, DeliveryIdSource, Settings};
use crate::verify::{BuildContext, RouteVerifier};

/// One configured route, ready to serve.
pub struct Route {
    pub name: String,
    /// The extra fixed path serving it, if any.
    pub path: Option<String>,
    pub plugin: String,
    pub verifier: RouteVerifier,
    pub body: BodyKind,
    pub max_attempts: u32,
    pub delivery_id: DeliveryIdSource,
}

#[derive(Default)]
pub struct RouteTable {
    by_name: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    /// Builds every route; fails when one cannot be verified as configured.
    pub fn build(settings: &Settings) -> Result<Self> {
        let mut by_name = HashMap::new();
        let env_secret = |name: &str| settings.secrets.get(name).cloned();
        let context = BuildContext {
            env_secret: &env_secret,
            data_dir: &settings.data_dir,
            insecure_dev: settings.insecure_dev,
        };
        for config in &settings.routes {
            let verifier = RouteVerifier::build(&config.name, &config.verify, &context)?;
            let route = Route {
                name: config.name.clone(),
                path: config.path.clone(),
                plugin: config.plugin.clone(),
                verifier,
                body: config.body,
                max_attempts: settings.max_attempts(config),
                delivery_id: config.delivery_id.clone(),
            };
            by_name.insert(route.name.clone(), Arc::new(route));
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Route>> {
        self.by_name.get(name).cloned()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_name.values()
    }
}
