//! Reading a preset's values out of a request: where a value is (header,
//! body field, query parameter), the signed message assembled from its
//! parts, and timestamps in each unit. Names are prepared once when a route
//! is built (a rejection names its header or field), never per request.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::preset::{Part, Source, TimeUnit};
use super::scheme::{Rejection, Request};

/// A value's place, with its name ready for rejections.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    Header(&'static str),
    Json(&'static str),
    Query(&'static str),
}

/// A name that lives as long as the process: made when a route is built
/// (at start, or when a plugin declaring it is deployed), never per request.
pub fn leak(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

impl Place {
    pub fn new(source: &Source) -> Self {
        match source {
            Source::Header(h) => Place::Header(leak(&h.to_ascii_lowercase())),
            Source::Json(j) => Place::Json(leak(j)),
            Source::Query(q) => Place::Query(leak(q)),
        }
    }

    /// The name a rejection gives.
    pub fn name(self) -> &'static str {
        match self {
            Place::Header(n) | Place::Json(n) | Place::Query(n) => n,
        }
    }

    fn missing(self) -> Rejection {
        match self {
            Place::Header(n) => Rejection::MissingHeader(n),
            Place::Json(n) | Place::Query(n) => Rejection::MissingField(n),
        }
    }
}

/// A message part as the engine uses it.
#[derive(Debug)]
pub enum Built {
    Body,
    BodySha256,
    Timestamp,
    Url,
    UrlPath,
    Method,
    FormSorted,
    SignedHeaders(&'static str),
    At(Place),
    /// Body fields: each name with its JSON pointer.
    JsonFields(Vec<(String, &'static str)>),
    Literal(Vec<u8>),
}

impl Built {
    pub fn new(part: &Part) -> Self {
        match part {
            Part::Body => Built::Body,
            Part::BodySha256 => Built::BodySha256,
            Part::Timestamp => Built::Timestamp,
            Part::Url => Built::Url,
            Part::UrlPath => Built::UrlPath,
            Part::SignedHeaders(list) => Built::SignedHeaders(leak(list)),
            Part::Method => Built::Method,
            Part::FormSorted => Built::FormSorted,
            Part::Header(h) => Built::At(Place::new(&Source::Header(h.clone()))),
            Part::Json(j) => Built::At(Place::new(&Source::Json(j.clone()))),
            Part::Query(q) => Built::At(Place::new(&Source::Query(q.clone()))),
            Part::JsonFields(names) => Built::JsonFields(
                names
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            leak(&format!("/{}", n.replace('~', "~0").replace('/', "~1"))),
                        )
                    })
                    .collect(),
            ),
            Part::Literal(text) => Built::Literal(text.as_bytes().to_vec()),
        }
    }
}

/// One request, with its body's JSON parsed at most once and only when a
/// preset reads a field of it.
pub struct Reader<'r> {
    pub request: &'r Request<'r>,
    json: OnceLock<Option<serde_json::Value>>,
}

impl<'r> Reader<'r> {
    pub fn new(request: &'r Request<'r>) -> Self {
        Self {
            request,
            json: OnceLock::new(),
        }
    }

