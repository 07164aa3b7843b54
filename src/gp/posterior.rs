//! Exact GP posterior by Cholesky factorization, with predictions of the latent
//! function (mean, variance and their gradients in x).

use super::kernel::{matern52, KernelParams};
use super::linalg::{cholesky_with_jitter, dot, packed_factor_inverse, packed_row};
use super::GpError;
use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use std::cell::OnceCell;

/// A fitted posterior over latent f given standardized observations.
pub(crate) struct Posterior {
    points: Points,
    d: usize,
    params: KernelParams,
    inv_l2: Vec<f64>,
    chol: Cholesky<f64, Dyn>,
    /// `M = L^-1` for the Cholesky factor `L` of `K + noise I`, packed by rows, and the same
    /// dense (zeros above the diagonal) for batched products: a prediction's variance is
    /// `s2 - |M k|^2`. Kept explicitly, since a suggestion predicts at hundreds of points and
    /// products with `M` run far faster than a triangular solve per point; built on the first
    /// variance asked for, since a posterior that only believes pending points needs none
    /// (it costs as much as the factorization).
    factor_inv: OnceCell<(Vec<f64>, DMatrix<f64>)>,
    /// `K^-1 y`.
    alpha: DVector<f64>,
}

/// Training points stored dimension-major: coordinate `c` of point `i` at `c * n + i`, so
/// that a query's distances to every point build up in loops that vectorize.
struct Points {
    xt: Vec<f64>,
    n: usize,
}

impl Points {
    /// From row-major points with `d` coordinates each.
    fn new(x: &[f64], d: usize) -> Self {
        let n = x.len() / d;
        Points { xt: (0..d * n).map(|a| x[(a % n) * d + a / n]).collect(), n }
    }

    /// Coordinate `c` of every training point.
    fn coords(&self, c: usize) -> &[f64] {
        &self.xt[c * self.n..(c + 1) * self.n]
    }

    /// Kernel values `k_i = s2 m(r2_i)` between `q` and the first `k.len()` points, and with
    /// `slope` also `-2 s2 g(r2_i)`, from which the gradients in `q` are built.
    ///
    /// Most of a suggestion's time is spent here. The loops vectorize; where the CPU has
    /// AVX2 they run twice as wide. No FMA, so both paths round alike and a suggestion
    /// does not depend on the machine.
    fn kernel_row(&self, q: &[f64], inv_l2: &[f64], s2: f64, k: &mut [f64], slope: Option<&mut [f64]>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.kernel_row_avx2(q, inv_l2, s2, k, slope) };
        }
        self.kernel_row_portable(q, inv_l2, s2, k, slope);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn kernel_row_avx2(&self, q: &[f64], inv_l2: &[f64], s2: f64, k: &mut [f64], slope: Option<&mut [f64]>) {
        self.kernel_row_portable(q, inv_l2, s2, k, slope);
    }

    #[inline(always)]
    fn kernel_row_portable(&self, q: &[f64], inv_l2: &[f64], s2: f64, k: &mut [f64], slope: Option<&mut [f64]>) {
        k.fill(0.0);
        for (c, (&qc, &w)) in q.iter().zip(inv_l2).enumerate() {
            for (r2, xc) in k.iter_mut().zip(self.coords(c)) {
                let diff = qc - xc;
                *r2 += diff * diff * w;
            }
        }
        match slope {
            Some(slope) => {
                for (kv, sv) in k.iter_mut().zip(slope) {
                    let (m, g) = matern52(*kv);
                    *kv = s2 * m;
                    *sv = -2.0 * s2 * g;
                }
            }
            None => k.iter_mut().for_each(|kv| *kv = s2 * matern52(*kv).0),
        }
    }
}

impl Posterior {
    /// Conditions the GP on points `x` (row-major, `d` columns) with values `y`.
    pub(crate) fn new(x: Vec<f64>, d: usize, y: &[f64], params: KernelParams) -> Result<Self, GpError> {
        let n = y.len();
        let points = Points::new(&x, d);
        let inv_l2 = params.inv_sq_lengthscales();
        let s2 = params.signal_var;
        // The lower triangle row by row (the factorization reads only that), each row one
        // vectorized kernel evaluation against the points before it.
        let mut k = DMatrix::zeros(n, n);
        let mut row = vec![0.0; n];
        for i in 0..n {
            points.kernel_row(&x[i * d..(i + 1) * d], &inv_l2, s2, &mut row[..i], None);
            for (j, v) in row[..i].iter().enumerate() {
                k[(i, j)] = *v;
            }
            k[(i, i)] = s2;
        }
        let chol = cholesky_with_jitter(&k, params.noise_var).ok_or(GpError::NotPositiveDefinite)?;
        let alpha = chol.solve(&DVector::from_column_slice(y));
        Ok(Posterior { points, d, params, inv_l2, chol, factor_inv: OnceCell::new(), alpha })
    }

