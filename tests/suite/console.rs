//! The admin console in a real headless Chromium: sign in, see a dead
//! event, replay it and see it done, filter events, watch the live numbers,
//! roll a plugin back.

use crate::browser::Browser;
use crate::harness::{Options, TestHost};

const ADMIN: &str = "console-test-admin-token";

/// Uploads and activates another version of test-misbehave; its version.
async fn deploy_second_version(host: &TestHost) -> String {
    let upload = crate::lifecycle::tagged_upload("second");
    host.admin_post(0, "/admin/v1/plugins", ADMIN, upload).await["version"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn active_version(host: &TestHost) -> String {
    let text = host
        .get_text(0, "/admin/v1/plugins/test-misbehave", Some(ADMIN))
        .await;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    answer["active_version"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_replays_a_dead_event_and_rolls_a_plugin_back_in_the_browser() {
    let host = TestHost::start_with(Options {
        extra_env: &[("ADMIN_TOKEN", ADMIN)],
        ..Options::default()
    })
    .await;
    // A dead event: its table was missing.
    host.execute("DROP TABLE plugin_effects").await;
    let dead = host.post_mode("effect").await;
    host.wait_for(&dead, "dead").await;
    host.execute("CREATE TABLE plugin_effects (event_id TEXT NOT NULL)")
        .await;
    let first = active_version(&host).await;
    let second = deploy_second_version(&host).await;
    assert_ne!(first, second);

    let browser = Browser::start().await;
    // Signing in: a page asks for the token; a wrong one is refused.
    browser.goto(&host.url("/admin/")).await;
    assert!(browser.current_url().await.ends_with("/admin/login"));
    browser.type_into("#token", "not-the-token").await;
    browser.click("#sign-in").await;
    assert!(browser.text("[role=alert]").await.contains("not right"));
    browser.type_into("#token", ADMIN).await;
    browser.click("#sign-in").await;
    browser.wait_for_url(|u| u.ends_with("/admin/")).await;
    assert_eq!(browser.text("[data-stat=dead]").await, "1");

    // The dead event, its detail, its replay.
    browser.click("a.card.status-dead").await;
    browser.wait_for_url(|u| u.contains("status=dead")).await;
    browser.click(&format!("tr[data-event='{dead}'] a")).await;
    assert_eq!(browser.text("#event-status").await, "dead");
    assert!(browser.text("#event-error").await.contains("plugin_effects"));
    assert!(browser.text("#event-body").await.contains(r#""mode": "effect""#));
    browser.click("#replay").await;
    browser
        .wait_for_text(".notice", false, |t| t.contains("Replayed"))
        .await;
    browser
        .wait_for_text("#event-status", true, |s| s == "done")
        .await;
    assert_eq!(browser.text("#event-attempts").await, "1");
    assert_eq!(host.count("SELECT COUNT(*) FROM plugin_effects").await, 1);

    // Filters: done events of the misbehave route.
    browser.goto(&host.url("/admin/events")).await;
    browser.click("#filter-route option[value=misbehave]").await;
    browser.click("#filter-status option[value=done]").await;
    browser.click("#filter").await;
    browser
        .wait_for_url(|u| u.contains("route=misbehave") && u.contains("status=done"))
        .await;
    assert_eq!(browser.find_all("#events tbody tr").await.len(), 1);
    assert_eq!(browser.find_all("#events td.status-done").await.len(), 1);

    // The dashboard follows new events without a reload.
    browser.goto(&host.url("/admin/")).await;
    for _ in 0..3 {
        host.post_mode("effect").await;
    }
    browser
        .wait_for_text("[data-stat=done]", false, |s| s == "4")
        .await;

    // Roll the plugin back to the version before.
    browser.goto(&host.url("/admin/plugins")).await;
    let section = "section[data-plugin=test-misbehave]";
    assert_eq!(
        browser.text(&format!("{section} .active-version")).await,
        &second[..12]
    );
    browser.click(&format!("{section} button.rollback")).await;
    browser
        .wait_for_text(".notice", false, |t| t.contains("rolled back to"))
        .await;
    assert_eq!(
        browser.text(&format!("{section} .active-version")).await,
        &first[..12]
    );
    assert_eq!(active_version(&host).await, first);
    // And forward again with the version's own button.
    browser
        .click(&format!("{section} tr[data-version='{second}'] button.activate"))
        .await;
    browser
        .wait_for_text(".notice", false, |t| t.contains("activated"))
        .await;
    assert_eq!(
        browser.text(&format!("{section} .active-version")).await,
        &second[..12]
    );
    assert_eq!(active_version(&host).await, second);
}
