//! The network on the GPU: every buffer, pipeline and bind group created once for a fixed batch
//! size; a training step is two uploads (images, labels), a few uniform writes (learning rate,
//! momentum, dropout step) and one command buffer holding forward, loss, metrics, backward and the
//! update. Loss and accuracy accumulate on the GPU and are read back only when asked.

use super::config::Top;
use super::cpu_net::{layer_seed, loss_scale};
use super::net::{Layer, Net};
use crate::gpu::{DType, Dispatch, Gpu, GpuError, Tensor};
use crate::kernels::activation::{self, ActParams};
use crate::kernels::optim::{self, SgdParams};
use crate::kernels::{conv, gemm, loss, pool, reduce, Epilogue};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

/// Host copies of a list of tensors (parameters or momentum).
pub type Tensors = Vec<Vec<f32>>;

/// A dropout dispatch whose (seed, step) changes every step.
struct DropoutOp {
    op: usize,
    n: u32,
    p: f32,
    seed: u32,
}

pub struct GpuNet {
    pub net: Net,
    pub batch: usize,
    pub params: Vec<Tensor>,
    pub velocity: Vec<Tensor>,
    /// acts[0] is the input batch, acts[i + 1] the output of layer i.
    acts: Vec<Tensor>,
    labels: Tensor,
    loss_acc: Tensor,
    correct_acc: Tensor,
    /// Keeps every buffer the dispatches bind alive.
    _scratch: Vec<Tensor>,
    train_ops: Vec<Dispatch>,
    eval_ops: Vec<Dispatch>,
    /// Indices into train_ops of dropout dispatches (forward and backward).
    dropout: Vec<DropoutOp>,
    /// Indices into train_ops of the SGD dispatches, one per parameter.
    sgd: Vec<usize>,
}

/// Lowers the buffer limit [`GpuNet::buffer_limit`] uses below the adapter's, in bytes. For tests
/// only: it lets a small network on a small batch hit the "batch too large" refusal.
pub const MAX_BUFFER_ENV: &str = "DLSVM_MAX_BUFFER_BYTES";

impl GpuNet {
    /// The largest buffer a network may allocate and bind, in bytes, and the limit's name: the
    /// adapter's storage-buffer binding size or buffer size, whichever is smaller, or
    /// [`MAX_BUFFER_ENV`] when set lower.
    pub fn buffer_limit(gpu: &Gpu) -> (u64, &'static str) {
        let l = &gpu.limits;
        let mut limit = if l.max_storage_buffer_binding_size <= l.max_buffer_size {
            (l.max_storage_buffer_binding_size, "max_storage_buffer_binding_size")
        } else {
            (l.max_buffer_size, "max_buffer_size")
        };
        if let Some(v) = std::env::var(MAX_BUFFER_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            if v < limit.0 {
                limit = (v, MAX_BUFFER_ENV);
            }
        }
        limit
    }

    /// The largest batch of `net` whose buffers fit this device.
    pub fn max_batch(gpu: &Gpu, net: &Net) -> usize {
        let (_, per_sample) = net.largest_activation();
        let (limit, _) = Self::buffer_limit(gpu);
        usize::try_from(limit / per_sample.max(1)).unwrap_or(usize::MAX)
    }

    /// Refuses a batch whose largest buffer exceeds the device's limit, before anything is
    /// allocated: one line naming the buffer, the limit and the largest batch that fits.
    pub fn check_batch_fits(gpu: &Gpu, net: &Net, batch: usize) -> Result<(), String> {
        let (dim, per_sample) = net.largest_activation();
        let (limit, name) = Self::buffer_limit(gpu);
        let need = per_sample.saturating_mul(batch as u64);
        if need <= limit {
            return Ok(());
        }
        let max = Self::max_batch(gpu, net);
        let fix = if max == 0 {
            format!("not even one sample fits: make the network's {dim} activation smaller")
        } else {
            format!("the largest batch that fits is {max} (use --batch {max})")
        };
        Err(format!(
            "batch {batch} of network {} needs a {need}-byte buffer for its {dim} activation ({per_sample} bytes per \
             sample), more than adapter {}'s {name} of {limit} bytes; {fix}",
            net.config.name, gpu.info.name
        ))
    }

