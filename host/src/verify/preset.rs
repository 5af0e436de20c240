//! A provider preset: a signature scheme written as data (TOML), so that a
//! provider the host has never heard of is a file, not host code.
//!
//! ```toml
//! name = "slack"
//! docs = "https://api.slack.com/authentication/verifying-requests-from-slack"
//! [signature]
//! algorithm = "hmac-sha256"      # see Algorithm
//! key = "raw"                    # how a route's secret becomes the key: see KeyEncoding
//! header = "X-Slack-Signature"   # or json = "/pointer" (in the body), or query = "name"
//! prefix = "v0="                 # written before the signature
//! encoding = "hex"               # hex | base64 | base64url
//! message = [{ literal = "v0:" }, "timestamp", { literal = ":" }, "body"]
//! [timestamp]
//! header = "X-Slack-Request-Timestamp"   # or json / query, or `list.timestamp`
//! unit = "seconds"                       # seconds | milliseconds | rfc3339
//! [delivery_id]
//! header = "X-Slack-Retry-Num"           # or json, or parts = [...]; sha256 = true hashes it
//! ```
//!
//! Message parts: `"body"`, `"timestamp"` (as sent), `"url"` (the route's
//! public URL and the request's query), `"method"`, `"form-sorted"` (form
//! fields sorted by name, each name then value), `{ header = … }`,
//! `{ json = "/pointer" }` (a body field), `{ query = … }`, `{ literal = … }`.
//! Parsing checks every part, so a broken preset is refused by name before
//! any request meets it.

use anyhow::Result;
use serde::Deserialize;

pub use super::handshake_spec::HandshakeSpec;
pub use super::located::{CertificateSpec, Located, Source};
pub use super::scheme::Encoding;

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
    /// A hash of the body the sender puts in a query parameter (Twilio's
    /// `bodySHA256`), checked when present.
    #[serde(default)]
    pub body_hash: Option<BodyHashSpec>,
    /// With `key = "certificate"`: where the request names its signing
    /// certificate's URL, and the hosts it may be fetched from.
    #[serde(default)]
    pub certificate: Option<CertificateSpec>,
    /// Requests that prove the endpoint, answered without storing an event
    /// (`[[handshake]]`, see [`super::handshake_spec`]).
    #[serde(default, rename = "handshake")]
    pub handshakes: Vec<HandshakeSpec>,
}

/// How the signature is made and where it is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    pub algorithm: Algorithm,
    #[serde(default)]
    pub key: KeyEncoding,
    /// Where the signature (or the token) is: one of header, json, query.
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// Written before the encoded signature, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// When the value is a list of entries (`t=…,v1=…`, `v1,<sig> v1,<sig>`):
    /// which entries hold the signatures and the timestamp.
    #[serde(default)]
    pub list: Option<ListSpec>,
    /// The signed message, part after part; the raw body by default.
    #[serde(default = "body_only")]
    pub message: Vec<Part>,
    /// With `key = "jwks"`: where the keys are published (a route may name others).
    #[serde(default)]
    pub jwks_urls: Vec<String>,
    /// When the value is a compact JWS (`header.claims.signature`): the
    /// signed message is `header.claims`, and the claims are checked.
    #[serde(default)]
    pub jws: Option<JwsSpec>,
    /// When a field of the request names the algorithm (AWS SNS's
    /// `SignatureVersion`): where it is and what each value means.
    #[serde(default)]
    pub version: Option<VersionSpec>,
}

/// A JWS signature: its JOSE `alg`, and the claims it must carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwsSpec {
    /// The `alg` the JOSE header must name (`HS256`, `ES256`, `EdDSA`, `RS256`).
    pub alg: String,
    /// Claims that must equal these strings (`iss = "netlify"`).
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
    /// The claim holding the body's hex SHA-256 (the body is bound through it).
    #[serde(default)]
    pub body_sha256_claim: Option<String>,
    /// The claim holding the signing time (Unix seconds), checked against
    /// the route's tolerance.
    #[serde(default)]
    pub time_claim: Option<String>,
}

/// A request's own choice of algorithm, among the preset's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// Value → algorithm, e.g. `{ "1" = "rsa-sha1", "2" = "rsa-sha256" }`.
    pub algorithms: std::collections::BTreeMap<String, Algorithm>,
}

