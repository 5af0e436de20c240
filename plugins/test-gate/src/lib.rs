//! A plugin for the host's tests of the `verifier` and `responder` worlds;
//! the one component exports both, and its manifest's `kind` says which it is.
//!
//! As a verifier it checks a scheme no preset has:
//! `x-gate-signature: hex(HMAC-SHA256(secret "signing_key", "{x-gate-timestamp}.{body}"))`,
//! the timestamp within 300 s of the host's clock; `x-gate-id` is the
//! delivery id. With `x-gate-key-url` the key is fetched from that URL (the
//! body of its answer) instead: the host keeps such GETs, so the key
//! server sees one fetch for many deliveries. A request's `x-gate-version`, when given, must be the
//! manifest's `version` config value (1 by default): the rollout tests tell
//! versions apart by it. The header `x-gate-mode` makes it misbehave: `loop`
//! (spins forever), `oom` (allocates without bound), `trap` (panics), `slow`
//! (spins 200 ms), `unavailable` (says it cannot decide).
//!
//! As a responder it answers `?challenge=X` with `X` (text/plain, and
//! `x-answered-by: test-gate`), traps on `x-gate-mode: trap`, and lets every
//! other request go on.

#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package test:gate;
        // The verifier and responder worlds at once.
        world gate {
            use webhook:plugin/request@0.1.1.{incoming, verdict, rejection, response};
            import webhook:plugin/config@0.1.1;
            import webhook:plugin/log@0.1.1;
            export verify: func(request: incoming) -> result<verdict, rejection>;
            export respond: func(request: incoming) -> option<response>;
        }
    ",
    world: "test:gate/gate",
    generate_all,
});

use hmac::{Hmac, Mac};
use webhook::plugin::config;
use webhook::plugin::types::Header;

/// Which version this is: the manifest's `version`.
fn version() -> String {
    config::get("version").unwrap_or_else(|| "1".into())
}

struct Gate;

fn header<'r>(request: &'r Incoming, name: &str) -> Option<&'r str> {
    request
        .headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.value.as_str())
}

fn misbehave(mode: &str) {
    match mode {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("test-gate was asked to trap"),
        "slow" => {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(200) {
                std::hint::spin_loop();
            }
        }
        _ => {}
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Guest for Gate {
    fn verify(request: Incoming) -> Result<Verdict, Rejection> {
        let mode = header(&request, "x-gate-mode").unwrap_or_default();
        misbehave(mode);
        if mode == "unavailable" {
            return Err(Rejection::Unavailable("asked to be unavailable".into()));
        }
        if let Some(wanted) = header(&request, "x-gate-version")
            && wanted != version()
        {
            return Err(Rejection::Unauthentic(format!(
                "this is version {}, not {wanted}",
                version()
            )));
        }
        let secret = match header(&request, "x-gate-key-url") {
            Some(url) => {
                let response = waki::Client::new()
                    .get(url)
                    .send()
                    .map_err(|e| Rejection::Unavailable(format!("fetching the key: {e}")))?;
                let body = response
                    .body()
                    .map_err(|e| Rejection::Unavailable(format!("reading the key: {e}")))?;
                String::from_utf8_lossy(&body).trim().to_string()
            }
            None => config::secret("signing_key")
                .ok_or_else(|| Rejection::Unavailable("no signing_key".into()))?,
        };
        let timestamp = header(&request, "x-gate-timestamp")
            .ok_or_else(|| Rejection::Unauthentic("no x-gate-timestamp".into()))?;
        let signed_at: i64 = timestamp
            .parse()
            .map_err(|_| Rejection::Unauthentic("x-gate-timestamp is not a number".into()))?;
        if (request.now_unix - signed_at).abs() > 300 {
            return Err(Rejection::Unauthentic(
                "x-gate-timestamp is more than 300 s away".into(),
            ));
        }
        let given = header(&request, "x-gate-signature")
            .ok_or_else(|| Rejection::Unauthentic("no x-gate-signature".into()))?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&request.body);
        if hex(&mac.finalize().into_bytes()) != given {
            return Err(Rejection::Unauthentic("the signature does not match".into()));
        }
        Ok(Verdict {
            delivery_id: header(&request, "x-gate-id").map(str::to_string),
        })
    }

    fn respond(request: Incoming) -> Option<Response> {
        if header(&request, "x-gate-mode") == Some("trap") {
            panic!("test-gate was asked to trap");
        }
        let challenge = request
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("challenge="))?;
        Some(Response {
            status: 200,
            headers: vec![
                Header {
                    name: "content-type".into(),
                    value: "text/plain".into(),
                },
                Header {
                    name: "x-answered-by".into(),
                    value: format!("test-gate {}", version()),
                },
            ],
            body: challenge.as_bytes().to_vec(),
        })
    }
}

export!(Gate);
