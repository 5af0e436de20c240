//! Running one attempt: a fresh `Store` with the plugin's limits and
//! deadline, its capabilities bound to the event's transaction, the call,
//! and the outcome classified, with the transaction handed back.

use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::engine::{InstanceSlot, Runtime};
use super::instance::State;
use super::load::{Entry, LoadedPlugin};
use crate::caps::effects::FollowUp;
use crate::db::tx::EventTx;
use crate::inbox::event::Event;
use crate::wit::types::HandlerError;
use crate::wit::with_followups::FollowupHandler;
use crate::wit::with_followups::exports::webhook::plugin::followup::Task;
use crate::wit::with_schedules::ScheduledHandler;
use crate::wit::{self, Handler};

/// Extra wall-clock time beyond a plugin's budget before the call is dropped,
/// for guests that are waiting in a host call when the deadline passes.
const HOST_CALL_GRACE: Duration = Duration::from_secs(2);

/// Why one attempt of an event did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The plugin says the event can never succeed: not retried.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("retry: {0}")]
    Retry(String),
    #[error("fatal: {0}")]
    Fatal(String),
    #[error("trap: {0}")]
    Trap(String),
    #[error("timeout: the plugin ran longer than {0} ms")]
    Timeout(u64),
    #[error("memory limit: the plugin asked for {asked_mib} MiB, its limit is {limit_mib} MiB")]
    MemoryLimit { asked_mib: usize, limit_mib: usize },
}

impl DispatchError {
    /// Whether another attempt could succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, DispatchError::Invalid(_))
    }

    /// The metrics label: `invalid`, `retry`, `fatal`, `trap`, `timeout` or
    /// `memory_limit`.
    pub fn kind(&self) -> &'static str {
        match self {
            DispatchError::Invalid(_) => "invalid",
            DispatchError::Retry(_) => "retry",
            DispatchError::Fatal(_) => "fatal",
            DispatchError::Trap(_) => "trap",
            DispatchError::Timeout(_) => "timeout",
            DispatchError::MemoryLimit { .. } => "memory_limit",
        }
    }
}

impl From<HandlerError> for DispatchError {
    fn from(error: HandlerError) -> Self {
        match error {
            HandlerError::Invalid(m) => DispatchError::Invalid(m),
            HandlerError::Retry(m) => DispatchError::Retry(m),
            HandlerError::Fatal(m) => DispatchError::Fatal(m),
        }
    }
}

/// One call in a fresh store: its value or why there is none, the
/// transaction handed back, the time it took.
pub(super) struct Ran<T> {
    pub result: Result<T, DispatchError>,
    pub tx: Option<EventTx>,
    pub after: After,
    pub elapsed: Duration,
    pub phases: Phases,
}

/// Where an attempt's time went, in order; together they make its
/// `elapsed`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    /// The store's data: WASI context, output capture, capabilities.
    pub state: Duration,
    /// `Store::new`, its limiter and its deadline.
    pub store: Duration,
    /// Instantiating the component (zero when the call did not say).
    pub instantiate: Duration,
    /// The export's call, and classifying its outcome.
    pub call: Duration,
    /// Dropping the store: the instance back to the pool, its memory reset.
    pub teardown: Duration,
}

/// What an attempt left for the host to do once it ends.
#[derive(Debug, Default)]
pub struct After {
    /// Follow-ups to store with its commit (dropped when it fails).
    pub followups: Vec<FollowUp>,
    /// The plugin's retry-after hint, for a `retry`.
    pub retry_after_ms: Option<u64>,
}

/// A call that answers nothing on success (a schedule, a follow-up).
impl From<Ran<Result<(), HandlerError>>> for Dispatched {
    fn from(ran: Ran<Result<(), HandlerError>>) -> Self {
        Dispatched {
            result: ran
                .result
                .and_then(|r| r.map(|()| None).map_err(DispatchError::from)),
            tx: ran.tx,
            after: ran.after,
            elapsed: ran.elapsed,
            phases: ran.phases,
        }
    }
}

