//! The services the suite starts: real PostgreSQL, Garage (S3), Redis, an
//! OCI registry and nginx, on loopback in temporary folders, once per test
//! process (each test gets its own database, bucket or key space), stopped
//! when the process exits.

pub mod garage;
pub mod nginx;
pub mod postgres;
pub mod redis;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use garage::{Garage, garage};
pub use redis::redis;
pub use registry::oci_registry;

static HOST: OnceLock<String> = OnceLock::new();

/// The address the services listen on and are reached at: 127.0.0.1,
/// unless the test binary chose another local address with [`listen_on`]
/// before starting any (the container test: one its containers reach).
pub fn host() -> &'static str {
    HOST.get_or_init(|| "127.0.0.1".into())
}

/// Makes the services listen on `address` (a local address) instead of
/// 127.0.0.1; call it before the first service starts.
#[allow(dead_code)]
pub fn listen_on(address: &str) {
    HOST.set(address.into())
        .expect("listen_on is called before any service starts");
}

/// A port free on [`host`] right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((host(), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Children to kill when the test process exits.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

extern "C" fn stop_children() {
    if let Ok(mut children) = CHILDREN.lock() {
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn keep(child: Child) {
    let mut children = CHILDREN.lock().unwrap();
    if children.is_empty() {
        // SAFETY: registering a plain extern "C" function; it only runs at exit.
        unsafe { libc::atexit(stop_children) };
    }
    children.push(child);
}

pub fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect((host(), port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds a program on PATH or in `~/.cargo/bin`.
pub fn program(name: &str) -> PathBuf {
    let cargo_bin = std::env::var("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin").join(name))
        .ok();
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .chain(cargo_bin)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (scripts/setup --tests installs it)"))
}

/// The environment of a production-shaped host: a fresh bucket on the shared
/// Garage, the shared Redis, and `ADMIN_TOKEN`; with the bucket's name.
pub fn production_env(admin_token: &str) -> (Vec<(String, String)>, String) {
    let bucket = garage().bucket();
    let mut env = garage().env(&bucket);
    env.push(("REDIS_URL".into(), redis().url.clone()));
    env.push(("ADMIN_TOKEN".into(), admin_token.into()));
    (env, bucket)
}
