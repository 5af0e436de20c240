//! nginx from Debian running the project's own template
//! (`docker/nginx/nginx.conf.template`), rendered by the image's own script
//! (`docker/nginx/render-config.sh`) with loopback upstreams, free ports and
//! a self-signed certificate made here.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use crate::workspace::workspace;

/// What a test chooses of the nginx settings.
pub struct NginxConfig<'a> {
    pub upstreams: [SocketAddr; 2],
    /// `ADMIN_ALLOW_CIDR`: who may reach /admin/ and /metrics.
    pub admin_allow: &'a str,
    /// `WEBHOOK_RATE` and `WEBHOOK_BURST`: the per-address limit on webhook paths.
    pub rate: &'a str,
    pub burst: u32,
}

pub struct Nginx {
    dir: tempfile::TempDir,
    child: Child,
    pub http_port: u16,
    pub https_port: u16,
    pub fal_port: u16,
    cert: Vec<u8>,
}

impl Nginx {
    /// Renders the config, checks it with `nginx -t`, starts nginx and waits
    /// until its ports accept connections.
    pub fn start(config: NginxConfig<'_>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        // Workers run as nobody when the master is root: let them in.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let cert = self_signed(dir.path());
        let ports = [free_port(), free_port(), free_port()];
        let check = command(dir.path(), ports, &config, &["-t"]).output().unwrap();
        assert!(
            check.status.success(),
            "nginx -t refused the rendered config:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = command(dir.path(), ports, &config, &["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let mut nginx = Self {
            dir,
            child,
            http_port: ports[0],
            https_port: ports[1],
            fal_port: ports[2],
            cert,
        };
        let started = Instant::now();
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    panic!("nginx exited ({status}):\n{}", nginx.error_log());
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "nginx did not listen"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        nginx
    }

    /// A client that trusts only this nginx's certificate, sending from
    /// `from` (a loopback address) when given. No redirects followed.
    pub fn client(&self, from: Option<IpAddr>) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(self.cert_pem()).unwrap();
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([cert])
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        if let Some(address) = from {
            builder = builder.local_address(address);
        }
        builder.build().unwrap()
    }

    /// The test CA's certificate (PEM), which clients trust.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert
    }

    /// A URL on the 443 listener.
    pub fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// A URL on the 8443 listener (the one FAL is given).
    pub fn fal(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.fal_port)
    }

    /// A URL on the plain-HTTP listener.
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILL would orphan them).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if started.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `render-config.sh nginx -p … <extra>`: the image's entrypoint, with a
/// test's settings; `ports` are the HTTP, HTTPS and FAL listeners.
fn command(dir: &Path, ports: [u16; 3], config: &NginxConfig<'_>, extra: &[&str]) -> Command {
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let mut command = Command::new("sh");
    command
        .arg(workspace().join("docker/nginx/render-config.sh"))
        .arg(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("run/nginx.conf"))
        .args(extra)
        .env(
            "NGINX_TEMPLATE",
            workspace().join("docker/nginx/nginx.conf.template"),
        )
        .env("NGINX_RUN_DIR", dir.join("run"))
        .env("NGINX_WORKERS", "1")
        .env("NGINX_ERROR_LOG", dir.join("error.log"))
        .env("NGINX_ACCESS_LOG", dir.join("access.log"))
        .env("HTTP_LISTEN", listen(ports[0]))
        .env("HTTPS_LISTEN", listen(ports[1]))
        .env("FAL_HTTPS_LISTEN", listen(ports[2]))
        .env("UPSTREAM_1", config.upstreams[0].to_string())
        .env("UPSTREAM_2", config.upstreams[1].to_string())
        .env("TLS_CERT", dir.join("cert.pem"))
        .env("TLS_KEY", dir.join("key.pem"))
        .env("ADMIN_ALLOW_CIDR", config.admin_allow)
        .env("WEBHOOK_RATE", config.rate)
        .env("WEBHOOK_BURST", config.burst.to_string())
        .env("BODY_LIMIT", "1m");
    command
}

fn nginx_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("nginx")
    }
}

/// A one-day test CA and a server certificate it signs for 127.0.0.1 and
/// localhost (key.pem, cert.pem); returns the CA's PEM, which clients trust.
pub fn self_signed(dir: &Path) -> Vec<u8> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=webhook-host test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
    ];
    for (n, args) in steps.iter().enumerate() {
        let mut command = Command::new("openssl");
        command.arg(args[0]);
        if n < 2 {
            command.args(ec);
        }
        let output = command
            .args(&args[1..])
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::read(dir.join("ca.pem")).unwrap()
}
