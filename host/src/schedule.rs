//! Scheduled plugin runs.
//!
//! A plugin declares `[[schedules]]` (a name and `every_secs`) and exports
//! `scheduled`. Every instance ticks once a second; for each schedule of an
//! active plugin it tries to claim the schedule's lease row, which succeeds
//! on one instance only when the run is due and nobody holds an unexpired
//! lease (a single conditional `UPDATE`, so PostgreSQL and SQLite both
//! arbitrate it). The winner runs the plugin with the same limits, grants
//! and transaction handling as an event, renews the lease while it runs,
//! commits only while it still holds the lease, records the run, and sets
//! the next run: `every_secs` after this one ends, doubled per consecutive
//! failure (up to 32 times) so an outage elsewhere is not hammered.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::watch;
use tracing::Instrument;

use crate::db::pool::{Db, on_pool};
use crate::inbox::{Inbox, ScheduleGuard, Spawn};
use crate::manifest::{ManifestSchedule, short_version};
use crate::now_ms;
use crate::plugins::PluginSet;
use crate::routes::RouteTable;
use crate::runtime::{LoadedPlugin, Runtime};

/// How often every instance looks for due schedules.
const TICK: Duration = Duration::from_secs(1);
/// A failing schedule waits `every_secs × 2^failures`, failures capped here.
const MAX_DOUBLINGS: u32 = 5;
/// How many runs the run list keeps per schedule.
const KEEP_RUNS: i64 = 200;

pub const RUNS: &str = "webhook_schedule_runs_total";

pub struct Scheduler {
    /// Its database holds the schedule leases and runs too.
    pub inbox: Inbox,
    pub runtime: Arc<Runtime>,
    pub plugins: Arc<PluginSet>,
    /// Where a run's follow-ups are stored: a route its plugin serves.
    pub routes: Arc<RouteTable>,
    /// This instance's lease owner name.
    pub owner: String,
    /// Schedules this instance is running now.
    running: Mutex<HashSet<(String, String)>>,
}

/// A schedule's state, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleState {
    pub plugin: String,
    pub schedule: String,
    pub owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub next_run_at_ms: i64,
    pub failures: i64,
}

/// One recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub plugin: String,
    pub schedule: String,
    pub version: String,
    pub instance: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `running`, `done`, `failed` or `abandoned` (its instance died).
    pub outcome: String,
    pub error: Option<String>,
}

impl Scheduler {
    pub fn new(
        inbox: Inbox,
        runtime: Arc<Runtime>,
        plugins: Arc<PluginSet>,
        routes: Arc<RouteTable>,
        owner: String,
    ) -> Self {
        Self {
            inbox,
            runtime,
            plugins,
            routes,
            owner,
            running: Mutex::new(HashSet::new()),
        }
    }

