//! The paper's training augmentation (DESIGN.md §2): random horizontal mirror and a random
//! similarity transform (rotation, scale, shift of the crop centre) that crops 48x48 to 42x42,
//! sampled with bilinear interpolation; plus optional Gaussian pixel noise.
//! Every random number comes from the crate's generator ([`crate::rng`]), so every augmented
//! crop is bit-identical on every platform.

use serde::{Deserialize, Serialize};

use crate::rng::{sin_cos, Rng};

/// Random transform applied to a training image. Ranges are symmetric: the rotation is uniform in
/// `[-max_rotate_deg, max_rotate_deg]`, the scale uniform in `[scale_min, scale_max]`, the crop
/// centre shift uniform in `[-max_shift, max_shift]` pixels on each axis; `mirror` flips
/// horizontally with probability 0.5; `noise_std` is the std of Gaussian noise added last.
/// A key a network file's `[train.augment]` omits takes its FER value ([`Augment::fer`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Augment {
    pub mirror: bool,
    pub max_rotate_deg: f32,
    pub scale_min: f32,
    pub scale_max: f32,
    pub max_shift: f32,
    pub noise_std: f32,
}

impl Augment {
    /// No augmentation: every crop is the centre crop.
    pub const NONE: Augment = Augment {
        mirror: false,
        max_rotate_deg: 0.0,
        scale_min: 1.0,
        scale_max: 1.0,
        max_shift: 0.0,
        noise_std: 0.0,
    };

    /// The FER setting of the author's code: mirror, rotation up to ±45°, scale 0.8..1.2, crop
    /// centre jittered by up to 3 px (centre 21..27 of 48), no noise.
    pub fn fer() -> Augment {
        Augment {
            mirror: true,
            max_rotate_deg: 45.0,
            scale_min: 0.8,
            scale_max: 1.2,
            max_shift: 3.0,
            noise_std: 0.0,
        }
    }

    /// True when every crop would be the plain centre crop.
    pub fn is_identity(&self) -> bool {
        !self.mirror
            && self.max_rotate_deg == 0.0
            && self.scale_min == 1.0
            && self.scale_max == 1.0
            && self.max_shift == 0.0
            && self.noise_std == 0.0
    }

    /// Draws one transform. Always consumes the same five numbers from `rng` (whatever is
    /// switched off), so the noise that follows does not depend on which parts are enabled.
    pub fn sample(&self, rng: &mut Rng) -> Jitter {
        let flip = rng.unit() < 0.5;
        let angle = rng.range(-1.0, 1.0) * self.max_rotate_deg as f64;
        let scale = rng.range(self.scale_min as f64, self.scale_max as f64);
        let shift_x = rng.range(-1.0, 1.0) * self.max_shift as f64;
        let shift_y = rng.range(-1.0, 1.0) * self.max_shift as f64;
        Jitter {
            angle_deg: angle as f32,
            scale: scale as f32,
            shift_x: shift_x as f32,
            shift_y: shift_y as f32,
            mirror: self.mirror && flip,
        }
    }
}

/// The FER setting: what `[train]` uses when it names no augmentation.
impl Default for Augment {
    fn default() -> Self {
        Augment::fer()
    }
}

/// One concrete similarity transform (what [`Augment::sample`] draws).
///
/// Output pixel at offset `d` from the output centre samples the source at
/// `centre + shift + R(angle) * m(d) / scale`, where `m` negates `d.x` when `mirror` is set and
/// `centre` is the centre of the centre-crop window. With y pointing down, a positive angle turns
/// the content counter-clockwise on screen; a scale above 1 enlarges it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    pub angle_deg: f32,
    pub scale: f32,
    pub shift_x: f32,
    pub shift_y: f32,
    pub mirror: bool,
}

impl Jitter {
    pub const IDENTITY: Jitter =
        Jitter { angle_deg: 0.0, scale: 1.0, shift_x: 0.0, shift_y: 0.0, mirror: false };
}

/// Top-left corner of the centre-crop window (negative when the output is larger than the
/// source): `floor((src - out) / 2)` on each axis.
pub fn centre_offset(h: usize, w: usize, out_h: usize, out_w: usize) -> (isize, isize) {
    ((h as isize - out_h as isize).div_euclid(2), (w as isize - out_w as isize).div_euclid(2))
}

/// Writes an `out_h x out_w` crop of the (already standardized) src image `[h, w]` into `out`.
///
/// `aug` `None` (or an identity [`Augment`]): the centre crop, an exact copy of the centre
/// window; where the output is larger than the source, the outside is 0.
/// `Some((aug, seed))`: a random [`Jitter`] drawn from `Rng::new(seed)` applied with
/// [`warp_into`], then Gaussian noise of std `noise_std` from the same generator. Every random
/// number comes from `seed` alone, so results do not depend on threads.
pub fn crop_into(
    src: &[f32],
    h: usize,
    w: usize,
    out: &mut [f32],
    out_h: usize,
    out_w: usize,
    aug: Option<(&Augment, u64)>,
) {
    crop_planes_into(src, 1, h, w, out, out_h, out_w, aug);
}

