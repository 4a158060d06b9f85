//! Batches for training and evaluation, assembled (and augmented) by a background thread
//! while the model computes, in an order fixed by the seed alone.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::Augment;
use super::decoded::DecodedImages;
use crate::preprocess::Normalization;

/// Batches prepared ahead of the model.
const PREFETCH: usize = 3;

/// Mixes two numbers into one well-spread seed (splitmix64 finaliser).
pub fn mix(seed: u64, stream: u64) -> u64 {
    let mut z =
        seed ^ stream.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The training sample order: an endless sequence of shuffled passes over the data set, like
/// Keras' `flow_from_directory`. Position `p` is item `p % n` of pass `p / n`, whose order
/// depends only on the seed and the pass, so any stretch can be regenerated to resume a run.
pub struct SampleStream {
    len: usize,
    seed: u64,
    /// Each class's images, when every class is drawn equally often.
    balanced: Option<Vec<Vec<usize>>>,
}

impl SampleStream {
    /// Passes that are permutations of the `len` images.
    pub fn new(len: usize, seed: u64) -> Self {
        Self { len, seed, balanced: None }
    }

    /// Passes of `labels.len()` draws in which every class (with images) gets an equal share of
    /// the places: a small class's images repeat within a pass, a large class shows a different
    /// part of its images each pass. Within a class the images are drawn without replacement
    /// (a shuffled cycle), which repeats each image as little as an equal share allows.
    pub fn balanced(labels: &[usize], seed: u64) -> Self {
        let classes = labels.iter().max().map_or(0, |&c| c + 1);
        let mut members = vec![Vec::new(); classes];
        for (index, &label) in labels.iter().enumerate() {
            members[label].push(index);
        }
        members.retain(|images| !images.is_empty());
        Self { len: labels.len(), seed, balanced: Some(members) }
    }

    fn pass_order(&self, pass: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, pass));
        let Some(members) = &self.balanced else {
            let mut order: Vec<usize> = (0..self.len).collect();
            order.shuffle(&mut rng);
            return order;
        };
        // The places left over after equal shares go to classes drawn at random.
        let (share, left_over) = (self.len / members.len(), self.len % members.len());
        let mut extra: Vec<bool> = (0..members.len()).map(|c| c < left_over).collect();
        extra.shuffle(&mut rng);
        let mut order = Vec::with_capacity(self.len);
        for (images, extra) in members.iter().zip(extra) {
            let mut cycle = images.clone();
            for place in 0..share + usize::from(extra) {
                if place % cycle.len() == 0 {
                    cycle.shuffle(&mut rng);
                }
                order.push(cycle[place % cycle.len()]);
            }
        }
        order.shuffle(&mut rng);
        order
    }

    /// `(image index, stream position)` for positions `start..start + count`.
    pub fn slice(&self, start: u64, count: usize) -> Vec<(usize, u64)> {
        let mut out = Vec::with_capacity(count);
        let mut cached: Option<(u64, Vec<usize>)> = None;
        for position in start..start + count as u64 {
            let pass = position / self.len as u64;
            if cached.as_ref().is_none_or(|(p, _)| *p != pass) {
                cached = Some((pass, self.pass_order(pass)));
            }
            let order = &cached.as_ref().expect("just filled").1;
            out.push((order[(position % self.len as u64) as usize], position));
        }
        out
    }
}

/// A batch of normalised images `[len, size, size, 3]` (channels last) and their labels.
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images as a network input tensor on `device`.
    pub fn into_tensor(
        self,
        size: usize,
        device: &burn::tensor::Device,
    ) -> burn::tensor::Tensor<4> {
        let n = self.len();
        crate::preprocess::input_tensor(self.images, n, size, device)
    }
}

/// How the batches are made.
#[derive(Clone)]
pub struct BatchRecipe {
    pub batch_size: usize,
    pub normalization: Normalization,
    /// Random augmentation (training only), with the seed its draws derive from.
    pub augment: Option<(Augment, u64)>,
}

/// Batches arriving from the background thread; counts the time the consumer waits on them.
pub struct Batches {
    receiver: Receiver<Result<Batch>>,
    worker: Option<JoinHandle<()>>,
    /// Time spent blocked waiting for the next batch (data starvation).
    pub waited: Duration,
}

