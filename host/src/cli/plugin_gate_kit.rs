//! The plugin author's kit for verifiers and responders: what `plugin new
//! --kind verifier|responder` writes, and `plugin test` for them (the
//! request made of `--payload`, `--header` and `--query`, given to the
//! plugin as a route would, and its verdict or answer printed).

use anyhow::{Result, bail};

use crate::db::Db;
use crate::manifest::PluginKind;
use crate::runtime::gate::{Incoming, Rejection};
use crate::runtime::{LoadedPlugin, Runtime};
use crate::wit::types::Header;

/// `src/lib.rs` of a new verifier or responder crate.
pub fn lib_rs(kind: PluginKind, name: &str, crate_name: &str) -> String {
    let (world, body) = match kind {
        PluginKind::Verifier => (
            "verifier",
            r#"impl Guest for Plugin {
    /// Called for each request on the routes naming this plugin in
    /// `verify = [{ plugin = "…" }]`, before anything is stored, in a fresh
    /// instance (50 ms, 16 MiB unless the manifest says otherwise).
    /// `Ok` accepts it (with the sender's delivery id, if it has one);
    /// `Unauthentic` answers 401; `Unavailable` answers 503 (sent again later).
    fn verify(request: Incoming) -> Result<Verdict, Rejection> {
        let key = config::secret("signing_key").ok_or(Rejection::Unavailable("no signing_key".into()))?;
        let given = request
            .headers
            .iter()
            .find(|h| h.name == "x-example-token")
            .ok_or(Rejection::Unauthentic("no x-example-token".into()))?;
        // A real scheme computes a signature over the body here, and
        // compares it in constant time.
        if given.value != key {
            return Err(Rejection::Unauthentic("the token does not match".into()));
        }
        Ok(Verdict { delivery_id: None })
    }
}"#,
        ),
        _ => (
            "responder",
            r#"impl Guest for Plugin {
    /// Called first for each request on the routes naming this plugin in
    /// `responder = "…"`. `Some` is sent as is and nothing is stored; `None`
    /// lets the request go on to verification and the inbox.
    fn respond(request: Incoming) -> Option<Response> {
        let challenge = request.query.split('&').find_map(|p| p.strip_prefix("challenge="))?;
        Some(Response {
            status: 200,
            headers: vec![Header { name: "content-type".into(), value: "text/plain".into() }],
            body: challenge.as_bytes().to_vec(),
        })
    }
}"#,
        ),
    };
    format!(
        r#"//! `{name}`: a webhook-host {world} plugin.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Try:   `webhook-host plugin test target/wasm32-wasip2/release/{crate_name}.wasm \
//!          --manifest manifest.toml --payload sample.json --header 'x-example-token: …' --query challenge=abc`

wit_bindgen::generate!({{
    path: "wit",
    world: "{world}",
}});

#[allow(unused_imports)]
use webhook::plugin::{{config, types::Header}};

struct Plugin;

{body}

export!(Plugin);
"#
    )
}

/// `manifest.toml` of a new verifier or responder crate.
pub fn manifest(kind: PluginKind, name: &str, crate_name: &str) -> String {
    format!(
        r#"# The operator's side of the plugin. A {kind} runs before anything is
# stored: it may read its config and secrets and, with an http grant, fetch
# keys (the host keeps GET answers); it gets no db, blob or kv.
name = "{name}"
kind = "{kind}"
component = "{crate_name}.wasm"

[limits]
memory_mb = 16
timeout_ms = 50

[grants]
# http = {{ allow = ["https://keys.example.com"] }}

[secrets]
signing_key = "env:{upper}_SIGNING_KEY"
"#,
        kind = kind.as_str(),
        upper = crate_name.to_ascii_uppercase()
    )
}

/// `plugin test` of a verifier or responder: prints its verdict or answer;
/// an error when it refuses, cannot decide or fails.
pub async fn test_gate(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
    db: &Db,
) -> Result<()> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    let request = Incoming {
        route: plugin.name.clone(),
        method: "POST".into(),
        query,
        headers: headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        body,
        now_unix: crate::verify::unix_now(),
    };
    let started = std::time::Instant::now();
    match plugin.kind {
        PluginKind::Verifier => match runtime.verify_request(plugin, &request, "plugin-test", db).await {
            Ok(Ok(verdict)) => {
                let id = verdict
                    .delivery_id
                    .as_deref()
                    .unwrap_or("(none: the body's sha256)");
                println!("result: verified in {:?}; delivery id {id}", started.elapsed());
                Ok(())
            }
            Ok(Err(Rejection::Unauthentic(reason))) => bail!("refused (401 plugin_rejected): {reason}"),
            Ok(Err(Rejection::Unavailable(reason))) => bail!("cannot decide (503): {reason}"),
            Err(e) => bail!("failed (503 verifier_failed) after {:?}: {e}", started.elapsed()),
        },
        PluginKind::Responder => match runtime.respond(plugin, &request, "plugin-test", db).await {
            Ok(Some(response)) => {
                println!(
                    "result: answered in {:?}: HTTP {}",
                    started.elapsed(),
                    response.status
                );
                for header in &response.headers {
                    println!("{}: {}", header.name, header.value);
                }
                println!("{}", String::from_utf8_lossy(&response.body));
                Ok(())
            }
            Ok(None) => {
                println!(
                    "result: no answer in {:?}; the request goes on as a delivery",
                    started.elapsed()
                );
                Ok(())
            }
            Err(e) => bail!("failed (503 responder_failed) after {:?}: {e}", started.elapsed()),
        },
        PluginKind::Handler => unreachable!("handlers are tested with an event"),
    }
}