    /// Ticks until `shutdown` turns true.
    pub fn spawn(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        crate::vital::spawn("scheduler", async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !*shutdown.borrow() {
                tokio::select! {
                    _ = every.tick() => {}
                    changed = shutdown.changed() => if changed.is_err() { break },
                }
                if let Err(e) = self.clone().tick().await {
                    tracing::warn!("schedules: {e:#}");
                }
            }
        });
    }

    async fn tick(self: Arc<Self>) -> Result<()> {
        let plugins = self.plugins.snapshot();
        for plugin in plugins.values() {
            for schedule in &plugin.schedules {
                let key = (plugin.name.clone(), schedule.name.clone());
                if self.running().contains(&key) {
                    continue;
                }
                let Some(failures) = self.claim(&plugin.name, schedule, lease_ms(plugin)).await? else {
                    continue;
                };
                self.running().insert(key.clone());
                let (scheduler, plugin, schedule) = (self.clone(), plugin.clone(), schedule.clone());
                tokio::spawn(async move {
                    scheduler.run(&plugin, &schedule, failures).await;
                    scheduler.running().remove(&key);
                });
            }
        }
        Ok(())
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the schedule's lease when the run is due and nobody holds it;
    /// the consecutive failures so far when it did.
    async fn claim(&self, plugin: &str, schedule: &ManifestSchedule, lease_ms: i64) -> Result<Option<i64>> {
        let now = now_ms();
        // A schedule seen for the first time is added already claimed (its
        // first run is due now); an existing one is claimed only when due
        // and not held.
        let claimed: Option<(i64,)> = on_pool!(self.inbox.db(), |pool| sqlx::query_as(
            "INSERT INTO schedule_leases (plugin, schedule, owner, lease_until, next_run_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (plugin, schedule) DO UPDATE SET owner = $3, lease_until = $4 \
             WHERE schedule_leases.next_run_at <= $5 \
               AND (schedule_leases.owner IS NULL OR schedule_leases.lease_until < $5) \
             RETURNING CAST(failures AS BIGINT)"
        )
        .bind(plugin)
        .bind(&schedule.name)
        .bind(&self.owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(pool)
        .await
        .context("claiming a schedule")?);
        if claimed.is_some() {
            // Holding the lease, any run still marked running was left by
            // an instance that died.
            on_pool!(self.inbox.db(), |pool| sqlx::query(
                "UPDATE schedule_runs SET outcome = 'abandoned', finished_at = $1 \
                 WHERE plugin = $2 AND schedule = $3 AND outcome = 'running'"
            )
            .bind(now)
            .bind(plugin)
            .bind(&schedule.name)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .context("closing abandoned runs")?);
        }
        Ok(claimed.map(|(failures,)| failures))
    }

    /// Runs a claimed schedule once, records it and sets the next run.
    async fn run(&self, plugin: &LoadedPlugin, schedule: &ManifestSchedule, failures: i64) {
        let run_id = uuid::Uuid::now_v7().to_string();
        let span = tracing::info_span!(
            "schedule_run",
            run_id = %run_id,
            plugin = %plugin.name,
            schedule = %schedule.name,
            version = short_version(&plugin.version),
        );
        async {
            let started = now_ms();
            if let Err(e) = self.record_start(&run_id, plugin, schedule, started).await {
                tracing::warn!("recording the run's start: {e:#}");
            }
            let outcome = self.attempt(plugin, schedule, &run_id).await;
            let finished = now_ms();
            let (label, error) = match &outcome {
                Ok(()) => ("done", None),
                Err(e) => ("failed", Some(format!("{e:#}"))),
            };
            metrics::counter!(
                RUNS,
                "plugin" => plugin.name.clone(),
                "schedule" => schedule.name.clone(),
                "outcome" => label,
            )
            .increment(1);
            match &error {
                None => tracing::info!(ms = finished - started, "scheduled run done"),
                Some(e) => tracing::warn!(ms = finished - started, "scheduled run failed: {e}"),
            }
            let failures = if error.is_some() { failures + 1 } else { 0 };
            let delay = (schedule.every_secs as i64 * 1000) << failures.min(MAX_DOUBLINGS as i64);
            if let Err(e) = self
                .record_end(
                    &run_id,
                    plugin,
                    schedule,
                    finished,
                    label,
                    error.as_deref(),
                    finished + delay,
                    failures,
                )
                .await
            {
                tracing::warn!("recording the run's end: {e:#}");
            }
        }
        .instrument(span)
        .await
    }

    /// The plugin call inside its transaction, committed under the lease.
    async fn attempt(&self, plugin: &LoadedPlugin, schedule: &ManifestSchedule, run_id: &str) -> Result<()> {
        let tx = plugin.caps.db.begin(self.inbox.processing_db());
        let lease = lease_ms(plugin);
        let dispatched = tokio::select! {
            dispatched = self.runtime.run_scheduled(plugin, &schedule.name, run_id, tx) => dispatched,
            never = self.keep_lease(&plugin.name, &schedule.name, lease) => match never {},
        };
        let tx = match dispatched.result {
            Ok(_) => dispatched.tx.context("the run's transaction was lost")?,
            Err(e) => anyhow::bail!(e), // dropping the transaction rolls it back
        };
        let guard = ScheduleGuard {
            plugin: &plugin.name,
            schedule: &schedule.name,
            owner: &self.owner,
            lease_until_ms: now_ms() + lease,
        };
        // Its follow-ups go to a route the plugin serves, as an event's do.
        let followups = dispatched.after.followups;
        let route = match followups.is_empty() {
            true => None,
            false => Some(self.routes.serving(&plugin.name).with_context(|| {
                format!(
                    "the run queued follow-ups, but no route serves plugin {}",
                    plugin.name
                )
            })?),
        };
        let parent_id = format!("schedule:{}", schedule.name);
        let spawn = route.as_ref().map(|route| Spawn {
            route: &route.name,
            parent_id: &parent_id,
            request_id: None,
            followups: &followups,
        });
        anyhow::ensure!(
            self.inbox.commit_scheduled(tx, guard, spawn).await?,
            "another instance took the schedule's lease; nothing committed"
        );
        Ok(())
    }

    /// Renews the lease every third of its length while the run goes on.
    async fn keep_lease(&self, plugin: &str, schedule: &str, lease_ms: i64) -> std::convert::Infallible {
        let mut every = tokio::time::interval(Duration::from_millis((lease_ms / 3).max(1) as u64));
        every.tick().await;
        loop {
            every.tick().await;
            let renewed = on_pool!(self.inbox.db(), |pool| {
                sqlx::query(
                "UPDATE schedule_leases SET lease_until = $1 WHERE plugin = $2 AND schedule = $3 AND owner = $4"
            )
            .bind(now_ms() + lease_ms)
            .bind(plugin)
            .bind(schedule)
            .bind(&self.owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            });
            match renewed {
                Ok(1) => {}
                Ok(_) => tracing::warn!("the schedule's lease was lost while the run went on"),
                Err(e) => tracing::warn!("renewing the schedule's lease failed: {e:#}"),
            }
        }
    }

    async fn record_start(
        &self,
        run_id: &str,
        plugin: &LoadedPlugin,
        schedule: &ManifestSchedule,
        started: i64,
    ) -> Result<()> {
        on_pool!(self.inbox.db(), |pool| sqlx::query(
            "INSERT INTO schedule_runs (id, plugin, schedule, version, instance, started_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, 'running')"
        )
        .bind(run_id)
        .bind(&plugin.name)
        .bind(&schedule.name)
        .bind(&plugin.version)
        .bind(&self.owner)
        .bind(started)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())?);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_end(
        &self,
        run_id: &str,
        plugin: &LoadedPlugin,
        schedule: &ManifestSchedule,
        finished: i64,
        outcome: &str,
        error: Option<&str>,
        next_run_at: i64,
        failures: i64,
    ) -> Result<()> {
        on_pool!(self.inbox.db(), |pool| sqlx::query(
            "UPDATE schedule_runs SET finished_at = $1, outcome = $2, error = $3 WHERE id = $4"
        )
        .bind(finished)
        .bind(outcome)
        .bind(error)
        .bind(run_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())?);
        on_pool!(self.inbox.db(), |pool| sqlx::query(
            "UPDATE schedule_leases SET owner = NULL, lease_until = NULL, next_run_at = $1, failures = $2 \
             WHERE plugin = $3 AND schedule = $4 AND owner = $5"
        )
        .bind(next_run_at)
        .bind(failures as i32)
        .bind(&plugin.name)
        .bind(&schedule.name)
        .bind(&self.owner)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())?);
        // Keep the run list short: the newest runs of this schedule.
        on_pool!(self.inbox.db(), |pool| sqlx::query(
            "DELETE FROM schedule_runs WHERE plugin = $1 AND schedule = $2 AND id NOT IN \
             (SELECT id FROM schedule_runs WHERE plugin = $1 AND schedule = $2 \
              ORDER BY started_at DESC LIMIT $3)"
        )
        .bind(&plugin.name)
        .bind(&schedule.name)
        .bind(KEEP_RUNS)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())?);
        Ok(())
    }
}