/// The result of one attempt, with the event's transaction handed back.
pub struct Dispatched {
    pub result: Result<Option<Vec<u8>>, DispatchError>,
    /// The transaction the plugin's statements ran in; commit it on success.
    pub tx: Option<EventTx>,
    pub after: After,
    pub elapsed: Duration,
    pub phases: Phases,
}

impl Runtime {
    /// Runs one attempt of `event` on `plugin` in `tx`, on `slot` when the caller reserved
    /// one (the worker does, in claim order), else on the next free one.
    pub async fn dispatch(
        &self,
        plugin: &LoadedPlugin,
        event: &Event,
        tx: EventTx,
        slot: Option<InstanceSlot>,
    ) -> Dispatched {
        if let Some(name) = &event.task {
            return self.dispatch_followup(plugin, event, name, tx, slot).await;
        }
        let Entry::Handler { handle, .. } = &plugin.entry else {
            return not_a(plugin, "handler", tx);
        };
        let wit_event = to_wit(event);
        let ran = self
            .run(plugin, &event.id, tx, slot, async |store| {
                let handler: Handler = handle.instantiate_async(&mut *store).await?;
                store.data_mut().instantiated = Some(Instant::now());
                handler.call_handle(&mut *store, &wit_event).await
            })
            .await;
        Dispatched {
            result: ran.result.and_then(|r| r.map_err(DispatchError::from)),
            tx: ran.tx,
            after: ran.after,
            elapsed: ran.elapsed,
            phases: ran.phases,
        }
    }

    /// Runs follow-up `event` (queued under `name`) on `plugin`'s
    /// `followup` export.
    async fn dispatch_followup(
        &self,
        plugin: &LoadedPlugin,
        event: &Event,
        name: &str,
        tx: EventTx,
        slot: Option<InstanceSlot>,
    ) -> Dispatched {
        let Entry::Handler {
            followup: Some(followup),
            ..
        } = &plugin.entry
        else {
            return not_a(
                plugin,
                "plugin that runs follow-ups (it does not export `followup`)",
                tx,
            );
        };
        let task = Task {
            id: event.id.clone(),
            name: name.to_string(),
            payload: event.body.clone(),
            parent: event.parent_id.clone().unwrap_or_default(),
            attempt: event.attempts,
        };
        let ran = self
            .run(plugin, &event.id, tx, slot, async |store| {
                let handler: FollowupHandler = followup.instantiate_async(&mut *store).await?;
                store.data_mut().instantiated = Some(Instant::now());
                handler
                    .webhook_plugin_followup()
                    .call_run_followup(&mut *store, &task)
                    .await
            })
            .await;
        ran.into()
    }

    /// Runs schedule `schedule` of `plugin` once (`run_id` tags its log
    /// lines and budgets), inside `tx`, with the plugin's limits.
    pub async fn run_scheduled(
        &self,
        plugin: &LoadedPlugin,
        schedule: &str,
        run_id: &str,
        tx: EventTx,
    ) -> Dispatched {
        let Entry::Handler {
            scheduled: Some(scheduled),
            ..
        } = &plugin.entry
        else {
            return not_a(plugin, "handler with schedules", tx);
        };
        let ran = self
            .run(plugin, run_id, tx, None, async |store| {
                let handler: ScheduledHandler = scheduled.instantiate_async(&mut *store).await?;
                store.data_mut().instantiated = Some(Instant::now());
                handler
                    .webhook_plugin_scheduled()
                    .call_run_scheduled(&mut *store, schedule)
                    .await
            })
            .await;
        ran.into()
    }

