//! Reconciliation: the `reconcile` schedule asks FAL's queue API about
//! avatars that have been training for a while without a webhook, and
//! applies what it learns with the webhook path's own code ([`crate::avatar::apply`]),
//! so a completion found here copies the files and sends the one notice
//! exactly as a webhook would, and a webhook arriving later changes nothing.
//!
//! Per run: at most `reconcile_max_per_run` avatars, least recently checked
//! first; an avatar is checked when it started training more than
//! `reconcile_after_secs` ago and was not checked in the last
//! `reconcile_recheck_secs`. After `reconcile_max_errors` failed calls the
//! run stops; a run where every call failed returns `retry`, and the host
//! doubles the schedule's interval until FAL answers again.

use serde_json::{Value as Json, json};

use crate::HandlerError;
use crate::avatar::{apply, find_avatar, number, setting, text};
use crate::webhook::plugin::config;
use crate::webhook::plugin::db::{self, Value};
use crate::webhook::plugin::log::{Level, log};

/// An avatar the run may check.
struct Candidate {
    request_id: String,
    training_type: String,
    last_check: Option<i64>,
}

/// What FAL's queue says about a request.
enum Found {
    /// Still queued or running.
    Pending(String),
    /// Finished: a body in the webhook's shape, for [`crate::body::parse`].
    Finished(Json),
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn run() -> Result<(), HandlerError> {
    let Some(key) = config::secret("fal_api_key") else {
        log(Level::Warn, "fal_api_key is not set; reconciliation skipped");
        return Ok(());
    };
    let after = number("reconcile_after_secs", 1800);
    let recheck = number("reconcile_recheck_secs", 600);
    let cap = number("reconcile_max_per_run", 20).max(1) as usize;
    let max_errors = number("reconcile_max_errors", 3).max(1);
    let base = setting("fal_queue_base", "https://queue.fal.run");
    let base = base.trim_end_matches('/');
    let now = now_secs();

    let rows = db::query(
        "SELECT fal_request_id, training_type, CAST(training_started_at AS TEXT), \
         CAST(last_status_check AS TEXT) FROM avatars \
         WHERE status = 'training' AND fal_request_id IS NOT NULL",
        &[],
    )
    .map_err(|e| HandlerError::Retry(format!("listing avatars in training: {e}")))?;
    let mut due: Vec<Candidate> = rows
        .values
        .iter()
        .filter_map(|row| {
            let started = text(&row[2]).and_then(|t| parse_timestamp(&t));
            let last_check = text(&row[3]).and_then(|t| parse_timestamp(&t));
            is_due(started, last_check, now, after, recheck).then(|| Candidate {
                request_id: text(&row[0]).unwrap_or_default(),
                training_type: text(&row[1]).unwrap_or_else(|| "portrait".into()),
                last_check,
            })
        })
        .filter(|c| !c.request_id.is_empty())
        .collect();
    due.sort_by_key(|c| c.last_check.unwrap_or(i64::MIN));
    let waiting = due.len();
    due.truncate(cap);

    let (mut answered, mut errors, mut finished) = (0, 0, 0);
    for candidate in &due {
        if errors >= max_errors {
            break;
        }
        let app = match candidate.training_type.as_str() {
            "style" => setting("fal_app_style", "fal-ai/flux-lora-fast-training"),
            _ => setting("fal_app_portrait", "fal-ai/flux-lora-portrait-trainer"),
        };
        let found = match ask(base, &app, &key, &candidate.request_id) {
            Ok(found) => found,
            Err(why) => {
                errors += 1;
                log(
                    Level::Warn,
                    &format!("FAL's queue did not answer for {}: {why}", candidate.request_id),
                );
                continue;
            }
        };
        answered += 1;
        match found {
            Found::Pending(state) => {
                log(
                    Level::Debug,
                    &format!("{} is {state} at FAL", candidate.request_id),
                );
                touch(&candidate.request_id)?;
            }
            Found::Finished(body) => {
                finished += 1;
                let text = body.to_string();
                let report = crate::body::parse(text.as_bytes()).map_err(HandlerError::Fatal)?;
                let Some(avatar) = find_avatar(&candidate.request_id)? else {
                    continue;
                };
                match apply(&avatar, &candidate.request_id, report.outcome, &text) {
                    Ok(result) => log(
                        Level::Info,
                        &format!(
                            "reconciled avatar {} ({}): {result}",
                            avatar.id, candidate.request_id
                        ),
                    ),
                    Err(e) => {
                        // Its files or notice could not be handled now: the
                        // next run (or the webhook) tries again.
                        log(
                            Level::Warn,
                            &format!(
                                "reconciling {} failed, retried later: {e:?}",
                                candidate.request_id
                            ),
                        );
                        touch(&candidate.request_id)?;
                    }
                }
            }
        }
    }
    log(
        Level::Info,
        &format!(
            "reconciliation: {waiting} due, {} checked, {finished} finished at FAL, {errors} failed calls",
            answered
        ),
    );
    if answered == 0 && errors > 0 {
        return Err(HandlerError::Retry(format!(
            "FAL's queue API failed {errors} time(s) and answered none"
        )));
    }
    Ok(())
}

/// Records that the avatar was checked now.
fn touch(request_id: &str) -> Result<(), HandlerError> {
    db::execute(
        "UPDATE avatars SET last_status_check = CURRENT_TIMESTAMP WHERE fal_request_id = $1",
        &[Value::Text(request_id.to_string())],
    )
    .map(|_| ())
    .map_err(|e| HandlerError::Retry(format!("recording the status check: {e}")))
}

/// Asks FAL's queue about one request: its status, and for a finished one
/// its result. `Err` for anything worth trying again later.
fn ask(base: &str, app: &str, key: &str, request_id: &str) -> Result<Found, String> {
    let get = |url: &str| {
        waki::Client::new()
            .get(url)
            .header("Authorization", format!("Key {key}"))
            .header("Accept", "application/json")
            .connect_timeout(std::time::Duration::from_secs(5))
            .send()
            .map_err(|e| format!("request failed: {e}"))
            .and_then(|response| {
                let status = response.status_code();
                let body = response.body().map_err(|e| format!("reading the answer: {e}"))?;
                Ok((status, body))
            })
    };
    let requests = format!("{base}/{app}/requests/{request_id}");
    let (status, body) = get(&format!("{requests}/status"))?;
    match status {
        200 | 202 => {}
        404 => {
            return Ok(Found::Finished(json!({
                "request_id": request_id,
                "status": "ERROR",
                "error": "FAL does not know this request (expired or never submitted)",
            })));
        }
        other => return Err(format!("status answered {other}")),
    }
    let state: Json = serde_json::from_slice(&body).map_err(|e| format!("status is not JSON: {e}"))?;
    let state = state["status"].as_str().unwrap_or("UNKNOWN").to_string();
    if state != "COMPLETED" {
        return Ok(Found::Pending(state));
    }
    let (status, body) = get(&requests)?;
    let result: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    match status {
        200 => Ok(Found::Finished(json!({
            "request_id": request_id,
            "status": "OK",
            "payload": result,
        }))),
        400..=499 if status != 408 && status != 429 => Ok(Found::Finished(json!({
            "request_id": request_id,
            "status": "ERROR",
            "error": failure_message(status, &result),
            "payload": result,
        }))),
        other => Err(format!("result answered {other}")),
    }
}

/// FAL's reason for a failed request: its `detail`, else the status.
fn failure_message(status: u16, result: &Json) -> String {
    match &result["detail"] {
        Json::String(detail) => detail.clone(),
        Json::Null => format!("FAL answered {status} for the result"),
        detail => detail.to_string(),
    }
}

/// Whether an avatar is due a check: training for longer than `after`
/// seconds (or since an unknown time) and not checked in the last `recheck`.
fn is_due(started: Option<i64>, last_check: Option<i64>, now: i64, after: i64, recheck: i64) -> bool {
    started.is_none_or(|s| now - s >= after) && last_check.is_none_or(|c| now - c >= recheck)
}

/// Seconds since the epoch of a database timestamp as text:
/// `YYYY-MM-DD HH:MM:SS[.frac][Z|±HH[:MM]]` (SQLite's `CURRENT_TIMESTAMP`,
/// PostgreSQL's `timestamptz` cast to text, ISO 8601 with `T`).
fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, rest) = (text.get(..10)?, text.get(11..)?);
    let mut d = date.split('-');
    let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (hour, minute, second) = (num(rest.get(..2)?)?, num(rest.get(3..5)?)?, num(rest.get(6..8)?)?);
    let mut tail = &rest[8..];
    if let Some(fraction) = tail.strip_prefix('.') {
        tail = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match tail.trim() {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            let hours = num(digits.get(..2)?)?;
            let minutes = digits.get(2..4).and_then(num).unwrap_or(0);
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Days from the civil date (proleptic Gregorian) to 1970-01-01.
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
    fn database_timestamps_parse_on_both_backends() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2026-11-29 01:02:03"), Some(1_795_914_123));
        assert_eq!(
            parse_timestamp("2026-11-29 01:02:03.123456+00"),
            Some(1_795_914_123)
        );
        assert_eq!(parse_timestamp("2026-11-29 04:02:03+03"), Some(1_795_914_123));
        assert_eq!(parse_timestamp("2026-11-28 19:32:03-05:30"), Some(1_795_914_123));
        assert_eq!(parse_timestamp("2026-11-29T01:02:03Z"), Some(1_795_914_123));
        for junk in ["", "yesterday", "2026-11-29", "2026-11-29 01:02:03 PST"] {
            assert_eq!(parse_timestamp(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn avatars_are_due_after_the_threshold_and_the_recheck_interval() {
        let now = 10_000;
        assert!(is_due(Some(now - 1800), None, now, 1800, 600));
        assert!(!is_due(Some(now - 1799), None, now, 1800, 600), "too young");
        assert!(
            !is_due(Some(0), Some(now - 599), now, 1800, 600),
            "checked recently"
        );
        assert!(is_due(Some(0), Some(now - 600), now, 1800, 600));
        assert!(is_due(None, None, now, 1800, 600), "unknown start");
    }
}
