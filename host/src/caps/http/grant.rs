//! The `http` grant in a plugin's manifest: where a plugin may send
//! requests, and the limits it overrides. Its allow-list entries are parsed
//! here, when the manifest is read, so a bad entry fails the deploy.

use anyhow::{Result, bail};
use serde::Deserialize;

/// The `http` grant: where a plugin may send requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// `scheme://host[:port]` entries; `*` stands for any port, a leading
    /// `*.` for any subdomain, and a host of `*` for any host.
    pub allow: Vec<String>,
    /// Lets requests reach loopback and private addresses (local fakes in
    /// tests, services on the same private network).
    #[serde(default)]
    pub allow_private: bool,
    /// Overrides the host's `[outbound]` limits for this plugin.
    #[serde(default)]
    pub max_requests_per_event: Option<u32>,
    #[serde(default)]
    pub max_response_bytes: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl HttpGrant {
    /// Checks every allow-list entry, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        self.allowed().map(|_| ())
    }

    /// The allow-list, parsed.
    pub fn allowed(&self) -> Result<Vec<Allowed>> {
        self.allow.iter().map(|e| Allowed::parse(e)).collect()
    }
}

/// One allow-list entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    scheme: String,
    host: HostPattern,
    /// None: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: example.com's subdomains, not example.com itself.
    SubdomainOf(String),
}

impl Allowed {
    fn parse(entry: &str) -> Result<Self> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            bail!("http allow entry {entry:?} must look like https://host[:port]");
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            bail!("http allow entry {entry:?}: scheme must be http or https");
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            bail!("http allow entry {entry:?} must be scheme://host[:port] with no path or user");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = match port {
                    "*" => None,
                    p => Some(
                        p.parse::<u16>()
                            .map_err(|_| anyhow::anyhow!("http allow entry {entry:?}: bad port {p:?}"))?,
                    ),
                };
                (host, port)
            }
            _ => (rest, Some(default_port(&scheme))),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.as_str() {
            "*" => HostPattern::Any,
            h if h.starts_with("*.") && h.len() > 2 => HostPattern::SubdomainOf(h[2..].to_string()),
            h if h.contains('*') => bail!("http allow entry {entry:?}: `*` only as the host or as `*.`"),
            h => HostPattern::Exact(h.trim_start_matches('[').trim_end_matches(']').to_string()),
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is covered by this entry.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port.is_none_or(|p| p == port)
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Exact(h) => h == host,
                HostPattern::SubdomainOf(parent) => host
                    .strip_suffix(parent.as_str())
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            }
    }
}

/// The port a URL of `scheme` means when it names none.
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}
