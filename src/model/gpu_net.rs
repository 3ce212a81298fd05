//! The network on the GPU: every buffer, pipeline and bind group created once for a fixed batch
//! size; a training step is two uploads (images, labels), a few uniform writes (learning rate,
//! momentum, dropout step) and one command buffer holding forward, loss, metrics, backward and the
//! update. Loss and accuracy accumulate on the GPU and are read back only when asked.

use super::net::{dropout_seed, Layer, Net};
use super::plan::{OpKey, OpKind, Plan};
use crate::gpu::{DType, Dispatch, Gpu, GpuError, Tensor};
use crate::kernels::activation::{self, ActParams};
use crate::kernels::conv::{self, ConvBwdWeightVariant, ConvFwdVariant};
use crate::kernels::optim::{self, SgdParams};
use crate::kernels::{gemm, loss, pool, reduce, Epilogue};
use crate::shapes::{Conv2dShape, GemmShape, Pool2dShape, Trans};

/// Host copies of a list of tensors (parameters or momentum).
pub type Tensors = Vec<Vec<f32>>;

/// A dropout dispatch whose step changes every step: its index in the step's dispatch list and
/// its fixed parameters.
struct DropoutOp {
    op: usize,
    n: u32,
    p: f32,
    seed: u32,
}

/// Lowers the buffer limit [`GpuNet::buffer_limit`] uses below the adapter's, in bytes. For tests
/// only: it lets a small network on a small batch hit the "batch too large" refusal.
pub const MAX_BUFFER_ENV: &str = "DLSVM_MAX_BUFFER_BYTES";

/// The weight-gradient variant the buffer plan assumes: the coarse sliced variants' partial sums
/// are the largest scratch buffer a weight gradient allocates that does not adapt to the device
/// (the fine variants take coarser slices rather than exceed a binding).
const CONV_WGRAD: ConvBwdWeightVariant = ConvBwdWeightVariant::DEFAULT;

