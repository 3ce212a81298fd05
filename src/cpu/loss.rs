//! Losses on row-major scores `[n, k]` with one `i32` label per row. A negative label masks its
//! row: loss 0 and an all-zero gradient row. `scale` comes from the caller (`1/N` for softmax,
//! `C/N` for the SVM, `N` counting masked rows too).

use super::{check_len, Real};

fn check_loss(what: &str, n: usize, k: usize, scores: usize, labels: &[i32], rows: usize, grad: usize) {
    check_len(&format!("{what} scores"), scores, n * k);
    check_len(&format!("{what} labels"), labels.len(), n);
    check_len(&format!("{what} loss_rows"), rows, n);
    check_len(&format!("{what} grad"), grad, n * k);
    for (r, &y) in labels.iter().enumerate() {
        assert!(y < 0 || (y as usize) < k, "{what}: label {y} of row {r} is out of range for {k} classes");
    }
}

/// Softmax cross-entropy.
///
/// Shapes: `logits` `[n, k]`, `labels` `[n]`, `loss_rows` `[n]`, `grad` `[n, k]` (all overwritten).
///
/// Per unmasked row with label `y`: `m = max_j z_j`, `lse = m + ln Σ_j exp(z_j - m)`,
/// `loss_row = scale·(lse − z_y)`, `grad[j] = scale·(softmax_j − [j == y])`. Panics if a label is
/// `≥ k`.
pub fn softmax_xent<T: Real>(
    n: usize,
    k: usize,
    logits: &[T],
    labels: &[i32],
    scale: f64,
    loss_rows: &mut [T],
    grad: &mut [T],
) {
    check_loss("softmax_xent", n, k, logits.len(), labels, loss_rows.len(), grad.len());
    assert!(k >= 1, "softmax_xent: need at least one class");
    for r in 0..n {
        let z = &logits[r * k..(r + 1) * k];
        let g = &mut grad[r * k..(r + 1) * k];
        let y = labels[r];
        if y < 0 {
            loss_rows[r] = T::from_f64(0.0);
            g.iter_mut().for_each(|v| *v = T::from_f64(0.0));
            continue;
        }
        let y = y as usize;
        let m = z.iter().map(|v| v.to_f64()).fold(f64::NEG_INFINITY, f64::max);
        let denom: f64 = z.iter().map(|v| (v.to_f64() - m).exp()).sum();
        let lse = m + denom.ln();
        loss_rows[r] = T::from_f64(scale * (lse - z[y].to_f64()));
        for (j, gv) in g.iter_mut().enumerate() {
            let softmax = (z[j].to_f64() - m).exp() / denom;
            let target = if j == y { 1.0 } else { 0.0 };
            *gv = T::from_f64(scale * (softmax - target));
        }
    }
}

/// Squared-hinge (L2-SVM) one-vs-rest loss.
///
/// Shapes: `scores` `[n, k]`, `labels` `[n]`, `loss_rows` `[n]`, `grad` `[n, k]` (all overwritten).
///
/// Per unmasked row with label `y` and class `j`: `t = +1` if `j == y` else `−1`,
/// `h = max(0, 1 − t·a_j)`; `loss_row = scale·Σ_j h²`, `grad[j] = −2·scale·t·h`. Panics if a label
/// is `≥ k`.
pub fn l2svm<T: Real>(
    n: usize,
    k: usize,
    scores: &[T],
    labels: &[i32],
    scale: f64,
    loss_rows: &mut [T],
    grad: &mut [T],
) {
    hinge("l2svm", true, n, k, scores, labels, scale, loss_rows, grad);
}

/// Hinge (L1-SVM) one-vs-rest loss.
///
/// Shapes as [`l2svm`]. Per unmasked row with label `y` and class `j`: `t = +1` if `j == y` else
/// `−1`, `h = 1 − t·a_j`; `loss_row = scale·Σ_j max(0, h)`, `grad[j] = −scale·t` where `h > 0`, else
/// 0 (the kink `h = 0` takes the zero side, as the kernel does). Panics if a label is `≥ k`.
pub fn l1svm<T: Real>(
    n: usize,
    k: usize,
    scores: &[T],
    labels: &[i32],
    scale: f64,
    loss_rows: &mut [T],
    grad: &mut [T],
) {
    hinge("l1svm", false, n, k, scores, labels, scale, loss_rows, grad);
}

/// The two hinges: squared (`squared`) or plain.
#[allow(clippy::too_many_arguments)]
fn hinge<T: Real>(
    what: &str,
    squared: bool,
    n: usize,
    k: usize,
    scores: &[T],
    labels: &[i32],
    scale: f64,
    loss_rows: &mut [T],
    grad: &mut [T],
) {
    check_loss(what, n, k, scores.len(), labels, loss_rows.len(), grad.len());
    for r in 0..n {
        let a = &scores[r * k..(r + 1) * k];
        let g = &mut grad[r * k..(r + 1) * k];
        let y = labels[r];
        if y < 0 {
            loss_rows[r] = T::from_f64(0.0);
            g.iter_mut().for_each(|v| *v = T::from_f64(0.0));
            continue;
        }
        let mut loss = 0.0f64;
        for (j, gv) in g.iter_mut().enumerate() {
            let t = if j == y as usize { 1.0 } else { -1.0 };
            let h = (1.0 - t * a[j].to_f64()).max(0.0);
            let (term, dh) = if squared {
                (h * h, -2.0 * scale * t * h)
            } else {
                (h, if h > 0.0 { -scale * t } else { 0.0 })
            };
            loss += term;
            *gv = T::from_f64(dh);
        }
        loss_rows[r] = T::from_f64(scale * loss);
    }
}
