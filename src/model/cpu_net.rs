//! The whole network on the CPU reference ops: forward, loss, backward and the SGD update, generic
//! over f32/f64. It is the oracle for the GPU training step and for the whole-network gradient
//! check; it is not a fast path.

use super::config::Top;
use super::net::{dropout_seed, Layer, Net};
use crate::cpu::{self, Real};
use crate::shapes::Conv2dShape;

/// Dropout is active (training) with this seed and step; `None` is evaluation.
#[derive(Clone, Copy, Debug)]
pub struct DropoutKey {
    pub seed: u32,
    pub step: u32,
}

/// Everything the backward pass needs from the forward pass.
pub struct Trace<T> {
    /// acts[0] = input, acts[i + 1] = output of layer i.
    pub acts: Vec<Vec<T>>,
    /// Argmax indices of max-pool layers.
    pub idx: Vec<Option<Vec<i32>>>,
}

pub fn forward<T: Real>(
    net: &Net,
    params: &[Vec<T>],
    x: &[T],
    batch: usize,
    drop: Option<DropoutKey>,
) -> Trace<T> {
    // The fixed PCA stage, when the network has one: (x − mean)·Wᵀ in f64.
    let first = match (&net.pca, net.config.pca) {
        (Some(p), _) => {
            let wide: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
            p.project_reference(&wide, batch).into_iter().map(T::from_f64).collect()
        }
        (None, Some(k)) => panic!("the network's PCA stage (pca = {k}) is not fitted"),
        (None, None) => x.to_vec(),
    };
    let mut acts = vec![first];
    let mut idx = Vec::new();
    for (li, layer) in net.layers.iter().enumerate() {
        let a = &acts[li];
        let mut out = vec![T::default(); batch * net.dims[li + 1].len()];
        let mut pool_idx = None;
        match *layer {
            Layer::Conv { shape, relu, weight, bias } => {
                let s = Conv2dShape { n: batch, ..shape };
                cpu::conv2d_forward(&s, a, &params[weight], Some(&params[bias]), &mut out, relu);
            }
            Layer::MaxPool { shape } => {
                let s = crate::shapes::Pool2dShape { n: batch, ..shape };
                let mut ix = vec![0; s.y_len()];
                cpu::maxpool_forward(&s, a, &mut out, &mut ix);
                pool_idx = Some(ix);
            }
            Layer::AvgPool { shape } => {
                let s = crate::shapes::Pool2dShape { n: batch, ..shape };
                cpu::avgpool_forward(&s, a, &mut out);
            }
            Layer::Relu => cpu::relu_forward(a, &mut out),
            Layer::Dropout { p, key } => match drop {
                Some(k) => cpu::dropout_forward(a, &mut out, p, dropout_seed(k.seed, key), k.step),
                None => out.copy_from_slice(a),
            },
            Layer::Fc { inp, out: o, relu, weight, bias } => {
                let s = crate::shapes::GemmShape::new(batch, o, inp, crate::shapes::Trans::NT);
                cpu::gemm(&s, a, &params[weight], Some(&params[bias]), &mut out, false, relu);
            }
        }
        acts.push(out);
        idx.push(pool_idx);
    }
    Trace { acts, idx }
}

/// Loss (summed over rows, i.e. the batch mean) and its gradient w.r.t. the scores.
pub fn loss<T: Real>(net: &Net, scores: &[T], labels: &[i32], batch: usize, svm_c: f64) -> (f64, Vec<T>) {
    let k = net.classes;
    let mut rows = vec![T::default(); batch];
    let mut grad = vec![T::default(); batch * k];
    let scale = net.top().loss_scale(svm_c, batch) as f32 as f64;
    match net.top() {
        Top::L2svm => cpu::l2svm(batch, k, scores, labels, scale, &mut rows, &mut grad),
        Top::L1svm => cpu::l1svm(batch, k, scores, labels, scale, &mut rows, &mut grad),
        Top::Softmax => cpu::softmax_xent(batch, k, scores, labels, scale, &mut rows, &mut grad),
    }
    (cpu::sum(&rows), grad)
}

