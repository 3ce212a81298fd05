//! Elementwise activations: ReLU and inverted dropout.

use super::{check_len, relu_f64, Real};
use crate::shapes::{dropout_keep, dropout_scale};

/// ReLU: `y = x` if `x > 0`, else `0`.
///
/// Shapes: `x`, `y` `[len]`.
pub fn relu_forward<T: Real>(x: &[T], y: &mut [T]) {
    check_len("relu_forward y", y.len(), x.len());
    for (yv, xv) in y.iter_mut().zip(x) {
        *yv = T::from_f64(relu_f64(xv.to_f64()));
    }
}

/// ReLU backward from the forward OUTPUT `y`: `dx = dy` if `y > 0`, else `0`.
///
/// Shapes: `y`, `dy`, `dx` `[len]`.
pub fn relu_backward<T: Real>(y: &[T], dy: &[T], dx: &mut [T]) {
    check_len("relu_backward dy", dy.len(), y.len());
    check_len("relu_backward dx", dx.len(), y.len());
    for ((d, yv), g) in dx.iter_mut().zip(y).zip(dy) {
        *d = if yv.to_f64() > 0.0 { *g } else { T::from_f64(0.0) };
    }
}

/// Shared body of both dropout directions; `what` names the caller in panic messages.
fn apply_dropout<T: Real>(what: &str, x: &[T], y: &mut [T], p: f32, seed: u32, step: u32) {
    check_len(&format!("{what} output"), y.len(), x.len());
    assert!((0.0..1.0).contains(&p), "{what}: drop probability {p} must be in [0, 1)");
    assert!(x.len() as u64 <= u32::MAX as u64 + 1, "{what}: {} elements do not fit u32 indices", x.len());
    let scale = dropout_scale(p) as f64;
    for (i, (yv, xv)) in y.iter_mut().zip(x).enumerate() {
        let keep = dropout_keep(seed, step, i as u32, p);
        *yv = T::from_f64(if keep { xv.to_f64() * scale } else { 0.0 });
    }
}

/// Inverted dropout: element `i` is kept when `dropout_keep(seed, step, i, p)` and then scaled by
/// `dropout_scale(p)` (the `f32` value, widened to `f64`); dropped elements become `0`.
///
/// Shapes: `x`, `y` `[len]`, `len ≤ 2^32`; `p` in `[0, 1)`.
pub fn dropout_forward<T: Real>(x: &[T], y: &mut [T], p: f32, seed: u32, step: u32) {
    apply_dropout("dropout_forward", x, y, p, seed, step);
}

/// Dropout backward: the same mask and scale as [`dropout_forward`] applied to `dy`.
///
/// Shapes: `dy`, `dx` `[len]`, `len ≤ 2^32`; `p` in `[0, 1)`.
pub fn dropout_backward<T: Real>(dy: &[T], dx: &mut [T], p: f32, seed: u32, step: u32) {
    apply_dropout("dropout_backward", dy, dx, p, seed, step);
}
