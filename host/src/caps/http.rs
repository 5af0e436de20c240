//! `http`: outbound requests through the standard `wasi:http/outgoing-handler`,
//! under the host's policy.
//!
//! Every request a plugin sends (and every URL `blob.copy-from-url` fetches)
//! passes [`HttpPolicy::check_url`]: the scheme and authority must match the
//! grant's allow-list, and, unless the grant says `allow_private = true`, the
//! target must be a public address: an IP literal is checked as written, a
//! name after DNS resolution (the client's resolver drops loopback, private,
//! link-local, shared, documentation and metadata addresses, so a name that
//! resolves only to those fails to connect). Redirects are not followed: the
//! plugin sees the 3xx and decides. Responses are capped in size and time;
//! each event may send a limited number of requests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::OutboundSettings;

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

/// One allow-list entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
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

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
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

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// Whether `ip` is an address a plugin may reach without `allow_private`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // 169.254/16: cloud metadata lives here
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 may wrap private v4
        }
    }
}

/// A plugin's outbound policy: its grant (if any) and the host's limits.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    allowed: Vec<Allowed>,
    pub allow_private: bool,
    pub max_requests_per_event: u32,
    pub max_response_bytes: u64,
    pub timeout: Duration,
}

impl HttpPolicy {
    /// The policy for a plugin; `None` grants nothing (every URL refused).
    pub fn new(grant: Option<&HttpGrant>, defaults: &OutboundSettings) -> Result<Self> {
        let allowed = match grant {
            Some(g) => g.allow.iter().map(|e| Allowed::parse(e)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Self {
            allowed,
            allow_private: grant.is_some_and(|g| g.allow_private),
            max_requests_per_event: grant
                .and_then(|g| g.max_requests_per_event)
                .unwrap_or(defaults.max_requests_per_event),
            max_response_bytes: grant
                .and_then(|g| g.max_response_bytes)
                .unwrap_or(defaults.max_response_bytes),
            timeout: Duration::from_millis(grant.and_then(|g| g.timeout_ms).unwrap_or(defaults.timeout_ms)),
        })
    }

    /// Refuses a URL outside the allow-list, or aimed at a non-public IP
    /// literal without `allow_private`. Names are checked after resolution
    /// by the client's resolver.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(Refusal::Denied(format!("scheme {scheme:?} is not http or https")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Denied("URLs with credentials are refused".into()));
        }
        let Some(host) = url.host() else {
            return Err(Refusal::Denied("the URL has no host".into()));
        };
        let port = url
            .port_or_known_default()
            .unwrap_or_else(|| default_port(scheme));
        let host_text = match host {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        if !self.allowed.iter().any(|a| a.matches(scheme, &host_text, port)) {
            return Err(Refusal::Denied(format!(
                "{scheme}://{host_text}:{port} is not in the plugin's http allow-list"
            )));
        }
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(d) => d.parse::<IpAddr>().ok(),
        };
        if let Some(ip) = literal
            && !self.allow_private
            && !is_public(ip)
        {
            return Err(Refusal::Prohibited(format!(
                "{ip} is not a public address (the grant does not allow private ones)"
            )));
        }
        Ok(())
    }
}

/// Why the host refused an outbound request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("denied: {0}")]
    Denied(String),
    #[error("prohibited address: {0}")]
    Prohibited(String),
    #[error("limit: {0}")]
    Limit(String),
}

impl Refusal {
    /// The metrics label: `denied`, `prohibited_address` or `limit`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Denied(_) => "denied",
            Refusal::Prohibited(_) => "prohibited_address",
            Refusal::Limit(_) => "limit",
        }
    }
}

/// The host's outbound clients: one that resolves names to public addresses
/// only, and one for grants with `allow_private`.
#[derive(Clone)]
pub struct HttpService {
    public_only: reqwest::Client,
    any_address: reqwest::Client,
}

impl HttpService {
    pub fn new(settings: &OutboundSettings) -> Result<Self> {
        let build = |public_only: bool| {
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
                .user_agent(concat!("webhook-host/", env!("CARGO_PKG_VERSION")));
            if public_only {
                builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
            }
            builder.build()
        };
        Ok(Self {
            public_only: build(true)?,
            any_address: build(false)?,
        })
    }

    /// The client for a policy.
    pub fn client(&self, policy: &HttpPolicy) -> &reqwest::Client {
        if policy.allow_private {
            &self.any_address
        } else {
            &self.public_only
        }
    }
}

