//! Signing a delivery as a preset's provider would (`send --provider`,
//! tests, plugin authors): the timestamp, the delivery id and the signature
//! written where the preset reads them, over the message its parts make.

use anyhow::{Context, Result, bail};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use super::keys::SigningKey;
use super::preset::{Algorithm, HandshakeSpec, KeyEncoding, Located as _, Part, Preset, Source};
use super::scheme::{Request, sha256_hex};
use super::template::{Built, Reader, write_time};

/// A signed delivery: its headers, its (possibly amended) body, and the
/// query string to call the route's URL with.
#[derive(Debug, Clone)]
pub struct Signed {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub query: String,
}

/// What is being signed.
pub struct Delivery<'a> {
    pub body: &'a [u8],
    /// `content-type` of the body (form presets sign form fields).
    pub content_type: &'a str,
    /// The URL the provider calls (presets that sign the URL), without its query.
    pub url: Option<&'a str>,
    /// The query string the URL is called with (without `?`), kept first.
    pub query: &'a str,
    /// For certificate presets: the URL of the signing certificate, written
    /// where the preset reads it unless the body names one already.
    pub certificate_url: Option<&'a str>,
    pub delivery_id: &'a str,
    pub now_unix: i64,
}

/// The delivery signed for `preset` with `key` (a shared secret as the
/// preset encodes it, or a private key for the public-key algorithms).
pub fn sign(preset: &Preset, key: &str, delivery: &Delivery<'_>) -> Result<Signed> {
    sign_with(preset, key, delivery, HeaderMap::new())
}

/// A handshake of `preset` as its documentation shows it (its `example`),
/// signed with `key` at `now_unix` when the handshake is signed; `url` is
/// the route's public URL (presets that sign it); `token`, when given, is
/// written where the handshake carries the route's token. The method is
/// the handshake's.
pub fn handshake(
    preset: &Preset,
    spec: &HandshakeSpec,
    key: &str,
    url: Option<&str>,
    token: Option<&str>,
    now_unix: i64,
) -> Result<Signed> {
    let example = &spec.example;
    let mut headers = HeaderMap::new();
    for (name, value) in &example.headers {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value).context("a header value")?,
        );
    }
    let mut query: Vec<(String, String)> = url::form_urlencoded::parse(example.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(token) = token {
        for condition in spec.when.iter().filter(|c| c.token) {
            match condition.source("handshake")? {
                Source::Header(name) => {
                    headers.insert(
                        HeaderName::from_bytes(name.as_bytes())?,
                        HeaderValue::from_str(token)?,
                    );
                }
                Source::Query(name) => {
                    query.retain(|(k, _)| *k != name);
                    query.push((name, token.to_string()));
                }
                Source::Json(_) => bail!("a token in the body is not supported"),
            }
        }
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    if !spec.signed {
        if let Some(content_type) = &example.content_type {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_str(content_type)?);
        }
        return Ok(Signed {
            headers,
            body: example.body.as_bytes().to_vec(),
            query,
        });
    }
    let delivery = Delivery {
        body: example.body.as_bytes(),
        content_type: example.content_type.as_deref().unwrap_or("application/json"),
        url,
        query: &query,
        certificate_url: None,
        delivery_id: "handshake-1",
        now_unix,
    };
    sign_with(preset, key, &delivery, headers)
}

