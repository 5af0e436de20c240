//! A preset's keys, decoded once when a route is built, and the
//! cryptography the declarative engine runs with them: HMAC (SHA-1, -256,
//! -512), Ed25519, ECDSA P-256, RSA PKCS#1 v1.5 (SHA-256, SHA-1), and the
//! secrets compared as sent (tokens, Basic credentials). Every comparison
//! of a secret or MAC is constant-time.

use anyhow::{Context, Result, bail};
use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::preset::{Algorithm, KeyEncoding};
use super::scheme::{pem_body, signature_matches};

/// The keys of one route for one preset (several while a sender rotates them).
pub enum KeySet {
    Hmac(Vec<MacKey>),
    Public(Vec<signature::ParsedPublicKey>),
    /// Tokens and Basic credentials, compared with what the sender wrote.
    Secret(Vec<Vec<u8>>),
    /// Ed25519 keys fetched from JWKS URLs.
    Jwks(super::jwks::KeyCache),
    /// Public keys of certificates fetched from the URLs requests name.
    Certificates(super::certs::CertCache),
}

impl KeySet {
    /// Decodes `keys` as `encoding` says, for `algorithm` (`whpk_` keys
    /// are not among them: see [`split_whpk`]).
    pub fn new<'k>(
        algorithm: Algorithm,
        encoding: KeyEncoding,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<Self> {
        if matches!(encoding, KeyEncoding::Jwks | KeyEncoding::Certificate) {
            bail!("keys of {encoding:?} are fetched, not given");
        }
        let bytes = keys
            .into_iter()
            .map(|key| decode(encoding, key))
            .collect::<Result<Vec<_>>>()?;
        Ok(match algorithm {
            a if a.is_hmac() => KeySet::Hmac(bytes.iter().map(|key| MacKey::new(a, key)).collect()),
            a if a.is_public_key() => KeySet::Public(
                bytes
                    .iter()
                    .map(|key| {
                        signature::ParsedPublicKey::new(verification(a), key)
                            .map_err(|e| anyhow::anyhow!("not a {a:?} public key: {e}"))
                    })
                    .collect::<Result<_>>()?,
            ),
            _ => KeySet::Secret(bytes),
        })
    }

    /// Whether any key signed `message` with any of the `given` signatures
    /// (or, for secrets, whether any given value is a key).
    /// `message` comes in pieces: an HMAC reads them in turn, the
    /// public-key algorithms see them joined.
    pub fn matches(&self, message: &[&[u8]], given: &[Vec<u8>]) -> bool {
        match self {
            KeySet::Hmac(keys) => keys.iter().any(|key| {
                let tag = key.tag(message);
                given.iter().any(|g| signature_matches(&tag, g))
            }),
            KeySet::Public(keys) => {
                let message = message.concat();
                keys.iter()
                    .any(|key| given.iter().any(|g| key.verify_sig(&message, g).is_ok()))
            }
            KeySet::Secret(keys) => keys
                .iter()
                .any(|key| given.iter().any(|g| signature_matches(key, g))),
            KeySet::Jwks(_) | KeySet::Certificates(_) => false,
        }
    }
}

/// An HMAC key, its inner and outer states computed once: SHA-256 and
/// SHA-512 by RustCrypto (cloned per request), SHA-1 by aws-lc.
pub enum MacKey {
    Sha256(::hmac::Hmac<sha2::Sha256>),
    Sha512(::hmac::Hmac<sha2::Sha512>),
    Sha1(Box<hmac::Key>),
}

impl MacKey {
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Self {
        use ::hmac::Mac as _;
        const ANY_LENGTH: &str = "HMAC takes keys of any length";
        match algorithm {
            Algorithm::HmacSha512 => MacKey::Sha512(::hmac::Hmac::new_from_slice(key).expect(ANY_LENGTH)),
            Algorithm::HmacSha1 => {
                MacKey::Sha1(Box::new(hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key)))
            }
            _ => MacKey::Sha256(::hmac::Hmac::new_from_slice(key).expect(ANY_LENGTH)),
        }
    }

    /// The MAC of the pieces, in order.
    pub fn tag(&self, message: &[&[u8]]) -> Vec<u8> {
        use ::hmac::Mac as _;
        match self {
            MacKey::Sha256(state) => {
                let mut mac = state.clone();
                message.iter().for_each(|piece| mac.update(piece));
                mac.finalize().into_bytes().to_vec()
            }
            MacKey::Sha512(state) => {
                let mut mac = state.clone();
                message.iter().for_each(|piece| mac.update(piece));
                mac.finalize().into_bytes().to_vec()
            }
            MacKey::Sha1(key) => {
                let mut context = hmac::Context::with_key(key);
                message.iter().for_each(|piece| context.update(piece));
                context.sign().as_ref().to_vec()
            }
        }
    }
}

