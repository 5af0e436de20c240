//! Operational webhooks: the host tells an operator's receiver (`[alerts]
//! url`) when an event goes dead and when the backlog's oldest due event
//! is older than the threshold ([`backlog`]), and again when it recovers.
//!
//! Each is a Standard Webhooks message, signed with the configured
//! `whsec_` secret the way the host's own `standard-webhooks` scheme
//! verifies: `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! headers, and a body `{"type", "timestamp", "data"}`. The id is stable
//! for what it reports (`dead:<event id>:<attempt>`), so a receiver that
//! drops repeated ids sees each alarm once, whichever instance sends it
//! and however often it is retried. A delivery is retried a few times
//! (1 s, 5 s, 30 s, 2 min) and then given up with an error in the log.

pub mod backlog;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{AlertSettings, Secret};

/// Waits between the attempts of one operational webhook.
const RETRY_WAITS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];

/// One operational webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Its Standard Webhooks id: the same for the same news.
    pub id: String,
    /// `event.dead`, `backlog.too_old` or `backlog.recovered`.
    pub kind: &'static str,
    pub data: Value,
}

impl Alarm {
    /// An event went dead after `attempts` attempts.
    pub fn event_dead(event_id: &str, route: &str, delivery_id: &str, attempts: u32, error: &str) -> Self {
        Self {
            id: format!("dead:{event_id}:{attempts}"),
            kind: "event.dead",
            data: json!({
                "event_id": event_id,
                "route": route,
                "delivery_id": delivery_id,
                "attempts": attempts,
                "error": error,
            }),
        }
    }

    /// The body sent: type, time and data, with the sending instance.
    fn body(&self, instance: &str, now_ms: i64) -> Vec<u8> {
        let mut data = self.data.clone();
        data["instance_id"] = json!(instance);
        let body = json!({ "type": self.kind, "timestamp": crate::rfc3339_ms(now_ms), "data": data });
        serde_json::to_vec(&body).expect("JSON values always serialise")
    }
}

/// Where operational webhooks go; cheap to clone. Without a receiver
/// configured, alarms are only logged.
#[derive(Clone)]
pub struct Alarms {
    target: Option<Arc<Target>>,
    instance: Arc<str>,
}

struct Target {
    url: String,
    secret: Secret,
    client: reqwest::Client,
}

impl Alarms {
    pub fn new(settings: &AlertSettings, instance: &str) -> anyhow::Result<Self> {
        let target = match (&settings.url, &settings.secret) {
            (Some(url), Some(secret)) => {
                crate::verify::sign::headers("standard-webhooks", secret.expose(), "check", b"", 0).map_err(
                    |e| {
                        anyhow::anyhow!(
                            "{} is not a Standard Webhooks secret (whsec_…): {e}",
                            settings.secret_env
                        )
                    },
                )?;
                Some(Arc::new(Target {
                    url: url.clone(),
                    secret: secret.clone(),
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .redirect(reqwest::redirect::Policy::none())
                        .build()?,
                }))
            }
            _ => None,
        };
        Ok(Self {
            target,
            instance: instance.into(),
        })
    }

    /// Sends `alarm` in the background, retrying a few times.
    pub fn raise(&self, alarm: Alarm) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let instance = self.instance.clone();
        tokio::spawn(async move {
            for wait in std::iter::once(Duration::ZERO).chain(RETRY_WAITS) {
                tokio::time::sleep(wait).await;
                match target.send(&alarm, &instance).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(alarm = %alarm.id, "operational webhook not delivered: {e:#}"),
                }
            }
            tracing::error!(alarm = %alarm.id, kind = alarm.kind, "operational webhook given up");
        });
    }
}

impl Target {
    async fn send(&self, alarm: &Alarm, instance: &str) -> anyhow::Result<()> {
        let now_ms = crate::now_ms();
        let body = alarm.body(instance, now_ms);
        let headers = crate::verify::sign::headers(
            "standard-webhooks",
            self.secret.expose(),
            &alarm.id,
            &body,
            now_ms / 1000,
        )?;
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let status = request.send().await?.status();
        anyhow::ensure!(status.is_success(), "the receiver answered {status}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_kind_the_time_and_the_instance() {
        let alarm = Alarm::event_dead("evt_1", "fal", "req-1", 3, "boom");
        assert_eq!(alarm.id, "dead:evt_1:3");
        let body: Value = serde_json::from_slice(&alarm.body("api-1", 0)).unwrap();
        assert_eq!(body["type"], "event.dead");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["instance_id"], "api-1");
        assert_eq!(body["data"]["error"], "boom");
    }
}
