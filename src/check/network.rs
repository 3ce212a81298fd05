//! The loss a whole network reports, pinned against its definition. The GPU network and the CPU
//! reference network share the loss scale (C/N for the squared hinge, 1/N for softmax), so a wrong
//! scale would change both alike and no comparison between them could see it: this case computes
//! the loss of one step from the scores by the paper's formula, in f64, and compares the loss the
//! GPU network reads back.

use super::tolerance as tol;
use super::{CaseReport, Comparison};
use crate::gpu::{Gpu, GpuError};
use crate::model::{GpuNet, LayerSpec, Net, NetConfig, Top, TrainConfig};

/// A one-layer network (2x2 images, fc to 3 classes) with these weights and biases, batch 2:
/// sample 0 (label 0) scores (0.5, -0.5, 2), sample 1 (label 2) scores (0, 0, 0).
pub const WEIGHTS: [f32; 12] = [0.5, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0];
pub const INPUTS: [f32; 8] = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
pub const LABELS: [i32; 2] = [0, 2];

/// The tiny network the loss is pinned on.
pub fn tiny_net(top: Top) -> Net {
    let config = NetConfig {
        name: "loss-pin".into(),
        image_size: 2,
        input_size: 2,
        channels: 1,
        pca: None,
        top,
        layers: vec![LayerSpec::Fc { out: None, weight_decay: None, lr_scale: None, init_std: None }],
        train: TrainConfig::default(),
    };
    Net::new(&config, 3).expect("a 4 -> 3 fc network is valid")
}

/// The batch loss by definition, from the scores: the squared hinge
/// `(C/N) Σ_rows Σ_classes max(0, 1 − t·a)²` (t = +1 for the label's class, −1 otherwise), the
/// hinge `(C/N) Σ_rows Σ_classes max(0, 1 − t·a)`, or the cross-entropy
/// `(1/N) Σ_rows (log Σ_j e^{a_j} − a_label)`.
pub fn loss_by_definition(top: Top, scores: &[[f64; 3]], labels: &[i32], svm_c: f64) -> f64 {
    let n = scores.len() as f64;
    let mut total = 0.0;
    for (row, &y) in scores.iter().zip(labels) {
        total += match top {
            Top::L2svm | Top::L1svm => row
                .iter()
                .enumerate()
                .map(|(j, &a)| {
                    let t = if j as i32 == y { 1.0 } else { -1.0 };
                    let h = (1.0 - t * a).max(0.0);
                    if top == Top::L2svm {
                        h * h
                    } else {
                        h
                    }
                })
                .sum::<f64>(),
            Top::Softmax => row.iter().map(|a| a.exp()).sum::<f64>().ln() - row[y as usize],
        };
    }
    match top {
        Top::L2svm | Top::L1svm => svm_c * total / n,
        Top::Softmax => total / n,
    }
}

/// One training step of [`tiny_net`] at learning rate 0 on the GPU: the loss it reads back
/// against [`loss_by_definition`] with SVM constant `svm_c`.
pub async fn network_loss_case(gpu: &Gpu, top: Top, svm_c: f64) -> Result<CaseReport, GpuError> {
    let net = tiny_net(top);
    let params = vec![WEIGHTS.to_vec(), vec![0.0; 3]];
    let g = GpuNet::new(gpu, &net, 2, &params, svm_c, 1)?;
    let sub = g.train_step(gpu, &INPUTS, &LABELS, 0, 0.0, 0.0)?;
    gpu.wait_for(sub)?;
    let (loss, _) = g.read_metrics_async(gpu).await?;
    let scores = [[0.5, -0.5, 2.0], [0.0, 0.0, 0.0]];
    let want = loss_by_definition(top, &scores, &LABELS, svm_c);
    // One f32 rounding of a few-term sum.
    Ok(Comparison::new(
        &format!("network loss {}", top.name()),
        format!("2 samples, 3 classes, C{svm_c}"),
        tol::SOFTMAX,
    )
    .floats("loss", &[loss as f32], &[want], 3)
    .finish())
}
