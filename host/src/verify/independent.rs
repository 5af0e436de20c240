//! Presets against deliveries signed independently: with Python's `hmac`
//! and `cryptography` under fixed keys, at 1700000000 (2023-11-14T22:13:20Z).

use super::scheme::Rejection;
use super::vectors::Captured;

/// Deliveries signed independently (Python's hmac / cryptography) with
/// fixed keys, at 1700000000 (2023-11-14T22:13:20Z).
#[tokio::test]
async fn presets_accept_independently_signed_deliveries() {
    const B: &str = r#"{"event":"test","n":1}"#;
    let url = Some("https://hooks.example.com/hooks/hubspot");
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'static str, &'a str)],
        &'a str,
        Option<&'a str>,
    );
    let cases: &[Case] = &[
        (
            "stripe",
            "whsec_stripe_test",
            &[(
                "stripe-signature",
                "t=1700000000,v1=3c24fdf0ab40c288660aac8c64dd968e228b031c2c35fada389cf282987950df",
            )],
            B,
            None,
        ),
        (
            "asana",
            "asana-hook-secret",
            &[(
                "x-hook-signature",
                "d0f81aab438c840da56720715deb1b7d8d638ee17c9e1603dda9b41f2de7d75e",
            )],
            B,
            None,
        ),
        (
            "box",
            "box-primary-key",
            &[
                (
                    "box-signature-primary",
                    "yZQi8p6eDmz4BkED/HJtlwXxoaV14TC4DtU9R7K1fvI=",
                ),
                ("box-delivery-timestamp", "2023-11-14T22:13:20Z"),
            ],
            B,
            None,
        ),
        (
            "intercom",
            "intercom-client-secret",
            &[("x-hub-signature", "sha1=ebf8b137d7a75dfa47bd7c2d33ddbb20548e6a09")],
            B,
            None,
        ),
        (
            "jira",
            "jira-secret",
            &[
                (
                    "x-hub-signature",
                    "sha256=0187fe2ee0b8c3e090999b2cd14843fc401bda501af3a11e3ae78c18dc66d7cb",
                ),
                ("x-atlassian-webhook-identifier", "wh-1"),
            ],
            B,
            Some("wh-1"),
        ),
        (
            "lemon-squeezy",
            "lemon-secret",
            &[(
                "x-signature",
                "d323995e2aee4ed8d6c330f804c14295aaa9a59e595e09e6b2424a16fb09e31f",
            )],
            B,
            None,
        ),
        (
            "linear",
            "linear-secret",
            &[(
                "linear-signature",
                "07431dbb57f886406178610d676d7f4f2637afa35f6308a12b4a299ea35c28fc",
            )],
            r#"{"action":"create","webhookTimestamp":1700000000000}"#,
            None,
        ),
        (
            "meta",
            "meta-app-secret",
            &[(
                "x-hub-signature-256",
                "sha256=62b741a19f43104e52a462b2019b71fbe94d5b6785db940c3bb7f63fe7fe2c1d",
            )],
            B,
            None,
        ),
        (
            "pagerduty",
            "pagerduty-secret",
            &[
                (
                    "x-pagerduty-signature",
                    "v1=00ab,v1=82a4d4fe331e7acb48fb58d3c930ea805b7be5f0b7c0bb5451da1ed5169a0bb6",
                ),
                ("x-webhook-id", "pd-1"),
            ],
            B,
            Some("pd-1"),
        ),
        (
            "segment",
            "segment-shared-secret",
            &[("x-signature", "a6c91fb2b5c86507986b721d35e6d0228ed0c596")],
            B,
            None,
        ),
        (
            "sentry",
            "sentry-client-secret",
            &[
                (
                    "sentry-hook-signature",
                    "02403d2cef45ece2a9b8d26738cbd7fd9856b5977cb4287f9f362f835d7eeb6b",
                ),
                ("request-id", "req-1"),
            ],
            B,
            Some("req-1"),
        ),
        (
            "twitch",
            "twitch-secret-123",
            &[
                (
                    "twitch-eventsub-message-signature",
                    "sha256=e84933a568cfcacb2c38ea6cb7aec612d3a49c600fea88f9ad1be3e130e68538",
                ),
                ("twitch-eventsub-message-id", "msg-1"),
                (
                    "twitch-eventsub-message-timestamp",
                    "2023-11-14T22:13:20.123456789Z",
                ),
            ],
            B,
            Some("msg-1"),
        ),
        (
            "vercel",
            "vercel-secret",
            &[("x-vercel-signature", "73632445ad727f6376a2568b458b5de00642e69f")],
            B,
            None,
        ),
        (
            "discord",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            &[
                (
                    "x-signature-ed25519",
                    "6ff056b8b5aacf4acea05b42f98883fcf662e7c5af8ca2c4d4413d27bb6758756804152cc36fafacdc870f9b275ae5d65ea4b5540feefb1fa55166c94be94a06",
                ),
                ("x-signature-timestamp", "1700000000"),
            ],
            B,
            None,
        ),
        (
            "hubspot",
            "hubspot-client-secret",
            &[
                (
                    "x-hubspot-signature-v3",
                    "dKIJZWsPkt+Z8lvmiMHwsHqsfMPEICCcKsMFQHvCY4I=",
                ),
                ("x-hubspot-request-timestamp", "1700000000000"),
            ],
            B,
            None,
        ),
    ];
    for (provider, key, headers, body, id) in cases {
        let query = if *provider == "hubspot" { "portal=1" } else { "" };
        let got = Captured {
            provider,
            key,
            url,
            query,
            headers,
            body,
            now: 1_700_000_000,
        }
        .check()
        .await;
        assert_eq!(got.as_deref(), *id, "{provider}");
    }
    // JWS presets, their tokens made with Python (hmac; cryptography's ECDSA
    // with the P-256 test key, its signature rewritten as r‖s).
    let netlify = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJpc3MiOiAibmV0bGlmeSIsICJzaGEyNTYiOiAiODI5YWUyZDNhMTU3ZjJkM2E5ZTk5ZjIyMTM5MmM0MTZhMzEwMjZmYjJiYzE3YWQ3NTViNjkxNzBlOTQyYzkxNiJ9.BmbMLPCSpbMLGnJZqMppqrV8Fsk6znfwDO9WiH4Ngnc";
    let plaid = "eyJhbGciOiAiRVMyNTYiLCAia2lkIjogImJmYmQ1MTExLThlMzMtNDY0My04Y2VkLWIyZTY0MmE3MmYzYyIsICJ0eXAiOiAiSldUIn0.eyJpYXQiOiAxNzAwMDAwMDAwLCAicmVxdWVzdF9ib2R5X3NoYTI1NiI6ICI4MjlhZTJkM2ExNTdmMmQzYTllOTlmMjIxMzkyYzQxNmEzMTAyNmZiMmJjMTdhZDc1NWI2OTE3MGU5NDJjOTE2In0.aX7Wcu9G_xnuRKHGwKFdnEAhoX_M9omTOshPGShiEFb9NWtg86pEorxNeiWdByxEptMRd1WHyTkiIoGEDX1nZg";
    let plaid_key = r#"{"kty":"EC","crv":"P-256","x":"w0Jv3OMnD8AHMYCleT5rEAFldZToK12-5KXXyjeGxUo","y":"katdoEJgIG8exgalQKTa5YN_cZBnNEAC90epY5_GiGM"}"#;
    for (provider, key, header, token) in [
        ("netlify", "netlify-jws-secret", "x-webhook-signature", netlify),
        ("plaid", plaid_key, "plaid-verification", plaid),
    ] {
        let headers = [(header, token)];
        let captured = Captured {
            provider,
            key,
            url: None,
            query: "",
            headers: &headers,
            body: B,
            now: 1_700_000_000,
        };
        captured.check().await;
        // A token whose claims were changed after signing is refused.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"iss":"netlify","sha256":"00","iat":1700000000,"request_body_sha256":"00"}"#,
        );
        parts[1] = &forged_claims;
        let forged = parts.join(".");
        let headers = [(header, forged.as_str())];
        let forged = Captured {
            headers: &headers,
            ..captured
        };
        assert_eq!(
            forged.verify_with(B, "").await,
            Err(Rejection::NoMatchingSignature),
            "{provider}"
        );
    }
    let stale = Captured {
        provider: "plaid",
        key: plaid_key,
        url: None,
        query: "",
        headers: &[("plaid-verification", plaid)],
        body: B,
        now: 1_700_000_000 + 301,
    };
    assert_eq!(
        stale.verify_with(B, "").await,
        Err(Rejection::TimestampOutOfRange { tolerance_secs: 300 })
    );

    // Contentful's canonical request, the signature computed by re-running
    // its SDK's code (node-apps-toolkit) with Node's own crypto.
    let contentful = Captured {
        provider: "contentful",
        key: &"a".repeat(64),
        url: Some("https://hooks.example.com/"),
        query: "",
        headers: &[
            (
                "x-contentful-signature",
                "39370e2e26971b26114df8ba01f94abb25012a03f793380bbf8fe6be292c728d",
            ),
            ("x-contentful-timestamp", "1603379941037"),
            (
                "x-contentful-signed-headers",
                "x-contentful-signed-headers,x-contentful-timestamp",
            ),
        ],
        body: r#"{"a":1}"#,
        now: 1_603_379_941,
    };
    contentful.check().await;

    // Mailgun signs body fields: the timestamp and token of its signature object.
    let mailgun = r#"{"signature":{"timestamp":"1700000000","token":"tok-5f2a","signature":"99961ddab03923c20a6f9cea4715e772f82a3d91aa8f1dbf394cd47692d6f9b4"},"event-data":{"id":"ev-1"}}"#;
    let captured = Captured {
        provider: "mailgun",
        key: "mailgun-signing-key",
        url: None,
        query: "",
        headers: &[],
        body: mailgun,
        now: 1_700_000_000,
    };
    assert_eq!(
        captured.verify_with(mailgun, "").await.unwrap().as_deref(),
        Some("ev-1")
    );
    assert_eq!(
        captured
            .verify_with(&mailgun.replace("tok-5f2a", "tok-5f2b"), "")
            .await,
        Err(Rejection::NoMatchingSignature)
    );
    // Trello's content, recomputed (a third-party README's value is wrong).
    let trello = Captured {
        provider: "trello",
        key: "secret",
        url: Some("https://example.com/webhooks"),
        query: "",
        headers: &[("x-trello-webhook", "FwPAcuGe9EP/+SbXFWjnEVTa0zw=")],
        body: r#"{"hello":"world"}"#,
        now: 0,
    };
    trello.verify_with(trello.body, "").await.unwrap();
}
