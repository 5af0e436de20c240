//! The plugins page: every deployed plugin with its versions, which one is
//! active and which this instance runs; activate a version, roll back.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::page::{Notice, Section, back_to, failure, layout};
use super::session::Operator;
use crate::format_time as time;
use crate::http::state::AppState;
use crate::manifest::short_version as short;

pub async fn plugins(_: Operator, State(state): State<Arc<AppState>>, Query(q): Query<Notice>) -> Response {
    let versions = match state.plugin_sync.store.versions(None).await {
        Ok(versions) => versions,
        Err(e) => return failure("reading the plugin store failed", &e),
    };
    let loaded = state.plugins.snapshot();
    let mut names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    names.dedup();
    // Per plugin: its versions newest first, the active one, the one loaded here.
    let plugins: Vec<_> = names
        .iter()
        .map(|&name| {
            let mut of: Vec<_> = versions.iter().filter(|v| v.name == name).collect();
            of.sort_by_key(|v| std::cmp::Reverse(v.created_at_ms));
            let active = of.iter().find(|v| v.active).map(|v| v.version.as_str());
            let here = loaded.get(name).map(|p| p.version.clone());
            (name, of, active, here)
        })
        .collect();
    let body = html! {
        @if plugins.is_empty() {
            p class="muted" { "No plugins deployed." }
        }
        @for (name, of, active, here) in &plugins {
            section class="plugin" id={"plugin-" (name)} data-plugin=(name) {
                h2 { (name) }
                p {
                    "Active: " code class="active-version" { (active.map(short).unwrap_or("-")) }
                    " · loaded on this instance: " code { (here.as_deref().map(short).unwrap_or("-")) }
                }
                form method="post" action={"/admin/plugins/" (name) "/rollback"} class="inline" {
                    button type="submit" class="rollback" { "Roll back to the previous version" }
                }
                table {
                    thead { tr { th { "version" } th { "deployed" } th { "by" } th {} } }
                    tbody {
                        @for v in of {
                            tr data-version=(v.version) {
                                td { code { (short(&v.version)) } }
                                td { (time(v.created_at_ms)) }
                                td { (v.created_by) }
                                td {
                                    @if v.active {
                                        strong { "active" }
                                    } @else {
                                        form method="post" action={"/admin/plugins/" (name) "/activate"} class="inline" {
                                            input type="hidden" name="version" value=(v.version);
                                            button type="submit" class="activate" { "Activate" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout("Plugins", Section::Plugins, q.notice.as_deref(), body).into_response()
}

#[derive(Deserialize)]
pub struct Activate {
    version: String,
}

pub async fn activate(
    _: Operator,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Form(form): Form<Activate>,
) -> Response {
    let outcome = state
        .plugin_sync
        .store
        .activate(&name, &form.version, "console")
        .await;
    plugin_changed(&state, &name, outcome, "activated").await
}

pub async fn rollback(_: Operator, State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let outcome = state.plugin_sync.store.rollback(&name, "console").await;
    plugin_changed(&state, &name, outcome, "rolled back to").await
}

/// After an activation or a rollback: swap it in here, log it, and go back
/// to the plugins page saying what happened.
async fn plugin_changed(
    state: &AppState,
    name: &str,
    outcome: anyhow::Result<String>,
    did: &str,
) -> Response {
    let notice = match outcome {
        Ok(version) => {
            crate::http::admin_plugins::swap_here(state).await;
            tracing::info!(plugin = %name, version = short(&version), by = "console", "plugin {did} version");
            format!("{name} {did} {}.", short(&version))
        }
        Err(e) => format!("{name}: {e:#}"),
    };
    back_to(&format!("/admin/plugins#plugin-{name}"), &notice)
}
