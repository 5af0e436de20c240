//! The plugin author's kit: `plugin new` scaffolds a crate that builds for
//! `wasm32-wasip2` as is; `plugin test` runs a component once, locally, on
//! embedded backends (SQLite, a local folder, memory kv) and prints every
//! capability call it made and its result.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::caps::Services;
use crate::config::RuntimeSettings;
use crate::inbox::{Finish, Inbox, Insert, NewEvent, StoredPairs};
use crate::manifest::{Manifest, PluginKind};
use crate::plugins::store::version_of;
use crate::runtime::Runtime;

/// The plugin contract, built into the binary so scaffolds build standalone.
const WIT: &str = include_str!("../../../wit/plugin.wit");

#[derive(clap::Args)]
pub struct TestArgs {
    /// The component (`.wasm`).
    component: PathBuf,
    /// Default: the `.toml` beside the component.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The webhook body.
    #[arg(long)]
    payload: PathBuf,
    /// A request header, `name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// A query pair, `key=value` (repeatable).
    #[arg(long = "query")]
    query: Vec<String>,
    /// SQL files run on the test database first: schema, seed (repeatable).
    #[arg(long)]
    sql: Vec<PathBuf>,
    /// Keep the database and blobs here (default: a temporary folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `plugin new <name>`: a crate in `<dir>/<name>`, a handler or, with
/// `kind`, a verifier or responder.
pub fn new_plugin(name: &str, dir: &Path, kind: PluginKind) -> Result<PathBuf> {
    if !valid_name(name) {
        bail!("plugin name {name:?}: lowercase letters, digits and '-', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let crate_name = name.replace('-', "_");
    let mut files = [
        ("wit/plugin.wit", WIT.to_string()),
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = {{ version = "0.46", default-features = false, features = ["macros", "realloc"] }}

[profile.release]
lto = "thin"
opt-level = "s"

# A crate of its own, not part of an enclosing workspace.
[workspace]
"#
            ),
        ),
        (
            "src/lib.rs",
            format!(
                r#"//! `{name}`: a webhook-host plugin.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Try:   `webhook-host plugin test target/wasm32-wasip2/release/{crate_name}.wasm \
//!          --manifest manifest.toml --payload sample.json`

wit_bindgen::generate!({{
    path: "wit",
    world: "handler",
}});

use webhook::plugin::log::{{Level, log}};

struct Plugin;

impl Guest for Plugin {{
    /// Called once per delivery attempt of a verified, stored webhook.
    /// `Err(HandlerError::Invalid(..))` is never retried; `Retry`/`Fatal` are.
    fn handle(event: Event) -> Result<Option<Vec<u8>>, HandlerError> {{
        if event.body.is_empty() {{
            return Err(HandlerError::Invalid("empty body".into()));
        }}
        log(
            Level::Info,
            &format!("{{}} received {{}} bytes (attempt {{}})", event.route, event.body.len(), event.attempt),
        );
        Ok(None)
    }}
}}

export!(Plugin);
"#
            ),
        ),
        (
            "manifest.toml",
            format!(
                r#"# The operator's side of the plugin: name, limits, grants, config, secrets.
name = "{name}"
component = "{crate_name}.wasm"

[limits]
memory_mb = 32
timeout_ms = 10000

[grants]
# Uncomment what the plugin imports; the host refuses to load a component
# that imports an interface its manifest does not grant.
# db = {{ role = "{crate_name}", read = ["some_table"], write = ["other_table"] }}
# blob = {{ prefix = "{name}/" }}
# http = {{ allow = ["https://api.example.com"] }}
# kv = true

[config]
# greeting = "hello"

[secrets]
# api_key = "env:{upper}_API_KEY"
"#,
                upper = crate_name.to_ascii_uppercase()
            ),
        ),
        ("sample.json", "{\"hello\": \"world\"}\n".to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    if kind != PluginKind::Handler {
        files[2].1 = super::plugin_gate_kit::lib_rs(kind, name, &crate_name);
        files[3].1 = super::plugin_gate_kit::manifest(kind, name, &crate_name);
    }
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("files sit in the crate"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root)
}

fn pair(text: &str, separator: char, what: &str) -> Result<(String, String)> {
    let (k, v) = text
        .split_once(separator)
        .with_context(|| format!("{what} {text:?} must look like key{separator}value"))?;
    Ok((k.trim().to_ascii_lowercase(), v.trim().to_string()))
}

/// `plugin test`: one delivery through the real pipeline, on embedded backends.
pub async fn test_plugin(args: TestArgs) -> Result<()> {
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| args.component.with_extension("toml"));
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::parse(&text).context("the manifest is not valid")?;
    let bytes =
        std::fs::read(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
    let body = std::fs::read(&args.payload).with_context(|| format!("reading {}", args.payload.display()))?;
    let temp = std::env::temp_dir().join(format!(
        "webhook-host-plugin-test-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.clone());
    std::fs::create_dir_all(&data_dir)?;
    let outcome = run_once(&args, &manifest, &text, &bytes, body, &data_dir).await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    } else {
        println!("database and blobs kept in {}", data_dir.display());
    }
    outcome
}

async fn run_once(
    args: &TestArgs,
    manifest: &Manifest,
    text: &str,
    bytes: &[u8],
    body: Vec<u8>,
    data_dir: &Path,
) -> Result<()> {
    let inbox = Inbox::open_sqlite(data_dir, 2).await?;
    for file in &args.sql {
        let sql = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        sqlx::raw_sql(&sql)
            .execute(inbox.db().sqlite().expect("opened as SQLite"))
            .await
            .with_context(|| format!("running {}", file.display()))?;
    }
    let defaults = RuntimeSettings::default();
    let runtime = Runtime::new(&defaults, Services::embedded(data_dir)?)?;
    let version = version_of(bytes, text);
    let plugin = runtime.load(manifest, &version, bytes, &defaults)?;
    println!(
        "plugin {} version {}",
        plugin.name,
        crate::manifest::short_version(&version)
    );
    println!("imports: {}", plugin.imports.join(", "));

    let headers = args
        .headers
        .iter()
        .map(|h| pair(h, ':', "header"))
        .collect::<Result<Vec<_>>>()?;
    let query = args
        .query
        .iter()
        .map(|q| pair(q, '=', "query"))
        .collect::<Result<Vec<_>>>()?;
    if plugin.kind != PluginKind::Handler {
        return super::plugin_gate_kit::test_gate(&runtime, &plugin, headers, query, body, inbox.db()).await;
    }
    let stored = inbox
        .insert(NewEvent {
            route: manifest.name.clone(),
            delivery_id: "plugin-test".into(),
            received_at_ms: crate::now_ms(),
            due_at_ms: crate::now_ms(),
            headers: StoredPairs::new(headers.iter().map(|(n, v)| (n, v))),
            query: StoredPairs::new(query.iter().map(|(n, v)| (n, v))),
            body,
            request_id: None,
            order_key: None,
        })
        .await?;
    let Insert::Accepted { .. } = stored else {
        bail!("the test database already holds this delivery; use a fresh --data-dir");
    };
    let owner = "plugin-test";
    let event = inbox
        .claim(owner, 1, 60_000)
        .await?
        .pop()
        .context("the stored test event could not be claimed")?;
    let tx = plugin.caps.db.begin(inbox.db());
    let done = runtime.dispatch(&plugin, &event, tx, None).await;
    let finish = Finish {
        event_id: &event.id,
        owner,
        attempt: event.attempts,
        plugin: &plugin.name,
        plugin_version: Some(&plugin.version),
    };
    match (&done.result, done.tx) {
        (Ok(response), Some(tx)) => {
            inbox.complete(tx, finish, None).await?;
            println!("result: ok in {:?} (database writes committed)", done.elapsed);
            for followup in &done.after.followups {
                println!(
                    "queued follow-up {} ({} payload bytes, in {} ms): not run by `plugin test`",
                    followup.name,
                    followup.payload.len(),
                    followup.delay_ms
                );
            }
            if let Some(response) = response {
                println!("response body: {}", String::from_utf8_lossy(response));
            }
        }
        (result, _) => {
            let error = match result {
                Err(e) => e.to_string(),
                Ok(_) => "the event's transaction was lost".into(),
            };
            inbox.fail(finish, &error, None).await?;
            println!(
                "result: {error} after {:?} (database writes rolled back)",
                done.elapsed
            );
            bail!("the plugin did not handle the event");
        }
    }
    Ok(())
}
