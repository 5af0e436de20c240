//! `fal-avatar-status`: applies FAL AI training-status webhooks to the bot's
//! `avatars` table.
//!
//! The host has already verified the signature and stored the event; this
//! plugin only interprets the body:
//! - FAL bodies: `status` = `OK` (training finished, `payload` holds the LoRA
//!   and config files) or `ERROR` (`error` says why); `payload_error` means FAL
//!   could not serialise the result.
//! - Legacy bodies: `queued`, `in_progress` (optional `progress`), `completed`,
//!   `failed`, `cancelled`.
//!
//! The avatar is found by `avatars.fal_request_id = request_id`. An unknown
//! request id is logged and the event is done: retrying cannot make it known.
//! A body that is not one of the shapes above is `invalid` and never retried.
//!
//! All statements run in the event's transaction, so the update and the
//! host's record that the event is done commit together.

// The generated bindings take many arguments in places; that is theirs.
#![allow(clippy::too_many_arguments)]

mod body;

wit_bindgen::generate!({
    path: "../../wit",
    world: "handler",
});

use body::{Outcome, parse};
use webhook::plugin::db::{self, Value};
use webhook::plugin::log::{Level, log};

struct FalAvatarStatus;

/// An avatar as far as this plugin needs to know it.
struct Avatar {
    id: String,
    status: String,
    progress: i64,
    training_type: Option<String>,
}

const TERMINAL: [&str; 3] = ["completed", "error", "cancelled"];

fn find_avatar(request_id: &str) -> Result<Option<Avatar>, HandlerError> {
    let rows = db::query(
        "SELECT CAST(id AS TEXT) AS id, status, training_progress, training_type \
         FROM avatars WHERE fal_request_id = $1",
        &[Value::Text(request_id.to_string())],
    )
    .map_err(|e| HandlerError::Retry(format!("looking up the avatar: {e}")))?;
    let Some(row) = rows.values.into_iter().next() else {
        return Ok(None);
    };
    let text = |v: &Value| match v {
        Value::Text(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    };
    Ok(Some(Avatar {
        id: text(&row[0]).unwrap_or_default(),
        status: text(&row[1]).unwrap_or_default(),
        progress: match row[2] {
            Value::Int(n) => n,
            _ => 0,
        },
        training_type: text(&row[3]),
    }))
}

fn update(sql: &str, params: Vec<Value>) -> Result<(), HandlerError> {
    db::execute(sql, &params)
        .map(|_| ())
        .map_err(|e| HandlerError::Retry(format!("updating the avatar: {e}")))
}

fn opt_text(value: Option<String>) -> Value {
    value.map(Value::Text).unwrap_or(Value::Null)
}

/// Applies `outcome` to the avatar of FAL request `request_id` (statements
/// address it by `fal_request_id`, a text column on every backend).
fn apply(
    avatar: &Avatar,
    request_id: &str,
    outcome: Outcome,
    body: &str,
) -> Result<&'static str, HandlerError> {
    let id = Value::Text(request_id.to_string());
    match outcome {
        Outcome::Completed { lora_url, config_url } => {
            if avatar.status == "completed" {
                return Ok("already completed; nothing to change");
            }
            update(
                "UPDATE avatars SET status = 'completed', training_progress = 100, \
                 training_completed_at = CURRENT_TIMESTAMP, diffusers_lora_file_url = $2, \
                 config_file_url = $3, fal_response_data = $4, training_error = NULL, \
                 updated_at = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
                vec![
                    id,
                    opt_text(lora_url),
                    opt_text(config_url),
                    Value::Json(body.into()),
                ],
            )?;
            Ok("completed")
        }
        Outcome::Failed { message } => {
            if avatar.status == "completed" {
                return Ok("already completed; a later failure report is ignored");
            }
            update(
                "UPDATE avatars SET status = 'error', training_error = $2, \
                 fal_response_data = $3, updated_at = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
                vec![id, Value::Text(message), Value::Json(body.into())],
            )?;
            Ok("error")
        }
        Outcome::Cancelled => {
            if TERMINAL.contains(&avatar.status.as_str()) {
                return Ok("already finished; cancellation ignored");
            }
            update(
                "UPDATE avatars SET status = 'cancelled', fal_response_data = $2, \
                 updated_at = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
                vec![id, Value::Json(body.into())],
            )?;
            Ok("cancelled")
        }
        Outcome::Progress { progress } => {
            if TERMINAL.contains(&avatar.status.as_str()) {
                return Ok("already finished; progress report ignored");
            }
            // Progress never goes backwards: reports can arrive out of order.
            let progress = progress.map_or(avatar.progress, |p| p.max(avatar.progress));
            update(
                "UPDATE avatars SET status = 'training', training_progress = $2, \
                 last_status_check = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP \
                 WHERE fal_request_id = $1",
                vec![id, Value::Int(progress)],
            )?;
            Ok("training")
        }
    }
}

impl Guest for FalAvatarStatus {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {
        let report = parse(&event.body).map_err(HandlerError::Invalid)?;
        let Some(avatar) = find_avatar(&report.request_id)? else {
            log(
                Level::Warn,
                &format!(
                    "no avatar has fal_request_id {:?}; nothing to update",
                    report.request_id
                ),
            );
            return Ok(None);
        };
        let training_type = event
            .query
            .iter()
            .find(|(k, _)| k == "training_type")
            .map(|(_, v)| v.as_str());
        if let (Some(sent), Some(stored)) = (training_type, avatar.training_type.as_deref())
            && sent != stored
        {
            log(
                Level::Warn,
                &format!(
                    "webhook says training_type={sent}, avatar {} is {stored}",
                    avatar.id
                ),
            );
        }
        let body = String::from_utf8_lossy(&event.body);
        let result = apply(&avatar, &report.request_id, report.outcome, &body)?;
        log(
            Level::Info,
            &format!("avatar {} ({}): {result}", avatar.id, report.request_id),
        );
        Ok(None)
    }
}

export!(FalAvatarStatus);
