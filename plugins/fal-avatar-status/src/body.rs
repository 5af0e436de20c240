//! FAL webhook bodies, parsed into what they mean for an avatar.
//!
//! Kept free of the plugin bindings so it can be unit-tested natively.

use serde::Deserialize;
use serde_json::Value;

/// What a webhook says happened to the training.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Completed {
        lora_url: Option<String>,
        config_url: Option<String>,
    },
    Failed {
        message: String,
    },
    Cancelled,
    Progress {
        progress: Option<i64>,
    },
}

#[derive(Debug, PartialEq)]
pub struct Report {
    pub request_id: String,
    pub outcome: Outcome,
}

#[derive(Deserialize)]
struct Raw {
    request_id: String,
    status: String,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    payload_error: Option<String>,
    #[serde(default)]
    progress: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

fn file_url(output: Option<&Value>, field: &str) -> Option<String> {
    output?
        .get(field)?
        .get("url")?
        .as_str()
        .filter(|url| !url.is_empty())
        .map(str::to_string)
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Training output with its LoRA file is a completion; anything else that
/// claims success is a failure naming what is missing. Fallback URLs are
/// never invented.
fn completion(output: Option<&Value>) -> Outcome {
    match file_url(output, "diffusers_lora_file") {
        Some(lora_url) => Outcome::Completed {
            lora_url: Some(lora_url),
            config_url: file_url(output, "config_file"),
        },
        None => Outcome::Failed {
            message: "FAL reported success but sent no diffusers_lora_file URL".into(),
        },
    }
}

fn progress_of(value: Option<&Value>) -> Result<Option<i64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|p| (0.0..=100.0).contains(p))
            .map(|p| Some(p.round() as i64))
            .ok_or_else(|| format!("progress must be a number from 0 to 100, got {v}")),
    }
}

/// Parses a FAL (or legacy) webhook body.
pub fn parse(body: &[u8]) -> Result<Report, String> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("not a FAL webhook body: {e}"))?;
    if raw.request_id.trim().is_empty() {
        return Err("request_id is empty".into());
    }
    let outcome = match raw.status.as_str() {
        "OK" => match raw.payload_error {
            Some(why) => Outcome::Failed {
                message: format!("FAL could not deliver the training result: {why}"),
            },
            None => completion(raw.payload.as_ref()),
        },
        "ERROR" => Outcome::Failed {
            message: text_of(raw.error.as_ref())
                .or_else(|| text_of(raw.payload.as_ref()))
                .unwrap_or_else(|| "FAL reported an error without a message".into()),
        },
        "completed" => match raw.result.as_ref().or(raw.payload.as_ref()) {
            // The legacy check body carries no files at all: a bare completion.
            None => Outcome::Completed {
                lora_url: None,
                config_url: None,
            },
            output => completion(output),
        },
        "failed" => Outcome::Failed {
            message: raw
                .message
                .or_else(|| text_of(raw.error.as_ref()))
                .unwrap_or_else(|| "training failed".into()),
        },
        "cancelled" => Outcome::Cancelled,
        "queued" | "in_progress" => Outcome::Progress {
            progress: progress_of(raw.progress.as_ref())?,
        },
        other => return Err(format!("unknown status {other:?}")),
    };
    Ok(Report {
        request_id: raw.request_id,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_body_with_files_is_a_completion() {
        let body = br#"{"request_id":"r1","status":"OK","payload":{"diffusers_lora_file":{"url":"https://x/l.safetensors"},"config_file":{"url":"https://x/c.json"}}}"#;
        let report = parse(body).unwrap();
        assert_eq!(
            report.outcome,
            Outcome::Completed {
                lora_url: Some("https://x/l.safetensors".into()),
                config_url: Some("https://x/c.json".into())
            }
        );
    }

    #[test]
    fn ok_body_without_lora_file_is_a_failure_not_a_fake_url() {
        let report = parse(br#"{"request_id":"r1","status":"OK","payload":{}}"#).unwrap();
        assert!(matches!(report.outcome, Outcome::Failed { .. }));
    }

    #[test]
    fn payload_error_is_a_failure() {
        let body = br#"{"request_id":"r1","status":"OK","payload":null,"payload_error":"not serialisable"}"#;
        match parse(body).unwrap().outcome {
            Outcome::Failed { message } => assert!(message.contains("not serialisable")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn error_body_keeps_the_message() {
        let body = br#"{"request_id":"r1","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[]}}"#;
        assert_eq!(
            parse(body).unwrap().outcome,
            Outcome::Failed {
                message: "Invalid status code: 422".into()
            }
        );
    }

    #[test]
    fn legacy_progress_is_rounded_and_bounded() {
        let body = br#"{"request_id":"r1","status":"in_progress","progress":41.6}"#;
        assert_eq!(
            parse(body).unwrap().outcome,
            Outcome::Progress { progress: Some(42) }
        );
        assert!(parse(br#"{"request_id":"r1","status":"in_progress","progress":140}"#).is_err());
    }

    #[test]
    fn unknown_status_and_missing_request_id_are_rejected() {
        assert!(parse(br#"{"request_id":"r1","status":"weird"}"#).is_err());
        assert!(parse(br#"{"status":"OK"}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
