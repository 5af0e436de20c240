//! Debian's `redis-server`, shared by the test process, without persistence.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{free_port, host, keep, program, wait_for_port};

pub struct Redis {
    pub url: String,
    _dir: tempfile::TempDir,
}

/// The process's Redis server (no persistence).
pub fn redis() -> &'static Redis {
    static SHARED: OnceLock<Redis> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("webhook-host-redis-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let child = Command::new(program("redis-server"))
            .args(["--bind", host(), "--port", &port.to_string()])
            // Clients from other addresses (containers) when not on loopback.
            .args([
                "--protected-mode",
                if host() == "127.0.0.1" { "yes" } else { "no" },
            ])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        keep(child);
        wait_for_port(port, "redis-server");
        Redis {
            url: format!("redis://{}:{port}/", host()),
            _dir: dir,
        }
    })
}
