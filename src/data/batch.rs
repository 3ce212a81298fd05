//! Minibatches prepared on CPU threads ahead of the GPU.
//!
//! The batch of every training step is a pure function of (data, [`BatchSpec`], step): epoch
//! `e = step / steps_per_epoch` visits the samples in a permutation seeded by `(seed, e)`, slot
//! `step % steps_per_epoch` takes the next `batch` of them, and the image at position `p` of the
//! batch is augmented with seed `hash3(seed, step, p)`. So resuming at step `s` reproduces the
//! uninterrupted run exactly, and the number of worker threads never changes a batch.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::augment::{crop_planes_into, Augment};
use crate::rng::{hash3, mix, Rng};

/// One minibatch. `x`: `[b, channels, out_h, out_w]`; `y`: labels; `indices`: which samples of the set.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub step: u64,
    pub x: Vec<f32>,
    pub y: Vec<i32>,
    pub indices: Vec<usize>,
}

/// How training batches are cut: size, crop size, augmentation (None = centre crops) and seed,
/// for images of `channels` planes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchSpec {
    pub batch: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub augment: Option<Augment>,
    pub seed: u64,
}

/// Steps per epoch: `n / batch` (floor; the remainder is left out of that epoch). 0 when
/// `batch` is 0 or larger than `n`.
pub fn steps_per_epoch(n: usize, batch: usize) -> usize {
    n.checked_div(batch).unwrap_or(0)
}

/// The permutation of `0..n` that epoch `epoch` visits (Fisher–Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(mix(seed ^ 0x0e90_c5ee_d0f0_e90c, epoch)).shuffle(&mut order);
    order
}

/// Seed of the augmentation of the image at `position` of the batch of `step`.
pub fn augment_seed(seed: u64, step: u64, position: usize) -> u64 {
    hash3(seed, step, position as u64)
}

/// Builds batches, keeping the current epoch's permutation between calls.
struct Maker<'a> {
    images: &'a [f32],
    labels: &'a [i32],
    h: usize,
    w: usize,
    spec: BatchSpec,
    spe: usize,
    epoch: Option<(u64, Vec<usize>)>,
}

impl<'a> Maker<'a> {
    fn new(images: &'a [f32], labels: &'a [i32], h: usize, w: usize, spec: BatchSpec) -> Maker<'a> {
        let (n, c) = (labels.len(), spec.channels);
        assert_eq!(images.len(), n * c * h * w, "batch: images are not [{n}, {c}, {h}, {w}]");
        let spe = steps_per_epoch(n, spec.batch);
        assert!(
            spe > 0,
            "batch: a batch of {} needs at least that many samples, the set has {n}",
            spec.batch
        );
        Maker { images, labels, h, w, spec, spe, epoch: None }
    }

    fn make(&mut self, step: u64) -> Batch {
        let (b, spe) = (self.spec.batch, self.spe as u64);
        let (epoch, slot) = (step / spe, (step % spe) as usize);
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch = Some((epoch, epoch_order(self.labels.len(), self.spec.seed, epoch)));
        }
        let order = &self.epoch.as_ref().expect("epoch order just set").1;
        let indices = order[slot * b..(slot + 1) * b].to_vec();
        let (oh, ow) = (self.spec.out_h, self.spec.out_w);
        let c = self.spec.channels;
        let (area, per) = (c * self.h * self.w, c * oh * ow);
        let mut x = vec![0.0f32; b * per];
        for (p, (&i, out)) in indices.iter().zip(x.chunks_exact_mut(per)).enumerate() {
            let src = &self.images[i * area..(i + 1) * area];
            let aug = self.spec.augment.as_ref().map(|a| (a, augment_seed(self.spec.seed, step, p)));
            crop_planes_into(src, c, self.h, self.w, out, oh, ow, aug);
        }
        let y = indices.iter().map(|&i| self.labels[i]).collect();
        Batch { step, x, y, indices }
    }
}

/// The training batch of global step `step` (see the module docs). Panics if the set holds fewer
/// than `spec.batch` samples or `images` is not `[n, h, w]`.
pub fn make_batch(images: &[f32], labels: &[i32], h: usize, w: usize, spec: &BatchSpec, step: u64) -> Batch {
    Maker::new(images, labels, h, w, *spec).make(step)
}