/// [`sign`], with `headers` sent as well (those the signing writes replace them).
fn sign_with(preset: &Preset, key: &str, delivery: &Delivery<'_>, headers: HeaderMap) -> Result<Signed> {
    let signature = &preset.signature;
    // A preset whose requests name their algorithm: sign with one that signs.
    let chosen = match &signature.version {
        Some(version) => {
            let (value, algorithm) = version
                .algorithms
                .iter()
                .find(|(_, a)| **a != Algorithm::RsaSha1)
                .context("no algorithm of the preset's versions can sign")?;
            (Some((version.source("version")?, value.clone())), *algorithm)
        }
        None => (None, signature.algorithm),
    };
    let signer = SigningKey::new(chosen.1, signature.key, key)?;
    let mut out = Draft {
        headers,
        json: None,
        query: url::form_urlencoded::parse(delivery.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        body: delivery.body.to_vec(),
    };
    out.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_str(delivery.content_type).context("content type")?,
    );
    let timestamp = (preset.timestamp.is_some() || preset.listed_timestamp()).then(|| {
        let unit = preset.timestamp.as_ref().map(|t| t.unit).unwrap_or_default();
        write_time(delivery.now_unix, unit)
    });
    if let (Some(text), Some(source)) = (&timestamp, preset.timestamp_source()) {
        out.put(&source, text)?;
    }
    if let Some(spec) = &preset.delivery_id
        && let Ok(source) = spec.source("delivery_id")
    {
        out.fill(&source, delivery.delivery_id)?;
    }
    if let Some((source, value)) = &chosen.0 {
        out.put(source, value)?;
    }
    if let (Some(spec), Some(url)) = (&preset.certificate, delivery.certificate_url) {
        out.fill(&spec.source("certificate")?, url)?;
    }
    // Every other value the message or the id reads: the delivery's id.
    let parts = signature
        .message
        .iter()
        .chain(preset.delivery_id.iter().flat_map(|d| &d.parts));
    for part in parts {
        if let Part::SignedHeaders(list) = part {
            // The list names itself and the timestamp's header.
            let mut names = vec![list.clone()];
            if let Some(Source::Header(timestamp)) = preset.timestamp_source() {
                names.push(timestamp.to_ascii_lowercase());
            }
            names.sort();
            out.fill(&Source::Header(list.clone()), &names.join(","))?;
            continue;
        }
        let source = match part {
            Part::Header(h) => Source::Header(h.clone()),
            Part::Json(j) => Source::Json(j.clone()),
            Part::Query(q) => Source::Query(q.clone()),
            _ => continue,
        };
        out.fill(&source, delivery.delivery_id)?;
    }
    if let Some(hash) = &preset.body_hash
        && !delivery
            .content_type
            .starts_with("application/x-www-form-urlencoded")
    {
        out.flush_json()?;
        out.query.push((hash.query.clone(), sha256_hex(&out.body)));
    }
    out.flush_json()?;
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&out.query)
        .finish();
    let request = Request::at(&out.headers, &out.body, delivery.now_unix).with_target("POST", &query);
    let built: Vec<Built> = signature.message.iter().map(Built::new).collect();
    let message = if signature.algorithm.signs() {
        Reader::new(&request)
            .message(&built, timestamp.as_deref(), delivery.url)
            .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?
    } else {
        Vec::new()
    };
    if let Some(jws) = &signature.jws {
        let mut claims = serde_json::Map::new();
        for (name, value) in &jws.claims {
            claims.insert(name.clone(), Value::String(value.clone()));
        }
        if let Some(name) = &jws.body_sha256_claim {
            claims.insert(name.clone(), Value::String(sha256_hex(&out.body)));
        }
        if let Some(name) = &jws.time_claim {
            claims.insert(name.clone(), Value::from(delivery.now_unix));
        }
        let header = serde_json::json!({ "alg": jws.alg, "typ": "JWT" });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string())
        );
        let token = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signer.sign(input.as_bytes())?)
        );
        out.put(
            &preset.signature_source(),
            &format!("{}{token}", signature.prefix),
        )?;
        out.flush_json()?;
        return Ok(Signed {
            headers: out.headers,
            body: out.body,
            query,
        });
    }
    let raw = signer.sign(&message)?;
    let encoded = match (signature.algorithm, signature.encoding) {
        (Algorithm::Token, _) => String::from_utf8(raw).context("a token is text")?,
        (Algorithm::Basic, _) => STANDARD.encode(raw),
        (_, encoding) => encoding.encode(&raw),
    };
    let written = match &signature.list {
        None => format!("{}{encoded}", signature.prefix),
        Some(list) => {
            let mut entries = Vec::new();
            if let (Some(name), Some(text)) = (&list.timestamp, &timestamp) {
                entries.push(format!("{name}{}{text}", list.assign));
            }
            entries.push(format!("{}{}{encoded}", list.signature, list.assign));
            entries.join(&list.separator)
        }
    };
    out.put(&preset.signature_source(), &written)?;
    out.flush_json()?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&out.query)
        .finish();
    Ok(Signed {
        headers: out.headers,
        body: out.body,
        query,
    })
}