    /// Allocates and prepares everything for `batch` samples per step, starting from `init`.
    pub fn new(
        gpu: &Gpu,
        net: &Net,
        batch: usize,
        init: &[Vec<f32>],
        svm_c: f64,
        seed: u32,
    ) -> Result<GpuNet, GpuError> {
        if batch == 0 {
            return Err(GpuError::shape("network", "batch size must be at least 1"));
        }
        let f32t = |len: usize| gpu.empty(&[len], DType::F32);
        let params = init.iter().map(|p| gpu.upload(p, &[p.len()])).collect::<Result<Vec<_>, _>>()?;
        let velocity = net.params.iter().map(|p| f32t(p.len())).collect::<Result<Vec<_>, _>>()?;
        let grads = net.params.iter().map(|p| f32t(p.len())).collect::<Result<Vec<_>, _>>()?;
        let acts = net.dims.iter().map(|d| f32t(batch * d.len())).collect::<Result<Vec<_>, _>>()?;
        // Gradient buffers of every activation but the input.
        let dacts = net.dims.iter().skip(1).map(|d| f32t(batch * d.len())).collect::<Result<Vec<_>, _>>()?;
        let labels = gpu.empty(&[batch], DType::I32)?;
        let loss_rows = f32t(batch)?;
        let loss_acc = f32t(1)?;
        let correct_acc = gpu.empty(&[1], DType::U32)?;
        let pred = gpu.empty(&[batch], DType::I32)?;
        let mut scratch = Vec::new();
        let mut pool_idx: Vec<Option<Tensor>> = Vec::new();
        // Pre-activation gradients of layers with a fused ReLU.
        let mut pre: Vec<Option<Tensor>> = Vec::new();
        for (li, l) in net.layers.iter().enumerate() {
            let len = batch * net.dims[li + 1].len();
            pool_idx.push(if matches!(l, Layer::MaxPool { .. }) {
                Some(gpu.empty(&[len], DType::I32)?)
            } else {
                None
            });
            let fused = matches!(l, Layer::Conv { relu: true, .. } | Layer::Fc { relu: true, .. });
            pre.push(if fused { Some(f32t(len)?) } else { None });
        }

        let mut fwd_train: Vec<Dispatch> = Vec::new();
        let mut fwd_eval: Vec<Dispatch> = Vec::new();
        let mut dropout_fwd: Vec<(usize, u32, f32, u32)> = Vec::new();
        for (li, layer) in net.layers.iter().enumerate() {
            if let Layer::Dropout { p } = *layer {
                let (a, y) = (&acts[li], &acts[li + 1]);
                let s = layer_seed(seed, li);
                dropout_fwd.push((fwd_train.len(), a.len() as u32, p, s));
                fwd_eval.push(activation::dropout_forward(gpu, a, y, 0.0, 0, 0)?);
                fwd_train.push(activation::dropout_forward(gpu, a, y, p, s, 0)?);
            } else {
                // Identical in both modes; two copies so each list encodes on its own.
                fwd_eval.push(forward_op(gpu, net, batch, li, &acts, &params, &pool_idx)?);
                fwd_train.push(forward_op(gpu, net, batch, li, &acts, &params, &pool_idx)?);
            }
        }

        let scores = acts.last().ok_or_else(|| GpuError::Internal("no layers".into()))?;
        let dscores = dacts.last().ok_or_else(|| GpuError::Internal("no layers".into()))?;
        let k = net.classes;
        let scale = loss_scale(net.top(), svm_c, batch);
        let mut train_ops = fwd_train;
        train_ops.push(match net.top() {
            Top::L2svm => loss::l2svm(gpu, batch, k, scores, &labels, scale, &loss_rows, dscores)?,
            Top::Softmax => loss::softmax_xent(gpu, batch, k, scores, &labels, scale, &loss_rows, dscores)?,
        });
        train_ops.push(reduce::sum_all(gpu, &loss_rows, &loss_acc, true)?);
        train_ops.push(reduce::argmax_rows(gpu, batch, k, scores, &pred)?);
        train_ops.push(reduce::count_correct(gpu, &pred, &labels, &correct_acc, true)?);

        let mut dropout: Vec<DropoutOp> =
            dropout_fwd.into_iter().map(|(op, n, p, seed)| DropoutOp { op, n, p, seed }).collect();
        for li in (0..net.layers.len()).rev() {
            let a_in = &acts[li];
            let a_out = &acts[li + 1];
            let g_out = &dacts[li];
            let g_in = if li > 0 { Some(&dacts[li - 1]) } else { None };
            match net.layers[li] {
                Layer::Conv { shape, relu, weight, bias } => {
                    let s = Conv2dShape { n: batch, ..shape };
                    let t = fused_relu_grad(gpu, &mut train_ops, relu, a_out, g_out, pre[li].as_ref())?;
                    let variant = conv::ConvBwdWeightVariant::DEFAULT;
                    train_ops.extend(conv::conv2d_backward_weight(
                        gpu,
                        &s,
                        a_in,
                        t,
                        &grads[weight],
                        false,
                        variant,
                    )?);
                    train_ops.push(reduce::channel_sum(
                        gpu,
                        batch,
                        s.cout,
                        s.oh() * s.ow(),
                        t,
                        &grads[bias],
                        false,
                    )?);
                    if let Some(g_in) = g_in {
                        train_ops.push(conv::conv2d_backward_data(gpu, &s, t, &params[weight], g_in)?);
                    }
                }
                Layer::MaxPool { shape } => {
                    if let (Some(g_in), Some(ix)) = (g_in, pool_idx[li].as_ref()) {
                        train_ops.extend(pool::maxpool_backward(
                            gpu,
                            &Pool2dShape { n: batch, ..shape },
                            g_out,
                            ix,
                            g_in,
                            pool::MaxPoolBwdVariant::DEFAULT,
                        )?);
                    }
                }
                Layer::AvgPool { shape } => {
                    if let Some(g_in) = g_in {
                        train_ops.extend(pool::avgpool_backward(
                            gpu,
                            &Pool2dShape { n: batch, ..shape },
                            g_out,
                            g_in,
                            pool::PoolBwdVariant::DEFAULT,
                        )?);
                    }
                }
                Layer::Relu => {
                    if let Some(g_in) = g_in {
                        train_ops.push(activation::relu_backward(gpu, a_out, g_out, g_in)?);
                    }
                }
                Layer::Dropout { p } => {
                    if let Some(g_in) = g_in {
                        let s = layer_seed(seed, li);
                        dropout.push(DropoutOp { op: train_ops.len(), n: g_out.len() as u32, p, seed: s });
                        train_ops.push(activation::dropout_backward(gpu, g_out, g_in, p, s, 0)?);
                    }
                }
                Layer::Fc { inp, out, relu, weight, bias } => {
                    let t = fused_relu_grad(gpu, &mut train_ops, relu, a_out, g_out, pre[li].as_ref())?;
                    let dw = GemmShape::new(out, inp, batch, Trans::TN);
                    train_ops.push(gemm::gemm(
                        gpu,
                        &dw,
                        t,
                        a_in,
                        &grads[weight],
                        &Epilogue::default(),
                        gemm::GemmVariant::DEFAULT,
                    )?);
                    train_ops.push(reduce::channel_sum(gpu, batch, out, 1, t, &grads[bias], false)?);
                    if let Some(g_in) = g_in {
                        let dx = GemmShape::new(batch, inp, out, Trans::NN);
                        train_ops.push(gemm::gemm(
                            gpu,
                            &dx,
                            t,
                            &params[weight],
                            g_in,
                            &Epilogue::default(),
                            gemm::GemmVariant::DEFAULT,
                        )?);
                    }
                }
            }
        }
        let mut sgd = Vec::new();
        for (i, p) in net.params.iter().enumerate() {
            sgd.push(train_ops.len());
            train_ops.push(optim::sgd_momentum(
                gpu,
                &params[i],
                &velocity[i],
                &grads[i],
                0.0,
                0.0,
                p.weight_decay as f32,
            )?);
        }
        let mut eval_ops = fwd_eval;
        eval_ops.push(reduce::argmax_rows(gpu, batch, k, scores, &pred)?);

        scratch.extend(grads);
        scratch.extend(dacts);
        scratch.extend(pool_idx.into_iter().flatten());
        scratch.extend(pre.into_iter().flatten());
        scratch.push(loss_rows);
        scratch.push(pred);
        let g = GpuNet {
            net: net.clone(),
            batch,
            params,
            velocity,
            acts,
            labels,
            loss_acc,
            correct_acc,
            _scratch: scratch,
            train_ops,
            eval_ops,
            dropout,
            sgd,
        };
        g.reset_metrics(gpu);
        Ok(g)
    }

