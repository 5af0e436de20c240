//! `webhook-host events list|show`: read the inbox.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::config::Settings;
use crate::inbox::{Replay, Status};

#[derive(Subcommand)]
pub enum Command {
    /// Newest events first.
    List {
        /// Only events in this status: pending, processing, done, dead.
        #[arg(long)]
        status: Option<String>,
        /// Only events of this route.
        #[arg(long)]
        route: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One event, with its body, as JSON.
    Show { id: String },
    /// Run an event again from its first attempt, or every dead one.
    Replay {
        /// The event to replay.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        /// Replay every dead event (of `--route`, if given).
        #[arg(long)]
        dead: bool,
        #[arg(long, requires = "dead")]
        route: Option<String>,
    },
}

pub async fn run(settings: Settings, command: Command) -> Result<()> {
    let inbox = crate::inbox::Inbox::open(&settings, 2).await?;
    match command {
        Command::List { status, route, limit } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => match Status::parse(s) {
                    Some(status) => Some(status),
                    None => bail!("unknown status {s:?}; use pending, processing, done or dead"),
                },
            };
            println!(
                "{:<36}  {:<10}  {:>3}  {:<20}  {:<20}  last error",
                "id", "status", "try", "route", "delivery"
            );
            let filter = crate::inbox::Filter {
                status,
                route: route.as_deref(),
            };
            for e in inbox.list(filter, limit).await? {
                println!(
                    "{:<36}  {:<10}  {:>3}  {:<20}  {:<20}  {}",
                    e.id,
                    e.status.as_str(),
                    e.attempts,
                    e.route,
                    e.delivery_id.chars().take(20).collect::<String>(),
                    e.last_error.as_deref().unwrap_or("")
                );
            }
        }
        Command::Replay { id, dead: _, route } => {
            let which = match &id {
                Some(id) => Replay::One(id),
                None => Replay::Dead {
                    route: route.as_deref(),
                },
            };
            let replayed = inbox.replay(which).await?;
            if id.is_some() && replayed == 0 {
                bail!(
                    "no event {} that can be replayed (unknown, or being processed)",
                    id.unwrap_or_default()
                );
            }
            println!("replayed {replayed} event(s); a running host picks them up at its next poll");
        }
        Command::Show { id } => {
            let Some(event) = inbox.get(&id).await? else {
                bail!("no event {id}")
            };
            let mut value = serde_json::to_value(&event)?;
            value["body"] = match std::str::from_utf8(&event.body) {
                Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| text.into()),
                Err(_) => format!("<{} bytes of binary>", event.body.len()).into(),
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    Ok(())
}