/// Spawns `threads` worker threads (at least 1) producing the batches of steps `start..end`;
/// the receiver yields them in step order. Worker `k` makes steps `start + k`, `start + k +
/// threads`, ...; a forwarding thread collects them in order into a channel holding at most
/// `ahead` batches (at least 1; each worker may hold one more finished batch). Dropping the
/// receiver stops every thread at its next send. Panics as [`make_batch`] does, before spawning;
/// should a worker die anyway, the stream ends early (the receiver reports disconnection).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    images: Arc<Vec<f32>>,
    labels: Arc<Vec<i32>>,
    h: usize,
    w: usize,
    spec: BatchSpec,
    start: u64,
    end: u64,
    threads: usize,
    ahead: usize,
) -> Receiver<Batch> {
    // Check the inputs here, where a panic reaches the caller.
    drop(Maker::new(&images, &labels, h, w, spec));
    let threads = threads.max(1);
    let (out_tx, out_rx) = sync_channel::<Batch>(ahead.max(1));
    let mut workers: Vec<Receiver<Batch>> = Vec::with_capacity(threads);
    for k in 0..threads as u64 {
        let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = sync_channel(0);
        workers.push(rx);
        let (images, labels) = (Arc::clone(&images), Arc::clone(&labels));
        std::thread::Builder::new()
            .name(format!("dlsvm-batch-{k}"))
            .spawn(move || {
                let mut maker = Maker::new(&images, &labels, h, w, spec);
                let mut step = start + k;
                while step < end {
                    if tx.send(maker.make(step)).is_err() {
                        return;
                    }
                    match step.checked_add(threads as u64) {
                        Some(next) => step = next,
                        None => return,
                    }
                }
            })
            .expect("cannot spawn a batch worker thread");
    }
    std::thread::Builder::new()
        .name("dlsvm-batch-order".to_string())
        .spawn(move || {
            for step in start..end {
                let k = ((step - start) % threads as u64) as usize;
                let Ok(batch) = workers[k].recv() else { return };
                if out_tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .expect("cannot spawn the batch forwarding thread");
    out_rx
}

/// Evaluation batches of images of `c` planes: the whole set in order, centre crops (no
/// augmentation); the last batch may be short. `step` is the batch's index. A `batch` of 0 is
/// treated as 1.
#[allow(clippy::too_many_arguments)]
pub fn eval_batches<'a>(
    images: &'a [f32],
    labels: &'a [i32],
    c: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
    batch: usize,
) -> impl Iterator<Item = Batch> + 'a {
    let n = labels.len();
    assert_eq!(images.len(), n * c * h * w, "eval_batches: images are not [{n}, {c}, {h}, {w}]");
    let b = batch.max(1);
    let (area, per) = (c * h * w, c * out_h * out_w);
    (0..n.div_ceil(b)).map(move |k| {
        let indices: Vec<usize> = (k * b..((k + 1) * b).min(n)).collect();
        let mut x = vec![0.0f32; indices.len() * per];
        for (&i, out) in indices.iter().zip(x.chunks_exact_mut(per)) {
            crop_planes_into(&images[i * area..(i + 1) * area], c, h, w, out, out_h, out_w, None);
        }
        let y = indices.iter().map(|&i| labels[i]).collect();
        Batch { step: k as u64, x, y, indices }
    })
}

/// Test-time augmentation: copy `copy` of image `i` (of `c` planes), jittered with seed
/// `hash3(seed, i, copy)`; copy 0 is the centre crop.
#[allow(clippy::too_many_arguments)]
pub fn tta_image(
    images: &[f32],
    c: usize,
    h: usize,
    w: usize,
    i: usize,
    out_h: usize,
    out_w: usize,
    aug: &Augment,
    seed: u64,
    copy: usize,
    out: &mut [f32],
) {
    let area = c * h * w;
    let src = &images[i * area..(i + 1) * area];
    let jitter = (copy > 0).then(|| (aug, hash3(seed, i as u64, copy as u64)));
    crop_planes_into(src, c, h, w, out, out_h, out_w, jitter);
}
