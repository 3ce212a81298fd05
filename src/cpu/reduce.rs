//! Reductions: total sum, per-row argmax, accuracy count and per-channel sums.

use super::{check_len, Real};

/// Sum of all elements, accumulated and returned in `f64`.
///
/// Shapes: `x` `[len]`.
pub fn sum<T: Real>(x: &[T]) -> f64 {
    x.iter().map(|v| v.to_f64()).sum()
}

/// Index of the first maximum of each row (later elements win only when strictly greater).
///
/// Shapes: `x` `[n, k]` row-major, `out` `[n]` (overwritten).
pub fn argmax_rows<T: Real>(n: usize, k: usize, x: &[T], out: &mut [i32]) {
    assert!(k >= 1, "argmax_rows: rows must have at least one element");
    assert!(k <= i32::MAX as usize, "argmax_rows: {k} columns do not fit i32 indices");
    check_len("argmax_rows x", x.len(), n * k);
    check_len("argmax_rows out", out.len(), n);
    for (r, o) in out.iter_mut().enumerate() {
        let row = &x[r * k..(r + 1) * k];
        let mut best = 0;
        for (j, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = j;
            }
        }
        *o = best as i32;
    }
}

/// Number of rows with a label `≥ 0` whose prediction equals it (negative labels are masked).
///
/// Shapes: `pred`, `labels` `[n]`.
pub fn count_correct(pred: &[i32], labels: &[i32]) -> u32 {
    check_len("count_correct labels", labels.len(), pred.len());
    pred.iter().zip(labels).filter(|&(&p, &l)| l >= 0 && p == l).count() as u32
}

/// Per-channel sum: `out[ch] = Σ_{o<outer, i<inner} x[(o·c + ch)·inner + i]` (+ old `out` when
/// `accumulate`). The bias gradient: conv `(outer=n, c=cout, inner=oh·ow)`, fully connected
/// `(outer=batch, c=out features, inner=1)`.
///
/// Shapes: `x` `[outer, c, inner]`, `out` `[c]`.
pub fn channel_sum<T: Real>(outer: usize, c: usize, inner: usize, x: &[T], out: &mut [T], accumulate: bool) {
    check_len("channel_sum x", x.len(), outer * c * inner);
    check_len("channel_sum out", out.len(), c);
    for (ch, out_v) in out.iter_mut().enumerate() {
        let mut acc = 0.0f64;
        for o in 0..outer {
            for i in 0..inner {
                acc += x[(o * c + ch) * inner + i].to_f64();
            }
        }
        if accumulate {
            acc += out_v.to_f64();
        }
        *out_v = T::from_f64(acc);
    }
}