    /// The value at `place`, or the rejection naming it.
    pub fn value(&self, place: Place) -> Result<Cow<'_, str>, Rejection> {
        let found = match place {
            Place::Header(name) => match self.request.headers.get(name) {
                Some(v) => Some(Cow::Borrowed(
                    v.to_str().map_err(|_| Rejection::BadEncoding(name))?,
                )),
                None => None,
            },
            Place::Json(pointer) => self.json_field(pointer),
            Place::Query(name) => query_param(self.request.query, name).map(Cow::Owned),
        };
        found.ok_or(place.missing())
    }

    fn json_field(&self, pointer: &str) -> Option<Cow<'_, str>> {
        let json = self
            .json
            .get_or_init(|| serde_json::from_slice(self.request.body).ok())
            .as_ref()?;
        match json.pointer(pointer)? {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            serde_json::Value::Null => None,
            other => Some(Cow::Owned(other.to_string())),
        }
    }

    /// The message `parts` make of this request (`timestamp` as sent).
    pub fn message(
        &self,
        parts: &[Built],
        timestamp: Option<&str>,
        public_url: Option<&str>,
    ) -> Result<Vec<u8>, Rejection> {
        Ok(self.message_parts(parts, timestamp, public_url)?.concat())
    }

    /// The message as its pieces, the body and header values borrowed (an
    /// HMAC reads them in turn; nothing copies the body).
    pub fn message_parts<'m>(
        &'m self,
        parts: &'m [Built],
        timestamp: Option<&'m str>,
        public_url: Option<&str>,
    ) -> Result<Vec<Cow<'m, [u8]>>, Rejection> {
        let request = self.request;
        let mut message: Vec<Cow<'m, [u8]>> = Vec::with_capacity(parts.len() + 2);
        for part in parts {
            match part {
                Built::Body => message.push(Cow::Borrowed(request.body)),
                Built::BodySha256 => {
                    message.push(Cow::Owned(super::scheme::sha256_hex(request.body).into_bytes()))
                }
                Built::Timestamp => message.push(Cow::Borrowed(
                    timestamp.ok_or(Rejection::MissingField("timestamp"))?.as_bytes(),
                )),
                Built::Url => {
                    // Checked when the route is built: a preset signing the URL needs it.
                    let mut url = public_url.unwrap_or_default().as_bytes().to_vec();
                    if !request.query.is_empty() {
                        url.push(b'?');
                        url.extend_from_slice(request.query.as_bytes());
                    }
                    message.push(Cow::Owned(url));
                }
                Built::UrlPath => {
                    let path = public_url
                        .and_then(|u| url::Url::parse(u).ok())
                        .map(|u| u.path().to_string());
                    message.push(Cow::Owned(path.unwrap_or_default().into_bytes()));
                }
                Built::SignedHeaders(list) => {
                    message.push(Cow::Owned(signed_headers(request, list).into_bytes()))
                }
                Built::Method => message.push(Cow::Borrowed(request.method.as_bytes())),
                Built::FormSorted => {
                    let mut form = Vec::new();
                    for (name, value) in sorted_form(request) {
                        form.extend_from_slice(name.as_bytes());
                        form.extend_from_slice(value.as_bytes());
                    }
                    message.push(Cow::Owned(form));
                }
                Built::At(place) => message.push(match self.value(*place)? {
                    Cow::Borrowed(value) => Cow::Borrowed(value.as_bytes()),
                    Cow::Owned(value) => Cow::Owned(value.into_bytes()),
                }),
                Built::JsonFields(fields) => {
                    let mut lines = Vec::new();
                    for (name, pointer) in fields {
                        if let Some(value) = self.json_field(pointer) {
                            lines.extend_from_slice(name.as_bytes());
                            lines.push(b'\n');
                            lines.extend_from_slice(value.as_bytes());
                            lines.push(b'\n');
                        }
                    }
                    message.push(Cow::Owned(lines));
                }
                Built::Literal(bytes) => message.push(Cow::Borrowed(bytes)),
            }
        }
        Ok(message)
    }
}

/// The headers `list` names, those present, sorted, as `name:value` joined
/// by `;` (values trimmed); `list` itself as the sorted names, comma-joined.
fn signed_headers(request: &Request<'_>, list: &str) -> String {
    let listed = request
        .headers
        .get(list)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut names: Vec<&str> = listed
        .split(',')
        .filter(|name| !name.is_empty() && request.headers.contains_key(*name))
        .collect();
    names.sort_unstable();
    names.dedup();
    let joined = names.join(",");
    names
        .iter()
        .map(|name| {
            let value = if *name == list {
                joined.as_str()
            } else {
                request
                    .headers
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .trim()
            };
            format!("{name}:{value}")
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A query parameter's decoded value.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A form body's fields sorted by name (then value); none unless the body
/// is `application/x-www-form-urlencoded`.
pub fn sorted_form(request: &Request<'_>) -> Vec<(String, String)> {
    let is_form = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Vec::new();
    }
    let mut fields: Vec<(String, String)> = url::form_urlencoded::parse(request.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    fields.sort();
    fields
}

/// A timestamp as written, in Unix seconds.
pub fn unix_seconds(value: &str, unit: TimeUnit) -> Option<i64> {
    let value = value.trim();
    match unit {
        TimeUnit::Seconds => value.parse().ok(),
        TimeUnit::Milliseconds => value.parse::<i64>().ok().map(|ms| ms.div_euclid(1000)),
        TimeUnit::Rfc3339 => rfc3339_seconds(value),
    }
}

/// A timestamp written in `unit` for `unix` seconds (what a sender writes).
pub fn write_time(unix: i64, unit: TimeUnit) -> String {
    match unit {
        TimeUnit::Seconds => unix.to_string(),
        TimeUnit::Milliseconds => (unix * 1000).to_string(),
        TimeUnit::Rfc3339 => format!("{}Z", crate::format_time(unix * 1000).replacen(' ', "T", 1)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` in Unix seconds.
fn rfc3339_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match rest.as_bytes().first()? {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_in_every_unit() {
        assert_eq!(unix_seconds("1700000000", TimeUnit::Seconds), Some(1_700_000_000));
        assert_eq!(
            unix_seconds("1700000000999", TimeUnit::Milliseconds),
            Some(1_700_000_000)
        );
        for (text, unix) in [
            ("2023-11-14T22:13:20Z", 1_700_000_000),
            ("2023-11-14T22:13:20.123456789Z", 1_700_000_000),
            ("2023-11-15T00:13:20+02:00", 1_700_000_000),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600),
        ] {
            assert_eq!(unix_seconds(text, TimeUnit::Rfc3339), Some(unix), "{text}");
        }
        for broken in [
            "",
            "2023-11-14",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "２０２３-11-14T22:13:20Z",
        ] {
            assert_eq!(unix_seconds(broken, TimeUnit::Rfc3339), None, "{broken}");
        }
        assert_eq!(
            unix_seconds(&write_time(1_700_000_000, TimeUnit::Rfc3339), TimeUnit::Rfc3339),
            Some(1_700_000_000)
        );
    }
}
