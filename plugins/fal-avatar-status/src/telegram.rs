//! The one outbound call of the webhook path: a JSON POST to Telegram's Bot
//! API, through the host's outbound HTTP (its allow-list applies).

use serde_json::Value;

/// POSTs `body` as JSON to `url`; the answer's status and body.
pub fn post_json(url: &str, body: &Value) -> Result<(u16, Vec<u8>), String> {
    let response = waki::Client::new()
        .post(url)
        .json(body)
        .connect_timeout(std::time::Duration::from_secs(5))
        .send()
        .map_err(|e| e.to_string())?;
    let status = response.status_code();
    Ok((status, response.body().unwrap_or_default()))
}
