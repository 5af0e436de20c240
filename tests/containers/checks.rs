//! What the container test checks the cluster with: signed FAL
//! deliveries, the bot's tables in PostgreSQL, the bucket, the inbox.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use webhook_host::verify::{sign, unix_now};

use crate::FAL_SECRET;

/// A signed FAL delivery of `body` to `url` (`fal-hmac`, as `webhook-host
/// send` signs it); the status and the answer.
pub async fn post_fal(client: &reqwest::Client, url: &str, body: &[u8]) -> (u16, String) {
    let request_id = serde_json::from_slice::<Value>(body).unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let headers = sign::headers("fal-hmac", FAL_SECRET, &request_id, body, unix_now()).unwrap();
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// An avatar in training for FAL request `request_id`; its id.
pub async fn seed_avatar(db: &PgPool, request_id: &str) -> String {
    let user = uuid::Uuid::now_v7().to_string();
    let avatar = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO users (id, telegram_id) VALUES (CAST($1 AS UUID), $2)")
        .bind(&user)
        .bind(format!("tg-{user}"))
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO avatars (id, user_id, name, status, fal_request_id, training_progress) \
         VALUES (CAST($1 AS UUID), CAST($2 AS UUID), 'Test', 'training', $3, 10)",
    )
    .bind(&avatar)
    .bind(&user)
    .bind(request_id)
    .execute(db)
    .await
    .unwrap();
    avatar
}

/// Waits until the avatar's status is `completed`.
pub async fn wait_completed(db: &PgPool, avatar: &str) {
    let started = Instant::now();
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM avatars WHERE id = CAST($1 AS UUID)")
            .bind(avatar)
            .fetch_one(db)
            .await
            .unwrap();
        if status == "completed" {
            return;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let events: Vec<(String, Option<String>)> =
                sqlx::query_as("SELECT status, last_error FROM webhook_events")
                    .fetch_all(db)
                    .await
                    .unwrap();
            panic!("avatar {avatar} is still {status}; events: {events:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The objects stored under `prefix` in `bucket`.
pub async fn objects_under(bucket: &str, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    let store = crate::services::garage().store(bucket);
    let prefix = object_store::path::Path::from(prefix);
    let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    listed.into_iter().map(|meta| meta.location.to_string()).collect()
}

pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits until no stored event is waiting or running.
pub async fn wait_all_done(db: &PgPool) {
    let started = Instant::now();
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events WHERE status NOT IN ('done', 'dead')")
                .fetch_one(db)
                .await
                .unwrap();
        if open == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{open} events still open"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
