//! Exact GP posterior by Cholesky factorization, with predictions of the latent
//! function (mean, variance and their gradients in x).

use super::kernel::{matern52, scaled_sq_dist, KernelParams};
use super::linalg::cholesky_with_jitter;
use super::GpError;
use nalgebra::{Cholesky, DMatrix, DVector, Dyn};

/// A fitted posterior over latent f given standardized observations.
pub(crate) struct Posterior {
    /// Training points, row-major `n x d`.
    x: Vec<f64>,
    d: usize,
    params: KernelParams,
    inv_l2: Vec<f64>,
    chol: Cholesky<f64, Dyn>,
    /// `K^-1 y`.
    alpha: DVector<f64>,
}

/// Kernel matrix of the rows of `x` (row-major, `d` columns), without noise.
pub(crate) fn kernel_matrix(x: &[f64], d: usize, params: &KernelParams) -> DMatrix<f64> {
    let n = x.len() / d;
    let inv_l2 = params.inv_sq_lengthscales();
    let mut k = DMatrix::zeros(n, n);
    for i in 0..n {
        k[(i, i)] = params.signal_var;
        for j in 0..i {
            let r2 = scaled_sq_dist(&x[i * d..(i + 1) * d], &x[j * d..(j + 1) * d], &inv_l2);
            let v = params.signal_var * matern52(r2).0;
            k[(i, j)] = v;
            k[(j, i)] = v;
        }
    }
    k
}

impl Posterior {
    /// Conditions the GP on points `x` (row-major, `d` columns) with values `y`.
    pub(crate) fn new(x: Vec<f64>, d: usize, y: &[f64], params: KernelParams) -> Result<Self, GpError> {
        let k = kernel_matrix(&x, d, &params);
        let chol = cholesky_with_jitter(&k, params.noise_var).ok_or(GpError::NotPositiveDefinite)?;
        let alpha = chol.solve(&DVector::from_column_slice(y));
        let inv_l2 = params.inv_sq_lengthscales();
        Ok(Posterior { x, d, params, inv_l2, chol, alpha })
    }

    pub(crate) fn params(&self) -> &KernelParams {
        &self.params
    }

    fn n(&self) -> usize {
        self.alpha.len()
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// Latent mean and variance at many points (row-major, `d` columns).
    /// Batched so the triangular solve runs over a whole matrix at once.
    pub(crate) fn predict_batch(&self, q: &[f64]) -> Vec<(f64, f64)> {
        let (n, m) = (self.n(), q.len() / self.d);
        let s2 = self.params.signal_var;
        let mut ks = DMatrix::zeros(n, m);
        for c in 0..m {
            let qc = &q[c * self.d..(c + 1) * self.d];
            for i in 0..n {
                ks[(i, c)] = s2 * matern52(scaled_sq_dist(qc, self.row(i), &self.inv_l2)).0;
            }
        }
        let mean = ks.tr_mul(&self.alpha);
        self.chol.l_dirty().solve_lower_triangular_mut(&mut ks);
        (0..m).map(|c| (mean[c], (s2 - ks.column(c).norm_squared()).max(0.0))).collect()
    }

    /// Latent mean and variance at one point.
    #[cfg(test)]
    pub(crate) fn predict(&self, q: &[f64]) -> (f64, f64) {
        self.predict_batch(q)[0]
    }

    /// Latent mean, variance and their gradients with respect to `q`.
    pub(crate) fn predict_with_grad(&self, q: &[f64]) -> (f64, f64, Vec<f64>, Vec<f64>) {
        let (n, d) = (self.n(), self.d);
        let s2 = self.params.signal_var;
        let mut k = DVector::zeros(n);
        // dk_i/dq_c = -2 s2 g_i (q_c - x_ic) / l_c^2; store s2 * g_i and form the sums below.
        let mut slope = vec![0.0; n];
        for i in 0..n {
            let (m, g) = matern52(scaled_sq_dist(q, self.row(i), &self.inv_l2));
            k[i] = s2 * m;
            slope[i] = -2.0 * s2 * g;
        }
        let mean = k.dot(&self.alpha);
        let v = self.chol.l_dirty().solve_lower_triangular(&k).expect("nonsingular factor");
        let var = (s2 - v.norm_squared()).max(0.0);
        let w = self.chol.l_dirty().tr_solve_lower_triangular(&v).expect("nonsingular factor");
        let mut dmean = vec![0.0; d];
        let mut dvar = vec![0.0; d];
        for i in 0..n {
            let (a, b) = (self.alpha[i] * slope[i], -2.0 * w[i] * slope[i]);
            for (c, xc) in self.row(i).iter().enumerate() {
                let diff = (q[c] - xc) * self.inv_l2[c];
                dmean[c] += a * diff;
                dvar[c] += b * diff;
            }
        }
        (mean, var, dmean, dvar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let x = vec![0.1, 0.2, 0.8, 0.4, 0.5, 0.9, 0.3, 0.7];
        let params = KernelParams { lengthscales: vec![0.4, 0.6], signal_var: 1.3, noise_var: 1e-4 };
        let post = Posterior::new(x, 2, &[0.5, -1.0, 0.3, 1.2], params).unwrap();
        let q = [0.45, 0.35];
        let (_, _, dm, dv) = post.predict_with_grad(&q);
        for c in 0..2 {
            let h = 1e-6;
            let (mut a, mut b) = (q, q);
            a[c] += h;
            b[c] -= h;
            let ((ma, va), (mb, vb)) = (post.predict(&a), post.predict(&b));
            assert!(((ma - mb) / (2.0 * h) - dm[c]).abs() < 1e-5);
            assert!(((va - vb) / (2.0 * h) - dv[c]).abs() < 1e-5);
        }
    }
}
