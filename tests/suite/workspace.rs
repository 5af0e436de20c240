//! Where the project is, and its plugins built for wasm32-wasip2: shared by
//! the integration tests and the benchmarks (which include this file).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the plugins for wasm32-wasip2 once per process; returns the folder
/// holding `<crate_name>.wasm`.
pub fn plugin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "-p",
                "fal-avatar-status",
                "-p",
                "test-misbehave",
                "-p",
                "github-activity",
                "-p",
                "test-gate",
                "-p",
                "test-wit-0-1-0",
            ])
            .status()
            .expect("running cargo to build the plugins");
        assert!(status.success(), "building the plugins failed");
        workspace().join("target/wasm32-wasip2/release")
    })
}

/// fal-avatar-status's manifest with FAL's file hosts and the Bot API
/// replaced by a stand-in at `remote` (`http://<address>:<port>`, on
/// loopback for tests and benchmarks).
pub fn loopback_fal_manifest(remote: &str) -> String {
    let address = remote
        .trim_start_matches("http://")
        .rsplit_once(':')
        .map_or(remote, |(address, _)| address);
    let text = std::fs::read_to_string(workspace().join("plugins/fal-avatar-status/manifest.toml")).unwrap();
    let mut edited = text.clone();
    for (from, to) in [
        (
            r#"http = { allow = ["https://*.fal.media", "https://fal.media", "https://api.telegram.org", "https://queue.fal.run"] }"#
                .to_string(),
            format!(r#"http = {{ allow = ["http://{address}:*"], allow_private = true }}"#),
        ),
        (
            r#"telegram_api_base = "https://api.telegram.org""#.to_string(),
            format!("telegram_api_base = \"{remote}\""),
        ),
        (
            r#"fal_queue_base = "https://queue.fal.run""#.to_string(),
            format!("fal_queue_base = \"{remote}/queue\""),
        ),
    ] {
        assert!(
            edited.contains(&from),
            "the fal-avatar-status manifest has no {from:?}"
        );
        edited = edited.replace(&from, &to);
    }
    edited
}

/// A plugin folder under `dir` holding fal-avatar-status with `manifest`
/// (for the benchmarks, which include this file).
#[allow(dead_code)]
pub fn fal_plugin_folder(dir: &Path, manifest: &str) -> PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        plugin_dir().join("fal_avatar_status.wasm"),
        plugins.join("fal-avatar-status.wasm"),
    )
    .unwrap();
    std::fs::write(plugins.join("fal-avatar-status.toml"), manifest).unwrap();
    plugins
}