pub struct GpuNet {
    pub net: Net,
    pub batch: usize,
    pub params: Vec<Tensor>,
    pub velocity: Vec<Tensor>,
    grads: Vec<Tensor>,
    /// acts[0] is the input batch, acts[i + 1] the output of layer i.
    acts: Vec<Tensor>,
    /// dacts[i] is the gradient of acts[i + 1].
    dacts: Vec<Tensor>,
    /// Per layer: the max-pool argmax, and the pre-activation gradient of a fused ReLU.
    pool_idx: Vec<Option<Tensor>>,
    pre: Vec<Option<Tensor>>,
    labels: Tensor,
    loss_rows: Tensor,
    pred: Tensor,
    loss_acc: Tensor,
    correct_acc: Tensor,
    /// The 32-bit dropout mask seed of the run.
    seed: u32,
    /// The variant of every op (complete: defaults filled in).
    plan: Plan,
    train_ops: Vec<Dispatch>,
    eval_ops: Vec<Dispatch>,
    dropout: Vec<DropoutOp>,
    /// Indices into train_ops of the SGD dispatches, one per parameter.
    sgd: Vec<usize>,
    /// With a PCA stage: the uploaded inputs `[batch, d]`, the components `[k, d]` and the bias
    /// `−W·mean` `[k]`; the projection writes acts[0].
    pca: Option<(Tensor, Tensor, Tensor)>,
}

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

    /// Every buffer a training step of `net` at `batch` allocates, by name, in bytes: parameters,
    /// momentum and gradients; activations and their gradients; labels, loss rows, predictions;
    /// max-pool indices and fused-ReLU gradients; the weight gradients' partial sums.
    pub fn buffers(net: &Net, batch: usize) -> Vec<(String, u64)> {
        let b = batch as u64;
        let mut v = Vec::new();
        for p in &net.params {
            let bytes = 4 * p.len() as u64;
            v.extend(["", " momentum", " gradient"].map(|what| (format!("{}{what}", p.name), bytes)));
        }
        if let Some(k) = net.config.pca {
            let d = net.input_len() as u64;
            v.push((format!("input {} before PCA", net.input), 4 * b * d));
            v.push(("PCA components".to_string(), 4 * k as u64 * d));
        }
        for (i, d) in net.dims.iter().enumerate() {
            let bytes = 4 * b * d.len() as u64;
            let what = if i == 0 { "input".to_string() } else { format!("layer {} output", i - 1) };
            v.push((format!("{what} {d}"), bytes));
            if i > 0 {
                v.push((format!("{what} {d} gradient"), bytes));
            }
        }
        for what in ["labels", "loss rows", "predictions"] {
            v.push((what.to_string(), 4 * b));
        }
        for (li, l) in net.layers.iter().enumerate() {
            let out = 4 * b * net.dims[li + 1].len() as u64;
            match *l {
                Layer::MaxPool { .. } => v.push((format!("layer {li} argmax"), out)),
                Layer::Conv { relu: true, .. } | Layer::Fc { relu: true, .. } => {
                    v.push((format!("layer {li} pre-ReLU gradient"), out))
                }
                _ => {}
            }
            if let Layer::Conv { shape, .. } = *l {
                let s = Conv2dShape { n: batch, ..shape };
                let scratch = conv::weight_grad_scratch(&s, CONV_WGRAD, 0);
                v.push((format!("layer {li} weight-gradient partial sums"), 4 * scratch as u64));
                let bias = reduce::channel_sum_scratch(batch, s.cout, s.oh() * s.ow());
                v.push((format!("layer {li} bias-gradient partial sums"), 4 * bias as u64));
            }
        }
        v
    }

    /// The largest batch of `net` whose every buffer fits this device (0 when not even one
    /// sample does); buffers grow with the batch, so a binary search finds it.
    pub fn max_batch(gpu: &Gpu, net: &Net) -> usize {
        let (limit, _) = Self::buffer_limit(gpu);
        let fits = |b: usize| Self::buffers(net, b).iter().all(|(_, bytes)| *bytes <= limit);
        if !fits(1) {
            return 0;
        }
        let (mut lo, mut hi) = (1usize, 2usize);
        while fits(hi) {
            lo = hi;
            match hi.checked_mul(2) {
                Some(h) if (h as u64) <= 1 << 40 => hi = h,
                _ => return lo,
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Refuses a batch one of whose buffers exceeds the device's limit, before anything is
    /// allocated: one line naming the buffer, the limit and the largest batch that fits.
    pub fn check_batch_fits(gpu: &Gpu, net: &Net, batch: usize) -> Result<(), String> {
        let (limit, name) = Self::buffer_limit(gpu);
        let buffers = Self::buffers(net, batch);
        // The first of the largest buffers: an activation before its gradients.
        let largest = buffers.iter().rev().max_by_key(|(_, bytes)| *bytes);
        let Some((what, need)) = largest.filter(|(_, b)| *b > limit) else {
            return Ok(());
        };
        let max = Self::max_batch(gpu, net);
        let fix = if max == 0 {
            format!("not even one sample fits: make the network's {what} smaller")
        } else {
            format!("the largest batch that fits is {max} (use --batch {max})")
        };
        Err(format!(
            "batch {batch} of network {} needs a {need}-byte buffer for its {what}, more than adapter {}'s \
             {name} of {limit} bytes; {fix}",
            net.config.name, gpu.info.name
        ))
    }

    /// Allocates and prepares everything for `batch` samples per step, starting from `init`;
    /// `seed` is the run's 32-bit dropout mask seed. Every op uses its default variant.
    pub fn new(
        gpu: &Gpu,
        net: &Net,
        batch: usize,
        init: &[Vec<f32>],
        svm_c: f64,
        seed: u32,
    ) -> Result<GpuNet, GpuError> {
        Self::with_plan(gpu, net, batch, init, svm_c, seed, &Plan::default())
    }

    /// [`GpuNet::new`] with the variants `plan` names (the rest default).
    #[allow(clippy::too_many_arguments)]
    pub fn with_plan(
        gpu: &Gpu,
        net: &Net,
        batch: usize,
        init: &[Vec<f32>],
        svm_c: f64,
        seed: u32,
        plan: &Plan,
    ) -> Result<GpuNet, GpuError> {
        if batch == 0 {
            return Err(GpuError::shape("network", "batch size must be at least 1"));
        }
        let plan = plan.complete(net, batch).map_err(|m| GpuError::shape("network", m))?;
        let pca = match (&net.pca, net.config.pca) {
            (Some(p), Some(_)) => Some((
                gpu.empty(&[batch * p.d], DType::F32)?,
                gpu.upload(&p.components, &[p.k, p.d])?,
                gpu.upload(&p.bias(), &[p.k])?,
            )),
            (None, Some(k)) => {
                return Err(GpuError::shape("network", format!("the PCA stage (pca = {k}) is not fitted")))
            }
            _ => None,
        };
        let f32t = |len: usize| gpu.empty(&[len], DType::F32);
        let per_layer = |want: fn(&Layer) -> bool, dtype| -> Result<Vec<Option<Tensor>>, GpuError> {
            net.layers
                .iter()
                .zip(&net.dims[1..])
                .map(|(l, d)| want(l).then(|| gpu.empty(&[batch * d.len()], dtype)).transpose())
                .collect()
        };
        let mut g = GpuNet {
            net: net.clone(),
            batch,
            params: init.iter().map(|p| gpu.upload(p, &[p.len()])).collect::<Result<_, _>>()?,
            velocity: net.params.iter().map(|p| f32t(p.len())).collect::<Result<_, _>>()?,
            grads: net.params.iter().map(|p| f32t(p.len())).collect::<Result<_, _>>()?,
            acts: net.dims.iter().map(|d| f32t(batch * d.len())).collect::<Result<_, _>>()?,
            dacts: net.dims[1..].iter().map(|d| f32t(batch * d.len())).collect::<Result<_, _>>()?,
            pool_idx: per_layer(|l| matches!(l, Layer::MaxPool { .. }), DType::I32)?,
            pre: per_layer(
                |l| matches!(l, Layer::Conv { relu: true, .. } | Layer::Fc { relu: true, .. }),
                DType::F32,
            )?,
            labels: gpu.empty(&[batch], DType::I32)?,
            loss_rows: f32t(batch)?,
            pred: gpu.empty(&[batch], DType::I32)?,
            loss_acc: f32t(1)?,
            correct_acc: gpu.empty(&[1], DType::U32)?,
            seed,
            plan,
            train_ops: Vec::new(),
            eval_ops: Vec::new(),
            dropout: Vec::new(),
            sgd: Vec::new(),
            pca,
        };
        g.record(gpu, svm_c)?;
        g.reset_metrics(gpu);
        Ok(g)
    }

    /// Prepares the dispatches of the evaluation pass and of a training step, in order: forward,
    /// loss and metrics, backward from the top down, one SGD update per parameter.
    fn record(&mut self, gpu: &Gpu, svm_c: f64) -> Result<(), GpuError> {
        let (batch, k) = (self.batch, self.net.classes);
        let (scores, dscores) = (&self.acts[self.acts.len() - 1], &self.dacts[self.dacts.len() - 1]);
        let (mut train, mut eval, mut dropout, mut sgd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mask = |op: usize, n: usize, p: f32, key: u32| DropoutOp {
            op,
            n: n as u32,
            p,
            seed: dropout_seed(self.seed, key),
        };
        if let Some((raw, w, b)) = &self.pca {
            // The fixed input stage: acts[0] = raw·Wᵀ + b, nothing flows back into it.
            let k = self.net.dims[0].len();
            let s = GemmShape::new(batch, k, self.net.input_len(), Trans::NT);
            let ep = Epilogue { bias: Some(b), accumulate: false, relu: false };
            for ops in [&mut eval, &mut train] {
                ops.extend(gemm::gemm(gpu, &s, raw, w, &self.acts[0], &ep, gemm::GemmVariant::DEFAULT)?);
            }
        }
        for li in 0..self.net.layers.len() {
            if let Layer::Dropout { p, key } = self.net.layers[li] {
                dropout.push(mask(train.len(), self.acts[li].len(), p, key));
            }
            eval.extend(self.forward_op(gpu, li, false)?);
            train.extend(self.forward_op(gpu, li, true)?);
        }
        eval.push(reduce::argmax_rows(gpu, batch, k, scores, &self.pred)?);
        let scale = self.net.top().loss_scale(svm_c, batch);
        let (labels, rows) = (&self.labels, &self.loss_rows);
        train.push(match self.net.top() {
            super::Top::L2svm => loss::l2svm(gpu, batch, k, scores, labels, scale, rows, dscores)?,
            super::Top::L1svm => loss::l1svm(gpu, batch, k, scores, labels, scale, rows, dscores)?,
            super::Top::Softmax => loss::softmax_xent(gpu, batch, k, scores, labels, scale, rows, dscores)?,
        });
        train.push(reduce::sum_all(gpu, rows, &self.loss_acc, true)?);
        train.push(reduce::argmax_rows(gpu, batch, k, scores, &self.pred)?);
        train.push(reduce::count_correct(gpu, &self.pred, labels, &self.correct_acc, true)?);
        for li in (0..self.net.layers.len()).rev() {
            let ops = self.backward_op(gpu, li)?;
            // A dropout layer's backward is one dispatch (none for a first layer: no input gradient).
            if let (&Layer::Dropout { p, key }, false) = (&self.net.layers[li], ops.is_empty()) {
                dropout.push(mask(train.len(), self.dacts[li].len(), p, key));
            }
            train.extend(ops);
        }
        for (i, p) in self.net.params.iter().enumerate() {
            sgd.push(train.len());
            let (w, v, g) = (&self.params[i], &self.velocity[i], &self.grads[i]);
            train.push(optim::sgd_momentum(gpu, w, v, g, 0.0, 0.0, p.weight_decay as f32)?);
        }
        (self.train_ops, self.eval_ops, self.dropout, self.sgd) = (train, eval, dropout, sgd);
        Ok(())
    }

    /// The forward dispatches of layer `li` (one, but two for a split-K fully connected layer);
    /// dropout is the identity unless `train`.
    fn forward_op(&self, gpu: &Gpu, li: usize, train: bool) -> Result<Vec<Dispatch>, GpuError> {
        let (a, y, batch) = (&self.acts[li], &self.acts[li + 1], self.batch);
        Ok(vec![match self.net.layers[li] {
            Layer::Conv { shape, relu, weight, bias } => {
                let ep = Epilogue { bias: Some(&self.params[bias]), accumulate: false, relu };
                let s = Conv2dShape { n: batch, ..shape };
                let v = self.plan.choice::<ConvFwdVariant>(OpKey::new(li, OpKind::ConvFwd));
                conv::conv2d_forward(gpu, &s, a, &self.params[weight], y, &ep, v)?
            }
            Layer::MaxPool { shape } => {
                let ix = self.pool_idx[li]
                    .as_ref()
                    .ok_or_else(|| GpuError::Internal("max-pool indices".into()))?;
                let v = self.plan.choice::<pool::PoolFwdVariant>(OpKey::new(li, OpKind::PoolFwd));
                pool::maxpool_forward(gpu, &Pool2dShape { n: batch, ..shape }, a, y, ix, v)?
            }
            Layer::AvgPool { shape } => {
                let v = self.plan.choice::<pool::PoolFwdVariant>(OpKey::new(li, OpKind::PoolFwd));
                pool::avgpool_forward(gpu, &Pool2dShape { n: batch, ..shape }, a, y, v)?
            }
            Layer::Relu => activation::relu_forward(gpu, a, y)?,
            Layer::Dropout { p, key } => {
                let (p, seed) = if train { (p, dropout_seed(self.seed, key)) } else { (0.0, 0) };
                activation::dropout_forward(gpu, a, y, p, seed, 0)?
            }
            Layer::Fc { inp, out, relu, weight, bias } => {
                let ep = Epilogue { bias: Some(&self.params[bias]), accumulate: false, relu };
                let s = GemmShape::new(batch, out, inp, Trans::NT);
                let v = self.plan.choice::<gemm::GemmVariant>(OpKey::new(li, OpKind::FcFwd));
                return gemm::gemm(gpu, &s, a, &self.params[weight], y, &ep, v);
            }
        }])
    }

    /// The backward dispatches of layer `li`, in order: a fused ReLU's gradient, the parameter
    /// gradients, the gradient of the layer's input (none for the first layer, whose input is the
    /// data).
    fn backward_op(&self, gpu: &Gpu, li: usize) -> Result<Vec<Dispatch>, GpuError> {
        let (a_in, a_out, g_out) = (&self.acts[li], &self.acts[li + 1], &self.dacts[li]);
        let g_in = li.checked_sub(1).map(|i| &self.dacts[i]);
        let batch = self.batch;
        let mut ops = Vec::new();
        // The gradient before a fused ReLU.
        let fused = |ops: &mut Vec<Dispatch>, relu: bool| -> Result<&Tensor, GpuError> {
            match (relu, self.pre[li].as_ref()) {
                (true, Some(t)) => {
                    ops.push(activation::relu_backward(gpu, a_out, g_out, t)?);
                    Ok(t)
                }
                (true, None) => Err(GpuError::Internal("fused ReLU without its gradient buffer".into())),
                (false, _) => Ok(g_out),
            }
        };
        match self.net.layers[li] {
            Layer::Conv { shape, relu, weight, bias } => {
                let s = Conv2dShape { n: batch, ..shape };
                let t = fused(&mut ops, relu)?;
                let v = self.plan.choice::<ConvBwdWeightVariant>(OpKey::new(li, OpKind::ConvWeight));
                ops.extend(conv::conv2d_backward_weight(gpu, &s, a_in, t, &self.grads[weight], false, v)?);
                ops.extend(reduce::channel_sum(
                    gpu,
                    batch,
                    s.cout,
                    s.oh() * s.ow(),
                    t,
                    &self.grads[bias],
                    false,
                )?);
                if let Some(g_in) = g_in {
                    let v = self.plan.choice::<conv::ConvBwdDataVariant>(OpKey::new(li, OpKind::ConvData));
                    ops.extend(conv::conv2d_backward_data(gpu, &s, t, &self.params[weight], g_in, v)?);
                }
            }
            Layer::MaxPool { shape } => {
                if let (Some(g_in), Some(ix)) = (g_in, self.pool_idx[li].as_ref()) {
                    let s = Pool2dShape { n: batch, ..shape };
                    let v = self.plan.choice::<pool::PoolBwdVariant>(OpKey::new(li, OpKind::PoolBwd));
                    ops.extend(pool::maxpool_backward(gpu, &s, g_out, ix, g_in, v)?);
                }
            }
            Layer::AvgPool { shape } => {
                if let Some(g_in) = g_in {
                    let s = Pool2dShape { n: batch, ..shape };
                    let v = self.plan.choice::<pool::PoolBwdVariant>(OpKey::new(li, OpKind::PoolBwd));
                    ops.extend(pool::avgpool_backward(gpu, &s, g_out, g_in, v)?);
                }
            }
            Layer::Relu => {
                if let Some(g_in) = g_in {
                    ops.push(activation::relu_backward(gpu, a_out, g_out, g_in)?);
                }
            }
            Layer::Dropout { p, key } => {
                if let Some(g_in) = g_in {
                    ops.push(activation::dropout_backward(
                        gpu,
                        g_out,
                        g_in,
                        p,
                        dropout_seed(self.seed, key),
                        0,
                    )?);
                }
            }
            Layer::Fc { inp, out, relu, weight, bias } => {
                let t = fused(&mut ops, relu)?;
                let none = Epilogue::default();
                let dw = GemmShape::new(out, inp, batch, Trans::TN);
                let v = self.plan.choice::<gemm::GemmVariant>(OpKey::new(li, OpKind::FcWeight));
                ops.extend(gemm::gemm(gpu, &dw, t, a_in, &self.grads[weight], &none, v)?);
                ops.extend(reduce::channel_sum(gpu, batch, out, 1, t, &self.grads[bias], false)?);
                if let Some(g_in) = g_in {
                    let dx = GemmShape::new(batch, inp, out, Trans::NN);
                    let v = self.plan.choice::<gemm::GemmVariant>(OpKey::new(li, OpKind::FcData));
                    ops.extend(gemm::gemm(gpu, &dx, t, &self.params[weight], g_in, &none, v)?);
                }
            }
        }
        Ok(ops)
    }

    /// Where a batch of inputs is uploaded: the PCA stage's input, else the first layer's.
    fn input(&self) -> &Tensor {
        self.pca.as_ref().map_or(&self.acts[0], |p| &p.0)
    }

    /// The variant every op of the step uses.
    pub fn plan(&self) -> &Plan {
        &self.plan
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
        gpu.write(self.input(), x)?;
        gpu.write(&self.labels, y)?;
        for d in &self.dropout {
            self.train_ops[d.op].set_params(gpu, &ActParams::new(d.n, d.p, d.seed, step as u32));
        }
        for (i, &op) in self.sgd.iter().enumerate() {
            let p = &self.net.params[i];
            let lr = (lr * p.lr_scale) as f32;
            let sgd = SgdParams::new(self.params[i].len() as u32, lr, momentum as f32, p.weight_decay as f32);
            self.train_ops[op].set_params(gpu, &sgd);
        }
        Ok(gpu.submit(&self.train_ops, None))
    }

    /// The loss summed over steps since the last reset (each step adds its batch mean) and the
    /// number of correct predictions.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_metrics(&self, gpu: &Gpu) -> Result<(f64, u64), GpuError> {
        pollster::block_on(self.read_metrics_async(gpu))
    }

    /// [`GpuNet::read_metrics`], awaiting the read-back.
    pub async fn read_metrics_async(&self, gpu: &Gpu) -> Result<(f64, u64), GpuError> {
        let loss = gpu.download_async::<f32>(&self.loss_acc).await?[0] as f64;
        let correct = gpu.download_async::<u32>(&self.correct_acc).await?[0] as u64;
        Ok((loss, correct))
    }

    pub fn reset_metrics(&self, gpu: &Gpu) {
        gpu.queue.write_buffer(self.loss_acc.buffer(), 0, bytemuck::cast_slice(&[0.0f32]));
        gpu.queue.write_buffer(self.correct_acc.buffer(), 0, bytemuck::cast_slice(&[0u32]));
    }

    /// Scores `[batch, classes]` of one evaluation batch (no dropout). Short batches are padded.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn scores(&self, gpu: &Gpu, x: &[f32], rows: usize) -> Result<Vec<f32>, GpuError> {
        pollster::block_on(self.scores_async(gpu, x, rows))
    }

    /// [`GpuNet::scores`], awaiting the read-back.
    pub async fn scores_async(&self, gpu: &Gpu, x: &[f32], rows: usize) -> Result<Vec<f32>, GpuError> {
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
        gpu.write(self.input(), input)?;
        gpu.wait_for(gpu.submit(&self.eval_ops, None))?;
        let mut s = gpu.download_async::<f32>(&self.acts[self.acts.len() - 1]).await?;
        s.truncate(rows * self.net.classes);
        Ok(s)
    }

    /// Parameters and momentum buffers, read back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download(&self, gpu: &Gpu) -> Result<(Tensors, Tensors), GpuError> {
        pollster::block_on(self.download_async(gpu))
    }

    /// [`GpuNet::download`], awaiting the read-backs.
    pub async fn download_async(&self, gpu: &Gpu) -> Result<(Tensors, Tensors), GpuError> {
        let (mut p, mut v) = (Vec::new(), Vec::new());
        for t in &self.params {
            p.push(gpu.download_async::<f32>(t).await?);
        }
        for t in &self.velocity {
            v.push(gpu.download_async::<f32>(t).await?);
        }
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, gpu: &Gpu, reps: usize) -> Result<Vec<(String, f64)>, GpuError> {
        pollster::block_on(self.profile_async(gpu, reps))
    }

    /// [`GpuNet::profile`], awaiting the device.
    pub async fn profile_async(&self, gpu: &Gpu, reps: usize) -> Result<Vec<(String, f64)>, GpuError> {
        let mut out = Vec::new();
        for op in &self.train_ops {
            let mut t = gpu.time_async(&[op], reps.max(1)).await?;
            t.sort_by(f64::total_cmp);
            out.push((op.name.clone(), t[t.len() / 2]));
        }
        Ok(out)
    }
}
