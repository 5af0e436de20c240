//! `webhook-host send`: builds a webhook (a FAL sample or a file), signs it
//! with any scheme the host verifies, posts it and prints the answer.

use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::json;

use crate::verify::{sign, unix_now};

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
    /// Post this file's bytes instead of a sample; its `request_id` (or `id`) is the delivery id.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Which sample body to send.
    #[arg(long, value_enum, default_value = "ok")]
    sample: Sample,
    /// Signature scheme: fal-hmac, fal-ed25519, standard-webhooks, github, stripe.
    #[arg(long, default_value = "fal-hmac")]
    scheme: String,
    /// Sign as this provider preset instead (`providers list`; presets in
    /// PROVIDERS_DIR too). The key (WEBHOOK_SECRET by default) is the shared
    /// secret, or for public-key presets the private key (PKCS#8 PEM or
    /// base64 DER, or an Ed25519 seed in hex).
    #[arg(long, conflicts_with = "scheme")]
    provider: Option<String>,
    /// With --provider: send the preset's handshake (the one named, or its
    /// first) as its documentation shows it, signed when the provider signs
    /// it, with the handshake's method. A handshake that carries a token
    /// (Meta's verify token) takes it from HANDSHAKE_TOKEN when set.
    #[arg(long, requires = "provider", num_args = 0..=1, default_missing_value = "")]
    handshake: Option<String>,
    /// The body's content type (form presets sign form fields).
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// The URL the provider is given, for presets that sign it (default: --url without its query).
    #[arg(long)]
    public_url: Option<String>,
    /// The delivery id (FAL request id: the avatar's `fal_request_id`).
    #[arg(long, default_value = "demo-request-1")]
    request_id: String,
    /// Environment variable holding the key: the shared secret, or for
    /// fal-ed25519 the 32-byte private key in hex or base64.
    /// Default: FAL_WEBHOOK_SECRET (fal-hmac), FAL_SIGNING_KEY (fal-ed25519), WEBHOOK_SECRET (others).
    #[arg(long)]
    secret_env: Option<String>,
    /// Shift the signed timestamp by this many seconds (to try stale requests).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    skew_secs: i64,
    /// With `--sample ok`: serve the sample's LoRA and config files from
    /// 127.0.0.1 (instead of FAL's file host) until the host has fetched
    /// them, so the whole completion runs offline. The plugin's http grant
    /// must allow `http://127.0.0.1:*` with `allow_private` (scripts/run's
    /// demo manifest does).
    #[arg(long)]
    serve_files: bool,
}

/// Serves the `ok` sample's files on loopback; counts what was fetched.
struct DemoFiles {
    base: String,
    fetched: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

impl DemoFiles {
    async fn start() -> Result<Self> {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let fetched = std::sync::Arc::new(tokio::sync::watch::channel(0usize).0);
        let counter = fetched.clone();
        let app = axum::Router::new().route(
            "/files/{*path}",
            get(move |axum::extract::Path(path): axum::extract::Path<String>| {
                let counter = counter.clone();
                async move {
                    counter.send_modify(|n| *n += 1);
                    format!("demo file {path}\n").repeat(4096)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { base, fetched })
    }

    /// Waits until `count` files were fetched, or gives up after a minute.
    async fn wait_for(&self, count: usize) {
        let mut seen = self.fetched.subscribe();
        let done = tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|n| *n >= count))
            .await
            .is_ok();
        if done {
            println!("served {count} demo files to the host");
        } else {
            let fetched = *self.fetched.borrow();
            println!("the host fetched {fetched} of {count} demo files within a minute");
        }
    }
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
        Sample::InProgress => json!({ "request_id": request_id, "status": "in_progress", "progress": 50 }),
    }
}

pub async fn run(args: Args) -> Result<()> {
    if let (Some(provider), Some(handshake)) = (&args.provider, &args.handshake) {
        return send_handshake(&args, provider, handshake).await;
    }
    let secret_env = args.secret_env.clone().unwrap_or_else(|| {
        match args.scheme.as_str() {
            _ if args.provider.is_some() => "WEBHOOK_SECRET",
            "fal-hmac" => "FAL_WEBHOOK_SECRET",
            "fal-ed25519" => "FAL_SIGNING_KEY",
            _ => "WEBHOOK_SECRET",
        }
        .to_string()
    });
    let key = std::env::var(&secret_env)
        .ok()
        .filter(|s| !s.is_empty())
        .with_context(|| format!("{secret_env} is not set; it holds the signing key"))?;
    let demo = match (&args.file, args.sample, args.serve_files) {
        (None, Sample::Ok, true) => Some(DemoFiles::start().await?),
        _ => None,
    };
    let (body, delivery_id) = match &args.file {
        Some(path) => {
            let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    let id = v.get("request_id").or_else(|| v.get("id"))?;
                    id.as_str().map(str::to_string)
                })
                .unwrap_or(args.request_id.clone());
            (body, id)
        }
        None => {
            let mut body = serde_json::to_string(&sample_body(args.sample, &args.request_id))?;
            if let Some(demo) = &demo {
                body = body.replace("https://v3.fal.media", &demo.base);
            }
            (body.into_bytes(), args.request_id.clone())
        }
    };
    let now = unix_now() + args.skew_secs;
    let (url, headers, body) = match &args.provider {
        Some(provider) => signed_as_provider(&args, provider, &key, &delivery_id, body, now)?,
        None => {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("content-type", "application/json".parse()?);
            for (name, value) in sign::headers(&args.scheme, &key, &delivery_id, &body, now)? {
                headers.insert(name, value.parse()?);
            }
            (args.url.clone(), headers, body)
        }
    };
    let text = send_request(reqwest::Method::POST, &url, headers, body).await?;
    if let Some(demo) = demo
        && text.contains("\"accepted\"")
    {
        demo.wait_for(2).await;
    }
    Ok(())
}