/// How long a claim holds: twice the plugin's timeout, at least 30 s.
fn lease_ms(plugin: &LoadedPlugin) -> i64 {
    (plugin.limits.timeout.as_millis() as i64 * 2).max(30_000)
}

/// Every schedule's lease row.
pub async fn states(db: &Db) -> Result<Vec<ScheduleState>> {
    type Row = (String, String, Option<String>, Option<i64>, i64, i64);
    let rows: Vec<Row> = on_pool!(db, |pool| sqlx::query_as(
        "SELECT plugin, schedule, owner, lease_until, next_run_at, CAST(failures AS BIGINT) \
         FROM schedule_leases ORDER BY plugin, schedule"
    )
    .fetch_all(pool)
    .await?);
    Ok(rows
        .into_iter()
        .map(
            |(plugin, schedule, owner, lease_until_ms, next_run_at_ms, failures)| ScheduleState {
                plugin,
                schedule,
                owner,
                lease_until_ms,
                next_run_at_ms,
                failures,
            },
        )
        .collect())
}

/// The newest runs, of one plugin when given.
pub async fn runs(db: &Db, plugin: Option<&str>, limit: u32) -> Result<Vec<Run>> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = on_pool!(db, |pool| sqlx::query_as(
        "SELECT id, plugin, schedule, version, instance, started_at, finished_at, outcome, error \
         FROM schedule_runs WHERE $1 = '' OR plugin = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
    )
    .bind(plugin.unwrap_or(""))
    .bind(limit as i64)
    .fetch_all(pool)
    .await?);
    Ok(rows
        .into_iter()
        .map(
            |(id, plugin, schedule, version, instance, started_at_ms, finished_at_ms, outcome, error)| Run {
                id,
                plugin,
                schedule,
                version,
                instance,
                started_at_ms,
                finished_at_ms,
                outcome,
                error,
            },
        )
        .collect())
}
