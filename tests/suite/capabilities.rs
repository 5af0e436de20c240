//! Capabilities against real services: fal-avatar-status's completion on
//! Garage (S3) + PostgreSQL + Redis with a loopback FAL file host and
//! Telegram; outbound-HTTP refusals (SSRF); blob prefix escapes; kv TTLs on
//! a real Redis.

use std::time::Duration;

use object_store::ObjectStoreExt;
use serde_json::Value;

use crate::harness::{BOT_TOKEN, Options, Signer, TestHost, fixture};
use crate::remote;
use crate::services::{garage, production_env, redis};

/// A FAL `OK` body for `request_id` whose files live at `/files/<folder>/…`
/// on the loopback remote, the LoRA `lora_size` bytes long.
fn ok_body(request_id: &str, folder: &str, lora_size: usize) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&fixture("ok-portrait.json", request_id)).unwrap();
    let url = &remote::shared().url;
    body["payload"]["diffusers_lora_file"]["url"] =
        format!("{url}/files/{folder}/pytorch_lora_weights.safetensors?size={lora_size}").into();
    body["payload"]["config_file"]["url"] = format!("{url}/files/{folder}/config.json").into();
    serde_json::to_vec(&body).unwrap()
}

pub(crate) async fn telegram_id(host: &TestHost, avatar: &str) -> String {
    host.texts(&format!(
        "SELECT CAST(u.telegram_id AS TEXT) FROM users u JOIN avatars a ON a.user_id = u.id \
         WHERE CAST(a.id AS TEXT) = '{avatar}'"
    ))
    .await
    .remove(0)
}

