//! The HTTP interface: `POST /v1/predict`, `GET /v1/model`, `/healthz`, `/readyz`,
//! `/metrics` and the page at `/`. Every failure is a JSON `{"error": ...}` with the status
//! that says whose fault it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use image::RgbImage;
use serde::Serialize;
use serde_json::json;

use super::batcher::{Answer, Batcher, Job, Refused};
use super::metrics::Metrics;
use crate::inference::Guess;
use crate::preprocess::{self, InputSpec};

/// What the handlers share.
pub struct App {
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub input: InputSpec,
    pub classes: usize,
    /// `GET /v1/model`.
    pub model: super::ModelInfo,
    pub limits: RequestLimits,
    /// `--save-uncertain`: where rejected and unsure uploads are kept.
    pub uncertain: Option<super::uncertain::UncertainStore>,
}

pub struct RequestLimits {
    pub max_body: usize,
    /// Largest image accepted, in pixels (width x height), checked before decoding.
    pub max_pixels: u64,
    /// Images per request.
    pub max_images: usize,
    pub timeout: Duration,
}

/// A failed request: its status and what to tell the client.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// What a prediction request asks for beyond its images: `?top_k=N&cam=true`.
pub struct PredictOptions {
    top_k: usize,
    cam: bool,
}

impl PredictOptions {
    /// The options of a query string; anything else than one whole `top_k` of at least 1 and
    /// one `cam` of true or false is refused, naming the parameter.
    fn parse(query: Option<&str>, classes: usize) -> Result<Self, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
        let (mut top_k, mut cam) = (None, None);
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let twice = || bad(format!("the parameter `{key}` is given twice"));
            match key.as_ref() {
                "top_k" => {
                    let k: usize = value.parse().ok().filter(|&k| k >= 1).ok_or_else(|| {
                        bad(format!("top_k must be a whole number of at least 1, got `{value}`"))
                    })?;
                    if top_k.replace(k.min(classes)).is_some() {
                        return Err(twice());
                    }
                }
                "cam" => {
                    let on = match value.as_ref() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(bad(format!("cam must be true or false, got `{other}`")));
                        }
                    };
                    if cam.replace(on).is_some() {
                        return Err(twice());
                    }
                }
                other => {
                    return Err(bad(format!("unknown parameter `{other}`: use top_k and cam")));
                }
            }
        }
        Ok(Self { top_k: top_k.unwrap_or(5.min(classes)), cam: cam.unwrap_or(false) })
    }
}

#[derive(Serialize)]
struct ImageAnswer {
    /// The upload's file name, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    /// Not one of the model's classes (`top` then holds the closest ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown: Option<bool>,
    top: Vec<Guess>,
    /// The class activation map over the image (`?cam=true`), as a PNG data URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    cam: Option<String>,
}

/// `POST /v1/predict`: one image as the raw body (`image/jpeg`, `image/png`, `image/webp`), or several as
/// `multipart/form-data` files.
pub async fn predict(
    State(app): State<Arc<App>>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let started = Instant::now();
    let options = PredictOptions::parse(request.uri().query(), app.classes)?;
    let top_k = options.top_k;
    let uploads = read_uploads(&app, request).await?;
    let mut images = Vec::with_capacity(uploads.len());
    let mut names = Vec::with_capacity(uploads.len());
    // The uploads' bytes, when uncertain ones are kept.
    let mut originals = Vec::new();
    for (name, bytes) in uploads {
        if app.uncertain.is_some() {
            originals.push(bytes.clone());
        }
        images.push(decode(&app, name.clone(), bytes).await?);
        names.push(name);
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job { images, top_k, cam: options.cam, reply };
    app.batcher.submit(job).map_err(|refused| match refused {
        Refused::Busy => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is busy: try again shortly")
        }
        Refused::Stopped => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down")
        }
    })?;
    let answers = answer
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error))?;
    let predictions: Vec<ImageAnswer> = names
        .into_iter()
        .zip(answers)
        .map(|(filename, answer)| to_json(filename, answer))
        .collect();
    if let Some(store) = &app.uncertain {
        for (prediction, bytes) in predictions.iter().zip(&originals) {
            let top = prediction.top.first().map_or(0.0, |g| g.probability);
            if store.wants(top, prediction.unknown) {
                let kept = store.keep(
                    bytes,
                    prediction.filename.as_deref(),
                    &(&prediction.unknown, &prediction.top),
                );
                app.metrics.observe_uncertain(kept);
            }
        }
    }
    Ok(Json(json!({
        "predictions": predictions,
        "milliseconds": started.elapsed().as_secs_f64() * 1e3,
    })))
}

fn to_json(filename: Option<String>, answer: Answer) -> ImageAnswer {
    let cam = answer.cam_png.map(|png| {
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
    });
    ImageAnswer { filename, unknown: answer.unknown, top: answer.top, cam }
}

