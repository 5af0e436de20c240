//! The outbound policy: which URLs a plugin may reach, and the one check
//! every outbound request passes, from `wasi:http` or `blob.copy-from-url`
//! alike ([`Outbound::admit`]): the event's request budget, the allow-list,
//! public addresses only unless granted. A refusal is logged once, at warn,
//! and counted in `webhook_outbound_refused_total`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;

use super::grant::{Allowed, HttpGrant, default_port};
use crate::config::OutboundSettings;

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
    /// Keeps `200` answers to GETs in the host's cache ([`super::cache`]):
    /// for verifiers and responders, whose every call is a fresh instance.
    pub cache_gets: bool,
}

impl HttpPolicy {
    /// The policy for a plugin; `None` grants nothing (every URL refused).
    pub fn new(grant: Option<&HttpGrant>, defaults: &OutboundSettings) -> Result<Self> {
        let allowed = match grant {
            Some(g) => g.allowed()?,
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
            cache_gets: false,
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

/// One instance's outbound gate: its plugin's policy and the requests its
/// event has sent so far, shared by the `wasi:http` hooks and `blob`.
#[derive(Debug)]
pub struct Outbound {
    policy: Arc<HttpPolicy>,
    sent: AtomicU32,
    plugin: Arc<str>,
    event_id: Arc<str>,
}

impl Outbound {
    pub fn new(
        policy: Arc<HttpPolicy>,
        plugin: impl Into<Arc<str>>,
        event_id: impl Into<Arc<str>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            policy,
            sent: AtomicU32::new(0),
            plugin: plugin.into(),
            event_id: event_id.into(),
        })
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// The plugin whose instance this is.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Counts a request to `url` against the event's budget and checks it
    /// against the policy; a refusal is logged and counted.
    pub fn admit(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        let sent = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let checked = if sent > self.policy.max_requests_per_event {
            Err(Refusal::Limit(format!(
                "more than {} requests in one event",
                self.policy.max_requests_per_event
            )))
        } else {
            self.policy.check_url(url)
        };
        checked.map_err(|refusal| self.refused(refusal))
    }

    /// Logs and counts a refusal: of [`admit`](Self::admit), or of an
    /// admitted request the host could not complete (unreachable, too large).
    pub fn refused(&self, refusal: Refusal) -> Refusal {
        tracing::warn!(plugin = %self.plugin, event_id = %self.event_id, "outbound request refused: {refusal}");
        metrics::counter!(
            crate::telemetry::OUTBOUND_REFUSED,
            "plugin" => self.plugin.to_string(),
            "reason" => refusal.kind(),
        )
        .increment(1);
        refusal
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
    fn the_request_budget_is_one_per_event_for_every_caller() {
        let grant = HttpGrant {
            allow: vec!["https://example.com".into()],
            max_requests_per_event: Some(2),
            ..HttpGrant::default()
        };
        let policy = Arc::new(HttpPolicy::new(Some(&grant), &OutboundSettings::default()).unwrap());
        let gate = Outbound::new(policy, "p", "evt_1");
        let url = reqwest::Url::parse("https://example.com/a").unwrap();
        assert!(gate.admit(&url).is_ok());
        assert!(gate.admit(&url).is_ok());
        assert!(matches!(gate.admit(&url), Err(Refusal::Limit(_))));
    }

    #[test]
    fn every_refusal_of_the_gate_is_counted_by_plugin_and_reason() {
        let grant = HttpGrant {
            allow: vec!["https://example.com".into()],
            max_requests_per_event: Some(2),
            ..HttpGrant::default()
        };
        let policy = Arc::new(HttpPolicy::new(Some(&grant), &OutboundSettings::default()).unwrap());
        let recorder = crate::telemetry::counted::Recorded::default();
        let seen = recorder.0.clone();
        metrics::with_local_recorder(&recorder, || {
            let gate = Outbound::new(policy, "fetcher", "evt_1");
            let allowed = reqwest::Url::parse("https://example.com/a").unwrap();
            let foreign = reqwest::Url::parse("https://elsewhere.test/a").unwrap();
            assert!(gate.admit(&allowed).is_ok());
            assert!(gate.admit(&foreign).is_err());
            assert!(
                gate.admit(&allowed).is_err(),
                "the third request is over the budget"
            );
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "webhook_outbound_refused_total{plugin=fetcher,reason=denied} +1",
                "webhook_outbound_refused_total{plugin=fetcher,reason=limit} +1",
            ]
        );
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
