//! The engine that runs a [`Preset`]: the signature (or token) read where
//! the preset says, the signed message assembled from its parts, checked
//! with each of the route's keys; the timestamp and the delivery id where
//! the preset names them.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::keys::KeySet;
use super::preset::{Algorithm, Encoding, Located as _, Preset, TimeUnit};
use super::scheme::{Rejection, Request, Scheme, Verified, sha256_hex, signature_matches};
use super::template::{Built, Place, Reader, leak, unix_seconds};
use crate::config::Secret;

/// A preset with a route's keys.
pub struct Declarative {
    preset: Arc<Preset>,
    keys: KeySet,
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
}

/// Where the delivery id comes from.
enum DeliveryId {
    At(Place),
    Parts(Vec<Built>),
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
        let keys = KeySet::new(
            signature.algorithm,
            signature.key,
            keys.iter().map(Secret::expose),
        )
        .with_context(|| format!("provider {}", preset.name))?;
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
            parts: signature.message.iter().map(Built::new).collect(),
            signature_at: Place::new(&preset.signature_source()),
            timestamp_at: preset.timestamp_source().as_ref().map(Place::new),
            delivery_id,
            body_hash: preset.body_hash.as_ref().map(|b| leak(&b.query)),
            public_url: public_url.map(str::to_string),
            preset,
            keys,
            tolerance_secs,
        })
    }

    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    /// The signatures as written, and the timestamp as sent.
    fn written<'v>(
        &self,
        value: &'v str,
        reader: &'v Reader<'_>,
    ) -> Result<(Vec<&'v str>, Option<std::borrow::Cow<'v, str>>), Rejection> {
        let name = self.signature_at.name();
        let signature = &self.preset.signature;
        let Some(list) = &signature.list else {
            let one = value
                .strip_prefix(signature.prefix.as_str())
                .ok_or(Rejection::BadEncoding(name))?;
            let timestamp = match self.timestamp_at {
                Some(place) => Some(reader.value(place)?),
                None => None,
            };
            return Ok((vec![one.trim()], timestamp));
        };
        let entries: Vec<(&str, &str)> = value
            .split(list.separator.as_str())
            .filter_map(|entry| entry.trim().split_once(list.assign.as_str()))
            .map(|(key, value)| (key.trim(), value.trim()))
            .collect();
        let signatures: Vec<&str> = entries
            .iter()
            .filter(|(key, _)| *key == list.signature)
            .map(|(_, value)| *value)
            .collect();
        if signatures.is_empty() {
            return Err(Rejection::BadEncoding(name));
        }
        let timestamp = match (&list.timestamp, self.timestamp_at) {
            (Some(key), _) => Some(std::borrow::Cow::Borrowed(
                entries
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, value)| *value)
                    .ok_or(Rejection::BadEncoding(name))?,
            )),
            (None, Some(place)) => Some(reader.value(place)?),
            (None, None) => None,
        };
        Ok((signatures, timestamp))
    }

    fn decode(&self, text: &str) -> Result<Vec<u8>, Rejection> {
        let signature = &self.preset.signature;
        let bad = || Rejection::BadEncoding(self.signature_at.name());
        match signature.algorithm {
            Algorithm::Token => Ok(text.as_bytes().to_vec()),
            Algorithm::Basic => STANDARD.decode(text).map_err(|_| bad()),
            _ => match signature.encoding {
                Encoding::Hex => hex::decode(text).map_err(|_| bad()),
                Encoding::Base64 => STANDARD.decode(text).map_err(|_| bad()),
                Encoding::Base64url => URL_SAFE_NO_PAD
                    .decode(text.trim_end_matches('='))
                    .map_err(|_| bad()),
            },
        }
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

#[async_trait::async_trait]
impl Scheme for Declarative {
    fn name(&self) -> &'static str {
        "provider"
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let reader = Reader::new(request);
        let value = reader.value(self.signature_at)?;
        let (encoded, timestamp) = self.written(value.trim(), &reader)?;
        if let Some(sent) = &timestamp {
            // A listed timestamp without a spec is Unix seconds, checked.
            let (unit, checked) = self
                .preset
                .timestamp
                .as_ref()
                .map_or((TimeUnit::Seconds, true), |spec| (spec.unit, spec.checked));
            let source = self.timestamp_at.unwrap_or(self.signature_at).name();
            let unix = unix_seconds(sent, unit).ok_or(Rejection::BadEncoding(source))?;
            if checked && request.now_unix.abs_diff(unix) > self.tolerance_secs {
                return Err(Rejection::TimestampOutOfRange {
                    tolerance_secs: self.tolerance_secs,
                });
            }
        }
        let given = encoded
            .iter()
            .map(|text| self.decode(text))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(query) = self.body_hash
            && let Some(claimed) = super::template::query_param(request.query, query)
            && !signature_matches(
                sha256_hex(request.body).as_bytes(),
                claimed.to_ascii_lowercase().as_bytes(),
            )
        {
            return Err(Rejection::NoMatchingSignature);
        }
        let message = if self.preset.signature.algorithm.signs() {
            reader.message(&self.parts, timestamp.as_deref(), self.public_url.as_deref())?
        } else {
            Vec::new()
        };
        if !self.keys.matches(&message, &given) {
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
