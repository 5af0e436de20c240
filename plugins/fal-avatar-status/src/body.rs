//! FAL webhook bodies, parsed into what they mean for an avatar.
//!
//! Kept free of the plugin bindings so it can be unit-tested natively.

use serde::Deserialize;
use serde_json::Value;

/// A file FAL produced: `{url, content_type?, file_name?, file_size?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct FalFile {
    pub url: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub file_size: Option<u64>,
}

impl FalFile {
    /// A file name safe to use as the last segment of a storage key:
    /// FAL's `file_name`, else the URL's last path segment, else `fallback`;
    /// only letters, digits, `.`, `-` and `_` survive.
    pub fn safe_name(&self, fallback: &str) -> String {
        let from_url = self
            .url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .map(str::to_string);
        let name = self
            .file_name
            .clone()
            .or(from_url)
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect::<String>();
        let name = name.trim_start_matches('.');
        if name.is_empty() {
            fallback.to_string()
        } else {
            name.chars().take(120).collect()
        }
    }
}

/// What a webhook says happened to the training.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Training finished. FAL's bodies carry the LoRA file (and usually the
    /// config); the legacy check body carries none.
    Completed {
        lora: Option<FalFile>,
        config: Option<FalFile>,
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

fn file_of(output: Option<&Value>, field: &str) -> Option<FalFile> {
    let file = output?.get(field)?;
    let text = |key: &str| file.get(key).and_then(Value::as_str).map(str::to_string);
    let url = text("url").filter(|url| url.starts_with("https://") || url.starts_with("http://"))?;
    Some(FalFile {
        url,
        file_name: text("file_name"),
        content_type: text("content_type"),
        file_size: file.get("file_size").and_then(Value::as_u64),
    })
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
    match file_of(output, "diffusers_lora_file") {
        Some(lora) => Outcome::Completed {
            lora: Some(lora),
            config: file_of(output, "config_file"),
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
                lora: None,
                config: None,
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
        let body = br#"{"request_id":"r1","status":"OK","payload":{"diffusers_lora_file":{"url":"https://x/l.safetensors","file_size":12,"file_name":"w.safetensors"},"config_file":{"url":"https://x/c.json"}}}"#;
        let Outcome::Completed {
            lora: Some(lora),
            config: Some(config),
        } = parse(body).unwrap().outcome
        else {
            panic!("not a completion with both files");
        };
        assert_eq!(lora.url, "https://x/l.safetensors");
        assert_eq!(lora.file_size, Some(12));
        assert_eq!(lora.safe_name("lora"), "w.safetensors");
        assert_eq!(config.safe_name("config.json"), "c.json");
    }

    #[test]
    fn file_names_cannot_escape_their_key() {
        let file = |url: &str, name: Option<&str>| FalFile {
            url: url.into(),
            file_name: name.map(str::to_string),
            content_type: None,
            file_size: None,
        };
        assert_eq!(
            file("https://x/a", Some("../../etc/passwd")).safe_name("f"),
            "etcpasswd"
        );
        assert_eq!(file("https://x/..", None).safe_name("f"), "f");
        assert_eq!(file("https://x/dir/", None).safe_name("f"), "f");
        assert_eq!(file("https://x/w.bin?sig=1", None).safe_name("f"), "w.bin");
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
