//! The `webhook-host` commands. `main.rs` only calls [`main`].

mod db;
mod events;
mod plugin;
mod plugin_gate_kit;
mod plugin_kit;
mod providers;
mod schedules;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::Settings;
use crate::telemetry;

#[derive(Parser)]
#[command(
    name = "webhook-host",
    version,
    about = "Verified, durable webhooks handled by sandboxed Wasm plugins"
)]
struct Cli {
    /// TOML config file (routes, worker, runtime); default $CONFIG_FILE or ./webhook-host.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve webhooks and process events.
    Serve {
        /// Let routes whose secret is missing accept UNVERIFIED webhooks (development only).
        #[arg(long)]
        insecure_dev: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Sign a FAL webhook with FAL_WEBHOOK_SECRET and post it.
    Send(send::Args),
    /// Inspect stored events.
    #[command(subcommand)]
    Events(events::Command),
    /// Run SQL on the embedded database (for example the bot's avatar schema).
    #[command(subcommand)]
    Db(db::Command),
    /// Exit 0 when a host answers 200 on /health (a container's HEALTHCHECK).
    Healthcheck {
        /// Default: http://127.0.0.1:$PORT/health (PORT defaults to 8000).
        #[arg(long)]
        url: Option<String>,
    },
    /// Scheduled plugin runs on a running host (admin API).
    Schedules {
        #[command(flatten)]
        server: plugin::Server,
        #[command(subcommand)]
        command: schedules::Command,
    },
    /// The provider presets routes can name (built in, and in PROVIDERS_DIR).
    #[command(subcommand)]
    Providers(providers::Command),
    /// Say why a captured request does or does not verify: `verify --explain FILE`.
    Verify(providers::VerifyArgs),
    /// Deploy and manage plugin versions on a running host (admin API).
    Plugin {
        #[command(flatten)]
        server: plugin::Server,
        #[command(subcommand)]
        command: plugin::Command,
    },
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match &cli.command {
        // What `plugin test` shows: each capability call and the plugin's own log.
        Command::Plugin {
            command: plugin::Command::Test(_),
            ..
        } => "warn,webhook_host::trace=debug,webhook_host::caps::log=trace",
        _ => "info",
    };
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| default_level.into());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    telemetry::init(&level, json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { insecure_dev } => serve(Settings::from_env(config, insecure_dev)?).await,
        Command::Migrate => {
            let settings = Settings::from_env(config, true)?;
            crate::inbox::Inbox::open(&settings, 2).await?;
            match settings.database_url {
                Some(_) => println!("migrations applied to the PostgreSQL database"),
                None => println!("migrations applied in {}", settings.data_dir.display()),
            }
            Ok(())
        }
        Command::Send(args) => send::run(args).await,
        Command::Events(command) => events::run(Settings::from_env(config, true)?, command).await,
        Command::Db(command) => db::run(Settings::from_env(config, true)?, command).await,
        Command::Healthcheck { url } => healthcheck(url).await,
        Command::Schedules { server, command } => schedules::run(server, command).await,
        Command::Plugin { server, command } => plugin::run(server, command).await,
        Command::Providers(command) => providers::run(&Settings::from_env(config, true)?, command),
        Command::Verify(args) => providers::verify(&Settings::from_env(config, true)?, args).await,
    }
}

async fn healthcheck(url: Option<String>) -> Result<()> {
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
        format!("http://127.0.0.1:{port}/health")
    });
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

async fn serve(settings: Settings) -> Result<()> {
    let app = Application::build(settings).await?;
    let addr = app.local_addr()?;
    // One plain line on stdout, for scripts and tests to learn the port.
    println!("webhook-host listening on http://{addr}");
    tracing::info!(%addr, version = crate::VERSION, "listening");
    app.run(shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
