use super::*;
use crate::verify::catalogue;
use axum::http::HeaderMap;

fn handshakes(provider: &str, key: &str, token: Option<&str>) -> Vec<Handshake> {
    let preset = catalogue::builtin(provider).unwrap();
    Handshake::build_all(&preset, &[Secret::new(key)], token.map(Secret::new).as_ref()).unwrap()
}

fn answer(provider: &str, key: &str, token: Option<&str>) -> Result<Answer, Refused> {
    let preset = catalogue::builtin(provider).unwrap();
    let spec = &preset.handshakes[0];
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.example.headers {
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let request =
        Request::new(&headers, spec.example.body.as_bytes()).with_target(&spec.method, &spec.example.query);
    let all = handshakes(provider, key, token);
    let reader = Reader::new(&request);
    let method: http::Method = spec.method.parse().unwrap();
    let found = all
        .iter()
        .find(|h| h.matches(&method, &reader))
        .expect("the example is a handshake");
    found.answer(&request)
}

#[test]
fn zoom_answers_the_hmac_of_its_plain_token() {
    // Zoom's sample app: encryptedToken = hex(HMAC-SHA256(secret token, plainToken)).
    let answer = answer("zoom", "secret-token", None).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let plain = body["plainToken"].as_str().unwrap();
    assert_eq!(
        body["encryptedToken"].as_str().unwrap(),
        hex::encode(crate::verify::hmac_sha256(b"secret-token", &[plain.as_bytes()]))
    );
    assert_eq!(
        answer.headers,
        [("content-type".to_string(), "application/json".to_string())]
    );
}

#[test]
fn meta_echoes_the_challenge_only_for_the_route_token() {
    // Meta's sample: ?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock
    let answered = answer("meta", "app-secret", Some("meatyhamhock")).unwrap();
    assert_eq!(answered.body, b"1158201444");
    assert_eq!(
        answer("meta", "app-secret", Some("another")),
        Err(Refused::WrongToken("hub.verify_token"))
    );
}

#[test]
fn a_handshake_comparing_a_token_is_refused_on_a_route_without_one() {
    let refused = answer("meta", "app-secret", None).unwrap_err();
    assert_eq!(refused, Refused::NoToken("hub.verify_token"));
    assert!(refused.to_string().contains("handshake_token_env"), "{refused}");
}

#[test]
fn every_shipped_handshake_answers_its_own_example() {
    for preset in catalogue::all_builtin() {
        for spec in &preset.handshakes {
            let mut headers = HeaderMap::new();
            for (name, value) in &spec.example.headers {
                headers.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            let request = Request::new(&headers, spec.example.body.as_bytes())
                .with_target(&spec.method, &spec.example.query);
            let all = Handshake::build_all(
                preset,
                &[Secret::new("k")],
                Some(&Secret::new(
                    spec.example
                        .query
                        .split("hub.verify_token=")
                        .nth(1)
                        .unwrap_or("t"),
                )),
            )
            .unwrap();
            let reader = Reader::new(&request);
            let method: http::Method = spec.method.parse().unwrap();
            let found = all
                .iter()
                .find(|h| h.matches(&method, &reader))
                .unwrap_or_else(|| panic!("{} {}: the example is not recognised", preset.name, spec.name));
            assert_eq!(found.name, spec.name, "{}", preset.name);
            let answer = found
                .answer(&request)
                .unwrap_or_else(|e| panic!("{} {}: {e}", preset.name, spec.name));
            assert!(
                (200..300).contains(&answer.status),
                "{} {}",
                preset.name,
                spec.name
            );
        }
    }
}

#[test]
fn an_event_is_not_a_handshake() {
    let all = handshakes("slack", "k", None);
    let headers = HeaderMap::new();
    let request = Request::new(&headers, br#"{"type":"event_callback","challenge":"x"}"#);
    let reader = Reader::new(&request);
    assert!(!all.iter().any(|h| h.matches(&http::Method::POST, &reader)));
}

#[test]
fn confirmation_urls_are_limited_to_the_allowed_hosts() {
    let spec = ConfirmSpec {
        header: None,
        json: Some("/SubscribeURL".into()),
        query: None,
        hosts: vec!["sns.*.amazonaws.com".into()],
        allow_http: false,
        allow_private: false,
    };
    assert!(confirmable(
        &spec,
        "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x"
    ));
    for url in [
        "http://sns.us-west-2.amazonaws.com/",
        "https://sns.us-west-2.amazonaws.com.evil.test/",
        "https://evil.test/sns.us-west-2.amazonaws.com",
        "https://user@sns.us-west-2.amazonaws.com/",
        "not a url",
    ] {
        assert!(!confirmable(&spec, url), "{url}");
    }
}
