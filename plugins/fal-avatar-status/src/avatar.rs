//! The webhook path: find the avatar a FAL report is about and apply the
//! report to it (files, photos, notice, row). It reaches the host only
//! through `crate::webhook::plugin` and `crate::telegram`, so the benchmark
//! can build the same code natively against the host's capabilities.

use serde_json::{Value as Json, json};

use crate::body::{FalFile, Outcome, parse};
use crate::effects;
use crate::webhook::plugin::db::{self, Value};
use crate::webhook::plugin::log::{Level, log};
use crate::webhook::plugin::{attempt, blob, config};
use crate::{Event, HandlerError};

/// An avatar as far as this plugin needs to know it.
pub(crate) struct Avatar {
    pub(crate) id: String,
    status: String,
    progress: i64,
    pub(crate) training_type: Option<String>,
    pub(crate) name: String,
    pub(crate) telegram_id: Option<String>,
    avatar_data: Option<String>,
}

const TERMINAL: [&str; 3] = ["completed", "error", "cancelled"];

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) | Value::Json(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn find_avatar(request_id: &str) -> Result<Option<Avatar>, HandlerError> {
    avatar_where("a.fal_request_id = $1", request_id)
}

/// The avatar with id `id`.
pub(crate) fn avatar_by_id(id: &str) -> Result<Option<Avatar>, HandlerError> {
    avatar_where("CAST(a.id AS TEXT) = $1", id)
}

fn avatar_where(condition: &str, value: &str) -> Result<Option<Avatar>, HandlerError> {
    let rows = db::query(
        &format!(
            "SELECT CAST(a.id AS TEXT), a.status, a.training_progress, a.training_type, a.name, \
             CAST(u.telegram_id AS TEXT), CAST(a.avatar_data AS TEXT) \
             FROM avatars a LEFT JOIN users u ON u.id = a.user_id WHERE {condition}"
        ),
        &[Value::Text(value.to_string())],
    )
    .map_err(|e| HandlerError::Retry(format!("looking up the avatar: {e}")))?;
    let Some(row) = rows.values.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some(Avatar {
        id: text(&row[0]).unwrap_or_default(),
        status: text(&row[1]).unwrap_or_default(),
        progress: match row[2] {
            Value::Int(n) => n,
            _ => 0,
        },
        training_type: text(&row[3]),
        name: text(&row[4]).unwrap_or_default(),
        telegram_id: text(&row[5]).filter(|t| !t.is_empty()),
        avatar_data: text(&row[6]),
    }))
}

fn update(sql: &str, params: Vec<Value>) -> Result<(), HandlerError> {
    db::execute(sql, &params)
        .map(|_| ())
        .map_err(|e| HandlerError::Retry(format!("updating the avatar: {e}")))
}

pub(crate) fn setting(key: &str, default: &str) -> String {
    config::get(key).unwrap_or_else(|| default.to_string())
}