    /// `M` packed by rows and dense (see `factor_inv`).
    fn factor_inv(&self) -> &(Vec<f64>, DMatrix<f64>) {
        self.factor_inv.get_or_init(|| {
            let packed = packed_factor_inverse(&self.chol);
            let n = self.n();
            let dense = DMatrix::from_fn(n, n, |i, j| if j <= i { packed[packed_row(i) + j] } else { 0.0 });
            (packed, dense)
        })
    }

    pub(crate) fn params(&self) -> &KernelParams {
        &self.params
    }

    fn n(&self) -> usize {
        self.alpha.len()
    }

    fn kernel_row(&self, q: &[f64], k: &mut [f64], slope: Option<&mut [f64]>) {
        self.points.kernel_row(q, &self.inv_l2, self.params.signal_var, k, slope);
    }

    /// Kernel columns between the training points and each of many points (row-major, `d`
    /// columns), and the latent means there.
    fn kernel_columns(&self, q: &[f64]) -> (DMatrix<f64>, DVector<f64>) {
        let (n, m) = (self.n(), q.len() / self.d);
        let mut ks = DMatrix::zeros(n, m);
        for c in 0..m {
            self.kernel_row(&q[c * self.d..(c + 1) * self.d], ks.column_mut(c).as_mut_slice(), None);
        }
        let mean = ks.tr_mul(&self.alpha);
        (ks, mean)
    }

    /// Latent means at many points (row-major, `d` columns).
    pub(crate) fn predict_means(&self, q: &[f64]) -> Vec<f64> {
        self.kernel_columns(q).1.iter().copied().collect()
    }

    /// Latent mean and variance at many points (row-major, `d` columns).
    /// Batched so that `M k` is one matrix product for all of them.
    pub(crate) fn predict_batch(&self, q: &[f64]) -> Vec<(f64, f64)> {
        let (ks, mean) = self.kernel_columns(q);
        let s2 = self.params.signal_var;
        let v = &self.factor_inv().1 * &ks;
        (0..ks.ncols()).map(|c| (mean[c], (s2 - v.column(c).norm_squared()).max(0.0))).collect()
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
        let (mut k, mut slope) = (vec![0.0; n], vec![0.0; n]);
        // dk_i/dq_c = slope_i (q_c - x_ic) / l_c^2.
        self.kernel_row(q, &mut k, Some(&mut slope));
        let mean = dot(&k, self.alpha.as_slice());
        // v = M k, then w = M^T v = K^-1 k, both on M's packed rows.
        let packed = &self.factor_inv().0;
        let row = |i: usize| &packed[packed_row(i)..packed_row(i) + i + 1];
        let v: Vec<f64> = (0..n).map(|i| dot(row(i), &k[..=i])).collect();
        let var = (s2 - dot(&v, &v)).max(0.0);
        let mut w = vec![0.0; n];
        for (i, vi) in v.iter().enumerate() {
            w[..=i].iter_mut().zip(row(i)).for_each(|(wj, mij)| *wj += vi * mij);
        }
        // d mean/dq_c = sum_i a_i (q_c - x_ic) / l_c^2 with a_i = alpha_i slope_i; likewise
        // the variance with b_i = -2 w_i slope_i.
        let a: Vec<f64> = self.alpha.iter().zip(&slope).map(|(al, s)| al * s).collect();
        let b: Vec<f64> = w.iter().zip(&slope).map(|(wi, s)| -2.0 * wi * s).collect();
        let grad = |coef: &[f64], c: usize| {
            let sum: f64 = coef.iter().zip(self.points.coords(c)).map(|(k, x)| k * (q[c] - x)).sum();
            sum * self.inv_l2[c]
        };
        let dmean = (0..d).map(|c| grad(&a, c)).collect();
        let dvar = (0..d).map(|c| grad(&b, c)).collect();
        (mean, var, dmean, dvar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let x = vec![0.1, 0.2, 0.8, 0.4, 0.5, 0.9, 0.3, 0.7];
        let params = KernelParams { lengthscales: vec![0.4, 0.6], signal_var: 1.3, noise_var: 1e-4, log_warp: false };
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
