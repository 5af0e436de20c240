//! Where a value is in a request — a header, a body field (JSON pointer) or
//! a query parameter — as every preset table that locates one says it.

use anyhow::{Result, bail};
use serde::Deserialize;

/// A located value, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(String),
    Json(String),
    Query(String),
}

/// A spec saying where a value is in the request: `header = "…"`,
/// `json = "/pointer"` (a JSON pointer into the body) or `query = "…"`;
/// exactly one.
pub trait Located {
    fn places(&self) -> (&Option<String>, &Option<String>, &Option<String>);

    /// The one place given, or why not.
    fn source(&self, what: &str) -> Result<Source> {
        match self.places() {
            (Some(h), None, None) => {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    bail!("{what}: {h:?} is not a header name");
                }
                Ok(Source::Header(h.clone()))
            }
            (None, Some(j), None) => {
                if !(j.is_empty() || j.starts_with('/')) {
                    bail!("{what}: the JSON pointer {j:?} must start with '/'");
                }
                Ok(Source::Json(j.clone()))
            }
            (None, None, Some(q)) => Ok(Source::Query(q.clone())),
            _ => bail!("{what}: say where it is with exactly one of header, json or query"),
        }
    }
}

/// Where a request names its signing certificate, and where it may come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    /// Host patterns the certificate may be fetched from (`*` is one DNS label).
    pub hosts: Vec<String>,
    /// Allow plain `http` (tests on loopback); `https` only by default.
    #[serde(default)]
    pub allow_http: bool,
}
