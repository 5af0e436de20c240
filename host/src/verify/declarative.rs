//! The engine that runs a [`Preset`]: the signature (or token) read where
//! the preset says, the signed message assembled from its parts, checked
//! with each of the route's keys (or the keys fetched from JWKS URLs); the
//! timestamp and the delivery id where the preset names them.
//!
//! A single signature is read after the timestamp is checked; a list is
//! parsed whole first: entries that do not decode are skipped (an unknown
//! version, a truncated value), and a list with no usable signature, or
//! with the timestamp twice, is malformed.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::VerifyingKey;

use super::certs::{CertCache, CertError, CertPolicy};
use super::jwks::KeyCache;
use super::keys::{KeySet, ed25519_verifies, signature_len, split_whpk, verification};
use super::preset::{Algorithm, Encoding, KeyEncoding, Located as _, Preset, TimeUnit};
use super::scheme::{Rejection, Request, Scheme, Verified, sha256_hex, signature_matches};
use super::template::{Built, Place, Reader, leak, unix_seconds};
use crate::config::Secret;

/// A preset with a route's keys.
pub struct Declarative {
    preset: Arc<Preset>,
    /// The preset's name, for [`Scheme::name`].
    name: &'static str,
    keys: KeySet,
    /// `whpk_` keys for the list's Ed25519 entries.
    ed25519_keys: Vec<VerifyingKey>,
    /// The signed message's parts, names ready for rejections.
    parts: Vec<Built>,
    signature_at: Place,
    /// Where the timestamp is when it is not an entry of the list.
    timestamp_at: Option<Place>,
    delivery_id: Option<(DeliveryId, bool)>,
    body_hash: Option<&'static str>,
    /// The URL the provider calls (for presets that sign it).
    public_url: Option<String>,
    tolerance_secs: u64,
    /// Where a request names its algorithm, and its certificate's URL.
    version_at: Option<Place>,
    certificate_at: Option<Place>,
}

/// Where the delivery id comes from.
enum DeliveryId {
    At(Place),
    Parts(Vec<Built>),
}

/// What the request says: signatures (and Ed25519 list entries), decoded,
/// and the timestamp as sent with its Unix seconds.
struct Written<'v> {
    signatures: Vec<Vec<u8>>,
    ed25519: Vec<Vec<u8>>,
    timestamp: Option<(Cow<'v, str>, i64)>,
    /// A JWS's signing input (`header.claims`) and its claims.
    jws: Option<(Vec<u8>, serde_json::Value)>,
}

impl Declarative {
    /// The preset with `keys`, checking timestamps against
    /// `tolerance_secs`; `public_url` is the URL the provider is given,
    /// needed by presets that sign it.
    pub fn new(
        preset: Arc<Preset>,
        keys: &[Secret],
        tolerance_secs: u64,
        public_url: Option<&str>,
    ) -> Result<Self> {
        let signature = &preset.signature;
        if signature.key == KeyEncoding::Certificate {
            let cache = CertCache::new(certificate_policy(&preset));
            return Self::with_certificates(preset, cache, tolerance_secs, public_url);
        }
        let texts = keys.iter().map(Secret::expose);
        let (texts, ed25519_keys) = match signature.list.as_ref().and_then(|l| l.ed25519.as_ref()) {
            Some(_) => split_whpk(texts)?,
            None => (texts.collect(), Vec::new()),
        };
        let keys = KeySet::new(signature.algorithm, signature.key, texts)
            .with_context(|| format!("provider {}", preset.name))?;
        Self::with_keys(preset, keys, ed25519_keys, tolerance_secs, public_url)
    }

    /// A JWKS preset (`key = "jwks"`) with its key cache.
    pub fn with_key_cache(preset: Arc<Preset>, cache: KeyCache, tolerance_secs: u64) -> Result<Self> {
        if preset.signature.key != KeyEncoding::Jwks {
            bail!("provider {} takes keys, not a JWKS", preset.name);
        }
        Self::with_keys(preset, KeySet::Jwks(cache), Vec::new(), tolerance_secs, None)
    }

    /// A certificate preset (`key = "certificate"`) with its certificate cache.
    pub fn with_certificates(
        preset: Arc<Preset>,
        cache: CertCache,
        tolerance_secs: u64,
        public_url: Option<&str>,
    ) -> Result<Self> {
        if preset.signature.key != KeyEncoding::Certificate {
            bail!("provider {} takes keys, not certificates", preset.name);
        }
        Self::with_keys(
            preset,
            KeySet::Certificates(cache),
            Vec::new(),
            tolerance_secs,
            public_url,
        )
    }

