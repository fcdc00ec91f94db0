//! A real headless Chromium driven through WebDriver (Debian's `chromium-driver`), for
//! the web page tests: open a page, find elements by CSS selector, read text, attributes
//! and computed styles, click, read the console, save a screenshot.
//!
//! The client is a few JSON calls over reqwest; each [`Browser`] has its own
//! chromedriver process on a free loopback port and a fresh Chromium profile, both
//! removed when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{eventually, free_port};

/// The WebDriver element key (W3C).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A found element.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Start chromedriver and a headless Chromium `width` pixels wide.
    pub async fn start(width: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{base}/status");
        let up = eventually(Duration::from_secs(20), || {
            let (http, status) = (http.clone(), status.clone());
            async move { http.get(&status).send().await.is_ok() }
        })
        .await;
        assert!(up, "chromedriver did not start on {base}");
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    format!("--window-size={width},900"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                // A window cannot be narrower than 500 px; the viewport can.
                "mobileEmulation": { "deviceMetrics": { "width": width, "height": 900, "pixelRatio": 1 } },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("create a WebDriver session")
            .json()
            .await
            .expect("session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Open `url` and wait for it to load.
    pub async fn goto(&self, url: &str) {
        let answer = self.post("/url", json!({ "url": url })).await;
        assert!(answer.is_null(), "navigating to {url}: {answer}");
    }

    /// The current address.
    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page title.
    pub async fn title(&self) -> String {
        self.get("/title")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every element matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`; panics with the selector when none does.
    pub async fn find(&self, css: &str) -> Element {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    /// An element's visible text.
    pub async fn text(&self, element: &Element) -> String {
        let value = self.get(&format!("/element/{}/text", element.0)).await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// An element's attribute.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self
            .get(&format!("/element/{}/attribute/{name}", element.0))
            .await;
        value.as_str().map(str::to_string)
    }

    /// An element's computed CSS property (e.g. `fill`, `color`).
    pub async fn css(&self, element: &Element, property: &str) -> String {
        let value = self
            .get(&format!("/element/{}/css/{property}", element.0))
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// An element's computed colour property as `(r, g, b)`, whether the browser
    /// answers `rgb(...)` or `rgba(...)`.
    pub async fn colour(&self, element: &Element, property: &str) -> (u8, u8, u8) {
        let text = self.css(element, property).await;
        let parts: Vec<u8> = text
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect();
        match parts[..] {
            [r, g, b, ..] => (r, g, b),
            _ => panic!("{property} is not a colour: {text:?}"),
        }
    }

    /// Click an element.
    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Run JavaScript in the page and return its value.
    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Browser console entries at level SEVERE since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.post("/se/log", json!({ "type": "browser" })).await;
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Save a PNG of the viewport to `target/screenshots/NAME.png`; returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let data = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }
}

/// Where screenshots go: `$CARGO_TARGET_DIR/screenshots`, else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        // Ending the session closes Chromium (killing chromedriver alone would leave it
        // running); a runtime of its own keeps Drop synchronous inside async tests.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(async {
                    let _ = reqwest::Client::new().delete(&url).send().await;
                });
            }
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