impl Batches {
    /// Starts assembling batches of `samples` (`(image index, stream position)` pairs; the
    /// position seeds that sample's augmentation).
    pub fn spawn(
        data: Arc<DecodedImages>,
        samples: Vec<(usize, u64)>,
        recipe: BatchRecipe,
    ) -> Self {
        let (sender, receiver) = sync_channel(PREFETCH);
        let worker = std::thread::spawn(move || {
            for chunk in samples.chunks(recipe.batch_size) {
                let batch = assemble(&data, chunk, &recipe);
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    return; // the consumer stopped early (interrupted run), or an image is unreadable
                }
            }
        });
        Self { receiver, worker: Some(worker), waited: Duration::ZERO }
    }

    /// Plain batches of every image in order (evaluation).
    pub fn in_order(
        data: Arc<DecodedImages>,
        batch_size: usize,
        normalization: Normalization,
    ) -> Self {
        let samples = (0..data.len()).map(|i| (i, i as u64)).collect();
        Self::spawn(data, samples, BatchRecipe { batch_size, normalization, augment: None })
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let started = Instant::now();
        let batch = self.receiver.recv().ok();
        self.waited += started.elapsed();
        if batch.is_none()
            && let Some(worker) = self.worker.take()
        {
            // Surface a panic of the worker instead of ending the epoch silently.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        batch
    }
}

/// Normalises (and augments) the images of one batch, in parallel.
pub fn assemble(
    data: &DecodedImages,
    samples: &[(usize, u64)],
    recipe: &BatchRecipe,
) -> Result<Batch> {
    let per_image = data.bytes_per_image();
    let mut images = vec![0f32; samples.len() * per_image];
    images.par_chunks_mut(per_image).zip(samples.par_iter()).try_for_each(
        |(out, &(index, position))| -> Result<()> {
            let rgb = data.image(index)?;
            match &recipe.augment {
                Some((augment, seed)) if !augment.is_identity() => {
                    let mut rng = ChaCha8Rng::seed_from_u64(mix(*seed, position));
                    augment.sample(&mut rng).apply(&rgb, data.size, recipe.normalization, out);
                }
                _ => recipe.normalization.write_input(&rgb, out),
            }
            Ok(())
        },
    )?;
    let labels = samples.iter().map(|&(index, _)| data.labels[index]).collect();
    Ok(Batch { images, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_passes_are_permutations_and_reproducible() {
        let stream = SampleStream::new(10, 42);
        let first = stream.slice(0, 25);
        let mut pass: Vec<usize> = first[..10].iter().map(|s| s.0).collect();
        pass.sort();
        assert_eq!(pass, (0..10).collect::<Vec<_>>());
        assert_ne!(first[..10], first[10..20], "each pass is shuffled anew");
        assert_eq!(stream.slice(13, 5), first[13..18], "any stretch can be regenerated");
        assert_ne!(SampleStream::new(10, 43).slice(0, 10), first[..10]);
    }

    #[test]
    fn balanced_passes_draw_every_class_equally_often() {
        // Class 0 has 8 images, class 1 has 2, class 2 has 1 (indices 0-7, 8-9, 10).
        let labels: Vec<usize> = [vec![0; 8], vec![1; 2], vec![2]].concat();
        let stream = SampleStream::balanced(&labels, 7);
        let samples = stream.slice(0, 3 * labels.len());
        for pass in samples.chunks(labels.len()) {
            let mut per_class = [0usize; 3];
            for &(index, _) in pass {
                per_class[labels[index]] += 1;
            }
            // 11 places: 3 each, the 2 left over to two different classes.
            let mut sorted = per_class;
            sorted.sort();
            assert_eq!(sorted, [3, 4, 4], "{per_class:?}");
            // Class 1's two images alternate: neither appears more than twice in a pass.
            for image in [8, 9] {
                assert!(pass.iter().filter(|s| s.0 == image).count() <= 2);
            }
        }
        assert_ne!(samples[..11], samples[11..22], "each pass is drawn anew");
        assert_eq!(stream.slice(15, 5), samples[15..20], "any stretch can be regenerated");
    }

    #[test]
    fn batches_cover_samples_in_order_with_a_short_last_batch() {
        let hashes = vec![crate::data::decoded::ContentHash([0; 32]); 5];
        let data =
            Arc::new(DecodedImages::in_memory(1, (0..15).collect(), vec![0, 1, 2, 3, 4], hashes));
        let batches: Vec<Batch> =
            Batches::in_order(data, 2, Normalization::Rescale).collect::<Result<_>>().unwrap();
        assert_eq!(batches.iter().map(Batch::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(batches[2].labels, [4]);
        assert!((batches[1].images[0] - 6.0 / 255.0).abs() < 1e-6);
    }
}
