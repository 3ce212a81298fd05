//! Parameter updates.

use super::{check_len, Real};

/// SGD with momentum and L2 weight decay, in place.
///
/// Shapes: `w`, `v`, `g` `[len]`.
///
/// `v ← momentum·v − lr·(g + weight_decay·w)`, then `w ← w + v` with the new `v` (its `f64` value
/// before rounding to `T`).
pub fn sgd_momentum<T: Real>(w: &mut [T], v: &mut [T], g: &[T], lr: f64, momentum: f64, weight_decay: f64) {
    check_len("sgd_momentum v", v.len(), w.len());
    check_len("sgd_momentum g", g.len(), w.len());
    for ((wi, vi), gi) in w.iter_mut().zip(v.iter_mut()).zip(g) {
        let wo = wi.to_f64();
        let vn = momentum * vi.to_f64() - lr * (gi.to_f64() + weight_decay * wo);
        *vi = T::from_f64(vn);
        *wi = T::from_f64(wo + vn);
    }
}