/// A whole-number setting.
pub(crate) fn number(key: &str, default: i64) -> i64 {
    config::get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub(crate) fn enabled(key: &str, default: bool) -> bool {
    match config::get(key).as_deref() {
        Some("true") | Some("1") | Some("yes") => true,
        Some("false") | Some("0") | Some("no") => false,
        _ => default,
    }
}

/// Keeps ids usable as one key segment.
fn segment(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(100)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

/// Where one of FAL's files lives in our storage.
struct Stored {
    key: String,
    url: String,
    bytes: Option<u64>,
    file: FalFile,
}

/// Copies one FAL file to its stable key, unless an earlier attempt already
/// did (uploads appear whole or not at all, so a present key is complete).
fn copy_file(
    avatar: &Avatar,
    request_id: &str,
    file: &FalFile,
    fallback: &str,
) -> Result<Stored, HandlerError> {
    let folder = format!(
        "{}{}/lora/{}",
        setting("key_prefix", "avatars/"),
        segment(&avatar.id),
        segment(request_id)
    );
    let key = format!("{folder}/{}", file.safe_name(fallback));
    let present = blob::list_keys(&folder)
        .map_err(|e| HandlerError::Retry(format!("listing {folder}: {e}")))?
        .contains(&key);
    let bytes = if present {
        None
    } else {
        Some(blob::copy_from_url(&key, &file.url).map_err(|e| {
            HandlerError::Retry(format!("copying {} into storage: {e}", file.safe_name(fallback)))
        })?)
    };
    let url = blob::object_url(&key).map_err(|e| HandlerError::Retry(format!("naming {key}: {e}")))?;
    Ok(Stored {
        key,
        url,
        bytes,
        file: file.clone(),
    })
}

fn describe(stored: &Option<Stored>) -> Json {
    match stored {
        None => Json::Null,
        Some(s) => json!({
            "key": s.key,
            "url": s.url,
            "bytes": s.bytes.or(s.file.file_size),
            "content_type": s.file.content_type,
            "fal_url": s.file.url,
        }),
    }
}

/// The completion: files, then the row, with the notice and the photo
/// clean-up queued as follow-ups that run once the row is committed.
fn complete(
    avatar: &Avatar,
    request_id: &str,
    lora: Option<FalFile>,
    config_file: Option<FalFile>,
    body: &str,
) -> Result<String, HandlerError> {
    if avatar.status == "completed" {
        return Ok("already completed; nothing to change".into());
    }
    let lora = lora
        .map(|f| copy_file(avatar, request_id, &f, "pytorch_lora_weights.safetensors"))
        .transpose()?;
    let config_file = config_file
        .map(|f| copy_file(avatar, request_id, &f, "config.json"))
        .transpose()?;
    let mut data = avatar
        .avatar_data
        .as_deref()
        .and_then(|d| serde_json::from_str::<Json>(d).ok())
        .filter(Json::is_object)
        .unwrap_or_else(|| json!({}));
    if lora.is_some() {
        data["lora_storage"] = json!({
            "request_id": request_id,
            "lora": describe(&lora),
            "config": describe(&config_file),
        });
    }
    let fal_response: Json = serde_json::from_str(body).unwrap_or(Json::Null);
    update(
        "UPDATE avatars SET status = 'completed', training_progress = 100, \
         training_completed_at = CURRENT_TIMESTAMP, diffusers_lora_file_url = $2, \
         config_file_url = $3, fal_response_data = $4, avatar_data = $5, training_error = NULL, \
         updated_at = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
        vec![
            Value::Text(request_id.to_string()),
            lora.as_ref().map_or(Value::Null, |s| Value::Text(s.url.clone())),
            config_file
                .as_ref()
                .map_or(Value::Null, |s| Value::Text(s.url.clone())),
            Value::Json(fal_response.to_string()),
            Value::Json(data.to_string()),
        ],
    )?;
    let mut queued = Vec::new();
    if lora.is_some() && enabled("delete_training_photos", true) {
        effects::queue(effects::PHOTO_CLEANUP, &avatar.id, request_id)?;
        queued.push(effects::PHOTO_CLEANUP);
    }
    if enabled("notify", true) && avatar.telegram_id.is_some() {
        effects::queue(effects::NOTICE, &avatar.id, request_id)?;
        queued.push(effects::NOTICE);
    }
    Ok(format!(
        "completed ({} file(s) stored; follow-ups: {})",
        usize::from(lora.is_some()) + usize::from(config_file.is_some()),
        if queued.is_empty() {
            "none".to_string()
        } else {
            queued.join(", ")
        }
    ))
}

/// Applies `outcome` to the avatar of FAL request `request_id` (statements
/// address it by `fal_request_id`, a text column on every backend).
pub(crate) fn apply(
    avatar: &Avatar,
    request_id: &str,
    outcome: Outcome,
    body: &str,
) -> Result<String, HandlerError> {
    let id = Value::Text(request_id.to_string());
    match outcome {
        Outcome::Completed { lora, config } => complete(avatar, request_id, lora, config, body),
        Outcome::Failed { message } => {
            if avatar.status == "completed" {
                return Ok("already completed; a later failure report is ignored".into());
            }
            update(
                "UPDATE avatars SET status = 'error', training_error = $2, \
                 fal_response_data = $3, updated_at = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
                vec![id, Value::Text(message), Value::Json(body.into())],
            )?;
            Ok("error".into())
        }
        Outcome::Cancelled => {
            if TERMINAL.contains(&avatar.status.as_str()) {
                return Ok("already finished; cancellation ignored".into());
            }
            update(
                "UPDATE avatars SET status = 'cancelled', fal_response_data = $2, \
                 updated_at = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
                vec![id, Value::Json(body.into())],
            )?;
            Ok("cancelled".into())
        }
        Outcome::Progress { progress } => {
            if TERMINAL.contains(&avatar.status.as_str()) {
                return Ok("already finished; progress report ignored".into());
            }
            // Progress never goes backwards: reports can arrive out of order.
            let progress = progress.map_or(avatar.progress, |p| p.max(avatar.progress));
            update(
                "UPDATE avatars SET status = 'training', training_progress = $2, \
                 last_status_check = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP \
                 WHERE fal_request_id = $1",
                vec![id, Value::Int(progress)],
            )?;
            Ok("training".into())
        }
    }
}

/// Handles one webhook event: parse, find the avatar, apply.
pub fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {
    let report = parse(&event.body).map_err(HandlerError::Invalid)?;
    let Some(avatar) = find_avatar(&report.request_id)? else {
        // FAL may call before the bot has stored the request id: wait a
        // little for it, a few times, then let the event go.
        let attempts = number("unknown_request_attempts", 4).max(1);
        if i64::from(event.attempt) < attempts {
            let wait_ms = number("unknown_request_retry_ms", 15_000).max(0) as u64;
            attempt::retry_after(wait_ms.saturating_mul(u64::from(event.attempt)));
            return Err(HandlerError::Retry(format!(
                "no avatar has fal_request_id {:?} yet (attempt {} of {attempts})",
                report.request_id, event.attempt
            )));
        }
        log(
            Level::Warn,
            &format!(
                "no avatar has fal_request_id {:?} after {} attempts; nothing to update",
                report.request_id, event.attempt
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
