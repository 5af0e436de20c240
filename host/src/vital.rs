//! The background tasks the host cannot serve without: the intake writer,
//! the completion writer, the worker, the scheduler, plugin sync, the
//! inbox's notifier and listener, retention and the backlog monitor.
//!
//! Each runs through [`spawn`], which watches it: a task that panics is
//! recorded as dead, `/health` answers 503 from then on, and the
//! application stops and exits non-zero after [`GRACE`], so that the
//! orchestrator restarts it (a process that looks alive while every
//! delivery gets 503 is the failure this prevents). A task that returns
//! has finished its work (its channel closed at shutdown) and is not dead.
//!
//! Tests make a task die on purpose through `WEBHOOK_HOST_FAILPOINTS`: a
//! comma-separated list of failpoint names, each panicking its task at
//! its next turn (see [`failpoint`]); unset in production.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

/// How long a host with a dead task keeps answering (`/health` 503, so
/// that the proxy stops sending to it) before it stops.
pub const GRACE: Duration = Duration::from_secs(3);

/// A background task that died, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DeadTask {
    pub task: &'static str,
    pub reason: String,
    pub at_ms: i64,
}

#[derive(Default)]
struct Registry {
    dead: Mutex<Vec<DeadTask>>,
    died: Notify,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Runs `task` on the current runtime, watched: a panic marks `name`
/// dead. The handle resolves when the task has ended, either way.
pub fn spawn<F>(name: &'static str, task: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let running = tokio::spawn(task);
    tokio::spawn(async move {
        if let Err(ended) = running.await
            && ended.is_panic()
        {
            let payload = ended.into_panic();
            let reason = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "it panicked".into());
            record(name, reason);
        }
    })
}

/// Marks `task` dead for `reason`.
pub fn record(task: &'static str, reason: String) {
    tracing::error!(task, "a background task died: {reason}; the host stops");
    let registry = registry();
    registry
        .dead
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(DeadTask {
            task,
            reason,
            at_ms: crate::now_ms(),
        });
    registry.died.notify_waiters();
}

/// The tasks that died in this process.
pub fn dead() -> Vec<DeadTask> {
    registry().dead.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Resolves once a task has died (at once if one has).
pub async fn died() -> DeadTask {
    let registry = registry();
    loop {
        let notified = registry.died.notified();
        if let Some(first) = dead().into_iter().next() {
            return first;
        }
        notified.await;
    }
}

/// Whether the failpoint `name` is set; a task checks its own where it
/// would do its work, and panics when it is (tests only).
pub fn failpoint(name: &str) -> bool {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        std::env::var("WEBHOOK_HOST_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .contains(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_recorded_and_a_returning_one_is_not() {
        spawn("finishes", async {});
        spawn("panics", async { panic!("on purpose") });
        let first = tokio::time::timeout(Duration::from_secs(5), died())
            .await
            .expect("the death is told");
        assert_eq!((first.task, first.reason.as_str()), ("panics", "on purpose"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(dead().iter().all(|d| d.task == "panics"), "{:?}", dead());
    }
}