    /// Checks a batch's sizes.
    fn check_batch(&self, x: &[f32], y: &[i32]) -> Result<(), GpuError> {
        let want = self.batch * self.net.input_len();
        if x.len() != want || y.len() != self.batch {
            return Err(GpuError::shape(
                "training step",
                format!(
                    "batch of {} values and {} labels, expected {want} and {}",
                    x.len(),
                    y.len(),
                    self.batch
                ),
            ));
        }
        Ok(())
    }

    /// Queues one training step (upload, forward, loss, backward, update) without waiting for it.
    /// Returns the submission so the caller can bound how far the CPU runs ahead.
    pub fn train_step(
        &self,
        gpu: &Gpu,
        x: &[f32],
        y: &[i32],
        step: u64,
        lr: f64,
        momentum: f64,
    ) -> Result<wgpu::SubmissionIndex, GpuError> {
        self.check_batch(x, y)?;
        gpu.write(&self.acts[0], x)?;
        gpu.queue.write_buffer(self.labels.buffer(), 0, bytemuck::cast_slice(y));
        for d in &self.dropout {
            self.train_ops[d.op].set_params(gpu, &ActParams::new(d.n, d.p, d.seed, step as u32));
        }
        for (i, &op) in self.sgd.iter().enumerate() {
            let p = SgdParams::new(
                self.params[i].len() as u32,
                (lr * self.net.params[i].lr_scale) as f32,
                momentum as f32,
                self.net.params[i].weight_decay as f32,
            );
            self.train_ops[op].set_params(gpu, &p);
        }
        Ok(gpu.submit(&self.train_ops, None))
    }

