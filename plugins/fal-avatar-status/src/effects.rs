//! The completion's effects outside the database, run as follow-ups after
//! the avatar's `completed` row has committed: the user's Telegram notice
//! and the training photos' clean-up. Each is its own stored event with its
//! own retries, so a Telegram outage delays only the notice, and a photo
//! is never deleted for a completion that rolled back.
//!
//! A follow-up is one per name and payload on the route: the payload names
//! the avatar and the FAL request, so a redelivery, a replay or the
//! reconciliation finding the same completion queues nothing new, and the
//! notice goes out once (at least once: a crash between Telegram's answer
//! and the follow-up's commit sends it again, the one repeat no API without
//! an idempotency key can rule out).

use serde::{Deserialize, Serialize};

use crate::HandlerError;
use crate::avatar::{avatar_by_id, enabled, setting, text};
use crate::notice;
use crate::telegram;
use crate::webhook::plugin::db::{self, Value};
use crate::webhook::plugin::log::{Level, log};
use crate::webhook::plugin::{attempt, blob, config, followups};

/// The "your avatar is ready" message.
pub const NOTICE: &str = "notice";
/// Deleting the training photos but the first.
pub const PHOTO_CLEANUP: &str = "photo-cleanup";

/// What every follow-up of this plugin is about.
#[derive(Debug, Serialize, Deserialize)]
struct About {
    avatar_id: String,
    request_id: String,
}

/// Queues follow-up `name` for the completion of `avatar_id` by
/// `request_id`; it is stored with this attempt's commit.
pub fn queue(name: &str, avatar_id: &str, request_id: &str) -> Result<(), HandlerError> {
    let about = About {
        avatar_id: avatar_id.to_string(),
        request_id: request_id.to_string(),
    };
    let payload = serde_json::to_vec(&about).expect("two strings serialise");
    followups::enqueue(name, &payload, 0)
        .map_err(|e| HandlerError::Fatal(format!("queueing the {name} follow-up: {e}")))
}

/// Runs follow-up `name`.
pub fn run(name: &str, payload: &[u8]) -> Result<(), HandlerError> {
    let about: About = serde_json::from_slice(payload)
        .map_err(|e| HandlerError::Invalid(format!("follow-up {name}: payload: {e}")))?;
    let done = match name {
        NOTICE => send_notice(&about)?,
        PHOTO_CLEANUP => remove_training_photos(&about)?,
        other => return Err(HandlerError::Invalid(format!("no follow-up named {other:?}"))),
    };
    log(
        Level::Info,
        &format!("avatar {} ({}): {done}", about.avatar_id, about.request_id),
    );
    Ok(())
}

/// Sends the completion notice to the avatar's owner.
fn send_notice(about: &About) -> Result<String, HandlerError> {
    if !enabled("notify", true) {
        return Ok("notices off".into());
    }
    let Some(avatar) = avatar_by_id(&about.avatar_id)? else {
        return Ok("the avatar is gone; no notice".into());
    };
    let Some(chat_id) = avatar.telegram_id.as_deref() else {
        return Ok("no telegram_id; no notice".into());
    };
    let Some(token) = config::secret("telegram_bot_token") else {
        log(
            Level::Warn,
            "telegram_bot_token is not set; completion notice not sent",
        );
        return Ok("no bot token; no notice".into());
    };
    let message = notice::completion_message(
        chat_id,
        &avatar.id,
        &avatar.name,
        avatar.training_type.as_deref().unwrap_or("portrait"),
    );
    let base = setting("telegram_api_base", "https://api.telegram.org");
    let url = format!("{}/bot{token}/sendMessage", base.trim_end_matches('/'));
    let sent = telegram::post_json(&url, &message)
        .map_err(|e| format!("sending the notice failed: {e}"))
        .map(|(status, body)| notice::classify(status, &body));
    match sent {
        Ok(notice::Delivery::Sent) => Ok("notice sent".into()),
        Ok(notice::Delivery::Permanent(why)) => {
            log(
                Level::Warn,
                &format!("completion notice not delivered, not retried: {why}"),
            );
            Ok("notice refused by Telegram".into())
        }
        Ok(notice::Delivery::Transient {
            why,
            retry_after_secs,
        }) => {
            if let Some(secs) = retry_after_secs {
                attempt::retry_after(secs.saturating_mul(1000));
            }
            Err(HandlerError::Retry(why))
        }
        Err(why) => Err(HandlerError::Retry(why)),
    }
}

/// Deletes the avatar's training photos from storage except the first by
/// `upload_order`, and their rows (which commit with this follow-up).
fn remove_training_photos(about: &About) -> Result<String, HandlerError> {
    let rows = db::query(
        "SELECT CAST(id AS TEXT), minio_key FROM avatar_photos WHERE CAST(avatar_id AS TEXT) = $1 \
         ORDER BY upload_order, id",
        &[Value::Text(about.avatar_id.clone())],
    )
    .map_err(|e| HandlerError::Retry(format!("listing the training photos: {e}")))?;
    let mut removed = Vec::new();
    for row in rows.values.iter().skip(1) {
        let (Some(id), Some(key)) = (text(&row[0]), text(&row[1])) else {
            continue;
        };
        match blob::delete(&key) {
            Ok(()) => removed.push(id),
            // A photo outside our grant must not block the rest: keep its
            // row so nothing is orphaned.
            Err(e) => log(Level::Warn, &format!("training photo {key} kept: {e}")),
        }
    }
    for id in &removed {
        db::execute(
            "DELETE FROM avatar_photos WHERE CAST(id AS TEXT) = $1",
            &[Value::Text(id.clone())],
        )
        .map_err(|e| HandlerError::Retry(format!("deleting a training photo row: {e}")))?;
    }
    Ok(format!("{} training photo(s) removed", removed.len()))
}
