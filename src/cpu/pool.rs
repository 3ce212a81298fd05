//! 2-D max and average pooling over `planes = n*c` independent `[h, w]` planes.
//!
//! Window `(oy, ox)` covers input rows `[oy*sy - py, oy*sy - py + kh)` clipped to `[0, h)`, likewise
//! columns; padding never contributes (see [`Pool2dShape`] for the ceil-mode output size).

use super::{check_len, Real};
use crate::shapes::Pool2dShape;

fn validate(s: &Pool2dShape) {
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
}

/// In-image range `[lo, hi)` of window `o` along one axis. Panics if the window is empty.
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = (start + k as isize).clamp(0, len as isize) as usize;
    assert!(
        lo < hi,
        "pool window {o} (stride {stride}, pad {pad}, size {k}) holds no element of a length-{len} axis"
    );
    (lo, hi)
}

/// The in-image row and column ranges of every output position, row-major over `[oh, ow]`.
fn windows(s: &Pool2dShape) -> Vec<((usize, usize), (usize, usize))> {
    let mut out = Vec::with_capacity(s.oh() * s.ow());
    for oy in 0..s.oh() {
        let rows = window(oy, s.sy, s.py, s.kh, s.h);
        for ox in 0..s.ow() {
            out.push((rows, window(ox, s.sx, s.px, s.kw, s.w)));
        }
    }
    out
}

/// Max pooling.
///
/// Shapes: `x` `[planes, h, w]`, `y` and `idx` `[planes, oh, ow]` (overwritten).
///
/// `y` is the maximum of the window's in-image elements and `idx = iy*w + ix` (within the plane) is
/// the position of the first maximum in row-major scan order (later elements replace it only when
/// strictly greater).
pub fn maxpool_forward<T: Real>(s: &Pool2dShape, x: &[T], y: &mut [T], idx: &mut [i32]) {
    validate(s);
    check_len("maxpool_forward x", x.len(), s.x_len());
    check_len("maxpool_forward y", y.len(), s.y_len());
    check_len("maxpool_forward idx", idx.len(), s.y_len());
    assert!(
        s.h * s.w <= i32::MAX as usize,
        "maxpool_forward: plane {}x{} too large for i32 indices",
        s.h,
        s.w
    );
    let wins = windows(s);
    let (hw, ohw) = (s.h * s.w, wins.len());
    for p in 0..s.planes() {
        let plane = &x[p * hw..(p + 1) * hw];
        for (o, &((y0, y1), (x0, x1))) in wins.iter().enumerate() {
            let mut best_i = y0 * s.w + x0;
            let mut best = plane[best_i];
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let v = plane[iy * s.w + ix];
                    if v > best {
                        best = v;
                        best_i = iy * s.w + ix;
                    }
                }
            }
            y[p * ohw + o] = best;
            idx[p * ohw + o] = best_i as i32;
        }
    }
}

/// Max pooling backward: routes each output gradient to the input its `idx` names.
///
/// Shapes: `dy` and `idx` `[planes, oh, ow]`, `dx` `[planes, h, w]` (overwritten).
///
/// `dx[plane, i] = Σ dy[plane, o]` over the outputs `o` of that plane with `idx[plane, o] == i`.
pub fn maxpool_backward<T: Real>(s: &Pool2dShape, dy: &[T], idx: &[i32], dx: &mut [T]) {
    validate(s);
    check_len("maxpool_backward dy", dy.len(), s.y_len());
    check_len("maxpool_backward idx", idx.len(), s.y_len());
    check_len("maxpool_backward dx", dx.len(), s.x_len());
    let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
    let mut acc = vec![0.0f64; s.x_len()];
    for p in 0..s.planes() {
        for o in 0..ohw {
            let i = idx[p * ohw + o];
            assert!(
                i >= 0 && (i as usize) < hw,
                "maxpool_backward: idx[{}] = {i} is outside the {}x{} plane",
                p * ohw + o,
                s.h,
                s.w
            );
            acc[p * hw + i as usize] += dy[p * ohw + o].to_f64();
        }
    }
    for (d, a) in dx.iter_mut().zip(&acc) {
        *d = T::from_f64(*a);
    }
}

/// Average pooling: the mean of each window's in-image elements (divided by their count, not by
/// `kh*kw`).
///
/// Shapes: `x` `[planes, h, w]`, `y` `[planes, oh, ow]` (overwritten).
pub fn avgpool_forward<T: Real>(s: &Pool2dShape, x: &[T], y: &mut [T]) {
    validate(s);
    check_len("avgpool_forward x", x.len(), s.x_len());
    check_len("avgpool_forward y", y.len(), s.y_len());
    let wins = windows(s);
    let (hw, ohw) = (s.h * s.w, wins.len());
    for p in 0..s.planes() {
        for (o, &((y0, y1), (x0, x1))) in wins.iter().enumerate() {
            let mut acc = 0.0f64;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    acc += x[p * hw + iy * s.w + ix].to_f64();
                }
            }
            let count = ((y1 - y0) * (x1 - x0)) as f64;
            y[p * ohw + o] = T::from_f64(acc / count);
        }
    }
}

/// Average pooling backward, the adjoint of [`avgpool_forward`]: `dy[o] / count[o]` is added to
/// every in-image element of window `o`.
///
/// Shapes: `dy` `[planes, oh, ow]`, `dx` `[planes, h, w]` (overwritten).
pub fn avgpool_backward<T: Real>(s: &Pool2dShape, dy: &[T], dx: &mut [T]) {
    validate(s);
    check_len("avgpool_backward dy", dy.len(), s.y_len());
    check_len("avgpool_backward dx", dx.len(), s.x_len());
    let wins = windows(s);
    let (hw, ohw) = (s.h * s.w, wins.len());
    let mut acc = vec![0.0f64; s.x_len()];
    for p in 0..s.planes() {
        for (o, &((y0, y1), (x0, x1))) in wins.iter().enumerate() {
            let count = ((y1 - y0) * (x1 - x0)) as f64;
            let g = dy[p * ohw + o].to_f64() / count;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    acc[p * hw + iy * s.w + ix] += g;
                }
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(&acc) {
        *d = T::from_f64(*a);
    }
}