    /// The loss summed over steps since the last reset (each step adds its batch mean) and the
    /// number of correct predictions.
    pub fn read_metrics(&self, gpu: &Gpu) -> Result<(f64, u64), GpuError> {
        let loss = gpu.download::<f32>(&self.loss_acc)?[0] as f64;
        let correct = gpu.download::<u32>(&self.correct_acc)?[0] as u64;
        Ok((loss, correct))
    }

    pub fn reset_metrics(&self, gpu: &Gpu) {
        gpu.queue.write_buffer(self.loss_acc.buffer(), 0, bytemuck::cast_slice(&[0.0f32]));
        gpu.queue.write_buffer(self.correct_acc.buffer(), 0, bytemuck::cast_slice(&[0u32]));
    }

    /// Scores `[batch, classes]` of one evaluation batch (no dropout). Short batches are padded.
    pub fn scores(&self, gpu: &Gpu, x: &[f32], rows: usize) -> Result<Vec<f32>, GpuError> {
        let per = self.net.input_len();
        if rows == 0 || rows > self.batch || x.len() != rows * per {
            return Err(GpuError::shape(
                "evaluation",
                format!("{rows} rows of {} values for batch {}", x.len(), self.batch),
            ));
        }
        let mut padded;
        let input = if rows < self.batch {
            padded = x.to_vec();
            padded.resize(self.batch * per, 0.0);
            &padded[..]
        } else {
            x
        };
        gpu.write(&self.acts[0], input)?;
        let sub = gpu.submit(&self.eval_ops, None);
        gpu.wait_for(sub)?;
        let acts = self.acts.last().ok_or_else(|| GpuError::Internal("no layers".into()))?;
        let mut s = gpu.download::<f32>(acts)?;
        s.truncate(rows * self.net.classes);
        Ok(s)
    }

