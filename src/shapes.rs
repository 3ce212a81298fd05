//! Shapes shared by the CPU reference and the GPU kernels, with the rules that derive
//! output sizes. Every tensor is dense, row-major; images are NCHW.

use std::fmt;

/// Which operands of a GEMM are transposed. `C[M,N] = op(A) · op(B)`.
///
/// | variant | A stored as | B stored as |
/// |---|---|---|
/// | `NN` | `[M,K]` | `[K,N]` |
/// | `NT` | `[M,K]` | `[N,K]` |
/// | `TN` | `[K,M]` | `[K,N]` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trans {
    NN,
    NT,
    TN,
}

impl Trans {
    pub const ALL: [Trans; 3] = [Trans::NN, Trans::NT, Trans::TN];
    pub fn name(self) -> &'static str {
        match self {
            Trans::NN => "nn",
            Trans::NT => "nt",
            Trans::TN => "tn",
        }
    }
    pub fn a_transposed(self) -> bool {
        self == Trans::TN
    }
    pub fn b_transposed(self) -> bool {
        self == Trans::NT
    }
}

/// `C[M,N] = op(A) · op(B)`, reduction length K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans: Trans,
}

impl GemmShape {
    pub fn new(m: usize, n: usize, k: usize, trans: Trans) -> Self {
        GemmShape { m, n, k, trans }
    }
    pub fn a_len(&self) -> usize {
        self.m * self.k
    }
    pub fn b_len(&self) -> usize {
        self.k * self.n
    }
    pub fn c_len(&self) -> usize {
        self.m * self.n
    }
    /// Index of `op(A)[i, kk]` in A's storage.
    pub fn a_index(&self, i: usize, kk: usize) -> usize {
        if self.trans.a_transposed() {
            kk * self.m + i
        } else {
            i * self.k + kk
        }
    }
    /// Index of `op(B)[kk, j]` in B's storage.
    pub fn b_index(&self, kk: usize, j: usize) -> usize {
        if self.trans.b_transposed() {
            j * self.k + kk
        } else {
            kk * self.n + j
        }
    }
    pub fn validate(&self) -> Result<(), String> {
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(format!("gemm {self}: every dimension must be at least 1"));
        }
        Ok(())
    }
}

impl fmt::Display for GemmShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{} {}", self.m, self.n, self.k, self.trans.name())
    }
}

/// 2-D convolution (cross-correlation, as every deep-learning library), NCHW.
///
/// x: `[n, cin, h, w]`, weight: `[cout, cin, kh, kw]`, bias: `[cout]`, y: `[n, cout, oh, ow]` with
/// `oh = (h + 2*py - kh) / sy + 1` (floor), likewise `ow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub sy: usize,
    pub sx: usize,
    pub py: usize,
    pub px: usize,
}

impl Conv2dShape {
    /// Square kernel `k`, equal stride and padding in both directions.
    #[allow(clippy::too_many_arguments)]
    pub fn square(n: usize, cin: usize, hw: usize, cout: usize, k: usize, stride: usize, pad: usize) -> Self {
        Conv2dShape { n, cin, h: hw, w: hw, cout, kh: k, kw: k, sy: stride, sx: stride, py: pad, px: pad }
    }
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.py - self.kh) / self.sy + 1
    }
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.px - self.kw) / self.sx + 1
    }
    pub fn x_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }
    pub fn w_len(&self) -> usize {
        self.cout * self.cin * self.kh * self.kw
    }
    pub fn y_len(&self) -> usize {
        self.n * self.cout * self.oh() * self.ow()
    }
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if [s.n, s.cin, s.h, s.w, s.cout, s.kh, s.kw, s.sy, s.sx].contains(&0) {
            return Err(format!("conv2d {s}: sizes and strides must be at least 1"));
        }
        if s.kh > s.h + 2 * s.py || s.kw > s.w + 2 * s.px {
            return Err(format!("conv2d {s}: kernel {}x{} is larger than the padded input", s.kh, s.kw));
        }
        Ok(())
    }
}

