//! Answering the handshakes presets declare ([`super::handshake_spec`]):
//! each built once per route with the route's key and token, matched
//! against a request, and the answer written from it.

use std::collections::BTreeMap;

use anyhow::Result;

use super::handshake_spec::{ConfirmSpec, ValueSpec};
use super::keys::{self, MacKey};
use super::preset::{Encoding, Located, Preset};
use super::scheme::{Request, signature_matches};
use super::template::{Place, Reader, leak};
use crate::config::Secret;

/// A value, names ready.
#[derive(Debug)]
enum Value {
    At(Place),
    Literal(String),
    Hmac(Place, Encoding),
}

impl Value {
    fn new(spec: &ValueSpec) -> Self {
        match (&spec.literal, spec.source("value")) {
            (Some(text), _) => Value::Literal(text.clone()),
            (None, Ok(source)) => match spec.hmac {
                Some(encoding) => Value::Hmac(Place::new(&source), encoding),
                None => Value::At(Place::new(&source)),
            },
            (None, Err(_)) => unreachable!("checked when the preset was read"),
        }
    }
}

/// Why a request that is a handshake is not answered as one asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A `token` condition's value is not the route's handshake token.
    #[error("the handshake's {0} is not this route's handshake token")]
    WrongToken(&'static str),
    /// The route has no handshake token to compare with.
    #[error("this route has no handshake token (handshake_token_env) to compare the handshake's {0} with")]
    NoToken(&'static str),
    /// The answer needs a value the request does not carry.
    #[error("the handshake has no {0}")]
    Missing(&'static str),
}

/// A handshake of one route: its preset's spec with the route's key and token.
pub struct Handshake {
    pub name: &'static str,
    pub provider: &'static str,
    pub method: http::Method,
    pub signed: bool,
    select: Vec<(Place, Option<String>)>,
    tokens: Vec<Place>,
    status: u16,
    content_type: Option<String>,
    headers: Vec<(String, Value)>,
    body: Vec<Value>,
    json: Vec<(String, Value)>,
    confirm: Option<(Place, ConfirmSpec)>,
    key: Option<std::sync::Arc<MacKey>>,
    token: Option<Secret>,
}

/// A handshake's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A URL to GET before answering, allowed by the handshake's hosts.
    pub confirm: Option<Confirm>,
}

/// A confirmation to make.
#[derive(Debug, PartialEq, Eq)]
pub struct Confirm {
    pub url: String,
    pub allow_private: bool,
}

impl Handshake {
    /// The handshakes of `preset` on a route with `keys` (the first keys
    /// HMAC values) and its handshake `token`.
    pub fn build_all(preset: &Preset, keys: &[Secret], token: Option<&Secret>) -> Result<Vec<Self>> {
        let needs_token = preset.handshakes.iter().any(|h| h.when.iter().any(|c| c.token));
        if needs_token && token.is_none() {
            tracing::warn!(
                provider = %preset.name,
                "the route has no handshake token (handshake_token_env or handshake_token_file): \
                 the provider's verification handshake will be refused"
            );
        }
        let key = match keys.first() {
            Some(secret) if preset.signature.algorithm.is_hmac() => Some(std::sync::Arc::new(MacKey::new(
                preset.signature.algorithm,
                &keys::decode(preset.signature.key, secret.expose())?,
            ))),
            _ => None,
        };
        let provider = leak(&preset.name);
        let place = |located: &dyn Located| -> Place {
            Place::new(
                &located
                    .source("handshake")
                    .expect("checked when the preset was read"),
            )
        };
        preset
            .handshakes
            .iter()
            .map(|spec| {
                let values = |specs: &BTreeMap<String, ValueSpec>| -> Vec<(String, Value)> {
                    specs.iter().map(|(k, v)| (k.clone(), Value::new(v))).collect()
                };
                Ok(Self {
                    name: leak(&spec.name),
                    provider,
                    method: spec.method.parse()?,
                    signed: spec.signed,
                    select: spec
                        .when
                        .iter()
                        .filter(|c| !c.token)
                        .map(|c| (place(c), c.equals.clone()))
                        .collect(),
                    tokens: spec.when.iter().filter(|c| c.token).map(|c| place(c)).collect(),
                    status: spec.answer.status,
                    content_type: spec.answer.content_type.clone(),
                    headers: values(&spec.answer.headers),
                    body: spec.answer.body.iter().map(Value::new).collect(),
                    json: values(&spec.answer.json),
                    confirm: spec.confirm.as_ref().map(|c| (place(c), c.clone())),
                    key: key.clone(),
                    token: token.cloned(),
                })
            })
            .collect()
    }

    /// Whether `request` (with `method`) is this handshake.
    pub fn matches(&self, method: &http::Method, reader: &Reader<'_>) -> bool {
        let method_ok =
            *method == self.method || (self.method == http::Method::GET && *method == http::Method::HEAD);
        method_ok
            && self
                .select
                .iter()
                .all(|(place, equals)| match (reader.value(*place), equals) {
                    (Ok(value), Some(expected)) => *value == **expected,
                    (Ok(_), None) => true,
                    (Err(_), _) => false,
                })
    }

    /// The answer to `request`, which [`Self::matches`].
    pub fn answer(&self, request: &Request<'_>) -> Result<Answer, Refused> {
        let reader = Reader::new(request);
        for place in &self.tokens {
            let given = reader.value(*place).map_err(|_| Refused::Missing(place.name()))?;
            let token = self.token.as_ref().ok_or(Refused::NoToken(place.name()))?;
            if !signature_matches(given.as_bytes(), token.expose().as_bytes()) {
                return Err(Refused::WrongToken(place.name()));
            }
        }
        let value = |value: &Value| -> Result<String, Refused> {
            match value {
                Value::Literal(text) => Ok(text.clone()),
                Value::At(place) => Ok(reader
                    .value(*place)
                    .map_err(|_| Refused::Missing(place.name()))?
                    .into_owned()),
                Value::Hmac(place, encoding) => {
                    let text = reader.value(*place).map_err(|_| Refused::Missing(place.name()))?;
                    let key = self.key.as_ref().ok_or(Refused::Missing("key"))?;
                    Ok(encoding.encode(&key.tag(&[text.as_bytes()])))
                }
            }
        };
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        if let Some(content_type) = &self.content_type {
            headers.push(("content-type".to_string(), content_type.clone()));
        }
        for (name, v) in &self.headers {
            headers.push((name.clone(), value(v)?));
        }
        let body = if self.json.is_empty() {
            let mut body = Vec::new();
            for v in &self.body {
                body.extend_from_slice(value(v)?.as_bytes());
            }
            body
        } else {
            let mut object = serde_json::Map::new();
            for (name, v) in &self.json {
                object.insert(name.clone(), serde_json::Value::String(value(v)?));
            }
            serde_json::Value::Object(object).to_string().into_bytes()
        };
        let confirm = match &self.confirm {
            Some((place, spec)) => {
                let url = reader.value(*place).map_err(|_| Refused::Missing(place.name()))?;
                if !confirmable(spec, &url) {
                    return Err(Refused::Missing(place.name()));
                }
                Some(Confirm {
                    url: url.into_owned(),
                    allow_private: spec.allow_private,
                })
            }
            None => None,
        };
        Ok(Answer {
            status: self.status,
            headers,
            body,
            confirm,
        })
    }
}

/// Whether `url` is one `spec` lets the host GET.
fn confirmable(spec: &ConfirmSpec, url: &str) -> bool {
    super::certs::url_allowed(url, &spec.hosts, spec.allow_http)
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