/// Resolves names with the system resolver and keeps only public addresses.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = format!(
                    "{host} resolves only to non-public addresses; the grant does not allow private ones"
                )
                .into();
                return Err(err);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A reqwest error and its causes on one line, without the URL (a URL may
/// carry a token, like the Bot API's).
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a response body, refusing more than `cap` bytes.
pub async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Bytes, Refusal> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(Refusal::Limit(format!("the response is larger than {cap} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Refusal::Denied(format!("reading the response: {}", error_chain(e))))?
    {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(Refusal::Limit(format!("the response is larger than {cap} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// One instance's outbound state: the policy and the requests sent so far.
pub struct HttpHooks {
    service: HttpService,
    policy: Arc<HttpPolicy>,
    sent: Arc<AtomicU32>,
    plugin: Arc<str>,
    event_id: Arc<str>,
}

impl HttpHooks {
    pub fn new(
        service: HttpService,
        policy: Arc<HttpPolicy>,
        sent: Arc<AtomicU32>,
        plugin: &str,
        event_id: &str,
    ) -> Self {
        Self {
            service,
            policy,
            sent,
            plugin: plugin.into(),
            event_id: event_id.into(),
        }
    }
}

/// Largest request body a plugin may send.
const MAX_REQUEST_BYTES: usize = 16 << 20;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let (client, policy) = (self.service.client(&self.policy).clone(), self.policy.clone());
        let sent = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let (plugin, event_id) = (self.plugin.clone(), self.event_id.clone());
        Box::new(async move {
            let refuse = |refusal: Refusal, code: HttpError| {
                tracing::warn!(plugin = %plugin, event_id = %event_id, "outbound request refused: {refusal}");
                metrics::counter!(
                    crate::telemetry::OUTBOUND_REFUSED,
                    "plugin" => plugin.to_string(),
                    "reason" => refusal.kind(),
                )
                .increment(1);
                code
            };
            if sent > policy.max_requests_per_event {
                return Err(refuse(
                    Refusal::Limit(format!(
                        "more than {} requests in one event",
                        policy.max_requests_per_event
                    )),
                    HttpError::ConnectionLimitReached,
                ));
            }
            let (parts, body) = request.into_parts();
            let url =
                reqwest::Url::parse(&parts.uri.to_string()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
            if let Err(refusal) = policy.check_url(&url) {
                let code = match refusal {
                    Refusal::Prohibited(_) => HttpError::DestinationIpProhibited,
                    _ => HttpError::HttpRequestDenied,
                };
                return Err(refuse(refusal, code));
            }
            let body = http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(None))?
                .to_bytes();
            let mut headers = parts.headers;
            headers.remove(http::header::HOST);
            let method = parts.method.clone();
            let response = client
                .request(parts.method, url.clone())
                .headers(headers)
                .body(body)
                .timeout(policy.timeout)
                .send()
                .await
                .map_err(|e| {
                    let code = if e.is_timeout() {
                        HttpError::ConnectionTimeout
                    } else if e.is_connect() {
                        HttpError::ConnectionRefused
                    } else {
                        HttpError::HttpProtocolError
                    };
                    let host = url.host_str().unwrap_or("").to_string();
                    refuse(Refusal::Denied(format!("{host}: {}", error_chain(e))), code)
                })?;
            let status = response.status();
            crate::caps::trace_call!(
                "http {} {}://{}{} -> {status}",
                method,
                url.scheme(),
                url.host_str().unwrap_or(""),
                if url.path().len() > 1 { "/…" } else { "/" }
            );
            let headers = response.headers().clone();
            let bytes = read_capped(response, policy.max_response_bytes)
                .await
                .map_err(|r| {
                    refuse(
                        r,
                        HttpError::HttpResponseBodySize(Some(policy.max_response_bytes)),
                    )
                })?;
            let mut builder = http::Response::builder().status(status);
            for (name, value) in &headers {
                if name != http::header::TRANSFER_ENCODING {
                    builder = builder.header(name, value);
                }
            }
            let body = Full::new(bytes).map_err(|never| match never {}).boxed_unsync();
            let response = builder.body(body).map_err(|_| HttpError::HttpProtocolError)?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], allow_private: bool) -> HttpPolicy {
        let grant = HttpGrant {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            allow_private,
            ..HttpGrant::default()
        };
        HttpPolicy::new(Some(&grant), &OutboundSettings::default()).unwrap()
    }

    fn check(p: &HttpPolicy, url: &str) -> Result<(), Refusal> {
        p.check_url(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn allow_list_matches_scheme_host_and_port() {
        let p = policy(
            &[
                "https://api.telegram.org",
                "https://*.fal.media",
                "http://files.test:*",
            ],
            false,
        );
        assert!(check(&p, "https://api.telegram.org/bot1/sendMessage").is_ok());
        assert!(check(&p, "https://api.telegram.org:443/x").is_ok());
        assert!(check(&p, "http://api.telegram.org/x").is_err());
        assert!(check(&p, "https://api.telegram.org:8443/x").is_err());
        assert!(check(&p, "https://v3.fal.media/files/a").is_ok());
        assert!(check(&p, "https://fal.media/files/a").is_err());
        assert!(check(&p, "https://evilfal.media/files/a").is_err());
        assert!(check(&p, "http://files.test:9000/a").is_ok());
        assert!(check(&p, "https://user:pw@api.telegram.org/").is_err());
        assert!(check(&p, "ftp://api.telegram.org/").is_err());
    }

    #[test]
    fn private_literals_are_refused_unless_granted() {
        let p = policy(&["http://*:*", "https://*:*"], false);
        for url in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(matches!(check(&p, url), Err(Refusal::Prohibited(_))), "{url}");
        }
        assert!(check(&p, "http://93.184.216.34/").is_ok());
        let open = policy(&["http://127.0.0.1:*"], true);
        assert!(check(&open, "http://127.0.0.1:8080/").is_ok());
    }

    #[test]
    fn no_grant_refuses_everything() {
        let p = HttpPolicy::new(None, &OutboundSettings::default()).unwrap();
        assert!(matches!(
            check(&p, "https://example.com/"),
            Err(Refusal::Denied(_))
        ));
    }

    #[test]
    fn bad_entries_are_named() {
        for entry in [
            "api.telegram.org",
            "https://a/b",
            "https://a*b.com",
            "gopher://a",
            "https://a:x",
        ] {
            let grant = HttpGrant {
                allow: vec![entry.into()],
                ..HttpGrant::default()
            };
            let err = HttpPolicy::new(Some(&grant), &OutboundSettings::default()).unwrap_err();
            assert!(err.to_string().contains(entry), "{err}");
        }
    }
}
