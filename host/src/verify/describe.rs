//! A preset described in a few lines, for `webhook-host providers show`.

use anyhow::Result;

use super::preset::{Located as _, Part, Preset, Source};

impl Preset {
    /// The preset in a few lines, for `providers show` (no secrets: a preset has none).
    pub fn describe(&self) -> String {
        let place = |s: Result<Source>| match s {
            Ok(Source::Header(h)) => format!("header {h}"),
            Ok(Source::Json(j)) => format!("body field {j}"),
            Ok(Source::Query(q)) => format!("query parameter {q}"),
            Err(_) => "the signature's list".into(),
        };
        let part = |p: &Part| match p {
            Part::Body => "body".to_string(),
            Part::BodySha256 => "hex SHA-256 of the body".into(),
            Part::Timestamp => "timestamp".into(),
            Part::Url => "public URL + query".into(),
            Part::UrlPath => "public URL's path".into(),
            Part::SignedHeaders(list) => format!("the headers {list} lists, sorted, name:value;…"),
            Part::Method => "method".into(),
            Part::FormSorted => "form fields sorted".into(),
            Part::Header(h) => format!("header {h}"),
            Part::Json(j) => format!("body field {j}"),
            Part::Query(q) => format!("query {q}"),
            Part::JsonFields(names) => format!("body fields {} as name\\nvalue\\n", names.join(", ")),
            Part::Literal(l) => format!("{l:?}"),
        };
        let s = &self.signature;
        let mut lines = vec![
            self.name.clone(),
            format!("  docs:        {}", self.docs),
            format!("  algorithm:   {}, key {:?}", s.algorithm.as_str(), s.key),
            format!(
                "  signature:   {}{}{}",
                place(s.source("signature")),
                if s.prefix.is_empty() {
                    String::new()
                } else {
                    format!(", after {:?}", s.prefix)
                },
                if s.algorithm.signs() {
                    format!(", {:?}", s.encoding)
                } else {
                    String::new()
                }
            ),
        ];
        if let Some(list) = &s.list {
            lines.push(format!(
                "  list:        entries split by {:?}, {:?} between name and value, signatures named {:?}{}",
                list.separator,
                list.assign,
                list.signature,
                list.timestamp
                    .as_ref()
                    .map(|t| format!(", timestamp named {t:?}"))
                    .unwrap_or_default()
            ));
        }
        if s.algorithm.signs() {
            let parts: Vec<String> = s.message.iter().map(part).collect();
            lines.push(format!("  signs:       {}", parts.join(" + ")));
        }
        if let Some(t) = &self.timestamp {
            lines.push(format!(
                "  timestamp:   {}, {:?}, {}",
                place(t.source("timestamp")),
                t.unit,
                if t.checked {
                    "checked against the route's tolerance"
                } else {
                    "signed, not checked"
                }
            ));
        } else if self.listed_timestamp() {
            lines.push("  timestamp:   in the list, seconds, checked against the route's tolerance".into());
        }
        if let Some(d) = &self.delivery_id {
            let from = if d.parts.is_empty() {
                place(d.source("delivery_id"))
            } else {
                d.parts.iter().map(part).collect::<Vec<_>>().join(" + ")
            };
            lines.push(format!(
                "  delivery id: {from}{}",
                if d.sha256 { " (sha256)" } else { "" }
            ));
        }
        if let Some(v) = &s.version {
            let choices: Vec<String> = v
                .algorithms
                .iter()
                .map(|(k, a)| format!("{k} = {}", a.as_str()))
                .collect();
            lines.push(format!(
                "  version:     {} chooses: {}",
                place(v.source("version")),
                choices.join(", ")
            ));
        }
        if let Some(c) = &self.certificate {
            lines.push(format!(
                "  certificate: URL in {}, fetched from {}",
                place(c.source("certificate")),
                c.hosts.join(", ")
            ));
        }
        if let Some(b) = &self.body_hash {
            lines.push(format!(
                "  body hash:   query parameter {} = hex SHA-256 of the body",
                b.query
            ));
        }
        for h in &self.handshakes {
            let when: Vec<String> = h
                .when
                .iter()
                .map(|c| {
                    let at = place(c.source("when"));
                    match (&c.equals, c.token) {
                        (Some(v), _) => format!("{at} = {v:?}"),
                        (None, true) => format!("{at} = the route's handshake token"),
                        (None, false) => format!("{at} present"),
                    }
                })
                .collect();
            lines.push(format!(
                "  handshake:   {} ({} {}{}): answered {}{}, nothing stored",
                h.name,
                h.method,
                if when.is_empty() {
                    "any request".to_string()
                } else {
                    when.join(", ")
                },
                if h.signed { ", signed" } else { ", unsigned" },
                h.answer.status,
                h.answer
                    .content_type
                    .as_ref()
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default(),
            ));
            if let Some(c) = &h.confirm {
                lines.push(format!(
                    "               then GETs the URL in {} (hosts {})",
                    place(c.source("confirm")),
                    c.hosts.join(", ")
                ));
            }
        }
        let url = if self.signs_url() {
            ", public_url = \"https://…/hooks/<route>\""
        } else {
            ""
        };
        lines.push(format!(
            "  route:       verify = [{{ provider = \"{}\", secret_env = \"…\" }}]{url}",
            self.name
        ));
        lines.join("\n")
    }
}