    /// Parameters and momentum buffers, read back.
    pub fn download(&self, gpu: &Gpu) -> Result<(Tensors, Tensors), GpuError> {
        let p = self.params.iter().map(|t| gpu.download::<f32>(t)).collect::<Result<_, _>>()?;
        let v = self.velocity.iter().map(|t| gpu.download::<f32>(t)).collect::<Result<_, _>>()?;
        Ok((p, v))
    }

    /// Replaces parameters and momentum (for resuming).
    pub fn upload(&self, gpu: &Gpu, params: &[Vec<f32>], velocity: &[Vec<f32>]) -> Result<(), GpuError> {
        for (t, v) in self.params.iter().zip(params) {
            gpu.write(t, v)?;
        }
        for (t, v) in self.velocity.iter().zip(velocity) {
            gpu.write(t, v)?;
        }
        Ok(())
    }

    /// Median time in ms of every dispatch of a training step, each timed on its own over `reps`
    /// runs (with the buffers of the last step), in execution order.
    pub fn profile(&self, gpu: &Gpu, reps: usize) -> Result<Vec<(String, f64)>, GpuError> {
        let mut out = Vec::new();
        for op in &self.train_ops {
            let mut t = gpu.time(&[op], reps.max(1))?;
            t.sort_by(f64::total_cmp);
            out.push((op.name.clone(), t[t.len() / 2]));
        }
        Ok(out)
    }
}

/// The gradient before a fused ReLU: relu_backward into `pre` when the layer has one.
fn fused_relu_grad<'a>(
    gpu: &Gpu,
    ops: &mut Vec<Dispatch>,
    relu: bool,
    y: &Tensor,
    g: &'a Tensor,
    pre: Option<&'a Tensor>,
) -> Result<&'a Tensor, GpuError> {
    match (relu, pre) {
        (true, Some(t)) => {
            ops.push(activation::relu_backward(gpu, y, g, t)?);
            Ok(t)
        }
        (true, None) => Err(GpuError::Internal("fused ReLU without its gradient buffer".into())),
        (false, _) => Ok(g),
    }
}

/// The forward dispatch of layer `li` (dropout as the evaluation-mode identity).
fn forward_op(
    gpu: &Gpu,
    net: &Net,
    batch: usize,
    li: usize,
    acts: &[Tensor],
    params: &[Tensor],
    pool_idx: &[Option<Tensor>],
) -> Result<Dispatch, GpuError> {
    let (a, y) = (&acts[li], &acts[li + 1]);
    Ok(match net.layers[li] {
        Layer::Conv { shape, relu, weight, bias } => {
            let ep = Epilogue { bias: Some(&params[bias]), accumulate: false, relu };
            conv::conv2d_forward(
                gpu,
                &Conv2dShape { n: batch, ..shape },
                a,
                &params[weight],
                y,
                &ep,
                conv::ConvFwdVariant::DEFAULT,
            )?
        }
        Layer::MaxPool { shape } => {
            let ix = pool_idx[li].as_ref().ok_or_else(|| GpuError::Internal("max-pool indices".into()))?;
            pool::maxpool_forward(gpu, &Pool2dShape { n: batch, ..shape }, a, y, ix)?
        }
        Layer::AvgPool { shape } => pool::avgpool_forward(gpu, &Pool2dShape { n: batch, ..shape }, a, y)?,
        Layer::Relu => activation::relu_forward(gpu, a, y)?,
        Layer::Dropout { .. } => activation::dropout_forward(gpu, a, y, 0.0, 0, 0)?,
        Layer::Fc { inp, out, relu, weight, bias } => {
            let ep = Epilogue { bias: Some(&params[bias]), accumulate: false, relu };
            gemm::gemm(
                gpu,
                &GemmShape::new(batch, out, inp, Trans::NT),
                a,
                &params[weight],
                y,
                &ep,
                gemm::GemmVariant::DEFAULT,
            )?
        }
    })
}
