//! The worker: claims due events, reserves each one's instance, runs it on
//! its route's plugin, commits or records the failure with its backoff.
//! It sits above the runtime and the inbox, and is the only room that
//! drives both.
//!
//! On success the plugin's `db` statements and the event's move to `done`
//! commit in one transaction. On any failure that transaction rolls back and
//! the event goes back to `pending` with a backoff delay, or to `dead` once it
//! is out of attempts (at once for `invalid`). At most `concurrency` events
//! run at a time; the loop wakes when intake stores an event, and polls as a
//! backstop.

pub mod backoff;
pub mod threads;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use self::backoff::{Retry, RetryRule};
use self::threads::EventThreads;
use crate::alarms::{Alarm, Alarms};
use crate::config::WorkerSettings;
use crate::db::tx::EventTx;
use crate::inbox::Inbox;
use crate::inbox::complete::Completer;
use crate::inbox::event::{Event, Finish, Spawn};
use crate::manifest::short_version;
use crate::now_ms;
use crate::plugins::PluginSet;
use crate::routes::RouteTable;
use crate::runtime::{InstanceSlot, Runtime};
use crate::telemetry;

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done and committed; the handler's answer, if it gave one.
    Done(Option<Vec<u8>>),
    /// Failed: it runs again later, or, when `dead`, never.
    Failed { error: String, dead: bool },
    /// The lease was lost before the commit: another instance owns the event.
    LeaseLost,
}

pub struct Worker {
    pub inbox: Inbox,
    pub runtime: Arc<Runtime>,
    pub plugins: Arc<PluginSet>,
    pub routes: Arc<RouteTable>,
    pub settings: WorkerSettings,
    /// This instance's lease owner name.
    pub owner: String,
    /// Notified by intake when an event is stored.
    pub wake: Arc<Notify>,
    /// Where events run.
    pub threads: EventThreads,
    /// Marks events done in batches when their plugins wrote nothing.
    pub completer: Completer,
    /// Where a dead event is reported.
    pub alarms: Alarms,
}

