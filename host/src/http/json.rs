//! One pass over a JSON body on intake: it must be valid JSON, nested no
//! deeper than the limit, and, when the route takes its delivery id from a
//! body field (`json:a.b`), that field's value is picked up on the way.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("JSON nested deeper than {max} levels ({at})")]
    TooDeep { max: usize, at: String },
    #[error("body is not valid JSON: {0}")]
    Invalid(String),
}

/// Marks the error a too-deep body stops the parse with.
const TOO_DEEP: &str = "nesting limit";

/// Checks `body` and returns the string or number at `id_path` (object
/// keys from the top), if asked for and present.
pub fn scan(body: &[u8], max_depth: usize, id_path: Option<&[String]>) -> Result<Option<String>, JsonError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let node = Node {
        depth: 0,
        max_depth,
        path: id_path,
        found: &found,
    };
    let checked = node.deserialize(&mut de).and_then(|()| de.end());
    match checked {
        Ok(()) => Ok(found.into_inner()),
        Err(e) if e.to_string().starts_with(TOO_DEEP) => Err(JsonError::TooDeep {
            max: max_depth,
            at: format!("line {}, column {}", e.line(), e.column()),
        }),
        Err(e) => Err(JsonError::Invalid(e.to_string())),
    }
}

/// One value of the document: how deep it is and, while it lies on the id
/// path, what is left of the path.
struct Node<'a> {
    depth: usize,
    max_depth: usize,
    /// `Some(rest)` while this value is on the id path; `Some([])` is the id.
    path: Option<&'a [String]>,
    found: &'a RefCell<Option<String>>,
}

impl<'a> Node<'a> {
    fn child(&self, path: Option<&'a [String]>) -> Node<'a> {
        Node {
            depth: self.depth + 1,
            max_depth: self.max_depth,
            path,
            found: self.found,
        }
    }

    fn is_id(&self) -> bool {
        self.path.is_some_and(|rest| rest.is_empty())
    }

    /// Records the id's value: a non-empty string or a number, else none
    /// (a later repeat of the key replaces an earlier one, as a JSON object
    /// read into a map would).
    fn record(&self, value: impl FnOnce() -> Option<String>) {
        if self.is_id() {
            *self.found.borrow_mut() = value();
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth + 1 > self.max_depth {
            return Err(E::custom(TOO_DEEP));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.record(|| None);
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.record(|| Some(n.to_string()));
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.record(|| Some(n.to_string()));
        Ok(())
    }

    fn visit_f64<E>(self, n: f64) -> Result<(), E> {
        self.record(|| serde_json::Number::from_f64(n).map(|n| n.to_string()));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.record(|| Some(s.to_string()).filter(|s| !s.is_empty()));
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.record(|| None);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        self.record(|| None);
        while seq.next_element_seed(self.child(None))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        self.record(|| None);
        let (next, rest) = match self.path {
            Some([first, rest @ ..]) => (Some(first.as_str()), rest),
            _ => (None, &[][..]),
        };
        while let Some(on_path) = map.next_key_seed(KeyIs(next))? {
            map.next_value_seed(self.child(on_path.then_some(rest)))?;
        }
        Ok(())
    }
}

/// Reads an object key and answers whether it is the next key of the id
/// path, without keeping it.
struct KeyIs<'a>(Option<&'a str>);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(self.0 == Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert_eq!(scan(br#"{"a":[1,{"b":2}]}"#, 3, None), Ok(None));
        assert!(matches!(
            scan(br#"{"a":[1,{"b":2}]}"#, 2, None),
            Err(JsonError::TooDeep { max: 2, .. })
        ));
        assert_eq!(scan(br#"{"a":"[[[[[[\"[[["}"#, 1, None), Ok(None));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(matches!(
            scan(deep.as_bytes(), 64, None),
            Err(JsonError::TooDeep { .. })
        ));
        let wide = format!("[{}]", vec!["[]"; 1000].join(","));
        assert_eq!(scan(wide.as_bytes(), 2, None), Ok(None));
    }

    #[test]
    fn invalid_json_is_refused() {
        for bad in [&b"{"[..], b"{\"a\":}", b"[1,]", b"{} x", b"", b"\xff"] {
            assert!(
                matches!(scan(bad, 64, None), Err(JsonError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(scan(b" 1 ", 64, None), Ok(None));
    }

    #[test]
    fn the_id_field_is_picked_up_in_the_same_pass() {
        let body =
            br#"{"request_id":"r-1","payload":{"n":42,"f":1.5,"e":"","o":{}},"list":[{"request_id":"no"}]}"#;
        assert_eq!(scan(body, 64, Some(&path("request_id"))), Ok(Some("r-1".into())));
        assert_eq!(scan(body, 64, Some(&path("payload.n"))), Ok(Some("42".into())));
        assert_eq!(scan(body, 64, Some(&path("payload.f"))), Ok(Some("1.5".into())));
        assert_eq!(scan(body, 64, Some(&path("payload.e"))), Ok(None));
        assert_eq!(scan(body, 64, Some(&path("payload.o"))), Ok(None));
        assert_eq!(scan(body, 64, Some(&path("payload.missing"))), Ok(None));
        assert_eq!(scan(body, 64, Some(&path("list.request_id"))), Ok(None));
        assert_eq!(
            scan(br#"{"id":"a","id":"b"}"#, 64, Some(&path("id"))),
            Ok(Some("b".into()))
        );
    }
}
