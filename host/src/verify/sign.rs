//! Producing signed deliveries, for `webhook-host send`, tests and plugin
//! authors: the headers each scheme's sender would attach.

use anyhow::{Context, Result, bail};
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signer, SigningKey};

use super::{fal_hmac, github, standard_webhooks, stripe};

/// The schemes `send` can sign with.
pub const SCHEMES: [&str; 5] = ["fal-hmac", "fal-ed25519", "standard-webhooks", "github", "stripe"];

/// Reads an Ed25519 signing key: 32 bytes as hex or standard base64.
pub fn signing_key(text: &str) -> Result<SigningKey> {
    use base64::Engine;
    let text = text.trim();
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .context("the signing key is neither hex nor base64")?;
    let seed: [u8; 32] = bytes
        .try_into()
        .ok()
        .context("the signing key must be 32 bytes")?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Headers that make `body` verify under `scheme` with `key`, for delivery
/// `delivery_id` signed at `now_unix`.
pub fn headers(
    scheme: &str,
    key: &str,
    delivery_id: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<Vec<(&'static str, String)>> {
    let timestamp = now_unix.to_string();
    let user_id = "webhook-host-send";
    Ok(match scheme {
        "fal-hmac" | "fal-ed25519" => {
            let message = fal_hmac::canonical_message(delivery_id, user_id, &timestamp, body);
            let signature = if scheme == "fal-hmac" {
                fal_hmac::sign(key, &message)
            } else {
                hex::encode(signing_key(key)?.sign(message.as_bytes()).to_bytes())
            };
            vec![
                (fal_hmac::REQUEST_ID, delivery_id.to_string()),
                (fal_hmac::USER_ID, user_id.to_string()),
                (fal_hmac::TIMESTAMP, timestamp),
                (fal_hmac::SIGNATURE, signature),
            ]
        }
        "standard-webhooks" => vec![
            (standard_webhooks::ID, delivery_id.to_string()),
            (standard_webhooks::TIMESTAMP, timestamp),
            (
                standard_webhooks::SIGNATURE,
                standard_webhooks::sign(key, delivery_id, now_unix, body)?,
            ),
        ],
        "github" => vec![
            (github::SIGNATURE, github::sign(key, body)),
            (github::DELIVERY, delivery_id.to_string()),
        ],
        "stripe" => vec![(stripe::SIGNATURE, stripe::sign(key, now_unix, body))],
        other => bail!("cannot sign with {other:?}; known: {}", SCHEMES.join(", ")),
    })
}