impl Worker {
    /// Runs until `shutdown` turns true, then waits for in-flight events.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        // Refill in batches while busy: one claim per several finished
        // events rather than one per event. An idle worker claims at once.
        let capacity = self.settings.concurrency.min(self.runtime.instances().1);
        let refill = (capacity / 4).max(1);
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        let mut tasks = JoinSet::new();
        while !*shutdown.borrow() {
            while tasks.try_join_next().is_some() {}
            // No more than can start now: a claimed event never waits for an
            // instance while its lease runs out.
            let (in_use, max) = self.runtime.instances();
            let free = slots.available_permits().min(max.saturating_sub(in_use));
            let mut claimed = 0;
            if free > 0 && (free >= refill || tasks.is_empty()) {
                match self
                    .inbox
                    .claim(&self.owner, free, self.settings.lease_ms as i64)
                    .await
                {
                    Ok(events) => {
                        claimed = events.len();
                        for event in events {
                            let permit = slots.clone().acquire_owned().await.expect("never closed");
                            // Reserved here, in claim order (due time first),
                            // so events start in the order they came.
                            let instance = self.runtime.reserve().await;
                            let worker = self.clone();
                            tasks.spawn_on(
                                async move {
                                    let _ = worker.process(event, instance).await;
                                    drop(permit);
                                },
                                self.threads.handle(),
                            );
                        }
                    }
                    Err(e) => tracing::error!("claiming events failed: {e:#}"),
                }
            }
            if claimed > 0 && claimed == free {
                continue; // there may be more due right now
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                changed = shutdown.changed() => if changed.is_err() { break },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Runs `event` (claimed by the caller) now on the event threads, on
    /// the next free instance; a sync route's delivery runs so. The task
    /// goes on if the caller stops waiting for it.
    pub fn run_now(self: &Arc<Self>, event: Event) -> tokio::task::JoinHandle<Outcome> {
        let worker = self.clone();
        self.threads.handle().spawn(async move {
            let instance = worker.runtime.reserve().await;
            worker.process(event, instance).await
        })
    }

    /// Runs one claimed event to its next state, in an `event` span that
    /// every log line of the attempt (the plugin's own included) carries.
    async fn process(&self, event: Event, instance: InstanceSlot) -> Outcome {
        let span = tracing::info_span!(
            "event",
            event_id = %event.id,
            delivery_id = %event.delivery_id,
            route = %event.route,
            attempt = event.attempts,
            request_id = event.request_id.as_deref().unwrap_or("-"),
            plugin = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        self.attempt(event, instance).instrument(span).await
    }

    async fn attempt(&self, event: Event, instance: InstanceSlot) -> Outcome {
        let Some(route) = self.routes.get(&event.route) else {
            let finish = Finish {
                event_id: &event.id,
                owner: &self.owner,
                attempt: event.attempts,
                plugin: "",
                plugin_version: None,
            };
            let error = format!("route {:?} is not configured", event.route);
            drop(instance); // nothing will run: free it for the next event now
            let rule = RetryRule::default();
            let retry = rule.policy(false, &self.settings);
            return self
                .record_failure(&event, retry, finish, error, true, None)
                .await;
        };
        let Some(plugin) = self.plugins.get(&route.plugin) else {
            let finish = Finish {
                event_id: &event.id,
                owner: &self.owner,
                attempt: event.attempts,
                plugin: &route.plugin,
                plugin_version: None,
            };
            let error = format!("plugin {:?} is not loaded", route.plugin);
            drop(instance);
            let retry = route.retry.policy(false, &self.settings);
            return self
                .record_failure(&event, retry, finish, error, true, None)
                .await;
        };
        let calls_out = plugin.grants.http.is_some() || plugin.grants.blob.is_some();
        let retry = route.retry.policy(calls_out, &self.settings);
        let span = tracing::Span::current();
        span.record("plugin", plugin.name.as_str());
        span.record("version", short_version(&plugin.version));
        let finish = Finish {
            event_id: &event.id,
            owner: &self.owner,
            attempt: event.attempts,
            plugin: &plugin.name,
            plugin_version: Some(&plugin.version),
        };
        if event.attempts > retry.max_attempts {
            // Every claim counts as an attempt, so one past the limit means
            // the last one ended without a result: its instance stopped (or
            // lost the lease) while running it. An event that kills the host
            // is not run again and again.
            drop(instance);
            let why = event
                .last_error
                .as_deref()
                .unwrap_or("the last attempt ended without a result");
            let error = format!(
                "{why}; {} attempts, the route's limit is {}",
                event.attempts - 1,
                retry.max_attempts
            );
            return self
                .record_failure(&event, retry, finish, error, false, None)
                .await;
        }
        let tx = plugin.caps.db.begin(self.inbox.processing_db());
        let dispatched = tokio::select! {
            dispatched = self.runtime.dispatch(&plugin, &event, tx, Some(instance)) => dispatched,
            never = self.keep_lease(&event.id, event.attempts) => match never {},
        };
        let elapsed_ms = dispatched.elapsed.as_secs_f64() * 1000.0;
        let observe = |outcome: &'static str| {
            metrics::histogram!(
                telemetry::EVENT_DURATION,
                "plugin" => plugin.name.clone(),
                "version" => short_version(&plugin.version).to_owned(),
                "outcome" => outcome,
            )
            .record(dispatched.elapsed);
        };
        if let Err(error) = &dispatched.result {
            metrics::counter!(
                telemetry::PLUGIN_FAILURES,
                "plugin" => plugin.name.clone(),
                "kind" => error.kind(),
            )
            .increment(1);
        }
        let after = dispatched.after;
        let spawn = (!after.followups.is_empty()).then(|| Spawn {
            route: &event.route,
            parent_id: &event.id,
            request_id: event.request_id.as_deref(),
            followups: &after.followups,
        });
        match (dispatched.result, dispatched.tx) {
            (Ok(answer), Some(tx)) => match self.commit(tx, finish, spawn).await {
                Ok(true) => {
                    observe("done");
                    count_attempt(&event.route, &plugin.name, "done");
                    if spawn.is_some() {
                        self.wake.notify_one(); // its follow-ups may be due now
                    }
                    tracing::info!(
                        event_id = %event.id, route = %event.route, plugin = %plugin.name,
                        attempt = event.attempts, elapsed_ms, followups = after.followups.len(),
                        "event done"
                    );
                    Outcome::Done(answer)
                }
                Ok(false) => {
                    tracing::warn!(event_id = %event.id, "lease lost before commit; another claimer owns the event");
                    Outcome::LeaseLost
                }
                Err(e) => {
                    let error = format!("committing: {e:#}");
                    self.record_failure(&event, retry, finish, error, true, None)
                        .await
                }
            },
            (Ok(_), None) => {
                let error = "the event transaction was lost".to_string();
                self.record_failure(&event, retry, finish, error, true, None)
                    .await
            }
            (Err(err), tx) => {
                drop(tx); // rolls back whatever the plugin wrote, and its follow-ups with it
                observe("failed");
                let (retryable, hint) = (err.retryable(), after.retry_after_ms);
                self.record_failure(&event, retry, finish, err.to_string(), retryable, hint)
                    .await
            }
        }
    }

    /// Marks the event done: with the plugin's writes and follow-ups in
    /// its transaction, or, when it has neither, in the next batch of such
    /// completions.
    async fn commit(
        &self,
        tx: EventTx,
        finish: Finish<'_>,
        spawn: Option<Spawn<'_>>,
    ) -> anyhow::Result<bool> {
        if tx.touched() || spawn.is_some() {
            self.inbox.complete(tx, finish, spawn).await
        } else {
            self.completer.complete(finish).await
        }
    }

    /// Renews the event's lease every third of its length, for as long as
    /// the event runs, so that a long event is not taken over by another
    /// instance. Never returns.
    async fn keep_lease(&self, event_id: &str, attempt: u32) -> std::convert::Infallible {
        let lease_ms = self.settings.lease_ms as i64;
        let mut every = tokio::time::interval(Duration::from_millis((lease_ms / 3).max(1) as u64));
        every.tick().await;
        loop {
            every.tick().await;
            match self
                .inbox
                .extend_lease(event_id, &self.owner, attempt, lease_ms)
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!(event_id, "the lease was lost while the event ran"),
                Err(e) => tracing::warn!(event_id, "renewing the lease failed: {e:#}"),
            }
        }
    }

    /// Records a failed attempt: retried after `retry`'s wait (or the
    /// plugin's `hint_ms`) while `retryable` and attempts are left, else dead.
    async fn record_failure(
        &self,
        event: &Event,
        retry: Retry<'_>,
        finish: Finish<'_>,
        error: String,
        retryable: bool,
        hint_ms: Option<u64>,
    ) -> Outcome {
        let retry_at = (retryable && event.attempts < retry.max_attempts).then(|| {
            let delay = retry.delay_ms(event.attempts, hint_ms, &mut rand::rng());
            now_ms().saturating_add(delay as i64)
        });
        let outcome = if retry_at.is_some() { "retry" } else { "dead" };
        count_attempt(&event.route, finish.plugin, outcome);
        match retry_at {
            Some(at) => tracing::warn!(
                event_id = %event.id, route = %event.route, attempt = event.attempts,
                retry_in_ms = at - now_ms(), "attempt failed: {error}"
            ),
            None => tracing::error!(
                event_id = %event.id, route = %event.route, attempt = event.attempts,
                "event is dead: {error}"
            ),
        }
        match self.inbox.fail(finish, &error, retry_at).await {
            Ok(true) if retry_at.is_none() => self.alarms.raise(Alarm::event_dead(
                &event.id,
                &event.route,
                &event.delivery_id,
                event.attempts,
                &error,
            )),
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(event_id = %event.id, "the lease was lost; the failure is not recorded")
            }
            // The lease will expire and the event will be claimed again.
            Err(e) => tracing::error!(event_id = %event.id, "recording the failure failed: {e:#}"),
        }
        Outcome::Failed {
            error,
            dead: retry_at.is_none(),
        }
    }
}

fn count_attempt(route: &str, plugin: &str, outcome: &'static str) {
    metrics::counter!(
        telemetry::EVENT_ATTEMPTS,
        "route" => route.to_owned(),
        "plugin" => plugin.to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
}