    fn with_keys(
        preset: Arc<Preset>,
        keys: KeySet,
        ed25519_keys: Vec<VerifyingKey>,
        tolerance_secs: u64,
        public_url: Option<&str>,
    ) -> Result<Self> {
        if preset.signs_url() && public_url.is_none() {
            bail!(
                "provider {} signs the URL it calls: set public_url on the route (the URL given to the provider, \
                 e.g. https://hooks.example.com/hooks/<route>), since a proxy in front changes scheme and host",
                preset.name
            );
        }
        let delivery_id = preset.delivery_id.as_ref().map(|spec| {
            let from = if spec.parts.is_empty() {
                DeliveryId::At(Place::new(&spec.source("delivery_id").expect("checked at parse")))
            } else {
                DeliveryId::Parts(spec.parts.iter().map(Built::new).collect())
            };
            (from, spec.sha256)
        });
        Ok(Self {
            name: leak(&preset.name),
            parts: preset.signature.message.iter().map(Built::new).collect(),
            signature_at: Place::new(&preset.signature_source()),
            timestamp_at: preset.timestamp_source().as_ref().map(Place::new),
            delivery_id,
            body_hash: preset.body_hash.as_ref().map(|b| leak(&b.query)),
            public_url: public_url.map(str::to_string),
            version_at: preset
                .signature
                .version
                .as_ref()
                .map(|v| Place::new(&v.source("version").expect("checked at parse"))),
            certificate_at: preset
                .certificate
                .as_ref()
                .map(|c| Place::new(&c.source("certificate").expect("checked at parse"))),
            preset,
            keys,
            ed25519_keys,
            tolerance_secs,
        })
    }

    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    /// The JWKS key cache, for a JWKS preset.
    pub fn key_cache(&self) -> Option<&KeyCache> {
        match &self.keys {
            KeySet::Jwks(cache) => Some(cache),
            _ => None,
        }
    }

    fn bad(&self) -> Rejection {
        Rejection::BadEncoding(self.signature_at.name())
    }

    /// A signature's bytes, or none when it does not decode to a signature of the algorithm.
    fn decode(&self, text: &str) -> Option<Vec<u8>> {
        let signature = &self.preset.signature;
        let bytes = match signature.algorithm {
            Algorithm::Token => Some(text.as_bytes().to_vec()),
            Algorithm::Basic => STANDARD.decode(text).ok(),
            _ => match signature.encoding {
                Encoding::Hex => hex::decode(text).ok(),
                Encoding::Base64 => STANDARD.decode(text).ok(),
                Encoding::Base64url => URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok(),
            },
        }?;
        let fits = signature_len(signature.algorithm).is_none_or(|len| bytes.len() == len);
        fits.then_some(bytes)
    }