pub(crate) async fn replay(host: &TestHost, event_id: &str) {
    let response = host
        .http
        .post(host.url(&format!("/admin/v1/events/{event_id}/replay")))
        .bearer_auth("admin-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn fal_completion_on_s3_postgres_and_redis_stores_files_cleans_photos_and_notifies_once() {
    let garage = garage();
    let (env, bucket) = production_env("admin-test-token");
    let host = TestHost::spawn_pg_with(&env).await;
    let store = garage.store(&bucket);
    let remote = remote::shared();

    // An avatar in training with three photos in the bucket.
    let avatar = host.seed_avatar("cap-ok-1").await;
    let chat = telegram_id(&host, &avatar).await;
    for (n, order) in [(1, 3), (2, 1), (3, 2)] {
        let key = format!("avatars/{avatar}/photos/{n}.jpg");
        store
            .put(&key.as_str().into(), vec![n as u8; 100].into())
            .await
            .unwrap();
        host.execute(&format!(
            "INSERT INTO avatar_photos (id, avatar_id, user_id, minio_key, upload_order) \
             SELECT gen_random_uuid(), a.id, a.user_id, '{key}', {order} FROM avatars a \
             WHERE a.id = '{avatar}'"
        ))
        .await;
    }

    // 12 MB: large enough for a multipart upload.
    let lora_size = 12_000_000;
    let body = ok_body("cap-ok-1", "cap-ok-1", lora_size);
    let (status, answer) = host.post_fal(&body).await;
    assert_eq!(status, 200, "{answer}");
    let event_id = answer["event_id"].as_str().unwrap().to_string();
    let row = host.wait_for(&event_id, "done").await;
    assert_eq!(row.attempts, 1, "{row:?}");

    // Files in the bucket, byte for byte, at stable keys, content type kept.
    let folder = format!("avatars/{avatar}/lora/cap-ok-1");
    let lora_key = format!("{folder}/pytorch_lora_weights.safetensors");
    let stored = store.get(&lora_key.as_str().into()).await.unwrap();
    assert_eq!(
        stored
            .attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.to_string()),
        Some("application/octet-stream".to_string())
    );
    let stored = stored.bytes().await.unwrap();
    assert_eq!(stored.len(), lora_size);
    assert!(
        stored == remote::content("cap-ok-1/pytorch_lora_weights.safetensors", lora_size),
        "the LoRA copy differs from FAL's file"
    );
    let config = store
        .get(&format!("{folder}/config.json").as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(config == remote::content("cap-ok-1/config.json", 70_000));

    // The avatar row: completed, our URLs, FAL's response, storage details.
    let row = host.avatar(&avatar).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.training_progress, 100);
    assert!(row.training_completed_at.is_some());
    assert_eq!(
        row.diffusers_lora_file_url.as_deref(),
        Some(format!("s3://{bucket}/{lora_key}").as_str())
    );
    assert_eq!(
        row.config_file_url.as_deref(),
        Some(format!("s3://{bucket}/{folder}/config.json").as_str())
    );
    let fal: Value = serde_json::from_str(row.fal_response_data.as_deref().unwrap()).unwrap();
    assert_eq!(fal["status"], "OK");
    let data = host
        .texts(&format!(
            "SELECT CAST(avatar_data AS TEXT) FROM avatars WHERE id = '{avatar}'"
        ))
        .await;
    let data: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(data["lora_storage"]["lora"]["key"], lora_key.as_str());
    assert!(
        data["lora_storage"]["lora"]["fal_url"]
            .as_str()
            .unwrap()
            .contains("/files/cap-ok-1/")
    );

    // Photos and the notice are follow-ups of that commit, run after it.
    host.wait_until_all_done().await;
    // Photos: only the first by upload_order is left, in the table and the bucket.
    let left = host
        .texts(&format!(
            "SELECT minio_key FROM avatar_photos WHERE avatar_id = '{avatar}'"
        ))
        .await;
    assert_eq!(left, [format!("avatars/{avatar}/photos/2.jpg")]);
    for (n, kept) in [(1, false), (2, true), (3, false)] {
        let found = store
            .head(&format!("avatars/{avatar}/photos/{n}.jpg").as_str().into())
            .await;
        assert_eq!(found.is_ok(), kept, "photo {n}");
    }

    // Exactly one notice, to the user's chat, with the text and both buttons.
    let notices = remote.notices_to(&chat);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = &notices[0];
    assert_eq!(notice.token, BOT_TOKEN);
    assert!(
        notice.body["text"].as_str().unwrap().contains("«Test»"),
        "{notice:?}"
    );
    assert_eq!(notice.body["parse_mode"], "Markdown");
    let buttons = &notice.body["reply_markup"]["inline_keyboard"];
    assert_eq!(buttons[0][0]["callback_data"], "avatar_gallery");
    assert_eq!(
        buttons[1][0]["callback_data"],
        format!("avatar_generate:{avatar}")
    );
    assert_eq!(remote.file_hits("cap-ok-1/pytorch_lora_weights.safetensors"), 1);

    // FAL delivers again: a duplicate at intake. Replayed by an operator:
    // the plugin runs again and changes nothing.
    let (status, again) = host.post_fal(&body).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")));
    replay(&host, &event_id).await;
    host.wait_until_all_done().await;
    assert_eq!(remote.notices_to(&chat).len(), 1, "no second notice");
    assert_eq!(
        remote.file_hits("cap-ok-1/pytorch_lora_weights.safetensors"),
        1,
        "no second copy"
    );

    // A presigned URL from the blob capability serves the object to anyone holding it.
    let body = br#"{"mode":"presign","key":"misbehave/presigned.txt"}"#;
    let (_, answer) = host
        .post("/hooks/misbehave", body, Signer::fal("presign-1"))
        .await;
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let url = host.texts("SELECT event_id FROM plugin_effects").await.remove(0);
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let fetched = host.http.get(&url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.text().await.unwrap(), "presigned data");

    // A retry of the completion: the first attempt's UPDATE fails (a
    // trigger, once), so nothing was queued; the second copies nothing
    // again, and its notice goes out once.
    let second = host.seed_avatar("cap-ok-2").await;
    let chat2 = telegram_id(&host, &second).await;
    host.execute(
        "CREATE SEQUENCE fail_once; \
         CREATE FUNCTION fail_first_completion() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ \
         BEGIN IF NEW.status = 'completed' AND NEW.fal_request_id = 'cap-ok-2' \
         AND nextval('fail_once') = 1 THEN RAISE EXCEPTION 'forced failure after the notice'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER fail_first BEFORE UPDATE ON avatars FOR EACH ROW EXECUTE FUNCTION fail_first_completion();",
    )
    .await;
    let (_, answer) = host.post_fal(&ok_body("cap-ok-2", "cap-ok-2", 1000)).await;
    let row = host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    assert_eq!(row.attempts, 2, "the first attempt must have failed: {row:?}");
    assert_eq!(host.avatar(&second).await.status, "completed");
    host.wait_until_all_done().await;
    assert_eq!(remote.notices_to(&chat2).len(), 1, "one notice across the retry");
    assert_eq!(
        remote.file_hits("cap-ok-2/pytorch_lora_weights.safetensors"),
        1,
        "one copy across the retry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_oversized_fal_file_fails_the_event_clearly_and_sends_nothing() {
    let host = TestHost::spawn().await;
    let remote = remote::shared();
    let url = &remote.url;
    for (request_id, lora_url, expected) in [
        ("cap-404", format!("{url}/missing/w.safetensors"), "404"),
        ("cap-huge", format!("{url}/huge/w.safetensors"), "over the cap"),
    ] {
        let avatar = host.seed_avatar(request_id).await;
        let chat = telegram_id(&host, &avatar).await;
        let mut body: Value = serde_json::from_slice(&fixture("ok-portrait.json", request_id)).unwrap();
        body["payload"]["diffusers_lora_file"]["url"] = lora_url.into();
        let (_, answer) = host.post_fal(&serde_json::to_vec(&body).unwrap()).await;
        let row = host.wait_for(answer["event_id"].as_str().unwrap(), "dead").await;
        assert_eq!(row.attempts, 3, "retried up to the limit: {row:?}");
        let error = row.last_error.unwrap();
        assert!(error.contains(expected) && error.contains("copying"), "{error}");
        assert_eq!(host.avatar(&avatar).await.status, "training");
        assert!(remote.notices_to(&chat).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_to_private_or_unlisted_targets_are_refused() {
    let host = TestHost::spawn().await;
    let remote = remote::shared();
    let port = remote.url.rsplit(':').next().unwrap();
    let targets = [
        format!("http://127.0.0.1:{port}/files/ssrf-literal"),
        format!("http://localhost:{port}/files/ssrf-name"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.1.2.3/".to_string(),
        "http://192.168.0.10:8080/".to_string(),
        "http://[::1]/".to_string(),
        "https://not-listed.example/".to_string(),
    ];
    let body = format!(r#"{{"mode":"reach","targets":"{}"}}"#, targets.join(" "));
    let (status, answer) = host
        .post("/hooks/misbehave", body.as_bytes(), Signer::fal("reach-1"))
        .await;
    assert_eq!(status, 200, "{answer}");
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let outcomes = host.texts("SELECT event_id FROM plugin_effects").await;
    assert_eq!(outcomes.len(), targets.len(), "{outcomes:?}");
    for line in &outcomes {
        assert!(line.contains(" refused: "), "{line}");
    }
    assert_eq!(
        remote.file_hits("ssrf-literal") + remote.file_hits("ssrf-name"),
        0
    );
    let log = host.log();
    assert!(log.contains("not a public address"), "{log}");
    assert!(log.contains("not in the plugin's http allow-list"), "{log}");
    assert!(log.contains("non-public addresses"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_keys_outside_the_prefix_are_refused_and_an_ungranted_plugin_does_not_load() {
    let host = TestHost::spawn().await;
    let keys = "misbehave/ok.txt ../etc/x misbehave/../x /misbehave/x other/x misbehave//x misbehave/./x";
    let body = format!(r#"{{"mode":"blob","keys":"{keys}"}}"#);
    let (_, answer) = host
        .post("/hooks/misbehave", body.as_bytes(), Signer::fal("blob-1"))
        .await;
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let outcomes = host.texts("SELECT event_id FROM plugin_effects").await;
    assert_eq!(outcomes.len(), 7, "{outcomes:?}");
    for line in &outcomes {
        let stored = line.ends_with(" stored");
        assert_eq!(stored, line.starts_with("misbehave/ok.txt "), "{line}");
    }
    let stored = host.dir.path().join("data-0/blobs/webhook-host/misbehave/ok.txt");
    assert_eq!(std::fs::read(stored).unwrap(), b"data");
    assert!(!host.dir.path().join("data-0/blobs/etc").exists());

    // The same component without the blob grant is refused at load, naming it.
    let ungranted = TestHost::start_with(Options {
        manifest_edits: &[("test-misbehave", "blob = { prefix = \"misbehave/\" }", "")],
        ..Options::default()
    })
    .await;
    let health = ungranted.get_text(0, "/health", None).await;
    assert!(health.contains("test-misbehave"), "{health}");
    let log = ungranted.log();
    assert!(
        log.contains("imports webhook:plugin/blob") && log.contains("add `blob = {"),
        "{log}"
    );
}

async fn post_kv(host: &TestHost, key: &str, n: u32) {
    let body = format!(r#"{{"mode":"kv","key":"{key}","ttl":"1500"}}"#);
    let (_, answer) = host
        .post(
            "/hooks/misbehave",
            body.as_bytes(),
            Signer::fal(&format!("{key}-{n}")),
        )
        .await;
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_on_redis_keeps_plugins_apart_and_honours_ttl() {
    let redis = redis();
    let host = TestHost::spawn_with("", &[("REDIS_URL", redis.url.as_str())]).await;
    let key = format!("k-{}", uuid::Uuid::now_v7().simple());
    post_kv(&host, &key, 1).await;
    post_kv(&host, &key, 2).await;

    // The host stored it under the plugin's prefix, with the TTL.
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored_key = format!("whk:test-misbehave:{key}");
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(&stored_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 1500, "PTTL {ttl}");
    let plain: Option<Vec<u8>> = ::redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(plain.is_none(), "keys never escape the prefix");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    post_kv(&host, &key, 3).await;
    let mut lines = host.texts("SELECT event_id FROM plugin_effects").await;
    lines.sort_by_key(|l| l.rsplit('=').next().unwrap().parse::<u32>().unwrap());
    let expected: Vec<String> = [("first", 1), ("again", 2), ("first", 3)]
        .iter()
        .map(|(state, n)| format!("kv {key} {state} count={n}"))
        .collect();
    // `count` is shared by every test using this Redis: compare the states only.
    let states: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(states, ["first", "again", "first"], "{lines:?} vs {expected:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_provider_is_a_plugin_and_a_manifest() {
    let redis = redis();
    let remote = remote::shared();
    let channel = format!("gh-{}", uuid::Uuid::now_v7().simple());
    let notify = format!("notify_url = \"{}/chat/{channel}\"", remote.url);
    let host = TestHost::start_with(Options {
        extra_plugins: &["github-activity"],
        extra_config: "[[routes]]\nname = \"github\"\nplugin = \"github-activity\"\n\
                       verify = [{ scheme = \"github\", secret_env = \"GITHUB_WEBHOOK_SECRET\" }]\n",
        extra_env: &[
            ("GITHUB_WEBHOOK_SECRET", "gh-test-secret"),
            ("REDIS_URL", redis.url.as_str()),
        ],
        manifest_edits: &[
            (
                "github-activity",
                r#"http = { allow = ["https://hooks.slack.com"] }"#,
                r#"http = { allow = ["http://127.0.0.1:*"], allow_private = true }"#,
            ),
            (
                "github-activity",
                "# notify_url = \"https://hooks.slack.com/services/…\"",
                &notify,
            ),
        ],
        ..Options::default()
    })
    .await;
    let repo = format!("acme/{channel}");
    let body = format!(
        r#"{{"action":"opened","issue":{{"number":7,"title":"Crash"}},"repository":{{"full_name":"{repo}"}},"sender":{{"login":"ann"}}}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut event_ids = Vec::new();
    for delivery in ["d-1", "d-2"] {
        let mut headers =
            webhook_host::verify::sign::headers("github", "gh-test-secret", delivery, body.as_bytes(), now)
                .unwrap();
        headers.push(("x-github-event", "issues".into()));
        let (status, answer) = host.post_with("/hooks/github", body.as_bytes(), &headers).await;
        assert_eq!(status, 200, "{answer}");
        event_ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    // A wrong signature is refused at the edge, before any plugin runs.
    let mut forged =
        webhook_host::verify::sign::headers("github", "not-the-secret", "d-3", body.as_bytes(), now).unwrap();
    forged.push(("x-github-event", "issues".into()));
    let (status, _) = host.post_with("/hooks/github", body.as_bytes(), &forged).await;
    assert_eq!(status, 401);

    for id in &event_ids {
        host.wait_for(id, "done").await;
    }
    // Archived in storage under the plugin's prefix, one object per delivery.
    let folder = host
        .dir
        .path()
        .join(format!("data-0/blobs/webhook-host/github/{repo}/issues"));
    for delivery in ["d-1", "d-2"] {
        assert_eq!(
            std::fs::read(folder.join(format!("{delivery}.json"))).unwrap(),
            body.as_bytes()
        );
    }
    // Counted in Redis under the plugin's own prefix, and summarised in the chat.
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let count: i64 = ::redis::cmd("GET")
        .arg(format!("whk:github-activity:count:{repo}:issues"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 2);
    let mut posted: Vec<String> = remote
        .chat(&channel)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    posted.sort();
    assert_eq!(
        posted,
        [
            format!("[{repo}] issues opened #7 Crash by ann (1 so far)"),
            format!("[{repo}] issues opened #7 Crash by ann (2 so far)"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_responses_and_requests_per_event_are_capped() {
    let host = TestHost::start_with(Options {
        manifest_edits: &[(
            "test-misbehave",
            r#"http = { allow = ["http://*:*", "https://allowed.example"] }"#,
            r#"http = { allow = ["http://127.0.0.1:*"], allow_private = true, max_requests_per_event = 2, max_response_bytes = 100000 }"#,
        )],
        ..Options::default()
    })
    .await;
    let remote = remote::shared();
    let url = &remote.url;
    let targets = format!("{url}/files/cap-a?size=10 {url}/files/cap-b?size=200000 {url}/files/cap-c");
    let body = format!(r#"{{"mode":"reach","targets":"{targets}"}}"#);
    let (_, answer) = host
        .post("/hooks/misbehave", body.as_bytes(), Signer::fal("caps-1"))
        .await;
    host.wait_for(answer["event_id"].as_str().unwrap(), "done").await;
    let mut outcomes = host.texts("SELECT event_id FROM plugin_effects").await;
    outcomes.sort();
    assert!(outcomes[0].ends_with("cap-a?size=10 ok 200"), "{outcomes:?}");
    assert!(outcomes[1].contains("cap-b?size=200000 refused"), "{outcomes:?}");
    assert!(outcomes[2].contains("cap-c refused"), "{outcomes:?}");
    assert_eq!(
        remote.file_hits("cap-c"),
        0,
        "the third request never left the host"
    );
    let log = host.log();
    assert!(log.contains("larger than 100000 bytes"), "{log}");
    assert!(log.contains("more than 2 requests in one event"), "{log}");
}
