//! Checks of the CPU reference ops (`dlsvm::cpu`): central finite differences in `f64` of every
//! backward against its forward through a scalar objective `L = Σ out·R` with a fixed random `R`,
//! plus hand-computed cases for the forward semantics, the losses, the optimizer and the reductions.

use dlsvm::cpu::{
    argmax_rows, avgpool_backward, avgpool_forward, channel_sum, conv2d_backward_data,
    conv2d_backward_weight, conv2d_forward, count_correct, dropout_backward, dropout_forward, gemm, l1svm,
    l2svm, maxpool_backward, maxpool_forward, relu_backward, relu_forward, sgd_momentum, softmax_xent, sum,
};
use dlsvm::shapes::{dropout_keep, dropout_scale, Conv2dShape, GemmShape, Pool2dShape, Trans};

/// Central-difference step.
const FD_STEP: f64 = 1e-6;
/// A coordinate passes when `|fd − analytic| ≤ ABS_TOL + REL_TOL·|analytic|`.
const ABS_TOL: f64 = 1e-6;
const REL_TOL: f64 = 1e-5;
/// Tolerance for comparisons of `f64` results that should agree up to summation order.
const EXACT_TOL: f64 = 1e-12;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// splitmix64: a small deterministic generator, so every run checks the same values.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        lo + (hi - lo) * u
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn vec(&mut self, len: usize) -> Vec<f64> {
        (0..len).map(|_| self.uniform(-1.0, 1.0)).collect()
    }
    /// Values with magnitude in `[min, 1)` and a random sign.
    fn vec_away_from_zero(&mut self, len: usize, min: f64) -> Vec<f64> {
        (0..len)
            .map(|_| {
                let m = self.uniform(min, 1.0);
                if self.next_u64() & 1 == 0 {
                    m
                } else {
                    -m
                }
            })
            .collect()
    }
    /// Pairwise distinct values at least 0.01 apart, in random order.
    fn vec_distinct(&mut self, len: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..len).map(|i| (i as f64 - len as f64 / 2.0) * 0.01).collect();
        for i in (1..len).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
        v
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w} (tolerance {tol})");
    }
}