/// A delivery being written.
struct Draft {
    headers: HeaderMap,
    /// The body as JSON while fields are being set in it.
    json: Option<Value>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Draft {
    /// Sets the value at `source`.
    fn put(&mut self, source: &Source, value: &str) -> Result<()> {
        match source {
            Source::Header(name) => {
                self.headers.insert(
                    HeaderName::from_bytes(name.as_bytes())?,
                    HeaderValue::from_str(value).context("a header value")?,
                );
            }
            Source::Query(name) => {
                self.query.retain(|(k, _)| k != name);
                self.query.push((name.clone(), value.to_string()));
            }
            Source::Json(pointer) => {
                if self.json.is_none() {
                    self.json = Some(
                        serde_json::from_slice(&self.body)
                            .context("the preset reads body fields: the body must be JSON")?,
                    );
                }
                set_pointer(self.json.as_mut().expect("just set"), pointer, value)?;
            }
        }
        Ok(())
    }

    /// Sets the value at `source` unless the delivery has one already.
    fn fill(&mut self, source: &Source, value: &str) -> Result<()> {
        let present = match source {
            Source::Header(name) => self.headers.contains_key(name.as_str()),
            Source::Query(name) => self.query.iter().any(|(k, _)| k == name),
            Source::Json(pointer) => {
                self.flush_json()?;
                serde_json::from_slice::<Value>(&self.body)
                    .ok()
                    .is_some_and(|v| v.pointer(pointer).is_some_and(|v| !v.is_null()))
            }
        };
        if present { Ok(()) } else { self.put(source, value) }
    }

    /// Writes the JSON being edited back into the body.
    fn flush_json(&mut self) -> Result<()> {
        if let Some(json) = self.json.take() {
            self.body = serde_json::to_vec(&json)?;
        }
        Ok(())
    }
}

/// Sets the string at a JSON pointer, making objects on the way.
fn set_pointer(root: &mut Value, pointer: &str, value: &str) -> Result<()> {
    let mut at = root;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Value::Array(items) => {
                let index: usize = token.parse().context("an array index")?;
                items.get_mut(index).context("the array is too short")?
            }
            Value::Object(map) => map
                .entry(token)
                .or_insert_with(|| Value::Object(Default::default())),
            _ => bail!("{pointer}: the body has no object there"),
        };
    }
    *at = Value::String(value.to_string());
    Ok(())
}