    /// What one instance of `plugin` gets (see [`State::new`]); the
    /// native benchmark of the fal logic calls the same capabilities
    /// without a `Store`.
    pub fn state(&self, plugin: &LoadedPlugin, tag: &str, tx: EventTx) -> State {
        State::new(
            &plugin.name,
            &plugin.caps,
            plugin.limits.memory_bytes,
            &self.services,
            tag,
            tx,
        )
    }

    /// A fresh store for `plugin` (limits, deadline, capabilities bound to
    /// `tx`), then `call` in it; a trap, timeout or memory limit
    /// classified, and the transaction handed back.
    pub(super) async fn run<T, F>(
        &self,
        plugin: &LoadedPlugin,
        tag: &str,
        tx: EventTx,
        slot: Option<InstanceSlot>,
        call: F,
    ) -> Ran<T>
    where
        F: AsyncFnOnce(&mut Store<State>) -> wasmtime::Result<T>,
    {
        // Waiting for a slot (in arrival order: the semaphore is fair) is
        // not the plugin's time; its budget starts once it has an instance.
        let _slot = match slot {
            Some(slot) => slot,
            None => self.reserve().await,
        };
        let started = Instant::now();
        let state = self.state(plugin, tag, tx);
        let state_built = Instant::now();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        let deadline = started + plugin.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
                ctx.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let store_built = Instant::now();
        let outcome = tokio::time::timeout(plugin.limits.timeout + HOST_CALL_GRACE, call(&mut store)).await;
        let timeout_ms = plugin.limits.timeout.as_millis() as u64;
        let result = match outcome {
            Err(_) => Err(DispatchError::Timeout(timeout_ms)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(trap)) => {
                let state = store.data();
                Err(if state.timed_out {
                    DispatchError::Timeout(timeout_ms)
                } else if let Some(asked) = state.limiter.exceeded {
                    DispatchError::MemoryLimit {
                        asked_mib: asked >> 20,
                        limit_mib: plugin.limits.memory_bytes >> 20,
                    }
                } else {
                    let mut message = match trap.downcast_ref::<wasmtime::Trap>() {
                        Some(code) => code.to_string(),
                        None => trap.root_cause().to_string(),
                    };
                    if let Some(said) = state.stderr.recent_lines() {
                        message = format!("{message} (guest stderr: {said})");
                    }
                    DispatchError::Trap(message)
                })
            }
        };
        let called = Instant::now();
        let instantiated = store.data().instantiated.unwrap_or(store_built);
        let caps = &mut store.data_mut().caps;
        let after = After {
            followups: caps.followups.take(),
            retry_after_ms: caps.attempt.retry_after_ms(),
        };
        let tx = caps.db.take_tx();
        drop(store);
        let ended = Instant::now();
        Ran {
            result,
            tx,
            after,
            elapsed: ended - started,
            phases: Phases {
                state: state_built - started,
                store: store_built - state_built,
                instantiate: instantiated - store_built,
                call: called - instantiated,
                teardown: ended - called,
            },
        }
    }
}

/// The answer to a call of an export `plugin` does not have (a route or
/// schedule naming a plugin of another kind).
fn not_a(plugin: &LoadedPlugin, what: &str, tx: EventTx) -> Dispatched {
    Dispatched {
        result: Err(DispatchError::Fatal(format!(
            "plugin {} is a {}, not a {what}",
            plugin.name,
            plugin.kind.as_str()
        ))),
        tx: Some(tx),
        after: After::default(),
        elapsed: Duration::ZERO,
        phases: Phases::default(),
    }
}

/// The WIT record of `event`, as a plugin receives it.
pub fn to_wit(event: &Event) -> wit::types::Event {
    wit::types::Event {
        id: event.id.clone(),
        route: event.route.clone(),
        delivery_id: event.delivery_id.clone(),
        received_at_ms: event.received_at_ms.max(0) as u64,
        attempt: event.attempts,
        headers: event
            .headers
            .iter()
            .map(|(name, value)| wit::types::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        query: event.query.clone(),
        body: event.body.clone(),
    }
}