fn body_only() -> Vec<Part> {
    vec![Part::Body]
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
located!(
    SignatureSpec,
    TimestampSpec,
    DeliveryIdSpec,
    VersionSpec,
    CertificateSpec
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
    HmacSha512,
    /// Ed25519 with the sender's public key.
    Ed25519,
    /// ECDSA over P-256 with SHA-256, the signature DER-encoded.
    EcdsaP256Sha256,
    /// The same, the signature written as r‖s (64 bytes), as JWS (ES256) writes it.
    EcdsaP256Sha256Fixed,
    /// RSA PKCS#1 v1.5 with the sender's public key.
    RsaSha256,
    RsaSha1,
    /// The value is the route's secret itself, compared in constant time.
    Token,
    /// HTTP Basic credentials: the route's secret is `user:password`.
    Basic,
}

impl Algorithm {
    /// The name presets write.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "hmac-sha1",
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::EcdsaP256Sha256Fixed => "ecdsa-p256-sha256-fixed",
            Self::RsaSha256 => "rsa-sha256",
            Self::RsaSha1 => "rsa-sha1",
            Self::Token => "token",
            Self::Basic => "basic",
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HmacSha1 | Self::HmacSha256 | Self::HmacSha512)
    }

    pub fn is_public_key(self) -> bool {
        matches!(
            self,
            Self::Ed25519
                | Self::EcdsaP256Sha256
                | Self::EcdsaP256Sha256Fixed
                | Self::RsaSha256
                | Self::RsaSha1
        )
    }

    /// Whether a message is signed (a token or Basic credentials are compared as sent).
    pub fn signs(self) -> bool {
        !matches!(self, Self::Token | Self::Basic)
    }
}

/// How a route's secret (or public key) becomes the key's bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEncoding {
    /// Its UTF-8 bytes, as written.
    #[default]
    Raw,
    Hex,
    Base64,
    /// `whsec_<base64>` (the prefix optional), as Standard Webhooks and Svix write it.
    Whsec,
    /// A PEM public key (`BEGIN PUBLIC KEY`).
    Pem,
    /// A public key as a JWK (`{"kty":"EC","crv":"P-256","x":…,"y":…}`, or
    /// OKP/Ed25519), as Plaid's key API returns it.
    Jwk,
    /// Ed25519 keys fetched from JWKS URLs (`signature.jwks_urls`, or the
    /// route's `jwks_urls`), cached in memory and on disk; the route gives no key.
    Jwks,
    /// The public key of an X.509 certificate whose URL the request names
    /// (`[certificate]`), fetched from an allow-listed host and kept.
    Certificate,
}

/// One part of a signed message (or of a delivery id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PartSpec")]
pub enum Part {
    /// The raw body bytes.
    Body,
    /// The hex SHA-256 of the raw body (FAL).
    BodySha256,
    /// The timestamp as sent.
    Timestamp,
    /// The route's public URL, with the request's query string.
    Url,
    /// The path of the route's public URL (Contentful).
    UrlPath,
    /// The request's method.
    Method,
    /// Form fields sorted by name, each name then its value (Twilio).
    FormSorted,
    /// A header's value, as received.
    Header(String),
    /// A body field (JSON pointer): a string as is, another value as JSON text.
    Json(String),
    /// A query parameter's value, decoded.
    Query(String),
    /// Body fields by name, each present one as `name\nvalue\n` (AWS SNS).
    JsonFields(Vec<String>),
    /// The headers a header of the request lists (comma-separated), those
    /// present, sorted, as `name:value` joined by `;`; the list header's own
    /// value written as the sorted names (Contentful).
    SignedHeaders(String),
    Literal(String),
}

/// How a part is written in TOML.
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum PartSpec {
    Word(String),
    Header { header: String },
    Json { json: String },
    Query { query: String },
    JsonFields { json_fields: Vec<String> },
    SignedHeaders { signed_headers: String },
    Literal { literal: String },
}

impl TryFrom<PartSpec> for Part {
    type Error = String;

    fn try_from(spec: PartSpec) -> Result<Self, String> {
        Ok(match spec {
            PartSpec::Word(word) => match word.as_str() {
                "body" => Part::Body,
                "body-sha256" => Part::BodySha256,
                "timestamp" => Part::Timestamp,
                "url" => Part::Url,
                "url-path" => Part::UrlPath,
                "method" => Part::Method,
                "form-sorted" => Part::FormSorted,
                _ => {
                    return Err(format!(
                        "message part {word:?}: write \"body\", \"body-sha256\", \"timestamp\", \"url\", \"url-path\", \"method\", \
                         \"form-sorted\", {{ header = … }}, {{ json = … }}, {{ query = … }} or {{ literal = … }}"
                    ));
                }
            },
            PartSpec::Header { header } => Part::Header(header),
            PartSpec::Json { json } => Part::Json(json),
            PartSpec::Query { query } => Part::Query(query),
            PartSpec::JsonFields { json_fields } => Part::JsonFields(json_fields),
            PartSpec::SignedHeaders { signed_headers } => {
                Part::SignedHeaders(signed_headers.to_ascii_lowercase())
            }
            PartSpec::Literal { literal } => Part::Literal(literal),
        })
    }
}

