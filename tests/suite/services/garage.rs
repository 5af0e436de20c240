//! Garage, an S3-compatible server the host talks to exactly as to MinIO
//! (SigV4, path-style): one node shared by the test process, each test in a
//! bucket of its own; a test that stops and resumes it starts its own.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, host, keep, program, wait_for_port};

/// Access key the harness imports into Garage (test value, loopback only).
pub const S3_ACCESS_KEY: &str = "GK0123456789abcdef01234567";
pub const S3_SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const S3_REGION: &str = "garage";

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
                 replication_factor = 1\nrpc_bind_addr = \"{h}:{rpc}\"\n\
                 rpc_public_addr = \"{h}:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"{S3_REGION}\"\napi_bind_addr = \"{h}:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                d = dir.path().display(),
                h = host()
            ),
        )
        .unwrap();
        let garage = Garage {
            endpoint: format!("http://{}:{s3}", host()),
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
        while std::net::TcpStream::connect((host(), self.s3_port)).is_ok() {
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