/// A P-256 key made for tests (PKCS#8 DER, base64): signs deliveries
/// for ECDSA presets, whose routes take its public key.
pub const TEST_P256_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgswjgHufCjbs1u+974Jrd+rMSkiYZrDSfGW4LZjqPcuShRANCAATDQm/c4ycPwAcxgKV5PmsQAWV1lOgrXb7kpdfKN4bFSpGrXaBCYCBvHsYGpUCk2uWDf3GQZzRAAvdHqWOfxohj";
/// An Ed25519 seed for tests (hex): the secret key of RFC 8032's first test vector.
pub const TEST_ED25519_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// Fixed keys for tests and benchmarks of `preset`: what signs, and what
/// its route is given.
#[doc(hidden)]
pub fn fixed_test_keys(preset: &Preset) -> (String, String) {
    let signature = &preset.signature;
    if signature.key == KeyEncoding::Certificate {
        return (TEST_RSA_PKCS8.to_string(), TEST_RSA_CERTIFICATE.to_string());
    }
    if signature.algorithm.is_public_key() {
        let private = match signature.algorithm {
            Algorithm::Ed25519 => TEST_ED25519_SEED,
            _ => TEST_P256_PKCS8,
        };
        let signer = SigningKey::new(signature.algorithm, signature.key, private).unwrap();
        let public = match signature.key {
            KeyEncoding::Jwk => signer.public_jwk(),
            _ => signer.public_key(),
        }
        .unwrap();
        return (private.to_string(), public);
    }
    let secret = b"fixed test secret of a route";
    let text = match signature.key {
        KeyEncoding::Hex => hex::encode(secret),
        KeyEncoding::Base64 => STANDARD.encode(secret),
        KeyEncoding::Whsec => format!("whsec_{}", STANDARD.encode(secret)),
        _ if signature.algorithm == Algorithm::Basic => "hook-user:fixed test password".into(),
        _ => String::from_utf8(secret.to_vec()).unwrap(),
    };
    (text.clone(), text)
}

