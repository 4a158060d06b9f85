//! `fruitlab serve` end to end, over real sockets: predictions (raw body and multipart), the
//! model's description, health, metrics; every kind of bad request gets a JSON error and the
//! server stays up; a full queue answers 503 with Retry-After; slow clients are dropped or
//! timed out; SIGTERM finishes what is in flight and exits 0. The page is tested in a real
//! browser in `tests/serve_browser.rs`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use common::{Server, trained_run};
use std::time::Duration;

use serde_json::Value;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Status and JSON body of a POST of `body` with `content_type`.
fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut response = agent().post(url).header("Content-Type", content_type).send(body).unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap_or(Value::Null))
}

/// A multipart/form-data body of `files` (name, bytes) under the field `image`.
fn multipart(files: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "fruitlab-test-boundary";
    let mut body = Vec::new();
    for (name, bytes) in files {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n").unwrap();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn predictions_description_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let server = Server::start(&["--run", run.to_str().unwrap()]);
    let banana = read(&common::mini_dataset().join("Test/Banana/141_100.jpg"));
    let kiwi_path = common::mini_dataset()
        .join("Test/Kiwi")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let (status, body) = post(&format!("{}/v1/predict", server.url), "image/jpeg", &banana);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0]["top"][0]["class"], "Banana", "{body}");
    assert_eq!(body["predictions"][0]["top"].as_array().unwrap().len(), 5);

    let (content_type, form) =
        multipart(&[("banana.jpg", banana.clone()), ("kiwi.jpg", read(&kiwi_path))]);
    let (status, body) =
        post(&format!("{}/v1/predict?top_k=2&cam=true", server.url), &content_type, &form);
    assert_eq!(status, 200, "{body}");
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    assert_eq!(predictions[1]["filename"], "kiwi.jpg");
    assert_eq!(predictions[1]["top"][0]["class"], "Kiwi", "{body}");
    assert_eq!(predictions[0]["top"].as_array().unwrap().len(), 2);
    assert!(predictions[0]["cam"].as_str().unwrap().starts_with("data:image/png;base64,"));

    let model: Value = agent()
        .get(format!("{}/v1/model", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(model["classes"].as_array().unwrap().len(), 10);
    assert_eq!(model["image_size"], 100);
    assert!(model["training"]["best_val_accuracy"].as_f64().unwrap() > 0.9, "{model}");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(agent().get(format!("{}{path}", server.url)).call().unwrap().status(), 200);
    }
    let metrics = agent()
        .get(format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("fruitlab_requests_total{route=\"/v1/predict\",status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("fruitlab_images_total 3"), "{metrics}");
    assert!(metrics.contains("fruitlab_batch_images_count"), "{metrics}");
    assert!(metrics.contains("fruitlab_queue_depth 0"), "{metrics}");
}

#[test]
fn answers_say_none_of_these_and_uncertain_uploads_are_kept_for_labelling() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let kept = dir.path().join("to-label");
    let server = Server::start(&[
        "--run",
        run.to_str().unwrap(),
        "--save-uncertain",
        kept.to_str().unwrap(),
    ]);
    let model: Value = agent()
        .get(format!("{}/v1/model", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let temperature = model["calibration"]["temperature"].as_f64().unwrap();
    assert!(temperature > 0.0, "{model}");
    // A clothing photo is none of the ten fruits; a banana is a banana.
    let hat = common::shared().join("datasets/clothing10/Test/hat");
    let hat = hat.read_dir().unwrap().next().unwrap().unwrap().path();
    let banana = read(&common::mini_dataset().join("Test/Banana/141_100.jpg"));
    let (content_type, form) = multipart(&[("banana.jpg", banana), ("hat.jpg", read(&hat))]);
    let (status, body) = post(&format!("{}/v1/predict", server.url), &content_type, &form);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"][0]["unknown"], false, "{body}");
    assert_eq!(body["predictions"][1]["unknown"], true, "{body}");
    // Only the hat is kept, with its prediction beside it.
    let files: Vec<String> = kept
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let record = files.iter().find(|f| f.ends_with(".json")).unwrap();
    let record = common::read_json(&kept.join(record));
    assert_eq!(record["filename"], "hat.jpg", "{record}");
}

#[test]
fn bad_requests_get_json_errors_and_the_server_stays_up() {
    common::cached_weights();
    let server =
        Server::start(&["--weights", "imagenet", "--max-body-mb", "1", "--max-megapixels", "1"]);
    let url = format!("{}/v1/predict", server.url);
    let dog = read(&common::testdata("dog.jpg"));
    let big_png = {
        let image = image::RgbImage::from_pixel(1200, 1200, image::Rgb([200, 30, 30]));
        let mut bytes = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("not an image", "image/jpeg", b"hello, world".to_vec(), 400, "not a JPEG, PNG or WebP"),
        ("truncated", "image/jpeg", dog[..dog.len() / 2].to_vec(), 400, "truncated"),
        ("empty", "image/jpeg", Vec::new(), 400, "empty"),
        ("wrong content type", "text/plain", dog.clone(), 415, "Content-Type"),
        ("over the size limit", "image/jpeg", vec![0xFF; 1_200_000], 413, "limit"),
        // Far more than the socket buffers hold: the answer arrives only if the server reads
        // the whole body before it closes the connection.
        ("far over the size limit", "image/jpeg", vec![0xFF; 32 << 20], 413, "limit"),
        ("huge dimensions", "image/png", big_png, 413, "pixels"),
    ];
    for (name, content_type, body, status, words) in cases {
        let (got, answer) = post(&url, content_type, &body);
        assert_eq!(got, status, "{name}: {answer}");
        assert!(answer["error"].as_str().unwrap_or_default().contains(words), "{name}: {answer}");
    }
    let (content_type, form) = multipart(&[]);
    let (status, answer) = post(&url, &content_type, &form);
    assert_eq!(status, 400, "{answer}");
    // A client that asks before sending (`Expect: 100-continue`, as curl does for large
    // files) is answered at once, without being told to send the body.
    let address = server.url.strip_prefix("http://").unwrap();
    for (content_type, length, status) in
        [("image/jpeg", 100 << 20, "413"), ("text/plain", 10, "415")]
    {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n").unwrap();
        let mut buffer = vec![0; 4096];
        let n = stream.read(&mut buffer).unwrap();
        let reply = String::from_utf8_lossy(&buffer[..n]);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
    }
    // Query parameters out of their form: a JSON 400 naming the parameter.
    for (query, words) in [
        ("top_k=-1", "top_k"),
        ("top_k=abc", "top_k"),
        ("top_k=1.5", "top_k"),
        ("top_k=0", "top_k"),
        ("top_k=99999999999999999999999", "top_k"),
        ("top_k=2&top_k=3", "twice"),
        ("cam=maybe", "cam"),
        ("colour=red", "unknown parameter"),
    ] {
        let (status, answer) = post(&format!("{url}?{query}"), "image/jpeg", &dog);
        assert_eq!(status, 400, "{query}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(words), "{query}: {answer}");
    }
    // Methods a route does not answer, headers over the limit: JSON too.
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD"] {
        let (head, body) = raw(
            address,
            &format!("{method} /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        );
        assert!(head.starts_with("HTTP/1.1 405"), "{method}: {head}");
        assert!(head.to_lowercase().contains("allow: post"), "{method}: {head}");
        if method != "HEAD" {
            assert!(body.contains("\"error\"") && body.contains(method), "{method}: {body}");
        }
    }
    let (head, body) = raw(
        address,
        &format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)),
    );
    assert!(head.starts_with("HTTP/1.1 431") && body.contains("\"error\""), "{head} {body}");
    // Text fields of a form are not images: only the file counts.
    let (content_type, mut form) = multipart(&[("dog.jpg", dog.clone())]);
    let boundary = content_type.split("boundary=").nth(1).unwrap().to_string();
    let text =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n");
    form.splice(0..0, text.into_bytes());
    let (status, answer) = post(&url, &content_type, &form);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"].as_array().unwrap().len(), 1, "{answer}");
    // Still serving, and every error was counted.
    let (status, answer) = post(&url, "image/jpeg", &dog);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"][0]["top"][0]["index"], 249);
    let metrics = agent()
        .get(format!("{}/metrics", server.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for status in ["405", "431", "400"] {
        assert!(
            metrics.contains(&format!("status=\"{status}\"")),
            "{status} not counted:\n{metrics}"
        );
    }
}

/// Sends `request` as it is and returns the response's head and (what arrived of) its body.
fn raw(address: &str, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut buffer = vec![0; 65536];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|n| n.trim().parse::<usize>().unwrap_or(0))
            });
            if request.starts_with("HEAD") || length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn slow_clients_are_dropped_or_timed_out() {
    common::cached_weights();
    let server =
        Server::start(&["--weights", "imagenet", "--header-timeout-s", "1", "--timeout-s", "2"]);
    let address = server.url.strip_prefix("http://").unwrap().to_string();
    // Headers never finished: the connection is closed.
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buffer = Vec::new();
    let _ = stream.read_to_end(&mut buffer);
    let reply = String::from_utf8_lossy(&buffer);
    assert!(reply.is_empty() || reply.contains("408"), "{reply}");
    // A body that never arrives: 408 with a JSON error.
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\nabc")
        .unwrap();
    let mut buffer = vec![0; 4096];
    let n = stream.read(&mut buffer).unwrap();
    let reply = String::from_utf8_lossy(&buffer[..n]);
    assert!(reply.starts_with("HTTP/1.1 408") && reply.contains("\"error\""), "{reply}");
    assert_eq!(agent().get(format!("{}/healthz", server.url)).call().unwrap().status(), 200);
}

#[test]
fn a_full_queue_answers_503_and_sigterm_finishes_what_is_in_flight() {
    common::cached_weights();
    let mut server = Server::start(&["--weights", "imagenet", "--max-batch", "1", "--queue", "1"]);
    let url = format!("{}/v1/predict", server.url);
    let dog = read(&common::testdata("dog.jpg"));
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                scope.spawn(|| {
                    let response = agent()
                        .post(&url)
                        .header("Content-Type", "image/jpeg")
                        .send(&dog[..])
                        .unwrap();
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (response.status().as_u16(), retry)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|(s, _)| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.iter().any(|(s, _)| *s == 503), "the queue never filled: {statuses:?}");
    assert!(
        statuses.iter().filter(|(s, _)| *s == 503).all(|(_, retry)| retry.as_deref() == Some("1"))
    );
    assert!(statuses.iter().any(|(s, _)| *s == 200));

    // SIGTERM while a request is in flight: it is answered, then the server exits 0.
    let in_flight = std::thread::spawn({
        let url = url.clone();
        let dog = dog.clone();
        move || {
            agent()
                .post(&url)
                .header("Content-Type", "image/jpeg")
                .send(&dog[..])
                .unwrap()
                .status()
                .as_u16()
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let status = server.terminate();
    assert!(status.success(), "the server exited with {status}");
    assert_eq!(in_flight.join().unwrap(), 200);
}
