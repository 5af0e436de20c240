//! Soak: a steady stream of signed deliveries through nginx to two
//! instances on PostgreSQL while faults are injected at random — an
//! instance killed and started again, PostgreSQL stopped and started, the
//! S3 server (Garage) killed and started again, the JWKS server answering
//! 503 — then the senders' record of deliveries answered 200 is compared
//! with the plugin's effects (an object in the bucket, then a row in the
//! event's transaction): none may be missing, none applied twice.
//!
//! The suite runs a short soak; a long one runs on demand:
//! `SOAK_SECS=600 cargo test -p webhook-host --test suite soak::long -- --ignored --nocapture`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use webhook_host::verify::{sign, unix_now};

use crate::harness::{Backend, Options, TestHost};
use crate::services::Garage;
use crate::services::nginx::{Nginx, NginxConfig};
use crate::services::postgres::PgServer;
use crate::verification::{JwksServer, fal_route, key, key_hex};

/// What one soak saw.
#[derive(Debug, Default)]
struct Tally {
    acked: usize,
    /// Answers other than 200 (retried by the sender), by status; 0 is no
    /// answer at all.
    retried: HashMap<u16, usize>,
    faults: Vec<String>,
}

async fn soak(duration: Duration) {
    let pg = PgServer::start();
    let garage = Garage::start();
    let bucket = garage.bucket();
    let env = garage.env(&bucket);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let jwks = JwksServer::start(vec![key(1)]);
    let route = fal_route("soak", &jwks, 0);
    let host = Arc::new(RwLock::new(
        TestHost::start_with(Options {
            backend: Backend::Postgres,
            instances: 2,
            pg: Some(&pg),
            extra_config: &route,
            extra_env: &env,
            // Outages last seconds: retries must outlast them.
            config_edits: &[("max_attempts = 3", "max_attempts = 100")],
            ..Options::default()
        })
        .await,
    ));
    let addrs = {
        let host = host.read().await;
        [host.addr(0), host.addr(1)]
    };
    let nginx = Nginx::start(NginxConfig {
        upstreams: addrs,
        admin_allow: "127.0.0.1/32",
        rate: "10000r/s",
        burst: 10000,
    });

    let tally = Arc::new(Mutex::new(Tally::default()));
    let acked_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..4 {
        let (client, url) = (nginx.client(None), nginx.fal("/hooks/soak"));
        let (tally, acked_ids, stop) = (tally.clone(), acked_ids.clone(), stop.clone());
        senders.spawn(async move {
            let body = br#"{"mode":"stored-effect"}"#;
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = format!("soak-{sender}-{n}");
                // Like FAL: the same delivery again until it is answered 2xx.
                loop {
                    let mut request = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .timeout(Duration::from_secs(20))
                        .body(body.to_vec());
                    for (name, value) in
                        sign::headers("fal-ed25519", &key_hex(1), &id, body, unix_now()).unwrap()
                    {
                        request = request.header(name, value);
                    }
                    let status = match request.send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    if status == 200 {
                        break;
                    }
                    *tally.lock().unwrap().retried.entry(status).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                acked_ids.lock().unwrap().push(id);
                tally.lock().unwrap().acked += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    // Faults, one at a time, each followed by a quiet spell.
    let started = Instant::now();
    let mut round = 0u64;
    let first = rand::random_range(0..5u64);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(rand::random_range(800..2000))).await;
        round += 1;
        // Random, but every kind within the first four rounds.
        let kind = if round <= 5 {
            (round + first) % 5
        } else {
            rand::random_range(0..5)
        };
        let fault = match kind {
            0 | 1 => {
                let i = kind as usize;
                host.write().await.kill_instance(i);
                tokio::time::sleep(Duration::from_millis(700)).await;
                host.write().await.restart_instance(i);
                format!("instance {i} killed and restarted")
            }
            2 => {
                pg.stop();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                pg.resume();
                "PostgreSQL stopped and started".to_string()
            }
            3 => {
                garage.stop();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                garage.resume();
                "S3 server killed and started".to_string()
            }
            _ => {
                jwks.set_up(false);
                // A restart makes the instance fetch the keys while the
                // server refuses.
                host.write().await.kill_instance(0);
                host.write().await.restart_instance(0);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                jwks.set_up(true);
                "JWKS down across an instance restart".to_string()
            }
        };
        tally.lock().unwrap().faults.push(fault);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let host = host.read().await;
    host.wait_until_all_done().await;

    let acked: Vec<String> = acked_ids.lock().unwrap().clone();
    let stored: HashMap<String, String> = host
        .texts("SELECT delivery_id || ' ' || id FROM webhook_events WHERE route = 'soak'")
        .await
        .into_iter()
        .map(|line| {
            let (delivery, event) = line.split_once(' ').unwrap();
            (delivery.to_string(), event.to_string())
        })
        .collect();
    let effects = host.texts("SELECT event_id FROM plugin_effects").await;
    let mut applied: HashMap<&str, usize> = HashMap::new();
    for event in &effects {
        *applied.entry(event.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| {
            stored
                .get(*id)
                .is_none_or(|event| !applied.contains_key(event.as_str()))
        })
        .collect();
    let doubled = applied.values().filter(|&&n| n > 1).count();
    let objects: Vec<object_store::ObjectMeta> = {
        use futures_util::TryStreamExt;
        use object_store::ObjectStore;
        let prefix = object_store::path::Path::from("misbehave/stored");
        garage
            .store(&bucket)
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap()
    };
    let without_object: Vec<&str> = applied
        .keys()
        .filter(|event| !objects.iter().any(|o| o.location.as_ref().ends_with(*event)))
        .copied()
        .collect();
    let unique: HashSet<&String> = acked.iter().collect();
    let tally = tally.lock().unwrap();
    println!(
        "soak of {:?}: {} deliveries answered 200 ({} distinct), {} stored, {} effects; \
         {} objects; lost {}, doubled {}; retried answers {:?}; faults ({}): {:?}",
        started.elapsed(),
        tally.acked,
        unique.len(),
        stored.len(),
        effects.len(),
        objects.len(),
        lost.len(),
        doubled,
        tally.retried,
        tally.faults.len(),
        tally.faults
    );
    assert!(
        tally.acked > 0 && tally.faults.len() >= 2,
        "the soak did something"
    );
    assert!(lost.is_empty(), "answered 200 but never applied: {lost:?}");
    assert_eq!(doubled, 0, "applied twice");
    assert_eq!(effects.len(), stored.len(), "every stored delivery applied once");
    assert!(
        without_object.is_empty(),
        "effects without their object: {without_object:?}"
    );
    // What a sender would not retry never happened.
    assert!(
        tally
            .retried
            .keys()
            .all(|s| [0, 429, 500, 502, 503, 504].contains(s)),
        "{:?}",
        tally.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_soak_with_faults_loses_and_doubles_nothing() {
    soak(Duration::from_secs(12)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run on demand with SOAK_SECS"]
async fn long() {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    soak(Duration::from_secs(secs)).await;
}
