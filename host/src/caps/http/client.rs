//! The host's outbound HTTP clients, shared by every instance: one whose
//! resolver keeps only public addresses, one for grants with
//! `allow_private`. Redirects are never followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;

use super::policy::{HttpPolicy, Refusal, is_public};
use crate::config::OutboundSettings;

/// The host's outbound clients: one that resolves names to public addresses
/// only, and one for grants with `allow_private`.
#[derive(Clone)]
pub struct HttpService {
    public_only: reqwest::Client,
    any_address: reqwest::Client,
    /// GETs of verifiers and responders, kept.
    pub gets: Arc<super::cache::GetCache>,
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
            gets: Arc::default(),
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
