//! Group commit on the completion path.
//!
//! An event whose plugin never touched the database has nothing of its own
//! to commit: marking it `done` is the whole write. Such completions go to
//! one task per process, which marks everything waiting with one statement
//! in one transaction ([`Inbox::complete_untouched`]) and then answers each
//! worker task. As on the intake path, batches grow with load by themselves
//! and a lone completion is written at once. An event whose plugin did
//! write still commits its own transaction, its writes and its `done`
//! together.

use anyhow::anyhow;
use tokio::sync::{mpsc, oneshot};

use super::Inbox;
use super::event::Finish;
use super::intake::answer_each;

/// Most completions in one statement.
const MAX_BATCH: usize = 512;

/// A completion waiting for the writer, owned so it can cross tasks.
struct Job {
    event_id: String,
    owner: String,
    attempt: u32,
    plugin: String,
    plugin_version: Option<String>,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// The handle worker tasks complete untouched events through.
#[derive(Clone)]
pub struct Completer {
    queue: mpsc::UnboundedSender<Job>,
}

impl Completer {
    /// Starts the writer task on the current runtime; it ends when every
    /// handle is dropped.
    pub fn spawn(inbox: Inbox) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        crate::vital::spawn("completion writer", write(inbox, jobs));
        Self { queue }
    }

    /// Marks the event `done` (its plugin wrote nothing); false when `owner`
    /// no longer holds the lease. Answers after the commit.
    pub async fn complete(&self, finish: Finish<'_>) -> anyhow::Result<bool> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            event_id: finish.event_id.to_owned(),
            owner: finish.owner.to_owned(),
            attempt: finish.attempt,
            plugin: finish.plugin.to_owned(),
            plugin_version: finish.plugin_version.map(str::to_owned),
            reply,
        };
        self.queue
            .send(job)
            .map_err(|_| anyhow!("the completion writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the completion writer has stopped"))?
            .map_err(|e| anyhow!(e))
    }
}

async fn write(inbox: Inbox, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let finishes: Vec<Finish<'_>> = batch
            .iter()
            .map(|job| Finish {
                event_id: &job.event_id,
                owner: &job.owner,
                attempt: job.attempt,
                plugin: &job.plugin,
                plugin_version: job.plugin_version.as_deref(),
            })
            .collect();
        let outcome = inbox.complete_untouched(&finishes).await;
        drop(finishes);
        answer_each(batch.drain(..).map(|job| job.reply), outcome);
    }
}
