//! Dynamic batching: requests queue up (a bounded queue: a full one is refused at once), and
//! one worker thread, which owns the model, runs them together: it takes the first request,
//! waits at most `max_wait` for others until `max_batch` images are gathered, and answers
//! every request of the batch from one forward pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use image::RgbImage;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::cam;
use crate::inference::{Guess, Predictor, top_classes};

/// What the worker answers for one image.
pub struct Answer {
    pub top: Vec<Guess>,
    /// Not one of the model's classes (when the model can tell).
    pub unknown: Option<bool>,
    /// The class activation map over the image, as PNG bytes (when asked for).
    pub cam_png: Option<Vec<u8>>,
}

/// One request: its images (network-sized squares), what to answer, where to answer.
pub struct Job {
    pub images: Vec<RgbImage>,
    pub top_k: usize,
    pub cam: bool,
    pub reply: oneshot::Sender<Result<Vec<Answer>, String>>,
}

/// The queue's sending end, shared by the request handlers.
#[derive(Clone)]
pub struct Batcher {
    sender: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    alive: Arc<AtomicBool>,
}

/// Why a job was not queued.
pub enum Refused {
    /// The queue is full: come back later.
    Busy,
    /// The worker has stopped (shutting down, or it failed).
    Stopped,
}

pub struct BatchLimits {
    /// Images per forward pass.
    pub max_batch: usize,
    /// How long the first request of a batch waits for others.
    pub max_wait: Duration,
    /// Requests that may wait in the queue.
    pub queue: usize,
}

impl Batcher {
    /// Starts the worker thread, which owns `predictor`.
    pub fn start(
        predictor: Predictor,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
    ) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = sync_channel(limits.queue);
        let queued = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(AtomicBool::new(true));
        let worker = {
            let (queued, alive) = (queued.clone(), alive.clone());
            std::thread::spawn(move || {
                run_worker(&predictor, &receiver, &limits, &queued, &metrics);
                alive.store(false, Ordering::SeqCst);
            })
        };
        (Self { sender, queued, alive }, worker)
    }

    /// Queues a job, or refuses it without waiting.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        if !self.alive.load(Ordering::SeqCst) {
            return Err(Refused::Stopped);
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(match error {
                    TrySendError::Full(_) => Refused::Busy,
                    TrySendError::Disconnected(_) => Refused::Stopped,
                })
            }
        }
    }

    /// Requests waiting for the worker.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

fn run_worker(
    predictor: &Predictor,
    receiver: &Receiver<Job>,
    limits: &BatchLimits,
    queued: &AtomicUsize,
    metrics: &Metrics,
) {
    // Ends when every sender is gone: the server has stopped and the queue is drained.
    while let Ok(first) = receiver.recv() {
        queued.fetch_sub(1, Ordering::SeqCst);
        let mut jobs = vec![first];
        let deadline = Instant::now() + limits.max_wait;
        while jobs.iter().map(|j| j.images.len()).sum::<usize>() < limits.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(job) => {
                    queued.fetch_sub(1, Ordering::SeqCst);
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let images: Vec<RgbImage> = jobs.iter().flat_map(|j| j.images.iter().cloned()).collect();
        metrics.observe_batch(images.len());
        let mut rows = match predictor.answers(&images) {
            Ok(rows) => rows.into_iter(),
            Err(error) => {
                let message = format!("{error:#}");
                for job in jobs {
                    let _ = job.reply.send(Err(message.clone()));
                }
                continue;
            }
        };
        for job in jobs {
            let answers = job
                .images
                .iter()
                .map(|image| {
                    let answer = rows.next().expect("one answer per image");
                    let cam_png = job.cam.then(|| activation_png(predictor, image)).flatten();
                    Answer {
                        top: top_classes(&answer.probabilities, &predictor.classes, job.top_k),
                        unknown: answer.judgement.map(|j| j.unknown),
                        cam_png,
                    }
                })
                .collect();
            // The client may have gone away (timeout): nothing to do then.
            let _ = job.reply.send(Ok(answers));
        }
    }
}

/// The image with the heat map of its predicted class over it, as PNG bytes.
fn activation_png(predictor: &Predictor, image: &RgbImage) -> Option<Vec<u8>> {
    let map = cam::image_map(predictor, image).ok()?;
    let overlay = cam::overlay(image, &map, (224 / image.width()).max(1));
    let mut png = Vec::new();
    overlay.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).ok()?;
    Some(png)
}
