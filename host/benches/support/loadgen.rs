//! The benchmarks' load generator: pre-signed deliveries written as raw
//! HTTP/1.1 over keep-alive connections (plain, or TLS to nginx), each
//! request's latency measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use webhook_host::verify::{sign, unix_now};

/// The FAL HMAC secret the benchmarks' hosts verify with.
pub const SECRET: &str = "bench-secret";

/// A FAL "LoRA training finished" body for request `id`, with both files'
/// descriptions, as the campaign sends it.
#[allow(dead_code)]
pub fn fal_training_body(id: &str) -> String {
    format!(
        r#"{{"request_id":"{id}","gateway_request_id":"{id}","status":"OK","payload":{{"diffusers_lora_file":{{"url":"https://v3.fal.media/files/b/{id}/pytorch_lora_weights.safetensors","content_type":"application/octet-stream","file_name":"pytorch_lora_weights.safetensors","file_size":89745224}},"config_file":{{"url":"https://v3.fal.media/files/b/{id}/config.json","content_type":"application/octet-stream","file_name":"config.json","file_size":1290}}}}}}"#
    )
}

/// `count` deliveries to `path`, ids `<tag>-<n>`, each with `body(id)`,
/// signed with FAL's HMAC scheme, as raw HTTP/1.1 requests.
pub fn signed_requests(
    tag: &str,
    count: usize,
    host: &str,
    path: &str,
    body: impl Fn(&str) -> String,
) -> Vec<Vec<u8>> {
    let now = unix_now();
    (0..count)
        .map(|n| {
            let id = format!("{tag}-{n}");
            let body = body(&id);
            let mut head = format!(
                "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            );
            for (name, value) in sign::headers("fal-hmac", SECRET, &id, body.as_bytes(), now).unwrap() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let mut request = head.into_bytes();
            request.extend_from_slice(body.as_bytes());
            request
        })
        .collect()
}

/// Where the load goes: a plain HTTP/1.1 listener, or a TLS one.
#[derive(Clone)]
pub enum Target {
    Plain(SocketAddr),
    Tls(SocketAddr, TlsConnector),
}

impl Target {
    /// TLS to `addr`, trusting only the certificate in `ca_pem`.
    #[allow(dead_code)]
    pub fn tls(addr: SocketAddr, ca_pem: &[u8]) -> Self {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Target::Tls(addr, TlsConnector::from(Arc::new(config)))
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        match self {
            Target::Plain(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(Box::new(stream))
            }
            Target::Tls(addr, connector) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                Ok(Box::new(connector.connect(name, stream).await?))
            }
        }
    }
}

/// A connection of either kind.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// Reads one response; its status code.
pub async fn read_response<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> std::io::Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// `connections` keep-alive connections to `target` sending `requests`
/// (each once) for at most `run`; throughput and latency percentiles.
/// Connections are opened (TLS handshakes done) before the clock starts.
pub async fn blast(
    target: Target,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    run: Duration,
) -> (f64, Duration, Duration) {
    let mut streams = Vec::new();
    for _ in 0..connections {
        streams.push(target.connect().await.unwrap());
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut stream) in streams.into_iter().enumerate() {
        let requests = requests.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut buffer = Vec::with_capacity(8192);
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            let mut i = c;
            while i < requests.len() && started.elapsed() < run {
                let sent = Instant::now();
                stream.write_all(&requests[i]).await.unwrap();
                match read_response(&mut stream, &mut buffer).await {
                    Ok(200) => latencies.push(sent.elapsed()),
                    Ok(_) => failures += 1,
                    Err(_) => {
                        failures += 1;
                        stream = target.connect().await.unwrap();
                    }
                }
                i += connections;
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.extend(latencies);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(failures * 100 <= all.len(), "{failures} failed requests");
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, pct(0.5), pct(0.99))
}
