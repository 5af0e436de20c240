//! `github-activity`: a second provider, built only from a plugin and a
//! manifest. For every verified GitHub delivery it
//! - archives the raw payload in object storage at
//!   `github/<owner>/<repo>/<event>/<delivery id>.json` (a stable key, so a
//!   retry overwrites instead of duplicating),
//! - counts deliveries per repository and event in the kv store (once per
//!   delivery: a marker guards the increment against retries),
//! - posts a one-line summary to the chat webhook named by `notify_url`.
//!
//! It uses blob, kv and outbound HTTP, and no database: the host needs no
//! change to serve it.

// The generated bindings take many arguments in places; that is theirs.
#![allow(clippy::too_many_arguments)]

mod summary;

wit_bindgen::generate!({
    path: "../../wit",
    world: "handler",
});

use webhook::plugin::log::{Level, log};
use webhook::plugin::{blob, config, kv};

struct GithubActivity;

/// How long the "counted" marker of a delivery lives.
const COUNTED_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

fn header<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

impl Guest for GithubActivity {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {
        let kind = header(&event, "x-github-event").unwrap_or("unknown");
        let delivery = summary::Delivery::parse(kind, &event.body).map_err(HandlerError::Invalid)?;
        if kind == "ping" {
            log(Level::Info, &format!("ping from {}", delivery.repository));
            return Ok(None);
        }
        let id = summary::segment(&event.delivery_id);
        let key = format!(
            "github/{}/{}/{id}.json",
            delivery.repository_path(),
            summary::segment(kind)
        );
        blob::put(&key, &event.body, Some("application/json"))
            .map_err(|e| HandlerError::Retry(format!("archiving the delivery: {e}")))?;

        let counter = format!("count:{}:{kind}", delivery.repository);
        let count = if kv::set_if_absent(&format!("counted:{id}"), b"1", Some(COUNTED_TTL_MS))
            .map_err(|e| HandlerError::Retry(format!("kv: {e}")))?
        {
            kv::increment(&counter, 1).map_err(|e| HandlerError::Retry(format!("kv: {e}")))?
        } else {
            kv::increment(&counter, 0).map_err(|e| HandlerError::Retry(format!("kv: {e}")))?
        };

        if let Some(url) = config::get("notify_url").filter(|u| !u.is_empty()) {
            let text = delivery.summary(count);
            let response = waki::Client::new()
                .post(&url)
                .json(&serde_json::json!({ "text": text }))
                .connect_timeout(std::time::Duration::from_secs(5))
                .send()
                .map_err(|e| HandlerError::Retry(format!("posting the summary: {e}")))?;
            let status = response.status_code();
            if !(200..300).contains(&status) {
                return Err(HandlerError::Retry(format!("the chat webhook answered {status}")));
            }
        }
        log(
            Level::Info,
            &format!("{kind} on {} archived at {key}", delivery.repository),
        );
        Ok(None)
    }
}

export!(GithubActivity);
