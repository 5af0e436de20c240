//! Signed deliveries of the new provider, alone or as a steady stream from
//! senders that retry like a provider does: until a 2xx.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use webhook_host::verify::preset::Preset;
use webhook_host::verify::preset_sign::{Delivery, sign};
use webhook_host::verify::unix_now;

/// The body every delivery carries: the plugin records one effect row.
const BODY: &[u8] = br#"{"mode":"effect"}"#;

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    url: String,
    preset: Arc<Preset>,
    secret: String,
}

impl Sender {
    pub fn new(client: reqwest::Client, url: &str, preset: Preset, secret: &str) -> Self {
        Self {
            client,
            url: url.into(),
            preset: Arc::new(preset),
            secret: secret.into(),
        }
    }

    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    /// One delivery with id `id`, signed now; the status, or `None` when no
    /// answer came (connection refused or cut).
    pub async fn send(&self, id: &str) -> Option<u16> {
        let signed = sign(
            &self.preset,
            &self.secret,
            &Delivery {
                body: BODY,
                content_type: "application/json",
                url: Some(&self.url),
                query: "",
                certificate_url: None,
                delivery_id: id,
                now_unix: unix_now(),
            },
        )
        .unwrap();
        let response = self
            .client
            .post(&self.url)
            .headers(signed.headers)
            .header("content-type", "application/json")
            .body(signed.body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }
}

/// What a finished stream saw.
#[derive(Debug)]
pub struct Outcome {
    /// Deliveries sent (each accepted in the end).
    pub sent: usize,
    /// The non-2xx statuses answered on the way (retried).
    pub failures: Vec<u16>,
    /// Attempts that got no answer at all (retried).
    pub unanswered: usize,
}

pub struct Stream {
    acked: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<u16>>>,
    unanswered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Stream {
    /// `senders` senders delivering ids `<name>-<s>-<n>`, one after another
    /// (each until accepted), until [`finish`](Self::finish).
    pub fn start(sender: &Sender, name: &str, senders: usize) -> Self {
        let acked = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let unanswered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..senders {
            let sender = sender.clone();
            let (acked, failures, unanswered) = (acked.clone(), failures.clone(), unanswered.clone());
            let stop = stop.clone();
            let name = name.to_string();
            tasks.spawn(async move {
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = format!("{name}-{s}-{n}");
                    let started = Instant::now();
                    loop {
                        match sender.send(&id).await {
                            Some(status) if (200..300).contains(&status) => break,
                            Some(status) => failures.lock().unwrap().push(status),
                            None => {
                                unanswered.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(180),
                            "{id} never accepted"
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
        Self {
            acked,
            failures,
            unanswered,
            stop,
            tasks,
        }
    }

    /// Waits until `n` deliveries were accepted.
    pub async fn wait_acked(&self, n: usize) {
        while self.acked.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the senders once their current delivery is accepted.
    pub async fn finish(mut self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        Outcome {
            sent: self.acked.load(Ordering::SeqCst),
            failures: self.failures.lock().unwrap().clone(),
            unanswered: self.unanswered.load(Ordering::SeqCst),
        }
    }
}
