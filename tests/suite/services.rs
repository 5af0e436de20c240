//! Real object storage and Redis for the capability tests, started once per
//! test process on loopback in temporary folders and stopped when it exits:
//! Garage (an S3-compatible server the host talks to exactly as to MinIO:
//! SigV4, path-style) and Debian's `redis-server`. Each test gets its own
//! bucket or key space.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::pg::free_port;

/// Access key the harness imports into Garage (test value, loopback only).
pub const S3_ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const S3_SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const S3_REGION: &str = "garage";

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

fn keep(child: Child) {
    let mut children = CHILDREN.lock().unwrap();
    if children.is_empty() {
        // SAFETY: registering a plain extern "C" function; it only runs at exit.
        unsafe { libc::atexit(stop_children) };
    }
    children.push(child);
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds a program on PATH or in `~/.cargo/bin`.
fn program(name: &str) -> PathBuf {
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

pub struct Garage {
    pub endpoint: String,
    config: PathBuf,
    s3_port: u16,
    /// The running server's process id.
    server: std::sync::Mutex<u32>,
    _dir: tempfile::TempDir,
}

impl Garage {
    /// A node of its own (the suite shares one: [`garage`]); a test that
    /// stops and resumes it needs its own.
    pub fn start() -> Garage {
        let dir = tempfile::Builder::new()
            .prefix("webhook-host-garage-")
            .tempdir()
            .unwrap();
        let (s3, rpc) = (free_port(), free_port());
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"{S3_REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let garage = Garage {
            endpoint: format!("http://127.0.0.1:{s3}"),
            config,
            s3_port: s3,
            server: std::sync::Mutex::new(0),
            _dir: dir,
        };
        garage.serve();
        wait_for_port(rpc, "garage");
        let node = garage.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap().to_string();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        garage.cli(&["key", "import", "--yes", S3_ACCESS_KEY, S3_SECRET_KEY]);
        wait_for_port(s3, "garage's S3 API");
        garage
    }

    fn serve(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.with_file_name("server.log"))
            .unwrap();
        let child = Command::new(program("garage"))
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting garage");
        *self.server.lock().unwrap() = child.id();
        keep(child);
    }

    /// Kills the server (SIGKILL); its data stays for [`resume`](Self::resume).
    pub fn stop(&self) {
        let pid = *self.server.lock().unwrap();
        // SAFETY: signalling a child process this struct started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data and ports.
    pub fn resume(&self) {
        self.serve();
        wait_for_port(self.s3_port, "garage's S3 API");
    }

    fn cli(&self, args: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let output = Command::new(program("garage"))
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
            // The node needs a moment after start before it answers.
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "garage {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A fresh bucket the test key can read and write.
    pub fn bucket(&self) -> String {
        let name = format!("t-{}", uuid::Uuid::now_v7().simple());
        self.cli(&["bucket", "create", &name]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &name,
            "--key",
            S3_ACCESS_KEY,
        ]);
        name
    }

    /// The environment a host needs to use `bucket`.
    pub fn env(&self, bucket: &str) -> Vec<(String, String)> {
        [
            ("MINIO_ENDPOINT", self.endpoint.as_str()),
            ("MINIO_ACCESS_KEY", S3_ACCESS_KEY),
            ("MINIO_SECRET_KEY", S3_SECRET_KEY),
            ("MINIO_BUCKET_NAME", bucket),
            ("MINIO_SECURE", "false"),
            ("MINIO_REGION", S3_REGION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A client of `bucket`, for checking what the host stored.
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region(S3_REGION)
            .with_bucket_name(bucket)
            .with_access_key_id(S3_ACCESS_KEY)
            .with_secret_access_key(S3_SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .build()
            .unwrap()
    }
}

/// The process's Garage node.
pub fn garage() -> &'static Garage {
    static SHARED: OnceLock<Garage> = OnceLock::new();
    SHARED.get_or_init(Garage::start)
}

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
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        keep(child);
        wait_for_port(port, "redis-server");
        Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            _dir: dir,
        }
    })
}

pub struct OciRegistry {
    /// `127.0.0.1:<port>`, plain HTTP.
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
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
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
            address: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    })
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
