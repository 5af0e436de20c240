//! What the container test runs the deployment with: podman's
//! Docker-compatible service and a health-check loop (there is no systemd
//! here to schedule checks), an address on the loopback interface standing
//! in for the doc's database server (containers reach it through their
//! network's gateway), and a work folder with the compose file, `prod.env`
//! and the TLS files, from which the deploy scripts and the doc's
//! `docker-compose` commands run.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::workspace::workspace;

/// Where the external services listen (the doc has them on 192.168.0.4):
/// an address of TEST-NET-1 (RFC 5737), added to `lo` for the test.
pub const SERVICES_ADDRESS: &str = "192.0.2.4";

/// The containers and the network the compose file and scripts make.
pub const CONTAINERS: [&str; 3] = [
    "aisha-webhook-api-1",
    "aisha-webhook-api-2",
    "aisha-nginx-webhook",
];
pub const NETWORK: &str = "aisha_webhook_cluster";

/// `SERVICES_ADDRESS` on the loopback interface while the value lives.
pub struct LocalAddress;

impl LocalAddress {
    pub fn add() -> Self {
        let output = ip(&["addr", "add", &format!("{SERVICES_ADDRESS}/32"), "dev", "lo"]);
        let said = String::from_utf8_lossy(&output.stderr);
        // Left behind by a run that was killed: still ours to use.
        assert!(
            output.status.success() || said.contains("File exists"),
            "ip addr add: {said}"
        );
        Self
    }
}

impl Drop for LocalAddress {
    fn drop(&mut self) {
        ip(&["addr", "del", &format!("{SERVICES_ADDRESS}/32"), "dev", "lo"]);
    }
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("running ip")
}

fn containers_conf() -> PathBuf {
    workspace().join("scripts/containers/containers.conf")
}

/// `podman system service` on a socket of its own, and the health-check
/// loop; both stopped (by their process ids) when the value is dropped.
pub struct Podman {
    socket: PathBuf,
    service: Child,
    health: Child,
    _dir: tempfile::TempDir,
}

impl Podman {
    pub fn start() -> Self {
        assert!(
            Command::new("podman")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "podman is not installed (scripts/setup --containers installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("webhook-host-podman-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("podman.sock");
        let service = Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting podman system service");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "podman's socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let health = Command::new(workspace().join("scripts/containers/healthchecks"))
            .arg("2")
            .env("CONTAINERS_CONF", containers_conf())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the health-check loop");
        Self {
            socket,
            service,
            health,
            _dir: dir,
        }
    }

    /// The environment the scripts, docker-compose and podman run with.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CONTAINERS_CONF".into(), containers_conf().display().to_string()),
            ("DOCKER".into(), "podman".into()),
            ("DOCKER_HOST".into(), format!("unix://{}", self.socket.display())),
        ]
    }

    /// Runs podman; its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args(args)
            .output()
            .expect("running podman")
    }

    /// Runs podman and insists that it succeeds; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "podman {args:?}: {}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Removes what an earlier, killed run may have left: the containers and
    /// the network.
    pub fn remove_leftovers(&self) {
        let mut args = vec!["rm", "--force", "--ignore"];
        args.extend(CONTAINERS);
        self.run(&args);
        self.run(&["network", "rm", "--force", NETWORK]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for child in [&mut self.health, &mut self.service] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// stdout and stderr of a finished command.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The operator's side: a folder with the compose file, `prod.env` and the
/// TLS certificate, and the commands the doc runs from it.
pub struct Deployment {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// The CA that signed nginx's certificate.
    pub ca_pem: Vec<u8>,
}

impl Deployment {
    /// `prod_env` is written as `prod.env`; `env` is the scripts' environment.
    pub fn new(prod_env: &str, env: Vec<(String, String)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("webhook-host-deploy-")
            .tempdir()
            .unwrap();
        std::fs::copy(
            workspace().join("docker-compose.webhook.prod.yml"),
            dir.path().join("docker-compose.webhook.prod.yml"),
        )
        .unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let ca_pem = crate::services::nginx::self_signed(&tls);
        std::fs::rename(tls.join("cert.pem"), tls.join("fullchain.pem")).unwrap();
        std::fs::rename(tls.join("key.pem"), tls.join("privkey.pem")).unwrap();
        // nginx reads the key as its own user.
        for file in ["fullchain.pem", "privkey.pem"] {
            std::fs::set_permissions(
                tls.join(file),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .unwrap();
        }
        let prod_env = format!("{prod_env}TLS_DIR={}\n", tls.display());
        std::fs::write(dir.path().join("prod.env"), prod_env).unwrap();
        Self { dir, env, ca_pem }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(workspace())
            .env(
                "COMPOSE_FILE",
                self.path().join("docker-compose.webhook.prod.yml"),
            )
            .env("ENV_FILE", self.path().join("prod.env"))
            .env_remove("TAG")
            .env_remove("REGISTRY")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `scripts/deploy/<script>` from the repository root, its output
    /// passed through to the test's (so a failing build shows why).
    pub fn script(&self, script: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let started = Instant::now();
        let output = self
            .command(workspace().join("scripts/deploy").join(script))
            .args(args)
            .envs(extra.iter().copied())
            .output()
            .expect("running a deploy script");
        println!(
            "--- {script} {args:?}: {} in {:.0?}\n{}",
            output.status,
            started.elapsed(),
            tail(&text(&output), 60)
        );
        output
    }

    /// The doc's `docker-compose -f docker-compose.webhook.prod.yml
    /// --env-file prod.env <args>`; its output, which must say success.
    pub fn compose(&self, args: &[&str]) -> String {
        let output = self
            .command("docker-compose")
            .arg("-f")
            .arg(self.path().join("docker-compose.webhook.prod.yml"))
            .arg("--env-file")
            .arg(self.path().join("prod.env"))
            .args(args)
            .output()
            .expect("running docker-compose");
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            text(&output)
        );
        text(&output)
    }

    /// The doc's `docker <args>` (against podman's Docker API); its output,
    /// which must say success.
    pub fn docker(&self, args: &[&str]) -> String {
        let output = self
            .command("docker")
            .args(args)
            .output()
            .expect("running docker");
        assert!(output.status.success(), "docker {args:?}: {}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A shell command line (the doc's `docker save … > file`), run in the
    /// deployment folder; its output, which must say success.
    pub fn shell(&self, line: &str) -> String {
        let output = self
            .command("sh")
            .current_dir(self.path())
            .args(["-c", line])
            .output()
            .expect("running sh");
        assert!(output.status.success(), "{line}: {}", text(&output));
        text(&output)
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