/// The length of a signature of `algorithm`, where it is fixed.
pub fn signature_len(algorithm: Algorithm) -> Option<usize> {
    match algorithm {
        Algorithm::HmacSha1 => Some(20),
        Algorithm::HmacSha256 => Some(32),
        Algorithm::HmacSha512 | Algorithm::Ed25519 => Some(64),
        _ => None,
    }
}

/// Any of `keys` verifies `signature` (64 bytes) over `message`, Ed25519 strictly.
pub fn ed25519_verifies(keys: &[ed25519_dalek::VerifyingKey], message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    keys.iter()
        .any(|key| key.verify_strict(message, &signature).is_ok())
}

/// Splits a route's keys into `whpk_<base64>` Ed25519 public keys and the rest.
pub fn split_whpk<'k>(
    keys: impl IntoIterator<Item = &'k str>,
) -> Result<(Vec<&'k str>, Vec<ed25519_dalek::VerifyingKey>)> {
    let mut rest = Vec::new();
    let mut public = Vec::new();
    for key in keys {
        match key.trim().strip_prefix("whpk_") {
            Some(encoded) => {
                let bytes = STANDARD.decode(encoded).context("a whpk_ key is not base64")?;
                let bytes: [u8; 32] = bytes.try_into().ok().context("a whpk_ key is not 32 bytes")?;
                public.push(
                    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                        .context("a whpk_ key is not an Ed25519 key")?,
                );
            }
            None => rest.push(key),
        }
    }
    Ok((rest, public))
}

pub fn hmac_algorithm(algorithm: Algorithm) -> hmac::Algorithm {
    match algorithm {
        Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

pub fn verification(algorithm: Algorithm) -> &'static dyn signature::VerificationAlgorithm {
    match algorithm {
        Algorithm::Ed25519 => &signature::ED25519,
        Algorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
        Algorithm::EcdsaP256Sha256Fixed => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::RsaSha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        _ => &signature::RSA_PKCS1_2048_8192_SHA256,
    }
}

/// A key's bytes from its text.
pub fn decode(encoding: KeyEncoding, text: &str) -> Result<Vec<u8>> {
    let trimmed = text.trim();
    let bytes = match encoding {
        KeyEncoding::Raw => text.as_bytes().to_vec(),
        KeyEncoding::Hex => hex::decode(trimmed).context("the key is not hex")?,
        KeyEncoding::Base64 => STANDARD.decode(trimmed).context("the key is not base64")?,
        KeyEncoding::Whsec => STANDARD
            .decode(trimmed.strip_prefix("whsec_").unwrap_or(trimmed))
            .context("the key is not whsec_<base64>")?,
        KeyEncoding::Pem => pem_body(trimmed)?,
        KeyEncoding::Jwk => jwk_public_key(trimmed)?,
        KeyEncoding::Jwks | KeyEncoding::Certificate => bail!("keys of {encoding:?} are fetched, not given"),
    };
    if bytes.is_empty() {
        bail!("the key is empty");
    }
    Ok(bytes)
}

/// The public key bytes of a JWK: the uncompressed point of an EC P-256
/// key, or the 32 bytes of an OKP Ed25519 key.
fn jwk_public_key(text: &str) -> Result<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk: serde_json::Value = serde_json::from_str(text).context("the key is not a JWK (JSON)")?;
    let field = |name: &str| -> Result<Vec<u8>> {
        let value = jwk
            .get(name)
            .and_then(|v| v.as_str())
            .with_context(|| format!("the JWK has no {name}"))?;
        URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .with_context(|| format!("the JWK's {name} is not base64url"))
    };
    match (
        jwk.get("kty").and_then(|v| v.as_str()),
        jwk.get("crv").and_then(|v| v.as_str()),
    ) {
        (Some("EC"), Some("P-256")) => Ok([&[0x04][..], &field("x")?, &field("y")?].concat()),
        (Some("OKP"), Some("Ed25519")) => field("x"),
        (kty, crv) => bail!("a JWK of kty {kty:?} and crv {crv:?} is not supported"),
    }
}

