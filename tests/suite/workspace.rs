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
            ])
            .status()
            .expect("running cargo to build the plugins");
        assert!(status.success(), "building the plugins failed");
        workspace().join("target/wasm32-wasip2/release")
    })
}
