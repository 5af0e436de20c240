//! An OCI registry (Debian's `docker-registry`, filesystem storage, plain
//! HTTP on loopback) plugins are pushed to and pulled from.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{free_port, host, keep, program, wait_for_port};

pub struct OciRegistry {
    /// `127.0.0.1:<port>` (or [`host`]), plain HTTP.
    pub address: String,
    _dir: tempfile::TempDir,
}

/// The process's OCI registry (Debian's `docker-registry`, filesystem storage).
pub fn oci_registry() -> &'static OciRegistry {
    static SHARED: OnceLock<OciRegistry> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("webhook-host-registry-").tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}:{port}\n",
                dir.path().join("data").display(),
                host()
            ),
        )
        .unwrap();
        let child = Command::new(program("docker-registry"))
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        keep(child);
        wait_for_port(port, "docker-registry");
        OciRegistry {
            address: format!("{}:{port}", host()),
            _dir: dir,
        }
    })
}
