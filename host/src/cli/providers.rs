//! `webhook-host providers list|show` (the presets this host can name:
//! built in, and in `PROVIDERS_DIR`) and `webhook-host verify --explain`
//! (why a captured request does or does not verify).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config::{Secret, Settings};
use crate::verify::catalogue::Lookup;
use crate::verify::explain::{Captured, Setup, explain};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Every provider preset, one per line: name, algorithm, documentation.
    List,
    /// One preset: where its signature is, what it signs, how a route names it.
    Show { name: String },
}

pub fn run(settings: &Settings, command: Command) -> Result<()> {
    let lookup = Lookup {
        declared: &[],
        dir: settings.providers_dir.as_deref(),
    };
    match command {
        Command::List => {
            for preset in lookup.all()? {
                println!(
                    "{:<20} {:<20} {}",
                    preset.name,
                    preset.signature.algorithm.as_str(),
                    preset.docs
                );
            }
        }
        Command::Show { name } => println!("{}", lookup.find(&name)?.describe()),
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A captured request: raw HTTP (request line, headers, a blank line, the body).
    #[arg(long, value_name = "FILE")]
    explain: PathBuf,
    /// The preset to check it against (or give --route).
    #[arg(long)]
    provider: Option<String>,
    /// A route of the host's config: its preset, keys, tolerance and public_url.
    #[arg(long)]
    route: Option<String>,
    /// Environment variable holding the key (with --provider).
    #[arg(long, default_value = "WEBHOOK_SECRET")]
    secret_env: String,
    /// The URL given to the provider (presets that sign it).
    #[arg(long)]
    public_url: Option<String>,
    #[arg(long, default_value_t = 300)]
    tolerance_secs: u64,
    /// Check as of this Unix time (a recorded request's); default now.
    #[arg(long)]
    now: Option<i64>,
}

pub async fn verify(settings: &Settings, args: VerifyArgs) -> Result<()> {
    let raw = std::fs::read(&args.explain).with_context(|| format!("reading {}", args.explain.display()))?;
    let captured = Captured::parse(&raw)?;
    let lookup = Lookup {
        declared: &[],
        dir: settings.providers_dir.as_deref(),
    };
    let env_secret = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    let (preset, keys, tolerance, public_url) = match (&args.provider, &args.route) {
        (Some(provider), None) => {
            let key = env_secret(&args.secret_env)
                .with_context(|| format!("{} is not set; it holds the route's key", args.secret_env))?;
            (
                lookup.find(provider)?,
                vec![key],
                args.tolerance_secs,
                args.public_url.clone(),
            )
        }
        (None, Some(route)) => {
            let config = settings
                .routes
                .iter()
                .find(|r| &r.name == route)
                .with_context(|| format!("no route {route:?} in the host's config"))?;
            let entry = config
                .verify
                .iter()
                .find(|v| v.provider.is_some())
                .with_context(|| format!("route {route:?} names no provider preset"))?;
            let provider = entry.provider.as_deref().unwrap_or_default();
            let keys = entry.resolve_keys(&env_secret)?;
            if keys.is_empty() {
                bail!("route {route:?}: no key is set ({})", entry.key_sources());
            }
            let url = args.public_url.clone().or_else(|| config.public_url.clone());
            (lookup.find(provider)?, keys, entry.tolerance_secs, url)
        }
        _ => bail!("give --provider NAME or --route NAME"),
    };
    let setup = Setup {
        preset,
        keys: &keys,
        tolerance_secs: tolerance,
        public_url: public_url.as_deref(),
    };
    let lines = explain(
        &setup,
        &captured,
        args.now.unwrap_or_else(crate::verify::unix_now),
    )
    .await?;
    for line in &lines {
        println!("{line}");
    }
    if !lines.first().is_some_and(|l| l.starts_with("verified")) {
        bail!("the request does not verify");
    }
    Ok(())
}