/// Gradients of every parameter, given the gradient of the scores.
pub fn backward<T: Real>(
    net: &Net,
    params: &[Vec<T>],
    trace: &Trace<T>,
    dscores: Vec<T>,
    batch: usize,
    drop: Option<DropoutKey>,
) -> Vec<Vec<T>> {
    let mut grads: Vec<Vec<T>> = net.params.iter().map(|p| vec![T::default(); p.len()]).collect();
    let mut g = dscores;
    for li in (0..net.layers.len()).rev() {
        let a_in = &trace.acts[li];
        let a_out = &trace.acts[li + 1];
        let mut g_in = vec![T::default(); batch * net.dims[li].len()];
        let relu_grad = |g: &[T]| {
            let mut t = vec![T::default(); g.len()];
            cpu::relu_backward(a_out, g, &mut t);
            t
        };
        match net.layers[li] {
            Layer::Conv { shape, relu, weight, bias } => {
                let s = Conv2dShape { n: batch, ..shape };
                let t = if relu { relu_grad(&g) } else { g.clone() };
                cpu::conv2d_backward_weight(&s, a_in, &t, &mut grads[weight], false);
                cpu::channel_sum(batch, s.cout, s.oh() * s.ow(), &t, &mut grads[bias], false);
                if li > 0 {
                    cpu::conv2d_backward_data(&s, &t, &params[weight], &mut g_in);
                }
            }
            Layer::MaxPool { shape } => {
                let s = crate::shapes::Pool2dShape { n: batch, ..shape };
                let ix = trace.idx[li].as_ref().expect("max-pool indices from the forward pass");
                cpu::maxpool_backward(&s, &g, ix, &mut g_in);
            }
            Layer::AvgPool { shape } => {
                let s = crate::shapes::Pool2dShape { n: batch, ..shape };
                cpu::avgpool_backward(&s, &g, &mut g_in);
            }
            Layer::Relu => cpu::relu_backward(a_out, &g, &mut g_in),
            Layer::Dropout { p, key } => match drop {
                Some(k) => cpu::dropout_backward(&g, &mut g_in, p, dropout_seed(k.seed, key), k.step),
                None => g_in.copy_from_slice(&g),
            },
            Layer::Fc { inp, out, relu, weight, bias } => {
                use crate::shapes::{GemmShape, Trans};
                let t = if relu { relu_grad(&g) } else { g.clone() };
                cpu::gemm(
                    &GemmShape::new(out, inp, batch, Trans::TN),
                    &t,
                    a_in,
                    None,
                    &mut grads[weight],
                    false,
                    false,
                );
                cpu::channel_sum(batch, out, 1, &t, &mut grads[bias], false);
                if li > 0 {
                    cpu::gemm(
                        &GemmShape::new(batch, inp, out, Trans::NN),
                        &t,
                        &params[weight],
                        None,
                        &mut g_in,
                        false,
                        false,
                    );
                }
            }
        }
        g = g_in;
    }
    grads
}

/// One SGD step with momentum and per-parameter weight decay, in place.
pub fn sgd<T: Real>(
    net: &Net,
    params: &mut [Vec<T>],
    velocity: &mut [Vec<T>],
    grads: &[Vec<T>],
    lr: f64,
    momentum: f64,
) {
    for (i, p) in net.params.iter().enumerate() {
        // The GPU receives these as f32; use the same values.
        let (lr, m, wd) =
            ((lr * p.lr_scale) as f32 as f64, momentum as f32 as f64, p.weight_decay as f32 as f64);
        cpu::sgd_momentum(&mut params[i], &mut velocity[i], &grads[i], lr, m, wd);
    }
}

/// A whole training step: returns (loss, correct predictions).
#[allow(clippy::too_many_arguments)]
pub fn train_step<T: Real>(
    net: &Net,
    params: &mut [Vec<T>],
    velocity: &mut [Vec<T>],
    x: &[T],
    labels: &[i32],
    batch: usize,
    drop: DropoutKey,
    lr: f64,
    momentum: f64,
    svm_c: f64,
) -> (f64, u32) {
    let trace = forward(net, params, x, batch, Some(drop));
    let scores = trace.acts.last().expect("scores");
    let mut pred = vec![0; batch];
    cpu::argmax_rows(batch, net.classes, scores, &mut pred);
    let correct = cpu::count_correct(&pred, labels);
    let (loss, dscores) = loss(net, scores, labels, batch, svm_c);
    let grads = backward(net, params, &trace, dscores, batch, Some(drop));
    sgd(net, params, velocity, &grads, lr, momentum);
    (loss, correct)
}
