//! `webhook-host schedules list|runs`: scheduled plugin runs, through the
//! admin API of a running host.

use anyhow::Result;
use reqwest::Method;

use super::plugin::{Admin, Server, short};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Every schedule: its interval, who holds it, the next run, failures.
    List,
    /// The newest runs: start, end, outcome, instance, version.
    Runs {
        /// Only this plugin's runs.
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn run(server: Server, command: Command) -> Result<()> {
    let admin = Admin::new(server)?;
    match command {
        Command::List => {
            let answer = admin.call(Method::GET, "/admin/v1/schedules", None).await?;
            println!(
                "{:<24} {:<16} {:>7} {:<24} {:<24} failures",
                "plugin", "schedule", "every", "running on", "next run"
            );
            for s in answer["schedules"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<16} {:>7} {:<24} {:<24} {}",
                    s["plugin"].as_str().unwrap_or("?"),
                    s["schedule"].as_str().unwrap_or("?"),
                    s["every_secs"].as_u64().map_or("-".into(), |n| format!("{n}s")),
                    s["owner"].as_str().unwrap_or("-"),
                    time(&s["next_run_at_ms"]),
                    s["failures"]
                );
            }
        }
        Command::Runs { plugin, limit } => {
            let mut path = format!("/admin/v1/schedules/runs?limit={limit}");
            if let Some(plugin) = plugin {
                path.push_str(&format!(
                    "&plugin={}",
                    url::form_urlencoded::byte_serialize(plugin.as_bytes()).collect::<String>()
                ));
            }
            let answer = admin.call(Method::GET, &path, None).await?;
            println!(
                "{:<24} {:<16} {:<24} {:>8} {:<9} {:<13} {:<20} error",
                "plugin", "schedule", "started", "ms", "outcome", "version", "instance"
            );
            for r in answer["runs"].as_array().into_iter().flatten() {
                let took = match (r["started_at_ms"].as_i64(), r["finished_at_ms"].as_i64()) {
                    (Some(start), Some(end)) => (end - start).to_string(),
                    _ => "-".into(),
                };
                println!(
                    "{:<24} {:<16} {:<24} {:>8} {:<9} {:<13} {:<20} {}",
                    r["plugin"].as_str().unwrap_or("?"),
                    r["schedule"].as_str().unwrap_or("?"),
                    time(&r["started_at_ms"]),
                    took,
                    r["outcome"].as_str().unwrap_or("?"),
                    short(&r["version"]),
                    r["instance"].as_str().unwrap_or("?"),
                    r["error"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Epoch milliseconds as UTC date and time.
fn time(ms: &serde_json::Value) -> String {
    ms.as_i64().map_or("-".into(), crate::format_time)
}
