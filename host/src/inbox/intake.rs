//! Group commit on the intake path.
//!
//! Request handlers hand verified deliveries to one writer task per process
//! over a channel. The writer stores everything waiting in one transaction
//! ([`Inbox::insert_batch`]) and then answers each handler. While one batch
//! commits, the next one gathers, so batches grow with load by themselves;
//! an idle host writes a lone delivery at once, with no added delay. No
//! handler hears "accepted" before its row's commit.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use tokio::sync::{mpsc, oneshot};

use super::{Inbox, Insert, NewEvent};

/// Most deliveries in one transaction.
const MAX_BATCH: usize = 256;
/// Deliveries waiting for the writer before handlers wait to enqueue.
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Insert, String>>;

/// The handle request handlers use.
#[derive(Clone)]
pub struct IntakeWriter {
    queue: mpsc::Sender<(NewEvent, Reply)>,
}

impl IntakeWriter {
    /// Starts the writer task over `inbox`.
    pub fn spawn(inbox: Arc<dyn Inbox>) -> Self {
        let (queue, mut waiting) = mpsc::channel::<(NewEvent, Reply)>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
                match inbox.insert_batch(events).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        for reply in replies {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Stores one delivery; returns after its batch committed.
    pub async fn insert(&self, event: NewEvent) -> Result<Insert> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| anyhow!("the intake writer stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the intake writer stopped"))?
            .map_err(|e| anyhow!(e))
    }
}
