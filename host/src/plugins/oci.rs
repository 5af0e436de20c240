//! Plugins as OCI artifacts, in the Wasm OCI layout: the component is an
//! `application/wasm` layer under an `application/vnd.wasm.config.v0+json`
//! config, so ordinary Wasm tooling recognises it; the plugin's manifest
//! travels as a second layer of its own media type. The same registry that
//! holds the images holds the plugins.

use anyhow::{Context, Result, bail};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;

pub const WASM_LAYER: &str = "application/wasm";
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const MANIFEST_LAYER: &str = "application/vnd.webhook-host.plugin.manifest.v1+toml";

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Plain HTTP (a registry on a private network without TLS).
    pub insecure_http: bool,
    /// Basic credentials; none: anonymous.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Registry {
    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: if self.insecure_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..ClientConfig::default()
        })
    }

    fn auth(&self) -> RegistryAuth {
        match (&self.username, &self.password) {
            (Some(user), Some(password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            _ => RegistryAuth::Anonymous,
        }
    }
}

/// Parses `registry/repo:tag`, with or without `oci://`.
pub fn reference(text: &str) -> Result<Reference> {
    let bare = text.strip_prefix("oci://").unwrap_or(text);
    if !bare.contains('/') {
        bail!("OCI reference {text:?} must look like registry/repository:tag");
    }
    bare.parse::<Reference>()
        .with_context(|| format!("OCI reference {text:?} is not valid"))
}

/// Pushes a component and its manifest; returns the manifest's URL.
pub async fn push(registry: &Registry, target: &str, component: &[u8], manifest: &str) -> Result<String> {
    let reference = reference(target)?;
    let wasm = ImageLayer::new(component.to_vec(), WASM_LAYER.into(), None);
    let toml = ImageLayer::new(manifest.as_bytes().to_vec(), MANIFEST_LAYER.into(), None);
    let config = json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [wasm.sha256_digest()],
    });
    let config = Config::new(serde_json::to_vec(&config)?, WASM_CONFIG.into(), None);
    let pushed = registry
        .client()
        .push(&reference, &[wasm, toml], config, &registry.auth(), None)
        .await
        .with_context(|| format!("pushing to {reference}"))?;
    Ok(pushed.manifest_url)
}

/// Pulls a plugin artifact: (component bytes, manifest text).
pub async fn pull(registry: &Registry, source: &str) -> Result<(Vec<u8>, String)> {
    let reference = reference(source)?;
    let image = registry
        .client()
        .pull(&reference, &registry.auth(), vec![WASM_LAYER, MANIFEST_LAYER])
        .await
        .with_context(|| format!("pulling {reference}"))?;
    let layer = |media_type: &str| {
        image
            .layers
            .iter()
            .find(|l| l.media_type == media_type)
            .map(|l| l.data.to_vec())
            .with_context(|| format!("{reference} has no {media_type} layer"))
    };
    let component = layer(WASM_LAYER)?;
    let manifest = String::from_utf8(layer(MANIFEST_LAYER)?).context("the manifest layer is not UTF-8")?;
    Ok((component, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_or_without_the_scheme() {
        let r = reference("oci://127.0.0.1:5000/plugins/fal-avatar-status:1.2").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "plugins/fal-avatar-status");
        assert_eq!(r.tag(), Some("1.2"));
        assert!(reference("registry.example.com/p/x:latest").is_ok());
        assert!(reference("no-registry").is_err());
        assert!(reference("oci://host/UPPER:tag").is_err());
    }
}