/// An RSA key and a self-signed certificate of it made for tests (PEM): the
/// certificate presets' deliveries are signed with the key, and their
/// certificate cache holds the certificate.
pub const TEST_RSA_PKCS8: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC5b2GIlUaVAH5g\nob9Jyu+Eo/5N257b+6QiOEcm1sNj9KwS9vdxGIVwGoS5utCUcuBAHi1wOUv6cvu8\nQ4wN1RRDwUOAcPR/luBn6zpeFdRPPkkfVjq/Ied7hmlb5TUP3gikCmY782kQrx6Z\nUeV4hyZcR912NaFx1XQigBTmhnuXDzDlWYDcBqqnDYzefOY0Qpoqajs9DwOjoDZv\nHhsdhI/JzhPCwe4Hb3Lpb7QN3GGWQfzFXXL7dSextLb93nV8cSI7r8YLGke17pMO\nr0roOpa5wjXCHapBGW5yoYYlaqtNRTnsm1JGVklo9s04gcRxBfEyELyn/uJGON89\n8FvIsSj5AgMBAAECggEABRyeiw/3ZUPhV/tZfTimi+jj6aRKX6zTEFzuDDJrKjoc\nVL0BYvkes5GNk1ukpJT6nNXgIYn4z9eD3EOd7KMxNvFw0Y17lflUKBU2U5HlO4Z/\naEldnvd5rMBurtl1kiGIKjJ9sT0jajHzpV0aNu1915klEB1IHS3Z0NooSVcPeOFm\nlo9oiNm33oKxxdNLQfrSBVFLEuSxGWAi3g+w18usJxbt9Ro6uqP18IjTsCrZsMVp\nI7PCdUf9uQC99MAaVUU9LVh2uXBbl/Loz9fjQlEu64g38hl1olc1TD75HDaUtM0H\nYtNXZQpP/R8cLulV5HaGBNCyLD+vsj3mncftS180YQKBgQD3qVCppXZjEmNot5yN\nVEQIGHntC1R392lkFD1SGCeE+l8ZNPccXBWXpJxSfD0UFZB8dmoBuFKwqdPVbCsW\nOBAFwu5Tw9picTO+OGKTdSMqm5jI4YK/MswcM/VJg4+TcVforHI1nsz2HnsY23un\nmKjXYqXhJpmHQKgQ/exbThZkoQKBgQC/rbbjijO3yv9wuHbf6ZDb11YddUzMqxmv\nfIGKX5tcyE0oozKxGLwYzZUN7koAWOD7zWFF7nU8PlmCeKoYvF80p7WfSDZO+BrQ\neruVN7EQKLLp3Y3m2dMDkm7CVfvEQTWupuocy5Hk5dOIkyagFqu2PDaNyls2yr8A\nomKcoEwNWQKBgQDXsAmj9YppNfaFmIMrQpwNQOPO4fMql7qdglL1UDv6v+JanZoo\nhLn5W08ZN0IqX61599bSsKizWvQ2BwJvU1wA6IePRB7JZTVfENQo//ckgGZLbLrl\nsWO5nDafU4iTLD8XUDgXIrn2Dw291EiY6YcCLdOxhmBnPpQgWESkMBmogQKBgCDQ\nCRXsq6vT6WSPf3IXVr/7nfdPBEWpKK183+QjN8JrW6IQRfZBKLoKP3DyEOL8VA9m\n+jbxekpE1ifapiuz24x1BUduIjXkjRqRWBlUPlBo1y/nyInzUgczgxhrhbzz+M+c\nLUmeo6wOl+ayYhNXri91IVWmhXTcwlPGeKEdY8eJAoGAT+NEAa7hhEEe7tkCCG7N\nbubEQz1UeWCom1hO/dpijna7gsv8KMFA6LoGzXeMNoeVQ6041mg5shZoRXGDbTVO\nhBRECyQJxP6tciwhlOp/LHXP8VGjJBj1v3rQPy//WLqXldI15hx6VEhzmNeCJwt0\nDDVYl5oVNM3pNk5XRTjouqI=\n-----END PRIVATE KEY-----";
pub const TEST_RSA_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIDIzCCAgugAwIBAgIUMVJZMA4tiJaQLn8fs3+A4Q9MwZwwDQYJKoZIhvcNAQEL\nBQAwIDEeMBwGA1UEAwwVc25zLnRlc3Qud2ViaG9vay1ob3N0MCAXDTI2MTIwMjAx\nMzM0NFoYDzIxMjYxMTA4MDEzMzQ0WjAgMR4wHAYDVQQDDBVzbnMudGVzdC53ZWJo\nb29rLWhvc3QwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQC5b2GIlUaV\nAH5gob9Jyu+Eo/5N257b+6QiOEcm1sNj9KwS9vdxGIVwGoS5utCUcuBAHi1wOUv6\ncvu8Q4wN1RRDwUOAcPR/luBn6zpeFdRPPkkfVjq/Ied7hmlb5TUP3gikCmY782kQ\nrx6ZUeV4hyZcR912NaFx1XQigBTmhnuXDzDlWYDcBqqnDYzefOY0Qpoqajs9DwOj\noDZvHhsdhI/JzhPCwe4Hb3Lpb7QN3GGWQfzFXXL7dSextLb93nV8cSI7r8YLGke1\n7pMOr0roOpa5wjXCHapBGW5yoYYlaqtNRTnsm1JGVklo9s04gcRxBfEyELyn/uJG\nON898FvIsSj5AgMBAAGjUzBRMB0GA1UdDgQWBBQkvdeMsJnmE8zo0/OHNPqYrIwB\nTzAfBgNVHSMEGDAWgBQkvdeMsJnmE8zo0/OHNPqYrIwBTzAPBgNVHRMBAf8EBTAD\nAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQBf/qLjx+IAnhqyvKKZj68PhBDFOPC9FpKL\n/LKB1l4vlyBnuWXIwcyuMB98bzO8S9Tau+EzhTtlQMxYZ9QZPQ8FU5mDwsEBD2gG\nmr2mnAXC3dh8ogTL6gy394SGjkjlpAypKlzHiTtDldPRlctANHIsljMG5+fSvnwK\nGS7mNYCQl5xcSer4mbh9cAi/0FKSUBaVj1QKIyLxm36bW0LfvVwYbNdxB+Yy9HMx\nddCpZpQ1sMH+187VgdcyXYggScZlOVny5r2AZaZHgsE02HMZ+gAlQ/Xe04pArPKa\nVRWbFKrxa2qCG7x79reznzepKL59sWK38b+d4PhjmdWMcVyUb4gq\n-----END CERTIFICATE-----";
/// Where the certificate presets' test deliveries say their certificate is.
pub const TEST_CERTIFICATE_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