/// [`crop_into`] for an image of `c` planes (`[c, h, w]` into `[c, out_h, out_w]`): one jitter
/// drawn from the seed moves every plane alike, then the noise is drawn plane after plane from the
/// same generator. [`crop_into`] is its one-plane case.
#[allow(clippy::too_many_arguments)]
pub fn crop_planes_into(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    out: &mut [f32],
    out_h: usize,
    out_w: usize,
    aug: Option<(&Augment, u64)>,
) {
    assert_eq!(src.len(), c * h * w, "crop_planes_into: source is not {c}x{h}x{w}");
    assert_eq!(out.len(), c * out_h * out_w, "crop_planes_into: output is not {c}x{out_h}x{out_w}");
    let (area, per) = (h * w, out_h * out_w);
    match aug {
        Some((a, seed)) if !a.is_identity() => {
            let mut rng = Rng::new(seed);
            let jitter = a.sample(&mut rng);
            for (plane, o) in src.chunks_exact(area).zip(out.chunks_exact_mut(per)) {
                warp_into(plane, h, w, o, out_h, out_w, &jitter);
            }
            if a.noise_std > 0.0 {
                let std = a.noise_std as f64;
                for v in out.iter_mut() {
                    *v += (rng.normal() * std) as f32;
                }
            }
        }
        _ => {
            for (plane, o) in src.chunks_exact(area).zip(out.chunks_exact_mut(per)) {
                centre_crop(plane, h, w, o, out_h, out_w);
            }
        }
    }
}

/// The exact centre crop (see [`centre_offset`]); zero outside the source.
pub fn centre_crop(src: &[f32], h: usize, w: usize, out: &mut [f32], out_h: usize, out_w: usize) {
    let (oy, ox) = centre_offset(h, w, out_h, out_w);
    for r in 0..out_h {
        let row = &mut out[r * out_w..(r + 1) * out_w];
        let sy = r as isize + oy;
        if sy < 0 || sy >= h as isize {
            row.fill(0.0);
            continue;
        }
        let srow = &src[sy as usize * w..(sy as usize + 1) * w];
        for (c, v) in row.iter_mut().enumerate() {
            let sx = c as isize + ox;
            *v = if sx < 0 || sx >= w as isize { 0.0 } else { srow[sx as usize] };
        }
    }
}

/// Applies one [`Jitter`] with bilinear sampling (outside the source = 0). The identity jitter
/// reproduces [`centre_crop`] exactly, and a mirror-only jitter flips it exactly.
pub fn warp_into(src: &[f32], h: usize, w: usize, out: &mut [f32], out_h: usize, out_w: usize, j: &Jitter) {
    assert_eq!(src.len(), h * w, "warp_into: source is not {h}x{w}");
    assert_eq!(out.len(), out_h * out_w, "warp_into: output is not {out_h}x{out_w}");
    let (oy, ox) = centre_offset(h, w, out_h, out_w);
    // Output centre and the matching source centre, in pixel-index coordinates.
    let ocx = (out_w as f32 - 1.0) * 0.5;
    let ocy = (out_h as f32 - 1.0) * 0.5;
    let scx = ox as f32 + ocx + j.shift_x;
    let scy = oy as f32 + ocy + j.shift_y;
    let (s, c) = sin_cos(j.angle_deg as f64 * (std::f64::consts::PI / 180.0));
    let inv = 1.0 / j.scale as f64;
    let (c, s) = ((c * inv) as f32, (s * inv) as f32);
    let mx = if j.mirror { -1.0f32 } else { 1.0 };
    let fetch = |y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0.0
        } else {
            src[y as usize * w + x as usize]
        }
    };
    for r in 0..out_h {
        let dy = r as f32 - ocy;
        for q in 0..out_w {
            let dx = (q as f32 - ocx) * mx;
            let sx = scx + c * dx - s * dy;
            let sy = scy + s * dx + c * dy;
            let x0 = sx.floor();
            let y0 = sy.floor();
            let fx = sx - x0;
            let fy = sy - y0;
            let (xi, yi) = (x0 as isize, y0 as isize);
            let top = (1.0 - fx) * fetch(yi, xi) + fx * fetch(yi, xi + 1);
            let bottom = (1.0 - fx) * fetch(yi + 1, xi) + fx * fetch(yi + 1, xi + 1);
            out[r * out_w + q] = (1.0 - fy) * top + fy * bottom;
        }
    }
}
