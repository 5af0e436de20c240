//! Sync routes through the real binary: the handler's answer is the HTTP
//! answer; the delivery is stored and done with it. A handler that refuses
//! the delivery answers 422 (dead); one that fails or outlasts the deadline
//! answers 202 and its event goes on (retried, or finished by the attempt
//! still running) — nothing is lost, nothing runs twice.

use std::time::Instant;

use serde_json::json;

use crate::harness::{Signer, TestHost};

const ROUTE: &str = "[[routes]]\nname = \"quick\"\nplugin = \"test-misbehave\"\nmode = \"sync\"\nsync_deadline_ms = 250\n\
     verify = [{ scheme = \"fal-hmac\", secret_env = \"FAL_WEBHOOK_SECRET\" }]\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_route_answers_with_its_handler_and_keeps_what_it_cannot_answer_in_time() {
    let host = TestHost::spawn_with(ROUTE, &[]).await;
    let post = |mode: &str, id: &str| {
        let body = json!({ "mode": mode, "request_id": id }).to_string();
        let id = id.to_string();
        let host = &host;
        async move { host.post("/hooks/quick", body.as_bytes(), Signer::fal(&id)).await }
    };

    let started = Instant::now();
    let (status, answer) = post("answer", "s-1").await;
    println!("sync answer in {:?}", started.elapsed());
    assert_eq!(
        (status, answer),
        (200, json!({ "answered": "s-1", "attempt": 1 }))
    );
    assert_eq!(
        host.texts("SELECT status FROM webhook_events").await,
        ["done"],
        "stored, and done with the answer"
    );
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);

    // A handler that answers nothing: the usual acceptance.
    let (status, answer) = post("ok", "s-2").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");

    // The handler refuses it: 422, and the event is dead.
    let (status, answer) = post("invalid", "s-3").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("handler_refused")),
        "{answer}"
    );
    let dead = answer["event_id"].as_str().unwrap().to_string();
    assert_eq!(host.event(&dead).await.unwrap().status, "dead");

    // It fails: 202, and the event waits for its retry.
    let (status, answer) = post("retry", "s-4").await;
    assert_eq!(
        (status, answer["answer"].as_str()),
        (202, Some("pending")),
        "{answer}"
    );
    let retrying = host.event(answer["event_id"].as_str().unwrap()).await.unwrap();
    assert_eq!((retrying.status.as_str(), retrying.attempts), ("pending", 1));

    // It takes 500 ms, past the 250 ms deadline: 202 at the deadline, and
    // the attempt still running finishes the event, once.
    let started = Instant::now();
    let (status, answer) = post("slow", "s-5").await;
    println!("a late handler answered 202 after {:?}", started.elapsed());
    assert_eq!(status, 202, "{answer}");
    let slow = answer["event_id"].as_str().unwrap().to_string();
    host.wait_for(&slow, "done").await;
    assert_eq!(host.event(&slow).await.unwrap().attempts, 1, "run once");
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 2);

    // A repeat of an answered delivery is a duplicate; it does not run again.
    let (status, answer) = post("answer", "s-1").await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 2);
}
