//! A provider preset: a signature scheme written as data (TOML), so that a
//! provider the host has never heard of is a file, not host code.
//!
//! ```toml
//! name = "slack"
//! docs = "https://api.slack.com/authentication/verifying-requests-from-slack"
//! [signature]
//! algorithm = "hmac-sha256"      # hmac-sha256 | hmac-sha512 | token
//! key = "raw"                    # how a route's secret becomes key bytes: raw | hex | base64
//! header = "X-Slack-Signature"
//! prefix = "v0="                 # written before the signature
//! encoding = "hex"               # hex | base64
//! message = [{ literal = "v0:" }, { header = "X-Slack-Request-Timestamp" }, { literal = ":" }, "body"]
//! [timestamp]
//! header = "X-Slack-Request-Timestamp"   # Unix seconds, within the route's tolerance
//! [delivery_id]
//! header = "X-Slack-Retry-Num"           # optional: the sender's id for de-duplication
//! ```
//!
//! A `token` preset compares the header's value with the route's secret
//! (constant-time) and signs nothing. Parsing checks every part, so a broken
//! preset is refused by name before any request meets it.

use anyhow::{Result, bail};
use serde::Deserialize;

/// One provider's scheme.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The name routes use: `verify = [{ provider = "<name>", … }]`.
    pub name: String,
    /// The provider's own documentation of its signatures.
    pub docs: String,
    pub signature: SignatureSpec,
    #[serde(default)]
    pub timestamp: Option<TimestampSpec>,
    #[serde(default)]
    pub delivery_id: Option<DeliveryIdSpec>,
}

/// How the signature is made and where it is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    pub algorithm: Algorithm,
    #[serde(default)]
    pub key: KeyEncoding,
    /// The header carrying the signature (or the token).
    pub header: String,
    /// Written before the encoded signature, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// When the header is a list of `key=value` entries (`t=…,v1=…`): which
    /// keys hold the signatures and the timestamp. The prefix is unused then.
    #[serde(default)]
    pub list: Option<ListSpec>,
    /// The signed message, part after part; the raw body by default.
    #[serde(default = "body_only")]
    pub message: Vec<Part>,
}

fn body_only() -> Vec<Part> {
    vec![Part::Body]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    HmacSha256,
    HmacSha512,
    /// The header holds the route's secret itself.
    Token,
}

/// How a route's secret becomes the key's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEncoding {
    /// Its UTF-8 bytes, as written.
    #[default]
    Raw,
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// One part of the signed message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PartSpec")]
pub enum Part {
    /// The raw body bytes.
    Body,
    /// The timestamp as sent (from the list or the timestamp header).
    Timestamp,
    /// A header's value, as received.
    Header(String),
    Literal(String),
}

/// How a part is written in TOML: `"body"`, `{ header = "…" }`, `{ literal = "…" }`.
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum PartSpec {
    Word(String),
    Header { header: String },
    Literal { literal: String },
}

impl TryFrom<PartSpec> for Part {
    type Error = String;

    fn try_from(spec: PartSpec) -> Result<Self, String> {
        match spec {
            PartSpec::Word(word) if word == "body" => Ok(Part::Body),
            PartSpec::Word(word) if word == "timestamp" => Ok(Part::Timestamp),
            PartSpec::Word(word) => Err(format!(
                "message part {word:?}: write \"body\", \"timestamp\", {{ header = \"…\" }} or {{ literal = \"…\" }}"
            )),
            PartSpec::Header { header } => Ok(Part::Header(header)),
            PartSpec::Literal { literal } => Ok(Part::Literal(literal)),
        }
    }
}

/// A signature header written as a list: `t=1591664030,v1=<hex>,v1=<hex>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// Between entries: `,` (Stripe, Mux, Calendly) or `;` (Paddle).
    pub separator: String,
    /// The key of each signature entry (several are accepted: rotation).
    pub signature: String,
    /// The key of the timestamp entry (Unix seconds), checked against the
    /// route's tolerance and usable as the `"timestamp"` message part.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// Where the signed timestamp is (Unix seconds), checked against the route's tolerance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSpec {
    pub header: String,
}

/// Where the sender's delivery id is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryIdSpec {
    pub header: String,
}

impl Preset {
    /// Reads and checks a preset file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let preset: Preset = toml::from_str(text)?;
        let name_ok = !preset.name.is_empty()
            && preset
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            bail!(
                "provider name {:?} must be lowercase letters, digits or '-'",
                preset.name
            );
        }
        let headers = std::iter::once(&preset.signature.header)
            .chain(preset.signature.message.iter().filter_map(|p| match p {
                Part::Header(h) => Some(h),
                _ => None,
            }))
            .chain(preset.timestamp.iter().map(|t| &t.header))
            .chain(preset.delivery_id.iter().map(|d| &d.header));
        for header in headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                bail!("provider {}: {header:?} is not a header name", preset.name);
            }
        }
        let listed_timestamp = preset
            .signature
            .list
            .as_ref()
            .is_some_and(|l| l.timestamp.is_some());
        if listed_timestamp && preset.timestamp.is_some() {
            bail!(
                "provider {}: the timestamp comes from the list or from a header, not both",
                preset.name
            );
        }
        if preset.signature.message.contains(&Part::Timestamp)
            && !listed_timestamp
            && preset.timestamp.is_none()
        {
            bail!(
                "provider {}: the message signs a timestamp the preset does not locate",
                preset.name
            );
        }
        if preset
            .signature
            .list
            .as_ref()
            .is_some_and(|l| l.separator.is_empty() || l.signature.is_empty())
        {
            bail!(
                "provider {}: a list needs a separator and a signature key",
                preset.name
            );
        }
        if preset.signature.algorithm == Algorithm::Token && preset.signature.message != body_only() {
            bail!(
                "provider {}: a token is compared as sent; it signs no message",
                preset.name
            );
        }
        Ok(preset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_broken_presets_are_named() {
        let ok = "name = \"p\"\ndocs = \"https://x\"\n[signature]\nalgorithm = \"hmac-sha256\"\nheader = \"X-Sig\"\n\
                  message = [{ literal = \"v0:\" }, { header = \"X-Ts\" }, \"body\"]\n";
        let preset = Preset::parse(ok).unwrap();
        assert_eq!(
            preset.signature.message,
            [
                Part::Literal("v0:".into()),
                Part::Header("X-Ts".into()),
                Part::Body
            ]
        );
        let listed = ok.replace(
            "header = \"X-Sig\"",
            "header = \"X-Sig\"\nlist = { separator = \",\", signature = \"v1\" }",
        );
        let err = Preset::parse(&listed.replace("\"body\"", "\"timestamp\"")).unwrap_err();
        assert!(err.to_string().contains("does not locate"), "{err}");
        for (bad, named) in [
            (ok.replace("\"body\"", "\"bdy\""), "bdy"),
            (ok.replace("hmac-sha256", "rot13"), "rot13"),
            (ok.replace("X-Sig", "X Sig"), "X Sig"),
            (ok.replace("name = \"p\"", "name = \"P!\""), "P!"),
            (ok.replace("[signature]", "colour = 1\n[signature]"), "colour"),
        ] {
            let err = format!("{:#}", Preset::parse(&bad).unwrap_err());
            assert!(err.contains(named), "{err}");
        }
    }
}
