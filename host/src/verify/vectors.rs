//! Presets against values made outside this code: the providers' published
//! examples reproduced exactly (Twilio, Square, SendGrid, Svix / Standard
//! Webhooks, Trello's documented content), and deliveries signed
//! independently with Python's `hmac` and `cryptography` under fixed keys.

use axum::http::{HeaderMap, HeaderValue};

use super::catalogue;
use super::declarative::Declarative;
use super::scheme::{Rejection, Request, Scheme};
use crate::config::Secret;

/// A request as captured: headers, body, query, the URL the provider was
/// given, and the time it is checked at.
struct Captured<'a> {
    provider: &'a str,
    key: &'a str,
    url: Option<&'a str>,
    query: &'a str,
    headers: &'a [(&'static str, &'a str)],
    body: &'a str,
    now: i64,
}

impl Captured<'_> {
    fn scheme(&self) -> Declarative {
        let preset = catalogue::builtin(self.provider).unwrap();
        Declarative::new(preset, &[Secret::new(self.key)], 300, self.url)
            .unwrap_or_else(|e| panic!("{}: {e:#}", self.provider))
    }

    fn headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    async fn verify_with(&self, body: &str, query: &str) -> Result<Option<String>, Rejection> {
        let headers = self.headers();
        let request = Request::at(&headers, body.as_bytes(), self.now).with_target("POST", query);
        self.scheme().verify(&request).await.map(|v| v.delivery_id)
    }

    /// Accepted as captured; refused once the body changes.
    async fn check(&self) -> Option<String> {
        let accepted = self
            .verify_with(self.body, self.query)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.provider));
        let changed = self.body.replacen('1', "2", 1);
        assert_ne!(changed, self.body, "{}", self.provider);
        assert!(
            self.verify_with(&changed, self.query).await.is_err(),
            "{}: a changed body verified",
            self.provider
        );
        accepted
    }
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Twilio's SDK test vectors (twilio-php / twilio-csharp RequestValidatorTest):
/// a form post and a JSON body bound by `bodySHA256`.
#[tokio::test]
async fn twilios_published_examples_verify() {
    let form = Captured {
        provider: "twilio",
        key: "12345",
        url: Some("https://mycompany.com/myapp.php"),
        query: "foo=1&bar=2",
        headers: &[FORM, ("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")],
        body: "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212",
        now: 0,
    };
    form.check().await;
    // The same post at another URL (a proxy's, not the public one) fails.
    assert_eq!(
        Captured {
            url: Some("http://127.0.0.1:8000/hooks/twilio"),
            ..form
        }
        .verify_with(form.body, form.query)
        .await,
        Err(Rejection::NoMatchingSignature)
    );
    let json = Captured {
        provider: "twilio",
        key: "12345",
        url: Some("https://mycompany.com/myapp.php"),
        query: "foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620",
        headers: &[
            ("content-type", "application/json"),
            ("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4="),
        ],
        body: r#"{"property": "value", "boolean": true}"#,
        now: 0,
    };
    json.verify_with(json.body, json.query).await.unwrap();
    // The body is bound by its hash even though only the URL is signed.
    assert_eq!(
        json.verify_with(r#"{"property": "value", "boolean": false}"#, json.query)
            .await,
        Err(Rejection::NoMatchingSignature)
    );
}

/// Square's SDK test (square-nodejs-sdk webhooksHelper.test.ts).
#[tokio::test]
async fn squares_published_example_verifies() {
    let id = Captured {
        provider: "square",
        key: "Ibxx_5AKakO-3qeNVR61Dw",
        url: Some("https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"),
        query: "",
        headers: &[("x-square-hmacsha256-signature", "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=")],
        body: r#"{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}"#,
        now: 0,
    }
    .check()
    .await;
    assert_eq!(id.as_deref(), Some("ac3ac95b-f97d-458c-a6e6-18981597e05f"));
    Captured {
        provider: "square",
        key: "signature-key",
        url: Some("https://webhook.site/webhooks"),
        query: "",
        headers: &[(
            "x-square-hmacsha256-signature",
            "W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=",
        )],
        body: r#"{"data":{"type":"webhooks","id":"fake_id"}}"#,
        now: 0,
    }
    .verify_with(r#"{"data":{"type":"webhooks","id":"fake_id"}}"#, "")
    .await
    .unwrap();
}

/// SendGrid's SDK test (sendgrid-nodejs eventwebhook.spec.js): ECDSA P-256;
/// its other key must fail.
#[tokio::test]
async fn sendgrids_published_example_verifies_and_its_wrong_key_does_not() {
    let signed = Captured {
        provider: "sendgrid",
        key: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
        url: None,
        query: "",
        headers: &[
            (
                "x-twilio-email-event-webhook-signature",
                "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=",
            ),
            ("x-twilio-email-event-webhook-timestamp", "1588788367"),
        ],
        body: r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#,
        now: 1_588_788_367,
    };
    signed.verify_with(signed.body, "").await.unwrap();
    assert!(
        signed
            .verify_with(r#"{"category":"example_payload"}"#, "")
            .await
            .is_err()
    );
    let wrong = Captured {
        key: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==",
        ..signed
    };
    assert_eq!(
        wrong.verify_with(signed.body, "").await,
        Err(Rejection::NoMatchingSignature)
    );
}

/// Svix's test vector, under Svix's headers and under Standard Webhooks'.
#[tokio::test]
async fn the_svix_vector_verifies_under_both_header_sets() {
    for (provider, prefix) in [
        ("svix", "svix"),
        ("clerk", "svix"),
        ("standard-webhooks", "webhook"),
        ("openai", "webhook"),
    ] {
        let id = format!("{prefix}-id");
        let ts = format!("{prefix}-timestamp");
        let sig = format!("{prefix}-signature");
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let headers = [
            (leak(id), "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            (leak(ts), "1614265330"),
            (
                leak(sig),
                "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        let got = Captured {
            provider,
            key: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            url: None,
            query: "",
            headers: &headers,
            body: r#"{"test": 2432232314}"#,
            now: 1_614_265_330,
        }
        .check()
        .await;
        assert_eq!(got.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"), "{provider}");
    }
}

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

/// AWS's documented string to sign for a Notification (the SNS developer
/// guide's example): each present field as `Name\nValue\n`, in byte order.
#[test]
fn aws_sns_signs_the_documented_string() {
    use super::template::{Built, Reader};
    let preset = catalogue::builtin("aws-sns").unwrap();
    let parts: Vec<Built> = preset.signature.message.iter().map(Built::new).collect();
    let body = serde_json::json!({
        "Type": "Notification",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Subject": "My subject",
        "Message": "My Test Message",
        "Timestamp": "2012-06-05T04:37:04.321Z",
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "UnsubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe"
    })
    .to_string();
    let headers = HeaderMap::new();
    let request = Request::at(&headers, body.as_bytes(), 0);
    let message = Reader::new(&request).message(&parts, None, None).unwrap();
    assert_eq!(
        String::from_utf8(message).unwrap(),
        "Message\nMy Test Message\nMessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\nSubject\nMy subject\n\
         Timestamp\n2012-06-05T04:37:04.321Z\nTopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n\
         Type\nNotification\n"
    );
}
