//! The page of `fruitlab serve` in a real browser: headless Chromium, driven through
//! ChromeDriver's WebDriver protocol, opens the page, uploads an image of the mini `Test/`
//! and the right class name appears in the rendered page, with its bars and its activation
//! map; then a photo of none of its classes, and the page says so. Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//!
//! With `FRUITLAB_SCREENSHOTS=DIR`, screenshots of the page at 1400 px and at phone width are
//! written there (the README's screenshot command).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which an element's id travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one browser session, both ended when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the page test needs Chromium and ChromeDriver: apt-get install chromium chromium-driver (as .ci/run does)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while agent().get(format!("{base}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "ChromeDriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        // As this machine's notes say: without the background-networking flags, Chromium's
        // connections to the outside are refused by the closed network, many at a time.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let reply = request(&format!("{base}/session"), "POST", Some(capabilities));
        let session =
            reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{reply}")).to_string();
        Self { driver, base, session, _profile: profile }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        request(&format!("{}/session/{}{path}", self.base, self.session), method, body)["value"]
            .clone()
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        found[ELEMENT].as_str().map(String::from)
    }

    fn text(&self, element: &str) -> String {
        self.command("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn screenshot(&self, path: &Path) {
        let png = self.command("GET", "/screenshot", None);
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent().delete(format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn request(url: &str, method: &str, body: Option<Value>) -> Value {
    let agent = agent();
    let mut response = match (method, body) {
        ("POST", body) => agent.post(url).send_json(body.unwrap_or(json!({}))).unwrap(),
        ("GET", _) => agent.get(url).call().unwrap(),
        _ => unreachable!("only GET and POST are used"),
    };
    response.body_mut().read_json().unwrap()
}

/// Picks `file` in the page's file input `input`, as a person choosing it would.
fn upload(browser: &Browser, input: &str, file: &Path) {
    let path = file.canonicalize().unwrap().display().to_string();
    browser.command("POST", &format!("/element/{input}/value"), Some(json!({ "text": path })));
}

/// Polls `find` until it returns an element whose text satisfies `done`.
fn wait_for_text(browser: &Browser, css: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Some(element) = browser.find(css) {
            let text = browser.text(&element);
            if done(&text) {
                return text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{css} never showed the expected text"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_page_classifies_an_uploaded_photo() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::trained_run(dir.path());
    let server = common::Server::start(&["--run", run.to_str().unwrap()]);
    let browser = Browser::start();
    browser.command("POST", "/url", Some(json!({ "url": format!("{}/", server.url) })));
    // The model's description arrives from the server.
    let header = wait_for_text(&browser, "#model", |t| t.contains("10 classes"));
    assert!(header.contains("100×100"), "{header}");

    let banana = common::mini_dataset().join("Test/Banana/141_100.jpg");
    let input = browser.find("#files").expect("the file input");
    upload(&browser, &input, &banana);
    let answer = wait_for_text(&browser, ".card .class", |t| !t.is_empty());
    assert_eq!(answer, "Banana");
    let card = browser.find(".card").unwrap();
    let text = browser.text(&card);
    assert!(text.contains("141_100.jpg") && text.contains('%'), "{text}");
    let bars = browser.command(
        "POST",
        "/elements",
        Some(json!({ "using": "css selector", "value": ".card .row" })),
    );
    assert_eq!(bars.as_array().unwrap().len(), 5, "five bars");
    let cam = browser.find(".card figure:nth-child(2) img").unwrap();
    let source = browser.command("GET", &format!("/element/{cam}/attribute/src"), None);
    assert!(source.as_str().unwrap().starts_with("data:image/png;base64,"), "the activation map");
    let status = browser.text(&browser.find("#status").unwrap());
    assert!(status.contains("classified in"), "{status}");

    // A clothing photo is none of the ten fruits: the page says so instead of naming one.
    let hat = common::shared().join("datasets/clothing10/Test/hat");
    let hat = hat.read_dir().unwrap().next().unwrap().unwrap().path();
    upload(&browser, &input, &hat);
    let answer = wait_for_text(&browser, ".card.unknown .class", |t| !t.is_empty());
    assert_eq!(answer, "Not one of the 10 classes I know");

    // A WebP photo (as many phones and web pages save them) is taken like a JPEG.
    let webp = dir.path().join("banana.webp");
    image::open(&banana).unwrap().save(&webp).unwrap();
    upload(&browser, &input, &webp);
    wait_for_text(&browser, ".card .name", |name| name == "banana.webp");
    assert_eq!(browser.text(&browser.find(".card .class").unwrap()), "Banana");

    if let Some(folder) = std::env::var_os("FRUITLAB_SCREENSHOTS") {
        let folder = Path::new(&folder);
        std::fs::create_dir_all(folder).unwrap();
        browser.screenshot(&folder.join("page-1400.png"));
        browser.command("POST", "/window/rect", Some(json!({ "width": 390, "height": 844 })));
        browser.screenshot(&folder.join("page-phone.png"));
    }
}
