//! `fruitlab serve`: a trained model behind HTTP, with dynamic batching (concurrent requests
//! share forward passes), bounded resources (body size, image size, queue, time per request,
//! time to send headers), Prometheus metrics, a page to drop photos on, and a graceful stop on
//! SIGTERM or Ctrl-C (no new connections; what is in flight is answered; exit 0).

mod batcher;
mod drain;
mod info;
mod metrics;
mod routes;
pub mod uncertain;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

pub use info::ModelInfo;

use crate::inference::Predictor;
use batcher::{BatchLimits, Batcher};
use metrics::Metrics;
use routes::{App, RequestLimits};

/// How the server runs.
pub struct ServeOptions {
    pub address: SocketAddr,
    /// Images per forward pass.
    pub max_batch: usize,
    /// How long a request waits for others to share its forward pass.
    pub max_wait: Duration,
    /// Requests that may wait for the model; more are answered 503.
    pub queue: usize,
    pub max_body: usize,
    pub max_pixels: u64,
    pub max_images: usize,
    /// Time to answer a request (including receiving its body).
    pub timeout: Duration,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Where rejected and unsure uploads are kept (`--save-uncertain`).
    pub uncertain: Option<uncertain::UncertainStore>,
}

/// Serves `predictor` until SIGTERM or Ctrl-C; `model` is what `GET /v1/model` says. Prints
/// the address it listens on (useful with port 0).
pub fn serve(predictor: Predictor, model: ModelInfo, options: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // The model has its own thread and the CPU's cores; the network needs little.
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(run(predictor, model, options))
}

async fn run(predictor: Predictor, model: ModelInfo, options: ServeOptions) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let input = predictor.input;
    let classes = predictor.classes.len();
    let limits = BatchLimits {
        max_batch: options.max_batch,
        max_wait: options.max_wait,
        queue: options.queue,
    };
    let (batcher, worker) = Batcher::start(predictor, limits, metrics.clone());
    let app = Arc::new(App {
        batcher,
        metrics,
        input,
        classes,
        model,
        limits: RequestLimits {
            max_body: options.max_body,
            max_pixels: options.max_pixels,
            max_images: options.max_images,
            timeout: options.timeout,
        },
        uncertain: options.uncertain,
    });
    let router = Router::new()
        .route("/", get(routes::page))
        .route("/v1/predict", post(routes::predict))
        .route("/v1/model", get(routes::model))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn(drain::drain_unread_body))
        .layer(axum::middleware::from_fn_with_state(app.clone(), routes::observe))
        .layer(DefaultBodyLimit::max(options.max_body))
        .with_state(app.clone());

    let listener = tokio::net::TcpListener::bind(options.address)
        .await
        .with_context(|| format!("cannot listen on {}", options.address))?;
    let address = listener.local_addr()?;
    println!("listening on http://{address}");
    eprintln!("the page: http://{address}/  (Ctrl-C or SIGTERM stops the server)");

    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that does not finish its headers in time is dropped (slow-loris protection).
    // Heads up to 1 MiB reach the router, which answers those over its own limit with a JSON
    // 431 (counted in /metrics); only beyond that does hyper answer by itself.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(1 << 20);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept (a client that went away, too many files) is that client's.
                let Ok((stream, _)) = accepted else { continue };
                let service = TowerToHyperService::new(router.clone());
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    eprintln!("stopping: answering the requests in flight");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(options.timeout) => eprintln!("gave up waiting for slow connections"),
    }
    // The last handle on the queue goes with the app: the worker finishes what is queued.
    drop(router);
    drop(app);
    tokio::task::spawn_blocking(move || worker.join()).await.ok();
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still stops the server.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
