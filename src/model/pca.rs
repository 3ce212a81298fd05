//! PCA as a fixed input stage (the paper's MNIST setting projects the pixels to 70 dimensions).
//! Fitted once on the training split after normalization, stored in the checkpoint beside the
//! normalizer, and applied on the GPU as one GEMM before the first layer:
//! `y = (x − mean)·Wᵀ = x·Wᵀ + b` with `b = −W·mean`, where the rows of `W` (`[k, d]`) are the
//! covariance's leading eigenvectors. No gradient reaches it and nothing updates it.
//!
//! The covariance `XcᵀXc/(n − 1)` of the centred inputs is the project's GEMM on the GPU; its
//! symmetric eigendecomposition is nalgebra's (f64). Components are ordered by decreasing
//! eigenvalue, each signed so that its largest-magnitude entry is positive (a fit is reproducible
//! bit for bit on one adapter).

use crate::gpu::{Gpu, GpuError};
use crate::kernels::{gemm, Epilogue};
use crate::shapes::{GemmShape, Trans};

/// The largest input a PCA stage takes: its covariance `[d, d]` must fit one 128 MiB binding.
pub const MAX_INPUT: usize = 5792;

/// A fitted projection of `d` inputs to `k` components.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    pub k: usize,
    pub d: usize,
    /// The training inputs' mean, `[d]`.
    pub mean: Vec<f32>,
    /// Orthonormal rows, `[k, d]` row-major.
    pub components: Vec<f32>,
}

impl Pca {
    /// The bias of the projection GEMM, `b = −W·mean` (`[k]`, summed in f64).
    pub fn bias(&self) -> Vec<f32> {
        (0..self.k)
            .map(|r| {
                let w = &self.components[r * self.d..(r + 1) * self.d];
                -w.iter().zip(&self.mean).map(|(&a, &m)| a as f64 * m as f64).sum::<f64>() as f32
            })
            .collect()
    }

    /// Checks the sizes of a stored projection (from a checkpoint): `what` names the file.
    pub fn check(&self, what: &str) -> Result<(), String> {
        if self.mean.len() != self.d
            || self.components.len() != self.k * self.d
            || self.k == 0
            || self.k > self.d
        {
            return Err(format!(
                "{what}: a PCA of {} components over {} inputs needs a mean of {} and components of {} values, \
                 found {} and {}",
                self.k,
                self.d,
                self.d,
                self.k * self.d,
                self.mean.len(),
                self.components.len()
            ));
        }
        if self.mean.iter().chain(&self.components).any(|v| !v.is_finite()) {
            return Err(format!("{what}: the PCA holds a non-finite value"));
        }
        Ok(())
    }

    /// Fits `k` components to the `n` inputs of `d` values in `x` (row-major): the covariance on
    /// the GPU, the eigendecomposition on the CPU. Needs `2 <= n` and `1 <= k <= d <= MAX_INPUT`.
    /// Returns the stage and the fraction of the variance its components keep.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit(gpu: &Gpu, x: &[f32], n: usize, d: usize, k: usize) -> Result<(Pca, f64), GpuError> {
        pollster::block_on(Self::fit_async(gpu, x, n, d, k))
    }

    /// [`Pca::fit`], awaiting the read-back (the one path of both targets).
    pub async fn fit_async(
        gpu: &Gpu,
        x: &[f32],
        n: usize,
        d: usize,
        k: usize,
    ) -> Result<(Pca, f64), GpuError> {
        if n < 2 || d == 0 || d > MAX_INPUT || k == 0 || k > d || x.len() != n * d {
            return Err(GpuError::shape(
                "pca",
                format!(
                    "{n} inputs of {d} values to {k} components (need 2+ inputs, 1 <= k <= d <= {MAX_INPUT})"
                ),
            ));
        }
        let mut mean = vec![0.0f64; d];
        for row in x.chunks(d) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mean: Vec<f32> = mean.into_iter().map(|m| m as f32).collect();
        let centred: Vec<f32> =
            x.chunks(d).flat_map(|row| row.iter().zip(&mean).map(|(&v, &m)| v - m)).collect();
        let cov = covariance_async(gpu, &centred, n, d).await?;
        let (components, values) = leading_eigenvectors(&cov, d, k);
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        let kept: f64 = values[..k].iter().map(|v| v.max(0.0)).sum();
        Ok((Pca { k, d, mean, components }, if total > 0.0 { kept / total } else { 1.0 }))
    }

    /// The projection of `rows` inputs on the CPU, in f64: the reference for the GPU stage.
    pub fn project_reference(&self, x: &[f64], rows: usize) -> Vec<f64> {
        let mut out = vec![0.0; rows * self.k];
        for r in 0..rows {
            let xi = &x[r * self.d..(r + 1) * self.d];
            for c in 0..self.k {
                let w = &self.components[c * self.d..(c + 1) * self.d];
                out[r * self.k + c] =
                    xi.iter().zip(w).zip(&self.mean).map(|((&v, &a), &m)| (v - m as f64) * a as f64).sum();
            }
        }
        out
    }
}

