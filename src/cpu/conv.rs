//! 2-D convolution (cross-correlation), NCHW, weights `[cout, cin, kh, kw]`.
//!
//! Input row of output row `oy` and kernel row `ky`: `iy = oy*sy - py + ky` (likewise columns);
//! positions outside the image contribute zero.

use super::{check_len, relu_f64, Real};
use crate::shapes::Conv2dShape;

fn validate(s: &Conv2dShape) {
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
}

/// Input coordinate `o*stride - pad + k`, or `None` when it falls outside `[0, len)`.
fn input_pos(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> Option<usize> {
    let p = (o * stride + k) as isize - pad as isize;
    if p >= 0 && (p as usize) < len {
        Some(p as usize)
    } else {
        None
    }
}

/// Forward convolution with optional bias and fused ReLU.
///
/// Shapes: `x` `[n, cin, h, w]`, `w` `[cout, cin, kh, kw]`, `bias` `[cout]`,
/// `y` `[n, cout, oh, ow]` (overwritten).
///
/// `y[n,co,oy,ox] = Σ_{ci,ky,kx} x[n,ci,oy*sy-py+ky,ox*sx-px+kx]·w[co,ci,ky,kx] + bias[co]`,
/// then `max(·, 0)` if `relu`.
pub fn conv2d_forward<T: Real>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    relu: bool,
) {
    validate(s);
    check_len("conv2d_forward x", x.len(), s.x_len());
    check_len("conv2d_forward w", w.len(), s.w_len());
    check_len("conv2d_forward y", y.len(), s.y_len());
    if let Some(bias) = bias {
        check_len("conv2d_forward bias", bias.len(), s.cout);
    }
    let (oh, ow) = (s.oh(), s.ow());
    for n in 0..s.n {
        for co in 0..s.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0f64;
                    for ci in 0..s.cin {
                        for ky in 0..s.kh {
                            let Some(iy) = input_pos(oy, s.sy, s.py, ky, s.h) else { continue };
                            for kx in 0..s.kw {
                                let Some(ix) = input_pos(ox, s.sx, s.px, kx, s.w) else { continue };
                                let xv = x[((n * s.cin + ci) * s.h + iy) * s.w + ix].to_f64();
                                let wv = w[((co * s.cin + ci) * s.kh + ky) * s.kw + kx].to_f64();
                                acc += xv * wv;
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        acc += bias[co].to_f64();
                    }
                    if relu {
                        acc = relu_f64(acc);
                    }
                    y[((n * s.cout + co) * oh + oy) * ow + ox] = T::from_f64(acc);
                }
            }
        }
    }
}

/// Gradient with respect to the input: `dx = ∂(Σ y·dy)/∂x` of the convolution without bias/ReLU.
///
/// Shapes: `dy` `[n, cout, oh, ow]`, `w` `[cout, cin, kh, kw]`, `dx` `[n, cin, h, w]` (overwritten).
///
/// `dx[n,ci,iy,ix] = Σ dy[n,co,oy,ox]·w[co,ci,ky,kx]` over every `(co,oy,ox,ky,kx)` with
/// `oy*sy-py+ky = iy` and `ox*sx-px+kx = ix`. Computed by scattering each output's contribution
/// into an `f64` buffer, then rounding once.
pub fn conv2d_backward_data<T: Real>(s: &Conv2dShape, dy: &[T], w: &[T], dx: &mut [T]) {
    validate(s);
    check_len("conv2d_backward_data dy", dy.len(), s.y_len());
    check_len("conv2d_backward_data w", w.len(), s.w_len());
    check_len("conv2d_backward_data dx", dx.len(), s.x_len());
    let (oh, ow) = (s.oh(), s.ow());
    let mut acc = vec![0.0f64; s.x_len()];
    for n in 0..s.n {
        for co in 0..s.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = dy[((n * s.cout + co) * oh + oy) * ow + ox].to_f64();
                    for ci in 0..s.cin {
                        for ky in 0..s.kh {
                            let Some(iy) = input_pos(oy, s.sy, s.py, ky, s.h) else { continue };
                            for kx in 0..s.kw {
                                let Some(ix) = input_pos(ox, s.sx, s.px, kx, s.w) else { continue };
                                let wv = w[((co * s.cin + ci) * s.kh + ky) * s.kw + kx].to_f64();
                                acc[((n * s.cin + ci) * s.h + iy) * s.w + ix] += g * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(&acc) {
        *d = T::from_f64(*a);
    }
}

/// Gradient with respect to the weights.
///
/// Shapes: `x` `[n, cin, h, w]`, `dy` `[n, cout, oh, ow]`, `dw` `[cout, cin, kh, kw]`
/// (overwritten, or added to when `accumulate`).
///
/// `dw[co,ci,ky,kx] = Σ_{n,oy,ox} dy[n,co,oy,ox]·x[n,ci,oy*sy-py+ky,ox*sx-px+kx]` (+ old `dw`).
pub fn conv2d_backward_weight<T: Real>(s: &Conv2dShape, x: &[T], dy: &[T], dw: &mut [T], accumulate: bool) {
    validate(s);
    check_len("conv2d_backward_weight x", x.len(), s.x_len());
    check_len("conv2d_backward_weight dy", dy.len(), s.y_len());
    check_len("conv2d_backward_weight dw", dw.len(), s.w_len());
    let (oh, ow) = (s.oh(), s.ow());
    for co in 0..s.cout {
        for ci in 0..s.cin {
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let mut acc = 0.0f64;
                    for n in 0..s.n {
                        for oy in 0..oh {
                            let Some(iy) = input_pos(oy, s.sy, s.py, ky, s.h) else { continue };
                            for ox in 0..ow {
                                let Some(ix) = input_pos(ox, s.sx, s.px, kx, s.w) else { continue };
                                let g = dy[((n * s.cout + co) * oh + oy) * ow + ox].to_f64();
                                acc += g * x[((n * s.cin + ci) * s.h + iy) * s.w + ix].to_f64();
                            }
                        }
                    }
                    let i = ((co * s.cin + ci) * s.kh + ky) * s.kw + kx;
                    if accumulate {
                        acc += dw[i].to_f64();
                    }
                    dw[i] = T::from_f64(acc);
                }
            }
        }
    }
}
