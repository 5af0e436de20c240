//! What a preset must satisfy beyond its TOML shape: one place for each
//! value, header names and JSON pointers well formed, a timestamp located
//! where the message signs one, a key encoding fitting the algorithm.

use anyhow::{Result, bail};

use super::preset::{Algorithm, KeyEncoding, Located as _, Part, Preset};

impl Preset {
    /// Checks what serde cannot (a preset read as part of a manifest is checked here too).
    pub fn check(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            bail!("the name must be lowercase letters, digits or '-'");
        }
        let signature = &self.signature;
        signature.source("signature")?;
        let mut parts: Vec<&Part> = signature.message.iter().collect();
        if let Some(id) = &self.delivery_id {
            if id.parts.is_empty() {
                id.source("delivery_id")?;
            } else if id.source("delivery_id").is_ok() {
                bail!("delivery_id: give parts or one place, not both");
            }
            parts.extend(&id.parts);
        }
        for part in parts {
            match part {
                Part::Header(h) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                    bail!("{h:?} is not a header name")
                }
                Part::Json(j) if !(j.is_empty() || j.starts_with('/')) => {
                    bail!("the JSON pointer {j:?} must start with '/'")
                }
                _ => {}
            }
        }
        let listed = self.listed_timestamp();
        match &self.timestamp {
            Some(spec) if listed && spec.source("timestamp").is_ok() => {
                bail!("the timestamp comes from the list or from one place, not both");
            }
            Some(spec) if !listed => {
                spec.source("timestamp")?;
            }
            _ => {}
        }
        if signature.message.contains(&Part::Timestamp) && !listed && self.timestamp.is_none() {
            bail!("the message signs a timestamp the preset does not locate");
        }
        if let Some(list) = &signature.list
            && (list.separator.is_empty() || list.assign.is_empty() || list.signature.is_empty())
        {
            bail!("a list needs a separator, an assign and a signature entry name");
        }
        if signature.list.as_ref().is_some_and(|l| l.ed25519.is_some()) && signature.key != KeyEncoding::Whsec
        {
            bail!("Ed25519 list entries take whpk_ keys beside whsec_ ones: key = \"whsec\"");
        }
        if !signature.jwks_urls.is_empty() && signature.key != KeyEncoding::Jwks {
            bail!("jwks_urls needs key = \"jwks\"");
        }
        if !signature.algorithm.signs() && signature.message != [Part::Body] {
            bail!("a token or Basic credentials are compared as sent; they sign no message");
        }
        if let Some(jws) = &signature.jws {
            let expected = match signature.algorithm {
                Algorithm::HmacSha256 => "HS256",
                Algorithm::HmacSha512 => "HS512",
                Algorithm::EcdsaP256Sha256Fixed => "ES256",
                Algorithm::Ed25519 => "EdDSA",
                Algorithm::RsaSha256 => "RS256",
                other => bail!("a JWS is not signed with {}", other.as_str()),
            };
            if jws.alg != expected {
                bail!(
                    "jws.alg {:?} is not {} ({expected})",
                    jws.alg,
                    signature.algorithm.as_str()
                );
            }
            if signature.list.is_some()
                || signature.message != [Part::Body]
                || signature.encoding != super::preset::Encoding::Base64url
            {
                bail!("a JWS signs its own header and claims: no list, no message, encoding = \"base64url\"");
            }
        }
        if let Some(version) = &signature.version {
            version.source("signature.version")?;
            if signature.key != KeyEncoding::Certificate {
                bail!(
                    "signature.version chooses among algorithms of a fetched certificate: key = \"certificate\""
                );
            }
            if version.algorithms.is_empty() {
                bail!("signature.version names no algorithm");
            }
            if version
                .algorithms
                .values()
                .any(|a| a.is_public_key() != signature.algorithm.is_public_key())
            {
                bail!("signature.version's algorithms must be of the kind of `algorithm`");
            }
        }
        match (&self.certificate, signature.key) {
            (Some(cert), KeyEncoding::Certificate) => {
                cert.source("certificate")?;
                if cert.hosts.is_empty() {
                    bail!("certificate.hosts must allow at least one host");
                }
            }
            (None, KeyEncoding::Certificate) => bail!("key = \"certificate\" needs a [certificate] table"),
            (Some(_), _) => bail!("a [certificate] table needs key = \"certificate\""),
            (None, _) => {}
        }
        let key_fits = match signature.key {
            KeyEncoding::Certificate => {
                signature.algorithm.is_public_key() && signature.algorithm != Algorithm::Ed25519
            }
            KeyEncoding::Jwks => signature.algorithm == Algorithm::Ed25519,
            KeyEncoding::Pem | KeyEncoding::Jwk => signature.algorithm.is_public_key(),
            KeyEncoding::Whsec => signature.algorithm.is_hmac(),
            KeyEncoding::Raw => !signature.algorithm.is_public_key(),
            KeyEncoding::Hex | KeyEncoding::Base64 => signature.algorithm.signs(),
        };
        if !key_fits {
            bail!(
                "key encoding {:?} does not fit algorithm {:?}",
                signature.key,
                signature.algorithm
            );
        }
        for handshake in &self.handshakes {
            handshake.check(self.signature.algorithm.is_hmac())?;
        }
        Ok(())
    }
}