/// A signature value written as a list of entries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    /// Between entries: `,` (Stripe, Mux), `;` (Paddle), `" "` (Standard Webhooks).
    pub separator: String,
    /// Between an entry's name and its value: `=` by default, `,` for Standard Webhooks.
    #[serde(default = "equals")]
    pub assign: String,
    /// The name of each signature entry (several are accepted: rotation).
    pub signature: String,
    /// The name of the timestamp entry, if the list carries it.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The name of entries signed with Ed25519 instead, verified with the
    /// route's `whpk_` keys (Standard Webhooks' `v1a`).
    #[serde(default)]
    pub ed25519: Option<String>,
}

fn equals() -> String {
    "=".into()
}

/// Where the signed timestamp is, and how it is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSpec {
    /// Header, body field or query parameter (none: the list's timestamp entry).
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub unit: TimeUnit,
    /// Checked against the route's tolerance (false: signed, but the
    /// provider documents no window).
    #[serde(default = "yes")]
    pub checked: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    #[default]
    Seconds,
    Milliseconds,
    /// `2023-04-11T10:11:12.123Z`.
    Rfc3339,
}

/// Where the sender's delivery id is: a located value, or parts joined.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryIdSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// Several parts joined instead of one located value.
    #[serde(default)]
    pub parts: Vec<Part>,
    /// The id is the hex SHA-256 of the value (long or composite ids).
    #[serde(default)]
    pub sha256: bool,
}

/// A query parameter holding the body's hex SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyHashSpec {
    pub query: String,
}

impl Preset {
    /// Reads and checks a preset file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let preset: Preset = toml::from_str(text)?;
        preset
            .check()
            .map_err(|e| anyhow::anyhow!("provider {}: {e}", preset.name))?;
        Ok(preset)
    }

    /// Where the signature is.
    pub fn signature_source(&self) -> Source {
        self.signature.source("signature").expect("checked at parse")
    }

    /// Where the timestamp is, when not in the list.
    pub fn timestamp_source(&self) -> Option<Source> {
        let spec = self.timestamp.as_ref()?;
        spec.source("timestamp").ok()
    }

    /// Whether the timestamp is an entry of the signature's list.
    pub fn listed_timestamp(&self) -> bool {
        self.signature
            .list
            .as_ref()
            .is_some_and(|l| l.timestamp.is_some())
    }

    /// Whether any part of the message needs the route's public URL.
    pub fn signs_url(&self) -> bool {
        self.signature
            .message
            .iter()
            .any(|p| matches!(p, Part::Url | Part::UrlPath))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_broken_presets_are_named() {
        let ok = "name = \"p\"\ndocs = \"https://x\"\n[signature]\nalgorithm = \"hmac-sha256\"\nheader = \"X-Sig\"\n\
                  message = [{ literal = \"v0:\" }, { header = \"X-Ts\" }, \"url\", { json = \"/a/0\" }, \"body\"]\n";
        let preset = Preset::parse(ok).unwrap();
        assert_eq!(
            preset.signature.message,
            [
                Part::Literal("v0:".into()),
                Part::Header("X-Ts".into()),
                Part::Url,
                Part::Json("/a/0".into()),
                Part::Body
            ]
        );
        assert_eq!(preset.signature_source(), Source::Header("X-Sig".into()));
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
            (ok.replace("name = \"p\"", "name = \"P!\""), "lowercase"),
            (ok.replace("[signature]", "colour = 1\n[signature]"), "colour"),
            (ok.replace("\"/a/0\"", "\"a/0\""), "must start with '/'"),
            (
                ok.replace("header = \"X-Sig\"", "header = \"X-Sig\"\njson = \"/sig\""),
                "exactly one",
            ),
            (ok.replace("header = \"X-Sig\"", ""), "exactly one"),
            (
                ok.replace("algorithm = \"hmac-sha256\"", "algorithm = \"ed25519\""),
                "does not fit",
            ),
            (
                ok.replace("algorithm = \"hmac-sha256\"", "algorithm = \"token\""),
                "sign no message",
            ),
        ] {
            let err = format!("{:#}", Preset::parse(&bad).unwrap_err());
            assert!(err.contains(named), "{named}: {err}");
        }
    }
}
