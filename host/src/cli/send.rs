//! `webhook-host send`: builds a FAL webhook (a sample or a file), signs it
//! the way `fal-hmac` verifies, posts it and prints the answer.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::json;

use crate::verify::fal_hmac::{self, REQUEST_ID, SIGNATURE, TIMESTAMP, USER_ID};

#[derive(Clone, Copy, ValueEnum)]
pub enum Sample {
    /// FAL success with LoRA and config files.
    Ok,
    /// FAL failure (422).
    Error,
    /// Legacy progress report.
    InProgress,
}

#[derive(clap::Args)]
pub struct Args {
    /// Where to post.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8000/api/v1/avatar/status_update?training_type=portrait"
    )]
    url: String,
    /// Post this file's bytes instead of a sample; its `request_id` is used.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Which sample body to send.
    #[arg(long, value_enum, default_value = "ok")]
    sample: Sample,
    /// The FAL request id (the avatar's `fal_request_id`).
    #[arg(long, default_value = "demo-request-1")]
    request_id: String,
    #[arg(long, default_value = "demo-user")]
    user_id: String,
    /// Environment variable holding the signing secret.
    #[arg(long, default_value = "FAL_WEBHOOK_SECRET")]
    secret_env: String,
    /// Shift the signed timestamp by this many seconds (to try stale requests).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    skew_secs: i64,
}

/// A sample FAL body for `request_id`.
pub fn sample_body(sample: Sample, request_id: &str) -> serde_json::Value {
    match sample {
        Sample::Ok => json!({
            "request_id": request_id, "gateway_request_id": request_id, "status": "OK",
            "payload": {
                "diffusers_lora_file": {
                    "url": format!("https://v3.fal.media/files/demo/{request_id}/pytorch_lora_weights.safetensors"),
                    "content_type": "application/octet-stream",
                    "file_name": "pytorch_lora_weights.safetensors", "file_size": 89745224
                },
                "config_file": {
                    "url": format!("https://v3.fal.media/files/demo/{request_id}/config.json"),
                    "content_type": "application/octet-stream", "file_name": "config.json", "file_size": 1234
                }
            }
        }),
        Sample::Error => json!({
            "request_id": request_id, "gateway_request_id": request_id, "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": { "detail": [{ "loc": ["body", "images_data_url"], "msg": "field required" }] }
        }),
        Sample::InProgress => {
            json!({ "request_id": request_id, "status": "in_progress", "progress": 50 })
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    let secret = std::env::var(&args.secret_env)
        .ok()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("{} is not set; it holds the signing secret", args.secret_env))?;
    let (body, request_id) = match &args.file {
        Some(path) => {
            let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("request_id").and_then(|r| r.as_str()).map(str::to_string))
                .unwrap_or(args.request_id.clone());
            (body, id)
        }
        None => (
            serde_json::to_vec(&sample_body(args.sample, &args.request_id))?,
            args.request_id.clone(),
        ),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let timestamp = (now + args.skew_secs).to_string();
    let message = fal_hmac::canonical_message(&request_id, &args.user_id, &timestamp, &body);
    let signature = fal_hmac::sign(&secret, &message);
    let response = reqwest::Client::new()
        .post(&args.url)
        .header("content-type", "application/json")
        .header(REQUEST_ID, &request_id)
        .header(USER_ID, &args.user_id)
        .header(TIMESTAMP, &timestamp)
        .header(SIGNATURE, signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {}", args.url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("HTTP {}", status.as_u16());
    println!("{text}");
    if !status.is_success() {
        bail!("the host answered {status}");
    }
    Ok(())
}