/// What signs for a preset when a delivery is made (`send --provider`,
/// tests): an HMAC key, a private key, or the secret itself.
pub enum SigningKey {
    Hmac(Box<hmac::Key>),
    Ed25519(signature::Ed25519KeyPair),
    Ecdsa(signature::EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
    Secret(Vec<u8>),
}

impl SigningKey {
    /// From the key's text: for HMAC and secrets as the preset encodes
    /// them; a private key as PKCS#8 (PEM, or DER in base64), or an
    /// Ed25519 seed of 32 bytes in hex or base64.
    pub fn new(algorithm: Algorithm, encoding: KeyEncoding, text: &str) -> Result<Self> {
        if algorithm.is_hmac() {
            return Ok(SigningKey::Hmac(Box::new(hmac::Key::new(
                hmac_algorithm(algorithm),
                &decode(encoding, text)?,
            ))));
        }
        if !algorithm.is_public_key() {
            return Ok(SigningKey::Secret(decode(encoding, text)?));
        }
        let trimmed = text.trim();
        let der = if trimmed.starts_with("-----BEGIN") {
            pem_body(trimmed)?
        } else {
            hex::decode(trimmed)
                .or_else(|_| STANDARD.decode(trimmed))
                .context("a private key is PEM, or DER / a seed in hex or base64")?
        };
        let rejected =
            |e: aws_lc_rs::error::KeyRejected| anyhow::anyhow!("not a {algorithm:?} private key: {e}");
        Ok(match algorithm {
            Algorithm::Ed25519 if der.len() == 32 => {
                SigningKey::Ed25519(signature::Ed25519KeyPair::from_seed_unchecked(&der).map_err(rejected)?)
            }
            Algorithm::Ed25519 => SigningKey::Ed25519(
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(rejected)?,
            ),
            Algorithm::EcdsaP256Sha256 => SigningKey::Ecdsa(
                signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                    .map_err(rejected)?,
            ),
            Algorithm::EcdsaP256Sha256Fixed => SigningKey::Ecdsa(
                signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(rejected)?,
            ),
            // The library signs SHA-1 with RSA no more (it still verifies it).
            Algorithm::RsaSha1 => bail!("signing with RSA-SHA1 is not supported; sign with rsa-sha256"),
            _ => SigningKey::Rsa(signature::RsaKeyPair::from_pkcs8(&der).map_err(rejected)?),
        })
    }

    /// The signature of `message` (a secret signs nothing: it is itself).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        Ok(match self {
            SigningKey::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            SigningKey::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            SigningKey::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?
                .as_ref()
                .to_vec(),
            SigningKey::Rsa(pair) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                out
            }
            SigningKey::Secret(secret) => secret.clone(),
        })
    }

    /// The public key as a JWK (EC P-256 and Ed25519 keys).
    pub fn public_jwk(&self) -> Option<String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use signature::KeyPair as _;
        match self {
            SigningKey::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                let (x, y) = point.get(1..)?.split_at(32);
                Some(
                    serde_json::json!({ "kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y) })
                        .to_string(),
                )
            }
            SigningKey::Ed25519(pair) => Some(
                serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()) })
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// The public key a route configures to verify what this key signs
    /// (base64 SPKI DER, or hex for Ed25519); none for shared secrets.
    pub fn public_key(&self) -> Option<String> {
        use aws_lc_rs::encoding::AsDer as _;
        use signature::KeyPair as _;
        match self {
            SigningKey::Ed25519(pair) => Some(hex::encode(pair.public_key().as_ref())),
            SigningKey::Ecdsa(pair) => Some(STANDARD.encode(spki_of_ec_point(pair.public_key().as_ref()))),
            SigningKey::Rsa(pair) => Some(STANDARD.encode(pair.public_key().as_der().ok()?.as_ref())),
            _ => None,
        }
    }
}

/// The SubjectPublicKeyInfo DER of an uncompressed P-256 point.
fn spki_of_ec_point(point: &[u8]) -> Vec<u8> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING point }
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    [&PREFIX[..], point].concat()
}