impl fmt::Display for Conv2dShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n{} {}x{}x{} -> {} k{}x{} s{}x{} p{}x{}",
            self.n, self.cin, self.h, self.w, self.cout, self.kh, self.kw, self.sy, self.sx, self.py, self.px
        )
    }
}

/// 2-D max or average pooling over `planes = n * c` independent planes.
///
/// Output size rule (ceil mode, as cuda-convnet and PyTorch's `ceil_mode=True`):
/// `oh = ceil((h + 2*py - kh) / sy) + 1`, then one less if the last window would start at or past
/// `h + py` (so every window starts inside the input or its leading padding). For the FER network's
/// 3x3 / stride-2 windows: 42 -> 21, 20 -> 10, 10 -> 5.
///
/// Windows are clipped to the input: padding never contributes. Max pooling takes the maximum of
/// the window's in-image elements (the first one in row-major order on ties); average pooling
/// divides by the number of in-image elements of the window, not by `kh*kw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sy: usize,
    pub sx: usize,
    pub py: usize,
    pub px: usize,
}

fn pool_out(len: usize, k: usize, s: usize, p: usize) -> usize {
    let span = len + 2 * p - k;
    let mut o = span.div_ceil(s) + 1;
    if (o - 1) * s >= len + p {
        o -= 1;
    }
    o
}

impl Pool2dShape {
    #[allow(clippy::too_many_arguments)]
    pub fn square(n: usize, c: usize, hw: usize, k: usize, stride: usize, pad: usize) -> Self {
        Pool2dShape { n, c, h: hw, w: hw, kh: k, kw: k, sy: stride, sx: stride, py: pad, px: pad }
    }
    pub fn planes(&self) -> usize {
        self.n * self.c
    }
    pub fn oh(&self) -> usize {
        pool_out(self.h, self.kh, self.sy, self.py)
    }
    pub fn ow(&self) -> usize {
        pool_out(self.w, self.kw, self.sx, self.px)
    }
    pub fn x_len(&self) -> usize {
        self.planes() * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.planes() * self.oh() * self.ow()
    }
    pub fn validate(&self) -> Result<(), String> {
        let s = self;
        if [s.n, s.c, s.h, s.w, s.kh, s.kw, s.sy, s.sx].contains(&0) {
            return Err(format!("pool {s}: sizes and strides must be at least 1"));
        }
        if s.kh > s.h + 2 * s.py || s.kw > s.w + 2 * s.px {
            return Err(format!("pool {s}: window {}x{} is larger than the padded input", s.kh, s.kw));
        }
        if s.py >= s.kh || s.px >= s.kw {
            return Err(format!("pool {s}: padding must be smaller than the window"));
        }
        Ok(())
    }
}

impl fmt::Display for Pool2dShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n{} c{} {}x{} k{}x{} s{}x{} p{}x{}",
            self.n, self.c, self.h, self.w, self.kh, self.kw, self.sy, self.sx, self.py, self.px
        )
    }
}

/// The counter-based hash behind dropout, identical on the CPU and in `shaders/activation.wgsl`.
/// Keyed by (seed, step, element index); a 32-bit integer mixer applied three times.
pub fn hash_u32(seed: u32, step: u32, index: u32) -> u32 {
    fn mix(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        x
    }
    mix(index ^ mix(step ^ mix(seed ^ 0x9e37_79b9)))
}

/// Uniform in [0, 1) with 24 bits, exactly representable in f32.
pub fn hash_uniform(seed: u32, step: u32, index: u32) -> f32 {
    (hash_u32(seed, step, index) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Dropout keeps element `index` when its uniform draw is at least `p`.
pub fn dropout_keep(seed: u32, step: u32, index: u32, p: f32) -> bool {
    hash_uniform(seed, step, index) >= p
}

/// Scale applied to kept elements, computed once in f32 so CPU and GPU multiply by the same value.
pub fn dropout_scale(p: f32) -> f32 {
    1.0 / (1.0 - p)
}