    /// The timestamp as sent, checked against the clock where the preset says.
    fn checked_time<'v>(
        &self,
        sent: Cow<'v, str>,
        request: &Request<'_>,
    ) -> Result<(Cow<'v, str>, i64), Rejection> {
        let (unit, checked) = self
            .preset
            .timestamp
            .as_ref()
            .map_or((TimeUnit::Seconds, true), |spec| (spec.unit, spec.checked));
        let source = self.timestamp_at.unwrap_or(self.signature_at).name();
        let unix = unix_seconds(&sent, unit).ok_or(Rejection::BadEncoding(source))?;
        if checked && request.now_unix.abs_diff(unix) > self.tolerance_secs {
            return Err(Rejection::TimestampOutOfRange {
                tolerance_secs: self.tolerance_secs,
            });
        }
        Ok((sent, unix))
    }

    /// The signatures and the timestamp, as the preset reads them.
    fn written<'v>(&self, value: &'v str, reader: &'v Reader<'_>) -> Result<Written<'v>, Rejection> {
        let signature = &self.preset.signature;
        let request = reader.request;
        if signature.jws.is_some() {
            let token = value.strip_prefix(signature.prefix.as_str()).ok_or(self.bad())?;
            return self.jws(token.trim(), request);
        }
        let Some(list) = &signature.list else {
            let one = value.strip_prefix(signature.prefix.as_str()).ok_or(self.bad())?;
            let timestamp = match self.timestamp_at {
                Some(place) => Some(self.checked_time(reader.value(place)?, request)?),
                None => None,
            };
            return Ok(Written {
                signatures: vec![self.decode(one.trim()).ok_or(self.bad())?],
                ed25519: Vec::new(),
                timestamp,
                jws: None,
            });
        };
        let entries: Vec<(&str, &str)> = value
            .split(list.separator.as_str())
            .filter_map(|entry| entry.trim().split_once(list.assign.as_str()))
            .map(|(key, value)| (key.trim(), value.trim()))
            .collect();
        let signatures: Vec<Vec<u8>> = named(&entries, &list.signature)
            .filter_map(|v| self.decode(v))
            .collect();
        let ed25519: Vec<Vec<u8>> = match &list.ed25519 {
            Some(name) => named(&entries, name)
                .filter_map(|v| STANDARD.decode(v).ok().filter(|b| b.len() == 64))
                .collect(),
            None => Vec::new(),
        };
        if signatures.is_empty() && ed25519.is_empty() {
            return Err(self.bad());
        }
        let sent = match (&list.timestamp, self.timestamp_at) {
            (Some(name), _) => {
                let mut found = named(&entries, name);
                match (found.next(), found.next()) {
                    (Some(one), None) => Some(Cow::Borrowed(one)),
                    _ => return Err(self.bad()),
                }
            }
            (None, Some(place)) => Some(reader.value(place)?),
            (None, None) => None,
        };
        let timestamp = match sent {
            Some(sent) => Some(self.checked_time(sent, request)?),
            None => None,
        };
        Ok(Written {
            signatures,
            ed25519,
            timestamp,
            jws: None,
        })
    }

    /// A compact JWS: its JOSE header must name the preset's `alg`; its
    /// claims are read (and the time claim checked) here, the rest of them
    /// once the signature verified.
    fn jws<'v>(&self, token: &str, request: &Request<'_>) -> Result<Written<'v>, Rejection> {
        let spec = self.preset.signature.jws.as_ref().expect("a JWS preset");
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(self.bad());
        };
        let json = |part: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?).ok()
        };
        let (Some(jose), Some(claims_json)) = (json(header), json(claims)) else {
            return Err(self.bad());
        };
        if jose.get("alg").and_then(|a| a.as_str()) != Some(spec.alg.as_str()) {
            return Err(self.bad());
        }
        let timestamp = match &spec.time_claim {
            Some(name) => {
                let sent = claims_json.get(name).map(|v| v.to_string()).ok_or(self.bad())?;
                Some(self.checked_time(Cow::Owned(sent), request)?)
            }
            None => None,
        };
        Ok(Written {
            signatures: vec![self.decode(signature).ok_or(self.bad())?],
            ed25519: Vec::new(),
            timestamp,
            jws: Some((format!("{header}.{claims}").into_bytes(), claims_json)),
        })
    }

    /// Whether a verified JWS's claims are the ones the preset requires.
    fn claims_hold(&self, claims: &serde_json::Value, body: &[u8]) -> bool {
        let Some(spec) = &self.preset.signature.jws else {
            return true;
        };
        let claim = |name: &str| claims.get(name).and_then(|v| v.as_str());
        spec.claims
            .iter()
            .all(|(name, value)| claim(name) == Some(value.as_str()))
            && spec.body_sha256_claim.as_ref().is_none_or(|name| {
                claim(name).is_some_and(|h| {
                    signature_matches(h.to_ascii_lowercase().as_bytes(), sha256_hex(body).as_bytes())
                })
            })
    }

    /// Whether the route's keys signed `message`; for JWKS keys, after one
    /// refresh if the cached ones do not (a rotation), and a retryable
    /// answer when the rate limit holds that refresh back for a request
    /// signed after the keys were fetched.
    async fn signed(
        &self,
        pieces: &[&[u8]],
        written: &Written<'_>,
        signed_at: i64,
        reader: &Reader<'_>,
    ) -> Result<bool, Rejection> {
        if let KeySet::Certificates(cache) = &self.keys {
            return self
                .signed_by_certificate(cache, &pieces.concat(), written, reader)
                .await;
        }
        let KeySet::Jwks(cache) = &self.keys else {
            return Ok(self.keys.matches(pieces, &written.signatures)
                || (!written.ed25519.is_empty() && {
                    let message = pieces.concat();
                    written
                        .ed25519
                        .iter()
                        .any(|s| ed25519_verifies(&self.ed25519_keys, &message, s))
                }));
        };
        let message = &pieces.concat();
        let verifies = |keys: &[VerifyingKey]| {
            written
                .signatures
                .iter()
                .any(|s| ed25519_verifies(keys, message, s))
        };
        let keys = cache.keys().await.ok_or(Rejection::KeysUnavailable)?;
        if verifies(&keys.keys) {
            return Ok(true);
        }
        match cache.refresh_after_failure(&keys).await {
            Ok(fresh) => Ok(fresh.is_some_and(|set| verifies(&set.keys))),
            Err(wait) if signed_at > keys.fetched_at_unix => Err(Rejection::KeysRefreshing {
                retry_after_secs: wait.as_secs().max(1),
            }),
            Err(_) => Ok(false),
        }
    }

    /// Whether the certificate the request names signed `message`, by the
    /// algorithm the request names (or the preset's).
    async fn signed_by_certificate(
        &self,
        cache: &CertCache,
        message: &[u8],
        written: &Written<'_>,
        reader: &Reader<'_>,
    ) -> Result<bool, Rejection> {
        let algorithm = match (self.version_at, &self.preset.signature.version) {
            (Some(place), Some(spec)) => {
                let value = reader.value(place)?;
                *spec
                    .algorithms
                    .get(value.trim())
                    .ok_or(Rejection::BadEncoding(place.name()))?
            }
            _ => self.preset.signature.algorithm,
        };
        let place = self
            .certificate_at
            .expect("a certificate preset locates its certificate");
        let url = reader.value(place)?;
        let spki = match cache.key(&url).await {
            Ok(spki) => spki,
            Err(CertError::NotAllowed) => return Err(Rejection::BadEncoding(place.name())),
            Err(CertError::Invalid) => return Ok(false),
            Err(CertError::Unavailable) => return Err(Rejection::KeysUnavailable),
        };
        let Ok(key) = aws_lc_rs::signature::ParsedPublicKey::new(verification(algorithm), spki.as_slice())
        else {
            return Ok(false);
        };
        Ok(written
            .signatures
            .iter()
            .any(|s| key.verify_sig(message, s).is_ok()))
    }

    fn delivery_id(&self, reader: &Reader<'_>) -> Option<String> {
        let (from, sha256) = self.delivery_id.as_ref()?;
        let id = match from {
            DeliveryId::At(place) => reader.value(*place).ok()?.into_owned(),
            DeliveryId::Parts(parts) => {
                String::from_utf8_lossy(&reader.message(parts, None, None).ok()?).into_owned()
            }
        };
        if id.is_empty() {
            return None;
        }
        Some(if *sha256 { sha256_hex(id.as_bytes()) } else { id })
    }
}

