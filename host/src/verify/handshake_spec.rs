//! Handshakes: the requests a provider sends to prove an endpoint before
//! (or between) deliveries — Slack's `url_verification`, Discord's PING,
//! Zoom's URL validation, Meta's `hub.challenge`, … — declared by a preset
//! as data and answered at once, without storing an event.
//!
//! ```toml
//! [[handshake]]
//! name = "endpoint.url_validation"
//! method = "POST"                     # the default; GET and HEAD too
//! when = [{ json = "/event", equals = "endpoint.url_validation" }]
//! signed = true                       # verified like an event first (the default)
//! [handshake.answer]
//! status = 200
//! content_type = "application/json"
//! json = { plainToken = { json = "/payload/plainToken" }, encryptedToken = { json = "/payload/plainToken", hmac = "hex" } }
//! [handshake.example]                 # a request as the provider's documentation shows it
//! body = '{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}'
//! ```
//!
//! A request is a handshake when its method and every `when` condition
//! match (a value present, or equal to `equals`). A condition with
//! `token = true` compares the value with the route's handshake token
//! (Meta's verify token): a mismatch answers 403. The answer is a body made
//! of values (`body = [...]`, concatenated) or a JSON object of string
//! values (`json = { … }`); a value is a header, body field or query
//! parameter of the request, a literal, or one of those HMAC'd with the
//! route's key. `confirm` makes the host GET a URL the request names (AWS
//! SNS's `SubscribeURL`), from allow-listed hosts only, through the
//! outbound guard.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::located::Located;
use super::scheme::Encoding;

/// One handshake a preset declares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeSpec {
    /// What the provider calls it (`url_verification`, `PING`, …).
    pub name: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub when: Vec<Condition>,
    /// Whether the request must verify as an event would (the provider signs it).
    #[serde(default = "yes")]
    pub signed: bool,
    #[serde(default)]
    pub answer: AnswerSpec,
    #[serde(default)]
    pub confirm: Option<ConfirmSpec>,
    /// A request as the provider's documentation shows it: `send
    /// --handshake` sends it, the tests answer it.
    #[serde(default)]
    pub example: Example,
}

fn post() -> String {
    "POST".into()
}

fn yes() -> bool {
    true
}

fn ok() -> u16 {
    200
}

/// A value of the request the handshake is recognised by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// The value it must have (a JSON number as written, e.g. `"1"`).
    #[serde(default)]
    pub equals: Option<String>,
    /// The value must be the route's handshake token; a mismatch is 403.
    #[serde(default)]
    pub token: bool,
}

/// What the host answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, ValueSpec>,
    /// The body, value after value.
    #[serde(default)]
    pub body: Vec<ValueSpec>,
    /// Or a JSON object of string values.
    #[serde(default)]
    pub json: BTreeMap<String, ValueSpec>,
}

impl Default for AnswerSpec {
    fn default() -> Self {
        Self {
            status: ok(),
            content_type: None,
            headers: BTreeMap::new(),
            body: Vec::new(),
            json: BTreeMap::new(),
        }
    }
}

/// One value of an answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub literal: Option<String>,
    /// The value's HMAC with the route's key (the preset's algorithm), so encoded.
    #[serde(default)]
    pub hmac: Option<Encoding>,
}

/// A URL the request names that the host must GET to confirm (AWS SNS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// Host patterns it may point at (`*` is one DNS label).
    pub hosts: Vec<String>,
    /// Plain `http` (tests on loopback); `https` only by default.
    #[serde(default)]
    pub allow_http: bool,
    /// Loopback and private addresses (tests); public ones only by default.
    #[serde(default)]
    pub allow_private: bool,
}

/// A handshake request as documented.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub content_type: Option<String>,
}

macro_rules! located {
    ($($spec:ty),*) => {$(
        impl Located for $spec {
            fn places(&self) -> (&Option<String>, &Option<String>, &Option<String>) {
                (&self.header, &self.json, &self.query)
            }
        }
    )*};
}
located!(Condition, ValueSpec, ConfirmSpec);

impl HandshakeSpec {
    /// Checks what serde cannot; `hmac_ok` says whether the declaring
    /// preset's algorithm is an HMAC (the key an `hmac` value uses).
    pub fn check(&self, hmac_ok: bool) -> Result<()> {
        let what = format!("handshake {:?}", self.name);
        if !matches!(self.method.as_str(), "GET" | "HEAD" | "POST") {
            bail!("{what}: method must be GET, HEAD or POST");
        }
        for condition in &self.when {
            condition.source(&what)?;
            if condition.token && condition.equals.is_some() {
                bail!("{what}: a condition compares with `equals` or the route's `token`, not both");
            }
        }
        let answer = &self.answer;
        if !(100..600).contains(&answer.status) {
            bail!("{what}: status {} is not an HTTP status", answer.status);
        }
        if !answer.body.is_empty() && !answer.json.is_empty() {
            bail!("{what}: the answer has a body or a json object, not both");
        }
        for name in answer.headers.keys() {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                bail!("{what}: {name:?} is not a header name");
            }
        }
        for value in answer
            .headers
            .values()
            .chain(&answer.body)
            .chain(answer.json.values())
        {
            value.check(&what)?;
            if value.hmac.is_some() && !hmac_ok {
                bail!("{what}: an hmac value needs an HMAC preset");
            }
        }
        if let Some(confirm) = &self.confirm {
            confirm.source(&what)?;
            if confirm.hosts.is_empty() {
                bail!("{what}: confirm needs the hosts its URL may point at");
            }
        }
        Ok(())
    }
}

impl ValueSpec {
    fn check(&self, what: &str) -> Result<()> {
        match (&self.literal, self.source(what)) {
            (Some(_), Ok(_)) => bail!("{what}: a value is a literal or a place, not both"),
            (Some(_), Err(_)) if self.hmac.is_some() => bail!("{what}: hmac takes a place"),
            (Some(_), Err(_)) | (None, Ok(_)) => Ok(()),
            (None, Err(e)) => Err(e),
        }
    }
}
