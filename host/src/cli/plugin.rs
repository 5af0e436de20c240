//! `webhook-host plugin …`: deploy and manage plugin versions on a running
//! host through its admin API (`--server`, `--token` or `ADMIN_TOKEN`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Server {
    /// The host's base URL (any instance of a cluster).
    #[arg(
        long,
        env = "WEBHOOK_HOST_SERVER",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    server: String,
    /// The admin bearer token.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

/// Registry access for `push` and `deploy oci://…`; credentials from
/// `OCI_USERNAME` / `OCI_PASSWORD` when set.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry (a private registry without TLS).
    #[arg(long)]
    insecure_http: bool,
}

impl RegistryArgs {
    fn registry(&self) -> crate::plugins::oci::Registry {
        crate::plugins::oci::Registry {
            insecure_http: self.insecure_http,
            username: std::env::var("OCI_USERNAME").ok().filter(|v| !v.is_empty()),
            password: std::env::var("OCI_PASSWORD").ok().filter(|v| !v.is_empty()),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Upload a component with its manifest (validated and compiled by the
    /// host first) and activate it on every instance. SOURCE is a `.wasm`
    /// file or `oci://registry/repository:tag`.
    Deploy {
        source: String,
        /// The manifest of a `.wasm` file; default: the `.toml` beside it.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Store the version without activating it.
        #[arg(long)]
        no_activate: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Scaffold a plugin crate that builds for wasm32-wasip2 as is.
    New {
        name: String,
        /// Where to create `<name>/`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// `handler` (the default), or `verifier` / `responder`: run on a
        /// request before anything is stored.
        #[arg(long, default_value = "handler", value_parser = ["handler", "verifier", "responder"])]
        kind: String,
    },
    /// Run a component once, locally, on embedded backends, and print every
    /// capability call it makes and its result.
    Test(super::plugin_kit::TestArgs),
    /// Push a component and its manifest to an OCI registry as a Wasm artifact.
    Push {
        component: PathBuf,
        /// `registry/repository:tag` (with or without `oci://`).
        target: String,
        /// Default: the `.toml` beside the component.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Every plugin with its versions, active and loaded.
    List,
    /// One plugin: versions, manifest, imports, limits.
    Inspect { name: String },
    /// Make a stored version the active one (8+ hex characters of its id).
    Activate { name: String, version: String },
    /// Activate the version that was active before the current one.
    Rollback { name: String },
    /// Delete a stored version that is not active.
    Remove { name: String, version: String },
}

pub(super) struct Admin {
    client: reqwest::Client,
    server: String,
    token: String,
}

impl Admin {
    pub(super) fn new(server: Server) -> Result<Self> {
        let token = server
            .token
            .filter(|t| !t.is_empty())
            .context("the admin token is missing: pass --token or set ADMIN_TOKEN")?;
        Ok(Self {
            client: reqwest::Client::new(),
            server: server.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.server);
        let mut request = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = answer["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| answer.to_string());
            bail!("{status}: {message}");
        }
        Ok(answer)
    }
}

pub(super) fn short(version: &Value) -> &str {
    crate::manifest::short_version(version.as_str().unwrap_or("-"))
}

/// A component file and its manifest (default: the `.toml` beside it).
fn read_local(component: &std::path::Path, manifest: Option<PathBuf>) -> Result<(Vec<u8>, String)> {
    let manifest = manifest.unwrap_or_else(|| component.with_extension("toml"));
    let text =
        std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let bytes = std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    Ok((bytes, text))
}

pub async fn run(server: Server, command: Command) -> Result<()> {
    use reqwest::Method;
    if let Command::Push {
        component,
        target,
        manifest,
        registry,
    } = &command
    {
        let (bytes, text) = read_local(component, manifest.clone())?;
        crate::manifest::Manifest::parse(&text).context("the manifest is not valid")?;
        let url = crate::plugins::oci::push(&registry.registry(), target, &bytes, &text).await?;
        println!("pushed {target} ({url})");
        return Ok(());
    }
    let command = match command {
        Command::New { name, dir, kind } => {
            let kind = match kind.as_str() {
                "verifier" => crate::manifest::PluginKind::Verifier,
                "responder" => crate::manifest::PluginKind::Responder,
                _ => crate::manifest::PluginKind::Handler,
            };
            let root = super::plugin_kit::new_plugin(&name, &dir, kind)?;
            println!("created {}", root.display());
            println!(
                "build it: cd {} && cargo build --release --target wasm32-wasip2",
                root.display()
            );
            return Ok(());
        }
        Command::Test(args) => return super::plugin_kit::test_plugin(args).await,
        other => other,
    };
    let admin = Admin::new(server)?;
    match command {
        Command::Push { .. } | Command::New { .. } | Command::Test(_) => unreachable!("handled above"),
        Command::Deploy {
            source,
            manifest,
            no_activate,
            registry,
        } => {
            let (bytes, text) = if source.starts_with("oci://") {
                crate::plugins::oci::pull(&registry.registry(), &source).await?
            } else {
                read_local(std::path::Path::new(&source), manifest)?
            };
            let body = json!({
                "manifest": text,
                "component_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
                "activate": !no_activate,
                "by": std::env::var("USER").unwrap_or_else(|_| "cli".into()),
            });
            let answer = admin.call(Method::POST, "/admin/v1/plugins", Some(body)).await?;
            println!(
                "{} version {} {}",
                answer["name"].as_str().unwrap_or("?"),
                answer["version"].as_str().unwrap_or("?"),
                if no_activate {
                    "stored"
                } else {
                    "stored and active"
                }
            );
        }
        Command::List => {
            let answer = admin.call(Method::GET, "/admin/v1/plugins", None).await?;
            println!("{:<24} {:<13} {:<13} versions", "plugin", "active", "loaded here");
            for plugin in answer["plugins"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<13} {:<13} {}",
                    plugin["name"].as_str().unwrap_or("?"),
                    short(&plugin["active_version"]),
                    short(&plugin["loaded_version"]),
                    plugin["versions"].as_array().map_or(0, Vec::len)
                );
            }
        }
        Command::Inspect { name } => {
            let answer = admin
                .call(Method::GET, &format!("/admin/v1/plugins/{name}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Command::Activate { name, version } => {
            let answer = admin
                .call(
                    Method::POST,
                    &format!("/admin/v1/plugins/{name}/activate"),
                    Some(json!({ "version": version })),
                )
                .await?;
            println!(
                "{name} active version {}",
                answer["active_version"].as_str().unwrap_or("?")
            );
        }
        Command::Rollback { name } => {
            let answer = admin
                .call(
                    Method::POST,
                    &format!("/admin/v1/plugins/{name}/rollback"),
                    Some(json!({})),
                )
                .await?;
            println!(
                "{name} rolled back to {}",
                answer["active_version"].as_str().unwrap_or("?")
            );
        }
        Command::Remove { name, version } => {
            let answer = admin
                .call(
                    Method::DELETE,
                    &format!("/admin/v1/plugins/{name}/versions/{version}"),
                    None,
                )
                .await?;
            println!(
                "{name} version {} removed",
                answer["removed_version"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}