/// Where a certificate preset may fetch from.
pub fn certificate_policy(preset: &Preset) -> CertPolicy {
    let spec = preset.certificate.as_ref();
    CertPolicy {
        hosts: spec.map(|c| c.hosts.clone()).unwrap_or_default(),
        allow_http: spec.is_some_and(|c| c.allow_http),
    }
}

/// The values of a list's entries named `name`.
fn named<'v, 'e>(entries: &'e [(&'v str, &'v str)], name: &'e str) -> impl Iterator<Item = &'v str> + 'e {
    entries.iter().filter(move |(k, _)| *k == name).map(|(_, v)| *v)
}

#[async_trait::async_trait]
impl Scheme for Declarative {
    fn name(&self) -> &'static str {
        self.name
    }

    fn fetched_keys(&self) -> Option<super::scheme::KeyStatus> {
        self.key_cache().map(KeyCache::status)
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let reader = Reader::new(request);
        let value = reader.value(self.signature_at)?;
        let written = self.written(value.trim(), &reader)?;
        if let Some(query) = self.body_hash
            && let Some(claimed) = super::template::query_param(request.query, query)
            && !signature_matches(
                sha256_hex(request.body).as_bytes(),
                claimed.to_ascii_lowercase().as_bytes(),
            )
        {
            return Err(Rejection::NoMatchingSignature);
        }
        let timestamp = written.timestamp.as_ref().map(|(sent, _)| sent.as_ref());
        let pieces: Vec<Cow<'_, [u8]>> = if let Some((input, _)) = &written.jws {
            vec![Cow::Borrowed(input.as_slice())]
        } else if self.preset.signature.algorithm.signs() {
            reader.message_parts(&self.parts, timestamp, self.public_url.as_deref())?
        } else {
            Vec::new()
        };
        let pieces: Vec<&[u8]> = pieces.iter().map(|p| p.as_ref()).collect();
        let signed_at = written
            .timestamp
            .as_ref()
            .map_or(request.now_unix, |(_, unix)| *unix);
        if !self.signed(&pieces, &written, signed_at, &reader).await? {
            return Err(Rejection::NoMatchingSignature);
        }
        if let Some((_, claims)) = &written.jws
            && !self.claims_hold(claims, request.body)
        {
            return Err(Rejection::NoMatchingSignature);
        }
        Ok(Verified {
            delivery_id: self.delivery_id(&reader),
        })
    }
}

#[cfg(test)]
#[path = "declarative_tests.rs"]
pub(crate) mod tests;