/// `XcᵀXc/(n − 1)` of `n` centred rows of `d` values, `[d, d]`, by the GEMM kernel (TN) on the
/// GPU, in chunks of rows that fit one binding (each chunk's product accumulated onto the last).
#[cfg(not(target_arch = "wasm32"))]
pub fn covariance(gpu: &Gpu, centred: &[f32], n: usize, d: usize) -> Result<Vec<f64>, GpuError> {
    pollster::block_on(covariance_async(gpu, centred, n, d))
}

/// [`covariance`], awaiting the read-back.
pub async fn covariance_async(gpu: &Gpu, centred: &[f32], n: usize, d: usize) -> Result<Vec<f64>, GpuError> {
    let c = gpu.empty(&[d * d], crate::gpu::DType::F32)?;
    let limit = gpu.limits.max_storage_buffer_binding_size.min(gpu.limits.max_buffer_size) as usize;
    let chunk = (limit / (4 * d)).clamp(1, n);
    let mut start = 0;
    while start < n {
        let rows = chunk.min(n - start);
        let xt = gpu.upload(&centred[start * d..(start + rows) * d], &[rows, d])?;
        let s = GemmShape::new(d, d, rows, Trans::TN);
        let ep = Epilogue { bias: None, accumulate: start > 0, relu: false };
        let ops = gemm::gemm(gpu, &s, &xt, &xt, &c, &ep, gemm::GemmVariant::DEFAULT)?;
        gpu.run(&ops.iter().collect::<Vec<_>>())?;
        start += rows;
    }
    let raw = gpu.download_async::<f32>(&c).await?;
    // Symmetrized: the kernel's two triangles are the same sums in other orders.
    let mut cov = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            cov[i * d + j] = 0.5 * (raw[i * d + j] as f64 + raw[j * d + i] as f64) / (n - 1) as f64;
        }
    }
    Ok(cov)
}

/// The `k` eigenvectors of the symmetric `cov` (`[d, d]`) with the largest eigenvalues, as rows
/// `[k, d]`, each signed so that its largest-magnitude entry is positive; and every eigenvalue,
/// largest first.
pub fn leading_eigenvectors(cov: &[f64], d: usize, k: usize) -> (Vec<f32>, Vec<f64>) {
    let m = nalgebra::DMatrix::from_row_slice(d, d, cov);
    let eig = nalgebra::SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]).then(a.cmp(&b)));
    let mut out = Vec::with_capacity(k * d);
    for &c in &order[..k] {
        let v = eig.eigenvectors.column(c);
        let big = (0..d).fold(0, |b, i| if v[i].abs() > v[b].abs() { i } else { b });
        let sign = if v[big] < 0.0 { -1.0 } else { 1.0 };
        out.extend((0..d).map(|i| (sign * v[i]) as f32));
    }
    (out, order.iter().map(|&c| eig.eigenvalues[c]).collect())
}