/// The uploaded files of a request, with their names when they have any.
async fn read_uploads(
    app: &App,
    request: Request,
) -> Result<Vec<(Option<String>, Vec<u8>)>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request is larger than the limit of {} bytes", app.limits.max_body),
        )
    };
    // Refused before a byte of the body is read: a client that asked first
    // (`Expect: 100-continue`) is spared sending it.
    if super::drain::declared_length(request.headers()).is_some_and(|n| n > app.limits.max_body) {
        return Err(too_large());
    }
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &()).await.map_err(|error| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("not a multipart upload: {error}"))
        })?;
        let mut uploads = Vec::new();
        while let Some(field) =
            multipart.next_field().await.map_err(|error| multipart_error(&error, &too_large))?
        {
            // Form fields that are not files (text) are not images: read past, not counted.
            let is_file = field.file_name().is_some()
                || field.content_type().is_some_and(|t| !t.starts_with("text/"));
            let name = field.file_name().map(str::to_string);
            let bytes = field.bytes().await.map_err(|error| multipart_error(&error, &too_large))?;
            if is_file {
                if uploads.len() == app.limits.max_images {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("at most {} images per request", app.limits.max_images),
                    ));
                }
                uploads.push((name, bytes.to_vec()));
            }
        }
        if uploads.is_empty() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "the upload holds no file"));
        }
        return Ok(uploads);
    }
    if !(content_type.starts_with("image/") || content_type.starts_with("application/octet-stream"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "send an image (Content-Type image/jpeg, image/png or image/webp) or multipart/form-data files, not `{}`",
                if content_type.is_empty() { "no content type" } else { &content_type }
            ),
        ));
    }
    let bytes = axum::body::to_bytes(request.into_body(), app.limits.max_body)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request body is empty: send an image",
        ));
    }
    Ok(vec![(None, bytes.to_vec())])
}

fn multipart_error(
    error: &axum::extract::multipart::MultipartError,
    too_large: &dyn Fn() -> ApiError,
) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("the upload is malformed: {}", error.body_text()),
    )
}

/// Decodes one upload into the square the network sees, on a blocking thread; refuses
/// images whose declared size is over the limit before any pixel is decoded.
async fn decode(app: &App, name: Option<String>, bytes: Vec<u8>) -> Result<RgbImage, ApiError> {
    let label = name.unwrap_or_else(|| "the image".into());
    let bad =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, format!("{label}: {message}"));
    let (width, height) =
        preprocess::declared_dimensions(&bytes).map_err(|e| bad(format!("{e:#}")))?;
    if width as u64 * height as u64 > app.limits.max_pixels {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{label}: {width} x {height} pixels is over the limit of {} pixels",
                app.limits.max_pixels
            ),
        ));
    }
    let input = app.input;
    tokio::task::spawn_blocking(move || {
        preprocess::decode_bytes(&bytes).map(|image| input.square(image))
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decoding failed"))?
    .map_err(|e| bad(format!("{e:#}")))
}

/// `GET /v1/model`.
pub async fn model(State(app): State<Arc<App>>) -> Json<super::ModelInfo> {
    Json(app.model.clone())
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the model is loaded and its worker can take a request.
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    if !app.batcher.is_alive() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the model worker has stopped"));
    }
    Ok(Json(json!({ "status": "ready", "queue_depth": app.batcher.queue_depth() })))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(app.batcher.queue_depth()),
    )
}

/// `GET /`: the page.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// A method a route does not answer (HEAD, PUT, DELETE, ...): a JSON 405 naming the ones it
/// does.
pub async fn method_not_allowed(request: Request) -> Response {
    let allowed = if request.uri().path() == "/v1/predict" { "POST" } else { "GET, HEAD" };
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not answered at {}: use {allowed}", request.method(), request.uri().path()),
    )
    .into_response();
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// The largest request head (request line and headers) answered: beyond it a JSON 431.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// A route that does not exist.
pub async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such route: {} {}", request.method(), request.uri().path()),
    )
}

/// Every request: answered within the time limit (a slow client gets 408), counted and timed.
pub async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request.uri().path().to_string();
    let started = Instant::now();
    let head: usize = request.uri().to_string().len()
        + request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    let response = if head > MAX_HEAD_BYTES {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request's headers are {head} bytes, over the limit of {MAX_HEAD_BYTES}"),
        )
        .into_response()
    } else {
        match tokio::time::timeout(app.limits.timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request took longer than {} s", app.limits.timeout.as_secs()),
            )
            .into_response(),
        }
    };
    // Unknown paths share one label, so a scan cannot grow the metrics without bound.
    let known = ["/", "/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics"];
    let label = if known.contains(&route.as_str()) { route.as_str() } else { "other" };
    app.metrics.observe_request(label, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
