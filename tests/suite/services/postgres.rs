//! Real PostgreSQL servers for the tests: Debian's binaries, a cluster in a
//! temporary folder, listening on 127.0.0.1 (or [`host`]) on a free port. One server is
//! shared by the whole test run (each test gets its own database); a test
//! that stops and starts PostgreSQL gets a private one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{free_port, host};

/// Roles the test plugins run as; cluster-wide, created once per server.
const ROLES: &str = "
DO $$ BEGIN
  CREATE ROLE fal_avatar_status NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE misbehave_plugin NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
";

/// Test clusters live in temp folders named so.
const PREFIX: &str = "webhook-host-pg-";

/// Stops and removes clusters whose test process is gone.
fn remove_abandoned(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX));
        let owner = std::fs::read_to_string(dir.join("owner.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = owner.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if is_ours && owner.is_some() && !alive {
            let data = dir.join("data");
            let _ = command(bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

pub struct PgServer {
    pub port: u16,
    /// Holds the cluster (`data/`), its socket and its log.
    dir: PathBuf,
    /// The cluster's data folder, as the string pg_ctl takes.
    data: String,
    /// Whether commits are flushed to disk (off for tests, on for benchmarks).
    durable: bool,
    bin: PathBuf,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL server binaries (Debian package postgresql) are needed")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL program, to run as the `postgres` user when we are root
/// (initdb refuses root).
fn command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

/// Runs a PostgreSQL program and insists that it succeeds.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let output = command(bin, program)
        .args(args)
        .output()
        .expect("running a PostgreSQL program");
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PgServer {
    /// Creates and starts a fresh cluster (after removing any left behind by
    /// a test run that was killed), tuned for tests: no fsync.
    pub fn start() -> PgServer {
        Self::start_with(false)
    }

    /// A fresh cluster; `durable` keeps PostgreSQL's default fsync and
    /// synchronous commit (for benchmarks that compare commit rates).
    pub fn start_with(durable: bool) -> PgServer {
        let bin = bin_dir();
        remove_abandoned(&bin);
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir
            .join("data")
            .to_str()
            .expect("temp paths are UTF-8 here")
            .to_string();
        run(
            &bin,
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if host() != "127.0.0.1" {
            // Clients come from other addresses (containers); the server
            // listens on the chosen local address only.
            let hba = Path::new(&data).join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).unwrap();
            rules.push_str("host all all all trust\n");
            std::fs::write(&hba, rules).unwrap();
        }
        let server = PgServer {
            port: free_port(),
            dir,
            data,
            bin,
            durable,
        };
        server.resume();
        let output = Command::new(server.bin.join("psql"))
            .args([
                "-h",
                host(),
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", ROLES])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        server
    }

    /// Starts the (stopped) server again on its port.
    pub fn resume(&self) {
        let speed = if self.durable {
            ""
        } else {
            " -c fsync=off -c synchronous_commit=off"
        };
        let options = format!(
            "-p {} -c listen_addresses={} -k {}{speed} -c max_connections=300",
            self.port,
            host(),
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        run(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data,
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        run(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data, "-m", "fast", "-w", "stop"],
        );
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@{}:{}/{name}", host(), self.port)
    }

    /// Creates a fresh database with a random name; returns its URL.
    pub async fn create_database(&self) -> String {
        let name = format!("wh_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(&self.url("postgres")).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        self.url(&name)
    }

    /// Where the server's programs are.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    fn destroy(&self) {
        let _ = command(&self.bin, "pg_ctl")
            .args(["-D", &self.data, "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.destroy();
    }
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(server) = SHARED.get() {
        server.destroy();
    }
}

/// The server shared by the test run; stopped and removed at exit.
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(|| {
        let server = PgServer::start();
        // SAFETY: registering a plain extern "C" function; it only runs
        // programs and removes a folder.
        unsafe { libc::atexit(stop_shared) };
        server
    })
}

/// Drops a database made by `create_database`, cutting its connections.
pub fn drop_database(bin: &Path, port: u16, name: &str) {
    let _ = Command::new(bin.join("psql"))
        .args([
            "-h",
            host(),
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
        ])
        .args(["-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
        .output();
}
