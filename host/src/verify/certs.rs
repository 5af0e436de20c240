//! Signing certificates fetched from the URL a request names (AWS SNS's
//! `SigningCertURL`), for presets with `key = "certificate"`.
//!
//! Rules, so that a request cannot make the host fetch what it likes:
//! - the URL must be `https` (unless the preset says otherwise, for tests)
//!   and its host must match the preset's allow-list (`*` is one DNS label);
//! - a certificate is fetched at most once per URL and kept (16 at most,
//!   the oldest dropped), with a 5 s timeout, no redirects and 64 KiB at most;
//! - at most 10 fetches a minute in all, so a flood of forged URLs on an
//!   allowed host cannot amplify into fetches.
//!
//! The certificate is trusted because the allow-listed host served it over
//! TLS; its public key (the SubjectPublicKeyInfo) verifies the signature.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::scheme::pem_body;

/// How many certificates are kept, and how many fetches a minute are allowed.
const KEPT: usize = 16;
const FETCHES_PER_MINUTE: usize = 10;

/// Where certificates may come from.
#[derive(Debug, Clone)]
pub struct CertPolicy {
    /// Host patterns: `sns.*.amazonaws.com` (`*` matches one label).
    pub hosts: Vec<String>,
    /// Whether plain `http` URLs are allowed (tests on loopback only).
    pub allow_http: bool,
}

/// Why a certificate could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum CertError {
    /// The URL is not one the policy allows: no genuine request names it.
    NotAllowed,
    /// It was fetched and is not a certificate (or not there).
    Invalid,
    /// It could not be fetched now (network, rate limit): retry later.
    Unavailable,
}

/// Certificates by URL: each one's SubjectPublicKeyInfo (DER).
pub struct CertCache {
    policy: CertPolicy,
    client: reqwest::Client,
    kept: Mutex<Vec<(String, std::sync::Arc<Vec<u8>>)>>,
    fetches: Mutex<Vec<Instant>>,
}

impl CertCache {
    pub fn new(policy: CertPolicy) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            policy,
            client,
            kept: Mutex::new(Vec::new()),
            fetches: Mutex::new(Vec::new()),
        }
    }

    /// A cache holding `certificates` (URL, PEM) that never fetches (tests).
    pub fn offline(policy: CertPolicy, certificates: &[(&str, &str)]) -> Result<Self> {
        let cache = Self::new(policy);
        {
            let mut kept = cache.kept.lock().expect("not poisoned");
            for (url, pem) in certificates {
                kept.push((
                    url.to_string(),
                    std::sync::Arc::new(spki_of_certificate(pem.as_bytes())?),
                ));
            }
        }
        *cache.fetches.lock().expect("not poisoned") = vec![Instant::now(); FETCHES_PER_MINUTE];
        Ok(cache)
    }

    /// Whether `url` is one the policy allows.
    pub fn allows(&self, url: &str) -> bool {
        url_allowed(url, &self.policy.hosts, self.policy.allow_http)
    }

    /// The public key (SPKI DER) of the certificate at `url`.
    pub async fn key(&self, url: &str) -> Result<std::sync::Arc<Vec<u8>>, CertError> {
        if !self.allows(url) {
            return Err(CertError::NotAllowed);
        }
        if let Some((_, key)) = self
            .kept
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|(u, _)| u == url)
        {
            return Ok(key.clone());
        }
        {
            let mut fetches = self.fetches.lock().expect("not poisoned");
            fetches.retain(|at| at.elapsed() < Duration::from_secs(60));
            if fetches.len() >= FETCHES_PER_MINUTE {
                return Err(CertError::Unavailable);
            }
            fetches.push(Instant::now());
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|_| CertError::Unavailable)?;
        if response.status().is_server_error() {
            return Err(CertError::Unavailable);
        }
        if !response.status().is_success() {
            return Err(CertError::Invalid);
        }
        let body = response.bytes().await.map_err(|_| CertError::Unavailable)?;
        if body.len() > 64 * 1024 {
            return Err(CertError::Invalid);
        }
        let key = std::sync::Arc::new(spki_of_certificate(&body).map_err(|_| CertError::Invalid)?);
        let mut kept = self.kept.lock().expect("not poisoned");
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push((url.to_string(), key.clone()));
        Ok(key)
    }
}

/// Whether the host may fetch `url` (a URL a request names): `https`, or
/// `http` when `allow_http`; no credentials; a host matching one of
/// `hosts`. Certificates and subscription confirmations go by it.
pub(crate) fn url_allowed(url: &str, hosts: &[String], allow_http: bool) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let scheme_ok = parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http");
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    scheme_ok
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && hosts.iter().any(|pattern| host_matches(pattern, &host))
}

/// Whether `host` matches `pattern`, where `*` stands for one DNS label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern.len() == host.len()
        && pattern
            .iter()
            .zip(&host)
            .all(|(p, h)| !h.is_empty() && (*p == "*" || p.eq_ignore_ascii_case(h)))
}

/// The SubjectPublicKeyInfo (DER) of an X.509 certificate, PEM or DER.
pub fn spki_of_certificate(bytes: &[u8]) -> Result<Vec<u8>> {
    let der = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => pem_body(text)?,
        _ => bytes.to_vec(),
    };
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?,
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, … } … }
    let (certificate, _) = tlv(&der, 0x30).context("not a certificate")?;
    let (tbs, _) = tlv(certificate, 0x30).context("no tbsCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = skip(rest)?;
    }
    for _ in 0..5 {
        rest = skip(rest)?; // serial, signature, issuer, validity, subject
    }
    let (_, after) = tlv(rest, 0x30).context("no SubjectPublicKeyInfo")?;
    Ok(rest[..rest.len() - after.len()].to_vec())
}

/// The contents of the DER element at the start of `input` (which must have
/// `tag`), and what follows it.
fn tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first().context("truncated")?;
    if first != tag {
        bail!("unexpected DER tag {first:#x}");
    }
    let (&len, mut rest) = rest.split_first().context("truncated")?;
    let len = if len < 0x80 {
        len as usize
    } else {
        let count = (len & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            bail!("bad DER length");
        }
        let value = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[count..];
        value
    };
    if rest.len() < len {
        bail!("truncated");
    }
    Ok((&rest[..len], &rest[len..]))
}

/// What follows the DER element at the start of `input`, whatever its tag.
fn skip(input: &[u8]) -> Result<&[u8]> {
    let tag = *input.first().context("truncated")?;
    Ok(tlv(input, tag)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_label_by_label_and_urls_must_be_https() {
        let cache = CertCache::new(CertPolicy {
            hosts: vec!["sns.*.amazonaws.com".into()],
            allow_http: false,
        });
        assert!(cache.allows("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"));
        for refused in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.test/x.pem",
            "https://evil.test/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "not a url",
        ] {
            assert!(!cache.allows(refused), "{refused}");
        }
    }

    #[test]
    fn broken_certificates_are_refused() {
        for broken in [
            &b""[..],
            b"\x30",
            b"\x30\x82\xff\xff",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        ] {
            assert!(spki_of_certificate(broken).is_err());
        }
    }
}