/// Sends one request and prints the answer; an answer other than 2xx is an error.
async fn send_request(
    method: reqwest::Method,
    url: &str,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
) -> Result<String> {
    let response = reqwest::Client::new()
        .request(method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending {method} to {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("HTTP {}", status.as_u16());
    println!("{text}");
    if !status.is_success() {
        bail!("the host answered {status}");
    }
    Ok(text)
}

/// Sends `provider`'s handshake called `name` (its first when empty).
async fn send_handshake(args: &Args, provider: &str, name: &str) -> Result<()> {
    let preset = find_preset(provider)?;
    let spec = match name {
        "" => preset.handshakes.first(),
        name => preset.handshakes.iter().find(|h| h.name == name),
    };
    let Some(spec) = spec else {
        let known: Vec<&str> = preset.handshakes.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "provider {provider} has no handshake {name:?} (it has: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let secret_env = args.secret_env.as_deref().unwrap_or("WEBHOOK_SECRET");
    let key = match std::env::var(secret_env).ok().filter(|s| !s.is_empty()) {
        Some(key) => key,
        None if !spec.signed => String::new(),
        None => bail!("{secret_env} is not set; it holds the signing key"),
    };
    let (base, _) = args.url.split_once('?').unwrap_or((&args.url, ""));
    let public_url = args.public_url.clone().unwrap_or_else(|| base.to_string());
    let token = std::env::var("HANDSHAKE_TOKEN").ok().filter(|t| !t.is_empty());
    let signed = crate::verify::preset_sign::handshake(
        &preset,
        spec,
        &key,
        Some(&public_url),
        token.as_deref(),
        unix_now() + args.skew_secs,
    )?;
    let url = match signed.query.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", signed.query),
    };
    let method = reqwest::Method::from_bytes(spec.method.as_bytes())?;
    println!("{} {} handshake {:?}", spec.method, provider, spec.name);
    send_request(method, &url, signed.headers, signed.body).await?;
    Ok(())
}

/// A preset by name: built in, or in PROVIDERS_DIR.
fn find_preset(provider: &str) -> Result<std::sync::Arc<crate::verify::preset::Preset>> {
    let dir = std::env::var_os("PROVIDERS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    crate::verify::catalogue::Lookup {
        declared: &[],
        dir: dir.as_deref(),
    }
    .find(provider)
}

/// The URL to post to, the headers and the body of a delivery signed as
/// `provider`'s preset.
fn signed_as_provider(
    args: &Args,
    provider: &str,
    key: &str,
    delivery_id: &str,
    body: Vec<u8>,
    now_unix: i64,
) -> Result<(String, reqwest::header::HeaderMap, Vec<u8>)> {
    use crate::verify::preset_sign::{Delivery, sign};
    let preset = find_preset(provider)?;
    let (base, query) = args.url.split_once('?').unwrap_or((&args.url, ""));
    let public_url = args.public_url.clone().unwrap_or_else(|| base.to_string());
    let signed = sign(
        &preset,
        key,
        &Delivery {
            body: &body,
            content_type: &args.content_type,
            url: Some(&public_url),
            query,
            certificate_url: None,
            delivery_id,
            now_unix,
        },
    )?;
    let url = match signed.query.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", signed.query),
    };
    Ok((url, signed.headers, signed.body))
}
