//! Real headless Chromium (Debian's `chromium`), driven over the W3C
//! WebDriver protocol by Debian's `chromedriver`: just the calls the
//! console test needs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::services::free_port;

/// The key W3C WebDriver puts element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn chromium() -> &'static str {
    // The binary itself; /usr/bin/chromium is a wrapper script around it.
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect("chromium is not installed (Debian: apt-get install chromium chromium-driver)")
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless session.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (Debian: apt-get install chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("http://127.0.0.1:{port}/status")).send().await;
            if let Ok(response) = ready
                && let Ok(text) = response.text().await
                && text.contains(r#""ready":true"#)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            http,
            _profile: profile,
        };
        let profile_dir = browser._profile.path().display().to_string();
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--window-size=1280,900",
                    format!("--user-data-dir={profile_dir}"),
                ],
            },
        }}});
        let session = browser.call("POST", "/session", Some(capabilities)).await;
        browser.session = session["sessionId"].as_str().expect("a session id").to_string();
        browser
    }

    /// One WebDriver command; its `value`. Panics with the driver's message
    /// on an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// One WebDriver command; its `value`, or the driver's error.
    async fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        if status.is_success() {
            Ok(answer["value"].clone())
        } else {
            Err(format!("WebDriver {method} {path}: {status} {answer}"))
        }
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call("GET", &self.at("/url"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (up to 10 s) for the page's URL to satisfy `check` (a click
    /// that navigates returns before the next page is there).
    pub async fn wait_for_url(&self, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let url = self.current_url().await;
            if check(&url) {
                return url;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "still on {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every element matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                "POST",
                &self.at("/elements"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    /// The first element matching `css` (fails the test when there is none).
    pub async fn find(&self, css: &str) -> String {
        let found = self.find_all(css).await;
        assert!(
            !found.is_empty(),
            "no element {css} on {}",
            self.current_url().await
        );
        found[0].clone()
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call("POST", &self.at(&format!("/element/{element}/click")), None)
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The text of the first element matching `css`. A click may have
    /// started loading the next page: an element that is missing or went
    /// stale is looked for again, for up to 10 s.
    pub async fn text(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(element) = self.find_all(css).await.first() {
                let path = self.at(&format!("/element/{element}/text"));
                if let Ok(text) = self.try_call("GET", &path, None).await {
                    return text.as_str().unwrap().to_string();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element {css} on {}",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 20 s) until `check` holds of the text of `css`, reloading
    /// the page between looks when `reload` (otherwise the page updates itself).
    pub async fn wait_for_text(&self, css: &str, reload: bool, check: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css).await;
            if check(&text) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{css} still reads {text:?} on {}",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            if reload {
                self.call("POST", &self.at("/refresh"), None).await;
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; a plain blocking request, as
        // Drop cannot await.
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