/// Compares `analytic` with central differences of `objective` at `x`, coordinate by coordinate.
/// Refuses a (nearly) zero analytic gradient, which would make the check vacuous.
fn gradcheck(what: &str, x: &[f64], analytic: &[f64], objective: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    assert!(analytic.iter().all(|g| g.is_finite()), "{what}: analytic gradient is not finite");
    let largest = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(largest > 1e-3, "{what}: analytic gradient is (nearly) zero everywhere");
    let mut xp = x.to_vec();
    let mut bad = Vec::new();
    for i in 0..x.len() {
        let orig = xp[i];
        let (hi, lo) = (orig + FD_STEP, orig - FD_STEP);
        xp[i] = hi;
        let l_hi = objective(&xp);
        xp[i] = lo;
        let l_lo = objective(&xp);
        xp[i] = orig;
        let fd = (l_hi - l_lo) / (hi - lo);
        let tol = ABS_TOL + REL_TOL * analytic[i].abs();
        // Also fails on a NaN.
        let ok = (fd - analytic[i]).abs() <= tol;
        if !ok {
            bad.push((i, fd, analytic[i]));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} of {} coordinates disagree; first (index, finite difference, analytic): {:?}",
        bad.len(),
        x.len(),
        &bad[..bad.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------------
// GEMM
// ---------------------------------------------------------------------------------------------

fn run_gemm(s: GemmShape, a: &[f64], b: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut c = vec![f64::NAN; s.c_len()];
    gemm(&s, a, b, bias, &mut c, false, false);
    c
}

#[test]
fn gemm_hand_cases() {
    // A = [[1,2],[3,4]], B = [[5,6],[7,8]] as stored.
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [5.0, 6.0, 7.0, 8.0];
    // NN: A·B.
    assert_eq!(run_gemm(GemmShape::new(2, 2, 2, Trans::NN), &a, &b, None), [19.0, 22.0, 43.0, 50.0]);
    // NT: A·Bᵀ = [[1·5+2·6, 1·7+2·8], [3·5+4·6, 3·7+4·8]].
    assert_eq!(run_gemm(GemmShape::new(2, 2, 2, Trans::NT), &a, &b, None), [17.0, 23.0, 39.0, 53.0]);
    // TN: Aᵀ·B = [[1·5+3·7, 1·6+3·8], [2·5+4·7, 2·6+4·8]].
    assert_eq!(run_gemm(GemmShape::new(2, 2, 2, Trans::TN), &a, &b, None), [26.0, 30.0, 38.0, 44.0]);

    // Non-square NN: [1,2,3] (1x3) · [[1,0],[0,1],[1,1]] (3x2) = [4, 5].
    let s = GemmShape::new(1, 2, 3, Trans::NN);
    assert_eq!(run_gemm(s, &[1.0, 2.0, 3.0], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], None), [4.0, 5.0]);

    // Bias, then accumulate, then ReLU: AB = [[19,22],[43,50]], bias [-20, 1], C_old [[2,1],[-100,0]]:
    // [[19-20+2, 22+1+1], [43-20-100, 50+1+0]] = [[1, 24], [-77, 51]] -> ReLU [[1, 24], [0, 51]].
    // (ReLU before the accumulation would give 43-20 = 23 -> 23-100 = -77 instead of 0.)
    let s = GemmShape::new(2, 2, 2, Trans::NN);
    let mut c = vec![2.0, 1.0, -100.0, 0.0];
    gemm(&s, &a, &b, Some(&[-20.0, 1.0]), &mut c, true, true);
    assert_eq!(c, [1.0, 24.0, 0.0, 51.0]);
    // Without accumulate the old contents are ignored; without relu negatives stay.
    let mut c = vec![f64::NAN; 4];
    gemm(&s, &a, &b, Some(&[-50.0, 1.0]), &mut c, false, false);
    assert_eq!(c, [-31.0, 23.0, -7.0, 51.0]);
}

#[test]
fn gemm_gradients_every_trans() {
    let mut rng = Rng::new(1);
    let sizes = [(3, 4, 5), (1, 6, 2), (5, 1, 3), (4, 3, 1), (7, 5, 6), (2, 2, 9)];
    for trans in Trans::ALL {
        for &(m, n, k) in &sizes {
            let s = GemmShape::new(m, n, k, trans);
            let a = rng.vec(s.a_len());
            let b = rng.vec(s.b_len());
            let bias = rng.vec(n);
            let r = rng.vec(s.c_len());
            let obj = |a: &[f64], b: &[f64], bias: &[f64]| dot(&run_gemm(s, a, b, Some(bias)), &r);

            // dC = R. The gradients in each operand's own storage layout, by the other variants.
            let (da, db) = match trans {
                // C = A·B, A [M,K], B [K,N]: dA = R·Bᵀ (NT), dB = Aᵀ·R (TN).
                Trans::NN => (
                    run_gemm(GemmShape::new(m, k, n, Trans::NT), &r, &b, None),
                    run_gemm(GemmShape::new(k, n, m, Trans::TN), &a, &r, None),
                ),
                // C = A·Bᵀ, A [M,K], B [N,K]: dA = R·B (NN), dB = Rᵀ·A (TN).
                Trans::NT => (
                    run_gemm(GemmShape::new(m, k, n, Trans::NN), &r, &b, None),
                    run_gemm(GemmShape::new(n, k, m, Trans::TN), &r, &a, None),
                ),
                // C = Aᵀ·B, A [K,M], B [K,N]: dA = B·Rᵀ (NT), dB = A·R (NN).
                Trans::TN => (
                    run_gemm(GemmShape::new(k, m, n, Trans::NT), &b, &r, None),
                    run_gemm(GemmShape::new(k, n, m, Trans::NN), &a, &r, None),
                ),
            };
            let mut dbias = vec![f64::NAN; n];
            channel_sum(m, n, 1, &r, &mut dbias, false);

            gradcheck(&format!("gemm {s} dA"), &a, &da, |a| obj(a, &b, &bias));
            gradcheck(&format!("gemm {s} dB"), &b, &db, |b| obj(&a, b, &bias));
            gradcheck(&format!("gemm {s} dbias"), &bias, &dbias, |bias| obj(&a, &b, bias));
        }
    }
}

#[test]
fn gemm_f32_matches_f64() {
    let mut rng = Rng::new(2);
    for trans in Trans::ALL {
        let s = GemmShape::new(5, 7, 33, trans);
        let (a, b, bias) = (rng.vec(s.a_len()), rng.vec(s.b_len()), rng.vec(s.n));
        let want = run_gemm(s, &a, &b, Some(&bias));
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let mut c = vec![0.0f32; s.c_len()];
        gemm(&s, &f(&a), &f(&b), Some(&f(&bias)), &mut c, false, false);
        let got: Vec<f64> = c.iter().map(|&x| x as f64).collect();
        // Inputs rounded to f32 (relative 6e-8 each) over 33 products of magnitude < 1.
        assert_close(&format!("gemm f32 {s}"), &got, &want, 1e-5);
    }
}

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn conv(
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    s: (usize, usize),
    p: (usize, usize),
) -> Conv2dShape {
    Conv2dShape { n, cin, h, w, cout, kh, kw, sy: s.0, sx: s.1, py: p.0, px: p.1 }
}

fn conv_forward_f64(s: &Conv2dShape, x: &[f64], w: &[f64], bias: Option<&[f64]>, relu: bool) -> Vec<f64> {
    let mut y = vec![f64::NAN; s.y_len()];
    conv2d_forward(s, x, w, bias, &mut y, relu);
    y
}

#[test]
fn conv_forward_hand_cases() {
    // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,2],[3,4]].
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let w = [1.0, 2.0, 3.0, 4.0];
    // Stride 1, no padding: y00 = 1·1+2·2+3·4+4·5 = 37, y01 = 2+6+15+24 = 47,
    // y10 = 4+10+21+32 = 67, y11 = 5+12+24+36 = 77; bias -40 -> [-3, 7, 27, 37].
    let s = Conv2dShape::square(1, 1, 3, 1, 2, 1, 0);
    assert_eq!(conv_forward_f64(&s, &x, &w, Some(&[-40.0]), false), [-3.0, 7.0, 27.0, 37.0]);
    assert_eq!(conv_forward_f64(&s, &x, &w, Some(&[-40.0]), true), [0.0, 7.0, 27.0, 37.0]);
    // Stride 2, padding 1 (oh = (3+2-2)/2+1 = 2); windows start at rows/cols -1 and 1:
    // y00 = w11·x00 = 4, y01 = w10·x01 + w11·x02 = 6+12 = 18,
    // y10 = w01·x10 + w11·x20 = 8+28 = 36, y11 = w00·x11 + w01·x12 + w10·x21 + w11·x22 = 77.
    let s = Conv2dShape::square(1, 1, 3, 1, 2, 2, 1);
    assert_eq!(conv_forward_f64(&s, &x, &w, None, false), [4.0, 18.0, 36.0, 77.0]);
}

#[test]
fn conv_1x1_matches_gemm() {
    // A 1x1 stride-1 convolution is, per image, W[cout,cin] · X[cin, h·w].
    let mut rng = Rng::new(3);
    let s = conv(2, 3, 4, 5, 4, 1, 1, (1, 1), (0, 0));
    let (x, w, bias) = (rng.vec(s.x_len()), rng.vec(s.w_len()), rng.vec(s.cout));
    let y = conv_forward_f64(&s, &x, &w, Some(&bias), false);
    let hw = s.h * s.w;
    let g = GemmShape::new(s.cout, hw, s.cin, Trans::NN);
    for n in 0..s.n {
        let mut want = vec![0.0; s.cout * hw];
        gemm(&g, &w, &x[n * s.cin * hw..(n + 1) * s.cin * hw], None, &mut want, false, false);
        for co in 0..s.cout {
            for v in &mut want[co * hw..(co + 1) * hw] {
                *v += bias[co];
            }
        }
        assert_close("conv 1x1 vs gemm", &y[n * s.cout * hw..(n + 1) * s.cout * hw], &want, EXACT_TOL);
    }
}

fn check_conv(s: &Conv2dShape, rng: &mut Rng) {
    s.validate().unwrap();
    let x = rng.vec(s.x_len());
    let w = rng.vec(s.w_len());
    let bias = rng.vec(s.cout);
    let r = rng.vec(s.y_len());
    let obj = |x: &[f64], w: &[f64], bias: &[f64]| dot(&conv_forward_f64(s, x, w, Some(bias), false), &r);

    // NaN-filled outputs: the backward passes must overwrite every element.
    let mut dx = vec![f64::NAN; s.x_len()];
    conv2d_backward_data(s, &r, &w, &mut dx);
    let mut dw = vec![f64::NAN; s.w_len()];
    conv2d_backward_weight(s, &x, &r, &mut dw, false);
    let mut dbias = vec![f64::NAN; s.cout];
    channel_sum(s.n, s.cout, s.oh() * s.ow(), &r, &mut dbias, false);

    gradcheck(&format!("conv {s} dx"), &x, &dx, |x| obj(x, &w, &bias));
    gradcheck(&format!("conv {s} dw"), &w, &dw, |w| obj(&x, w, &bias));
    gradcheck(&format!("conv {s} dbias"), &bias, &dbias, |b| obj(&x, &w, b));

    // accumulate adds to the old contents.
    let old = rng.vec(s.w_len());
    let mut dw_acc = old.clone();
    conv2d_backward_weight(s, &x, &r, &mut dw_acc, true);
    let want: Vec<f64> = old.iter().zip(&dw).map(|(o, d)| o + d).collect();
    assert_close(&format!("conv {s} dw accumulate"), &dw_acc, &want, EXACT_TOL);
    let old = rng.vec(s.cout);
    let mut db_acc = old.clone();
    channel_sum(s.n, s.cout, s.oh() * s.ow(), &r, &mut db_acc, true);
    let want: Vec<f64> = old.iter().zip(&dbias).map(|(o, d)| o + d).collect();
    assert_close(&format!("conv {s} dbias accumulate"), &db_acc, &want, EXACT_TOL);
}

#[test]
fn conv_gradients_small_shapes() {
    let mut rng = Rng::new(4);
    let shapes = [
        // Plain 3x3, stride 1, no padding.
        conv(1, 1, 5, 5, 1, 3, 3, (1, 1), (0, 0)),
        // Non-square input and kernel, padding 1, batch 2, odd channels.
        conv(2, 3, 7, 6, 2, 3, 2, (1, 1), (1, 1)),
        // Stride 2 with padding 1.
        conv(1, 2, 8, 8, 3, 3, 3, (2, 2), (1, 1)),
        // Stride 2 on an odd input where the last rows/columns are never read.
        conv(2, 1, 7, 7, 2, 2, 2, (2, 2), (0, 0)),
        // 1x1 kernels, stride 1 and 2.
        conv(2, 3, 5, 5, 5, 1, 1, (1, 1), (0, 0)),
        conv(1, 2, 6, 5, 3, 1, 1, (2, 2), (0, 0)),
        // Kernel as large as the input (1x1 output), and as large as the padded input.
        conv(2, 2, 4, 4, 3, 4, 4, (1, 1), (0, 0)),
        conv(1, 3, 3, 4, 2, 5, 6, (1, 1), (1, 1)),
        // Padding 2 with a 5x5 kernel on a non-square input.
        conv(1, 3, 6, 5, 2, 5, 5, (1, 1), (2, 2)),
        // Padding 3 > kernel/2: some windows lie entirely in the padding.
        conv(1, 1, 5, 5, 2, 3, 3, (2, 2), (3, 3)),
        // Different strides and paddings per axis, non-square kernel.
        conv(2, 3, 6, 9, 2, 2, 5, (2, 1), (0, 2)),
        conv(1, 2, 9, 6, 3, 4, 3, (3, 2), (1, 0)),
    ];
    for s in &shapes {
        check_conv(s, &mut rng);
    }
}

#[test]
fn conv_gradients_fer_configs() {
    // The FER network's layer geometries at batch 1 with few channels: 42x42 k5 p2, 21x21 k4 p1
    // (-> 20x20), 10x10 k5 p2.
    let mut rng = Rng::new(5);
    check_conv(&Conv2dShape::square(1, 1, 42, 2, 5, 1, 2), &mut rng);
    check_conv(&Conv2dShape::square(1, 3, 21, 2, 4, 1, 1), &mut rng);
    check_conv(&Conv2dShape::square(2, 2, 10, 3, 5, 1, 2), &mut rng);
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn pool(
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    s: (usize, usize),
    p: (usize, usize),
) -> Pool2dShape {
    Pool2dShape { n, c, h, w, kh, kw, sy: s.0, sx: s.1, py: p.0, px: p.1 }
}

fn pool_shapes() -> Vec<Pool2dShape> {
    vec![
        // 3x3 stride 2 ceil mode, the FER sizes 42 -> 21, 20 -> 10, 10 -> 5.
        Pool2dShape::square(1, 2, 42, 3, 2, 0),
        Pool2dShape::square(2, 1, 20, 3, 2, 0),
        Pool2dShape::square(1, 3, 10, 3, 2, 0),
        // 2x2 stride 2, even and odd (last window clipped to one row/column).
        Pool2dShape::square(2, 2, 8, 2, 2, 0),
        Pool2dShape::square(1, 2, 7, 2, 2, 0),
        // 3x3 stride 1 padding 1 (same size).
        Pool2dShape::square(1, 2, 6, 3, 1, 1),
        // Windows with padding.
        Pool2dShape::square(1, 2, 9, 3, 2, 1),
        Pool2dShape::square(1, 1, 5, 4, 3, 2),
        // Ceil mode dropping the window that would start in the trailing padding.
        Pool2dShape::square(1, 2, 5, 2, 2, 1),
        // Non-square everything.
        pool(1, 2, 7, 10, 2, 3, (1, 2), (1, 0)),
        pool(2, 1, 6, 11, 3, 2, (2, 3), (0, 1)),
    ]
}

#[test]
fn pool_output_sizes() {
    // The Pool2dShape rule the reference relies on, on the sizes worked out in its doc comment.
    for (hw, out) in [(42, 21), (20, 10), (10, 5)] {
        let s = Pool2dShape::square(1, 1, hw, 3, 2, 0);
        assert_eq!((s.oh(), s.ow()), (out, out), "{s}");
    }
    // 5 wide, window 2, stride 2, pad 1: ceil(5/2)+1 = 4 windows, but the 4th would start at 6-1 = 5,
    // past the input, so 3 remain.
    assert_eq!(Pool2dShape::square(1, 1, 5, 2, 2, 1).oh(), 3);
}

#[test]
fn maxpool_hand_case_with_ties() {
    // One 3x3 plane, window 2x2 stride 1 -> 2x2 outputs:
    //   5 1 5
    //   2 5 0
    //   1 1 1
    // window (0,0) {5,1,2,5}: first max at index 0; (0,1) {1,5,5,0}: index 2 (row 0 before row 1);
    // (1,0) {2,5,1,1}: index 4; (1,1) {5,0,1,1}: index 4.
    let s = Pool2dShape::square(1, 1, 3, 2, 1, 0);
    let x = [5.0, 1.0, 5.0, 2.0, 5.0, 0.0, 1.0, 1.0, 1.0];
    let mut y = [f64::NAN; 4];
    let mut idx = [-7i32; 4];
    maxpool_forward(&s, &x, &mut y, &mut idx);
    assert_eq!(y, [5.0; 4]);
    assert_eq!(idx, [0, 2, 4, 4]);
    // Backward with dy = [1,2,3,4]: dx[0] = 1, dx[2] = 2, dx[4] = 3+4 = 7, the rest 0.
    let mut dx = [f64::NAN; 9];
    maxpool_backward(&s, &[1.0, 2.0, 3.0, 4.0], &idx, &mut dx);
    assert_eq!(dx, [1.0, 0.0, 2.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0]);

    // Padding never contributes: an all-negative plane with padding keeps negative maxima.
    let s = Pool2dShape::square(1, 1, 2, 2, 1, 1);
    let x = [-1.0, -2.0, -3.0, -4.0];
    let mut y = [f64::NAN; 9];
    let mut idx = [0i32; 9];
    maxpool_forward(&s, &x, &mut y, &mut idx);
    assert_eq!(y, [-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0]);
    assert_eq!(idx, [0, 0, 1, 0, 0, 1, 2, 2, 3]);
}

#[test]
fn avgpool_hand_case() {
    // One 2x2 plane [[1,2],[3,4]], window 2 stride 1 padding 1 -> 3x3 outputs (windows start at
    // -1, 0, 1 along each axis), each the mean of its in-image elements only:
    //   1      (1+2)/2      2
    //   (1+3)/2 (1+2+3+4)/4 (2+4)/2
    //   3      (3+4)/2      4
    let s = Pool2dShape::square(1, 1, 2, 2, 1, 1);
    let mut y = [f64::NAN; 9];
    avgpool_forward(&s, &[1.0, 2.0, 3.0, 4.0], &mut y);
    assert_eq!(y, [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0]);
    // Backward of dy = 1 everywhere: each input collects 1/count of the windows covering it.
    // x00 is in windows (0,0) count 1, (0,1) count 2, (1,0) count 2, (1,1) count 4: 1+1/2+1/2+1/4.
    let mut dx = [f64::NAN; 4];
    avgpool_backward(&s, &[1.0; 9], &mut dx);
    assert_eq!(dx, [2.25; 4]);
}

/// Max and average pooling by another route than the reference's clipped ranges: every output scans
/// its whole plane and keeps the positions that fall inside its (unclipped) window.
fn pool_by_membership(s: &Pool2dShape, x: &[f64]) -> (Vec<f64>, Vec<i32>, Vec<f64>) {
    let (mut max, mut idx, mut avg) = (Vec::new(), Vec::new(), Vec::new());
    for p in 0..s.planes() {
        for oy in 0..s.oh() {
            for ox in 0..s.ow() {
                let y0 = (oy * s.sy) as isize - s.py as isize;
                let x0 = (ox * s.sx) as isize - s.px as isize;
                let (mut best, mut best_i, mut total, mut count) = (f64::NEG_INFINITY, -1, 0.0, 0);
                for i in 0..s.h * s.w {
                    let (iy, ix) = ((i / s.w) as isize, (i % s.w) as isize);
                    if iy >= y0 && iy < y0 + s.kh as isize && ix >= x0 && ix < x0 + s.kw as isize {
                        let v = x[p * s.h * s.w + i];
                        if best_i < 0 || v > best {
                            (best, best_i) = (v, i as i32);
                        }
                        total += v;
                        count += 1;
                    }
                }
                max.push(best);
                idx.push(best_i);
                avg.push(total / count as f64);
            }
        }
    }
    (max, idx, avg)
}

#[test]
fn pool_forward_matches_membership_scan() {
    let mut rng = Rng::new(12);
    for s in pool_shapes() {
        // Few distinct values, so that windows hold ties.
        let x: Vec<f64> = rng.vec(s.x_len()).iter().map(|v| (v * 3.0).round()).collect();
        let (want_max, want_idx, want_avg) = pool_by_membership(&s, &x);
        let mut y = vec![f64::NAN; s.y_len()];
        let mut idx = vec![-1; s.y_len()];
        maxpool_forward(&s, &x, &mut y, &mut idx);
        assert_eq!(y, want_max, "maxpool {s} values");
        assert_eq!(idx, want_idx, "maxpool {s} indices");
        avgpool_forward(&s, &x, &mut y);
        assert_close(&format!("avgpool {s}"), &y, &want_avg, EXACT_TOL);
    }
}

#[test]
fn maxpool_gradients() {
    let mut rng = Rng::new(6);
    for s in pool_shapes() {
        s.validate().unwrap();
        // Distinct inputs 0.01 apart: the ±FD_STEP perturbation cannot change any argmax.
        let x = rng.vec_distinct(s.x_len());
        let r = rng.vec(s.y_len());
        let forward = |x: &[f64]| {
            let mut y = vec![f64::NAN; s.y_len()];
            let mut idx = vec![-1; s.y_len()];
            maxpool_forward(&s, x, &mut y, &mut idx);
            (y, idx)
        };
        let (y, idx) = forward(&x);
        // Every output is the input element its index names, inside its own plane.
        let (hw, ohw) = (s.h * s.w, s.oh() * s.ow());
        for (o, (&v, &i)) in y.iter().zip(&idx).enumerate() {
            assert!(i >= 0 && (i as usize) < hw, "maxpool {s}: idx[{o}] = {i}");
            assert_eq!(v, x[(o / ohw) * hw + i as usize], "maxpool {s}: output {o}");
        }
        let mut dx = vec![f64::NAN; s.x_len()];
        maxpool_backward(&s, &r, &idx, &mut dx);
        gradcheck(&format!("maxpool {s} dx"), &x, &dx, |x| dot(&forward(x).0, &r));
    }
}

#[test]
fn avgpool_gradients() {
    let mut rng = Rng::new(7);
    for s in pool_shapes() {
        s.validate().unwrap();
        let x = rng.vec(s.x_len());
        let r = rng.vec(s.y_len());
        let mut dx = vec![f64::NAN; s.x_len()];
        avgpool_backward(&s, &r, &mut dx);
        gradcheck(&format!("avgpool {s} dx"), &x, &dx, |x| {
            let mut y = vec![f64::NAN; s.y_len()];
            avgpool_forward(&s, x, &mut y);
            dot(&y, &r)
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------------

#[test]
fn relu_hand_case() {
    let mut y = [f64::NAN; 4];
    relu_forward(&[-1.5, 0.0, 2.0, -0.0], &mut y);
    assert_eq!(y, [0.0, 0.0, 2.0, 0.0]);
    // The backward looks at the forward output: y = 0 blocks the gradient.
    let mut dx = [f64::NAN; 4];
    relu_backward(&y, &[5.0, 6.0, 7.0, 8.0], &mut dx);
    assert_eq!(dx, [0.0, 0.0, 7.0, 0.0]);
}

#[test]
fn relu_gradient() {
    let mut rng = Rng::new(8);
    // Inputs at least 0.1 away from the kink at 0.
    let x = rng.vec_away_from_zero(500, 0.1);
    let r = rng.vec(x.len());
    let forward = |x: &[f64]| {
        let mut y = vec![f64::NAN; x.len()];
        relu_forward(x, &mut y);
        y
    };
    let mut dx = vec![f64::NAN; x.len()];
    relu_backward(&forward(&x), &r, &mut dx);
    assert!(dx.contains(&0.0) && dx.iter().any(|&d| d != 0.0));
    gradcheck("relu dx", &x, &dx, |x| dot(&forward(x), &r));
}

#[test]
fn dropout_gradient() {
    let mut rng = Rng::new(9);
    for (p, seed, step) in [(0.2f32, 17u32, 0u32), (0.5, 3, 41)] {
        let x = rng.vec(1000);
        let r = rng.vec(x.len());
        let forward = |x: &[f64]| {
            let mut y = vec![f64::NAN; x.len()];
            dropout_forward(x, &mut y, p, seed, step);
            y
        };
        let y = forward(&x);
        // Kept elements are scaled by exactly the f32 scale, dropped ones are 0.
        let scale = dropout_scale(p) as f64;
        for (i, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
            let want = if dropout_keep(seed, step, i as u32, p) { xv * scale } else { 0.0 };
            assert_eq!(yv, want, "dropout p={p} element {i}");
        }
        let mut dx = vec![f64::NAN; x.len()];
        dropout_backward(&r, &mut dx, p, seed, step);
        gradcheck(&format!("dropout p={p} dx"), &x, &dx, |x| dot(&forward(x), &r));
    }
}

fn dropout_mask(len: usize, p: f32, seed: u32, step: u32) -> Vec<bool> {
    let mut y = vec![f32::NAN; len];
    dropout_forward(&vec![1.0f32; len], &mut y, p, seed, step);
    y.iter().map(|&v| v != 0.0).collect()
}

#[test]
fn dropout_keep_fraction_and_mask_variation() {
    const DRAWS: usize = 100_000;
    for p in [0.2f32, 0.5] {
        let mask = dropout_mask(DRAWS, p, 1234, 7);
        let kept = mask.iter().filter(|&&k| k).count() as f64 / DRAWS as f64;
        let want = 1.0 - p as f64;
        // Within one percentage point (the binomial standard deviation is ~0.0016 here).
        assert!((kept - want).abs() <= 0.01, "dropout p={p}: kept fraction {kept}, want {want}");

        // Another seed or another step draws a different mask: two independent masks disagree on
        // a fraction 2p(1-p) of the elements; demand at least half of that.
        let differ =
            |other: &[bool]| mask.iter().zip(other).filter(|(a, b)| a != b).count() as f64 / DRAWS as f64;
        let min = p as f64 * (1.0 - p as f64);
        for (what, other) in
            [("seed", dropout_mask(DRAWS, p, 1235, 7)), ("step", dropout_mask(DRAWS, p, 1234, 8))]
        {
            let d = differ(&other);
            assert!(d >= min, "dropout p={p}: changing the {what} changes only {d} of the mask");
        }
        // The mask is dropout_keep of each element's own index, and the same (seed, step)
        // reproduces it.
        assert!(mask.iter().enumerate().all(|(i, &k)| k == dropout_keep(1234, 7, i as u32, p)));
        assert_eq!(mask, dropout_mask(DRAWS, p, 1234, 7));
    }
    // p = 0 keeps everything unscaled.
    let mut y = [0.0f32; 4];
    dropout_forward(&[1.0, -2.0, 3.0, 4.5], &mut y, 0.0, 5, 6);
    assert_eq!(y, [1.0, -2.0, 3.0, 4.5]);
}

// ---------------------------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------------------------

type LossFn = fn(usize, usize, &[f64], &[i32], f64, &mut [f64], &mut [f64]);

fn run_loss(f: LossFn, n: usize, k: usize, s: &[f64], labels: &[i32], scale: f64) -> (Vec<f64>, Vec<f64>) {
    let mut rows = vec![f64::NAN; n];
    let mut grad = vec![f64::NAN; n * k];
    f(n, k, s, labels, scale, &mut rows, &mut grad);
    (rows, grad)
}

#[test]
fn softmax_hand_case() {
    // Row 0: z = [0, ln 3], y = 1: softmax = [1/4, 3/4], lse = ln 4, loss = ln 4 − ln 3 = ln(4/3);
    // gradient = [1/4, 3/4 − 1] = [0.25, −0.25]. Row 1 is masked. scale = 1/N = 1/2.
    let z = [0.0, 3f64.ln(), 10.0, -10.0];
    let (rows, grad) = run_loss(softmax_xent, 2, 2, &z, &[1, -1], 0.5);
    assert_close("softmax loss", &rows, &[0.5 * (4.0f64 / 3.0).ln(), 0.0], EXACT_TOL);
    assert_close("softmax grad", &grad, &[0.125, -0.125, 0.0, 0.0], EXACT_TOL);
}

#[test]
#[should_panic(expected = "out of range")]
fn softmax_rejects_label_past_k() {
    run_loss(softmax_xent, 1, 2, &[0.0, 0.0], &[2], 1.0);
}

#[test]
fn softmax_extreme_logits_stay_finite() {
    // f32, ±80: exp(160) overflows f32 without the max shift. y = 1 (the small one):
    // loss = 80 + ln(1 + e^−160) − (−80) ≈ 160, gradient ≈ [1, −1]; y = 0: loss ≈ e^−160 ≈ 0.
    let z = [80.0f32, -80.0, 80.0, -80.0];
    let mut rows = [f32::NAN; 2];
    let mut grad = [f32::NAN; 4];
    softmax_xent(2, 2, &z, &[1, 0], 1.0, &mut rows, &mut grad);
    assert!(rows.iter().chain(&grad).all(|v| v.is_finite()), "{rows:?} {grad:?}");
    assert_eq!(rows, [160.0, 0.0]);
    assert_eq!(grad, [1.0, -1.0, 0.0, 0.0]);
    // f64, ±800: exp(1600) overflows f64 too.
    let (rows, grad) = run_loss(softmax_xent, 1, 3, &[800.0, -800.0, 0.0], &[1], 1.0);
    assert!(rows.iter().chain(&grad).all(|v| v.is_finite()), "{rows:?} {grad:?}");
    assert_close("softmax ±800 loss", &rows, &[1600.0], EXACT_TOL);
    assert_close("softmax ±800 grad", &grad, &[1.0, -1.0, 0.0], EXACT_TOL);
}

#[test]
fn softmax_gradient() {
    let mut rng = Rng::new(10);
    let (n, k) = (6, 5);
    let labels = [0, 3, -1, 4, 2, -1];
    let scale = 1.0 / n as f64;
    let z: Vec<f64> = rng.vec(n * k).iter().map(|v| 3.0 * v).collect();
    let (rows, grad) = run_loss(softmax_xent, n, k, &z, &labels, scale);
    for (r, &y) in labels.iter().enumerate() {
        if y < 0 {
            assert_eq!(rows[r], 0.0);
            assert!(grad[r * k..(r + 1) * k].iter().all(|&g| g == 0.0));
        } else {
            // Each unmasked row's gradient sums to zero and the loss is positive.
            assert!(rows[r] > 0.0);
            assert!(grad[r * k..(r + 1) * k].iter().sum::<f64>().abs() < EXACT_TOL);
        }
    }
    gradcheck("softmax_xent dz", &z, &grad, |z| sum(&run_loss(softmax_xent, n, k, z, &labels, scale).0));
}

/// Scores `[labels.len(), k]` in [−2, 2), each redrawn while within 0.05 of the hinge kink
/// 1 − t·a = 0 (much more than the difference step).
fn scores_off_the_kink(seed: u64, k: usize, labels: &[i32]) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut a = vec![0.0; labels.len() * k];
    for (r, &y) in labels.iter().enumerate() {
        for j in 0..k {
            let t = if y == j as i32 { 1.0 } else { -1.0 };
            a[r * k + j] = loop {
                let v = rng.uniform(-2.0, 2.0);
                if (1.0 - t * v).abs() > 0.05 {
                    break v;
                }
            };
        }
    }
    a
}

#[test]
fn l2svm_hand_case() {
    // One row, k = 4, scores [0.5, −0.2, 2.0, −1.5], y = 0, scale = 0.3:
    //   j=0: t=+1, h = max(0, 1 − 0.5) = 0.5       grad = −2·0.3·(+1)·0.5 = −0.3
    //   j=1: t=−1, h = max(0, 1 − 0.2) = 0.8       grad = −2·0.3·(−1)·0.8 = 0.48
    //   j=2: t=−1, h = max(0, 1 + 2.0) = 3.0       grad = 1.8
    //   j=3: t=−1, h = max(0, 1 − 1.5) = 0         grad = 0
    //   loss = 0.3·(0.25 + 0.64 + 9) = 2.967
    // A second, masked row gives 0.
    let s = [0.5, -0.2, 2.0, -1.5, 9.0, 9.0, 9.0, 9.0];
    let (rows, grad) = run_loss(l2svm, 2, 4, &s, &[0, -3], 0.3);
    assert_close("l2svm loss", &rows, &[2.967, 0.0], EXACT_TOL);
    assert_close("l2svm grad", &grad, &[-0.3, 0.48, 1.8, 0.0, 0.0, 0.0, 0.0, 0.0], EXACT_TOL);
}

#[test]
#[should_panic(expected = "out of range")]
fn l2svm_rejects_label_past_k() {
    run_loss(l2svm, 2, 3, &[0.0; 6], &[0, 3], 1.0);
}

/// A hinge loss's gradient on scores off the kink: masked rows give nothing, both sides of the
/// hinge occur, and the analytic gradient matches central differences. Returns the gradient.
fn check_hinge_gradient(what: &str, f: LossFn, seed: u64) -> (Vec<f64>, f64) {
    let (n, k) = (7, 4);
    let labels = [1, -1, 0, 3, 2, -1, 1];
    let scale = 0.7 / n as f64;
    let a = scores_off_the_kink(seed, k, &labels);
    let (rows, grad) = run_loss(f, n, k, &a, &labels, scale);
    for (r, &y) in labels.iter().enumerate() {
        if y < 0 {
            assert_eq!(rows[r], 0.0, "{what}: masked row {r}");
            assert!(grad[r * k..(r + 1) * k].iter().all(|&g| g == 0.0), "{what}: masked row {r}");
        }
    }
    let active = (0..n * k).filter(|&i| labels[i / k] >= 0 && grad[i] != 0.0).count();
    let inactive = (0..n * k).filter(|&i| labels[i / k] >= 0 && grad[i] == 0.0).count();
    assert!(active > 0 && inactive > 0, "{what}: active {active}, inactive {inactive}");
    gradcheck(what, &a, &grad, |a| sum(&run_loss(f, n, k, a, &labels, scale).0));
    (grad, scale)
}

#[test]
fn l2svm_gradient() {
    check_hinge_gradient("l2svm da", l2svm, 11);
}

#[test]
fn l1svm_hand_case() {
    // The row of l2svm_hand_case, scores [0.5, −0.2, 2.0, −1.5], y = 0, scale = 0.3:
    //   j=0: t=+1, h = 0.5 > 0    grad = −0.3·(+1) = −0.3
    //   j=1: t=−1, h = 0.8 > 0    grad = −0.3·(−1) = 0.3
    //   j=2: t=−1, h = 3.0 > 0    grad = 0.3
    //   j=3: t=−1, h = −0.5       grad = 0
    //   loss = 0.3·(0.5 + 0.8 + 3.0) = 1.29
    // Row 2 sits on the kink for every class (t·a = 1): loss 0, gradient 0. Row 3 is masked.
    let s = [0.5, -0.2, 2.0, -1.5, 1.0, -1.0, -1.0, -1.0, 9.0, 9.0, 9.0, 9.0];
    let (rows, grad) = run_loss(l1svm, 3, 4, &s, &[0, 0, -3], 0.3);
    assert_close("l1svm loss", &rows, &[1.29, 0.0, 0.0], EXACT_TOL);
    let want = [-0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    assert_close("l1svm grad", &grad, &want, EXACT_TOL);
}

#[test]
#[should_panic(expected = "out of range")]
fn l1svm_rejects_label_past_k() {
    run_loss(l1svm, 2, 3, &[0.0; 6], &[0, 3], 1.0);
}

/// Away from the kink (scores at least 0.05 from t·a = 1, much more than the difference step) the
/// hinge is linear, its gradient exactly ±C/N or 0, and it matches central differences.
#[test]
fn l1svm_gradient() {
    let (grad, scale) = check_hinge_gradient("l1svm da", l1svm, 12);
    assert!(grad.iter().all(|&g| g == 0.0 || (g.abs() - scale).abs() < 1e-15), "{grad:?}");
}

// ---------------------------------------------------------------------------------------------
// Optimizer and reductions
// ---------------------------------------------------------------------------------------------

#[test]
fn sgd_momentum_hand_case() {
    // lr 0.1, momentum 0.9, weight decay 0.01:
    //   v0 = 0.9·0.5 − 0.1·(0.2 + 0.01·1)      = 0.45 − 0.021 = 0.429,  w0 = 1 + 0.429   = 1.429
    //   v1 = 0.9·0   − 0.1·(−0.4 + 0.01·(−2)) = 0.042,                w1 = −2 + 0.042 = −1.958
    let mut w = [1.0, -2.0];
    let mut v = [0.5, 0.0];
    sgd_momentum(&mut w, &mut v, &[0.2, -0.4], 0.1, 0.9, 0.01);
    assert_close("sgd v", &v, &[0.429, 0.042], EXACT_TOL);
    assert_close("sgd w", &w, &[1.429, -1.958], EXACT_TOL);
    // A second step uses the updated v: v0 = 0.9·0.429 − 0.1·(0.2 + 0.01429) = 0.3646710.
    sgd_momentum(&mut w, &mut v, &[0.2, -0.4], 0.1, 0.9, 0.01);
    assert_close("sgd v step 2", &v[..1], &[0.364671], EXACT_TOL);
    assert_close("sgd w step 2", &w[..1], &[1.793671], EXACT_TOL);
}

#[test]
fn argmax_rows_hand_cases() {
    let x = [
        1.0, 3.0, 3.0, 0.0, // tie: the first 3 wins
        -1.0, -2.0, -5.0, -1.0, // all negative, tie at the ends
        0.0, 0.0, 0.0, 7.0, // last
    ];
    let mut out = [-9; 3];
    argmax_rows(3, 4, &x, &mut out);
    assert_eq!(out, [1, 0, 3]);
    let mut out = [-9; 2];
    argmax_rows(2, 1, &[4.0f32, -4.0], &mut out);
    assert_eq!(out, [0, 0]);
}

#[test]
fn count_correct_hand_cases() {
    // Row 1 has pred == label == −1 but is masked; row 2 is wrong.
    assert_eq!(count_correct(&[1, -1, 3, 2], &[1, -1, 2, 2]), 2);
    assert_eq!(count_correct(&[0, 0], &[-1, -1]), 0);
    assert_eq!(count_correct(&[], &[]), 0);
}

#[test]
fn sum_hand_cases() {
    assert_eq!(sum(&[1.5f64, -2.0, 3.25]), 2.75);
    assert_eq!(sum::<f32>(&[]), 0.0);
    // Accumulated in f64: 2^24 + ten ones is exact, an f32 accumulator would stay at 2^24.
    let mut x = vec![1.0f32; 10];
    x.insert(0, 16_777_216.0);
    assert_eq!(sum(&x), 16_777_226.0);
}

#[test]
fn channel_sum_hand_case() {
    // outer 2, c 3, inner 2: x[(o·3 + ch)·2 + i] = 1..12.
    // ch0: 1+2 + 7+8 = 18, ch1: 3+4 + 9+10 = 26, ch2: 5+6 + 11+12 = 34.
    let x: Vec<f64> = (1..=12).map(f64::from).collect();
    let mut out = [f64::NAN; 3];
    channel_sum(2, 3, 2, &x, &mut out, false);
    assert_eq!(out, [18.0, 26.0, 34.0]);
    let mut out = [1.0, -1.0, 0.5];
    channel_sum(2, 3, 2, &x, &mut out, true);
    assert_eq!(out, [19.0, 25.0, 34.5]);
}

#[test]
#[should_panic(expected = "conv2d_forward w")]
fn length_mismatch_panics() {
    let s = Conv2dShape::square(1, 1, 4, 1, 3, 1, 0);
    let mut y = vec![0.0f32; s.y_len()];
    conv2d_forward(&s, &vec![0.0f32; s.x_len()], &[0.0f32; 8], None, &mut y, false);
}
