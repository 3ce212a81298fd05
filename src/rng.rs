//! The crate's one source of randomness: a small seeded generator (splitmix64) with portable
//! arithmetic, so that every random number dlsvm draws (initial weights, data order, augmentation,
//! fold splits, synthetic data, test inputs) is a pure function of a seed and identical on every
//! platform. Also seed mixing ([`mix`], [`hash3`]) and `sin`/`cos`/`ln` built from `+ - * /` only
//! (the C library's transcendental functions may differ in the last bit between platforms).
//!
//! The dropout masks on the GPU use their own counter-based hash ([`crate::shapes::hash_u32`]),
//! which a shader can compute per element.

/// splitmix64 finalizer: a strong 64-bit mixing function.
fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mixes two 64-bit values into one seed (order matters).
pub fn mix(a: u64, b: u64) -> u64 {
    fmix(fmix(a ^ 0x6a09_e667_f3bc_c909).wrapping_add(b.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// Seed for item `c` of item `b` under seed `a` (e.g. `hash3(seed, step, position)`).
pub fn hash3(a: u64, b: u64, c: u64) -> u64 {
    mix(mix(a, b), c)
}

/// A small seeded generator (splitmix64) with a Gaussian built from portable arithmetic.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: fmix(seed ^ 0x2545_f491_4f6c_dd1d), spare: None }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        fmix(self.state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n), without modulo bias worth speaking of (n << 2^64); 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller; the second value of each pair is kept for the next call).
    pub fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        let r = (-2.0 * ln(u1)).sqrt();
        let (s, c) = sin_cos(2.0 * std::f64::consts::PI * u2);
        self.spare = Some(r * s);
        r * c
    }

    /// `len` values uniform in [-1, 1).
    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        self.vec_scaled(len, 1.0)
    }

    /// `len` values uniform in [-scale, scale).
    pub fn vec_scaled(&mut self, len: usize, scale: f64) -> Vec<f32> {
        (0..len).map(|_| self.range(-scale, scale) as f32).collect()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// `(sin x, cos x)` from a polynomial after reduction by multiples of pi/2; within about 1e-15
/// (plus the reduction's error, ~1e-16 |x|) and identical on every platform.
pub fn sin_cos(x: f64) -> (f64, f64) {
    use std::f64::consts::FRAC_PI_2;
    let k = (x * (1.0 / FRAC_PI_2)).round();
    let r = x - k * FRAC_PI_2;
    let r2 = r * r;
    // Taylor series through r^15 (sin) and r^16 (cos): below 1e-15 for |r| <= pi/4.
    const S: [f64; 8] = [
        1.0,
        -1.0 / 6.0,
        1.0 / 120.0,
        -1.0 / 5040.0,
        1.0 / 362_880.0,
        -1.0 / 39_916_800.0,
        1.0 / 6_227_020_800.0,
        -1.0 / 1_307_674_368_000.0,
    ];
    const C: [f64; 9] = [
        1.0,
        -1.0 / 2.0,
        1.0 / 24.0,
        -1.0 / 720.0,
        1.0 / 40_320.0,
        -1.0 / 3_628_800.0,
        1.0 / 479_001_600.0,
        -1.0 / 87_178_291_200.0,
        1.0 / 20_922_789_888_000.0,
    ];
    let s = r * S.iter().rev().fold(0.0, |acc, &c| acc * r2 + c);
    let c = C.iter().rev().fold(0.0, |acc, &c| acc * r2 + c);
    match (k as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// Natural logarithm of a positive, normal `x` (atanh series on the mantissa).
pub fn ln(x: f64) -> f64 {
    debug_assert!(x > 0.0 && x.is_normal());
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    for k in 0..14 {
        sum += term / (2 * k + 1) as f64;
        term *= z2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}
