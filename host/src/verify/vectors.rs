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
pub(super) struct Captured<'a> {
    pub(super) provider: &'a str,
    pub(super) key: &'a str,
    pub(super) url: Option<&'a str>,
    pub(super) query: &'a str,
    pub(super) headers: &'a [(&'static str, &'a str)],
    pub(super) body: &'a str,
    pub(super) now: i64,
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

    pub(super) async fn verify_with(&self, body: &str, query: &str) -> Result<Option<String>, Rejection> {
        let headers = self.headers();
        let request = Request::at(&headers, body.as_bytes(), self.now).with_target("POST", query);
        self.scheme().verify(&request).await.map(|v| v.delivery_id)
    }

    /// Accepted as captured; refused once the body changes.
    pub(super) async fn check(&self) -> Option<String> {
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
