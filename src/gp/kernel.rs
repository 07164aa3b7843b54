//! Matérn-5/2 ARD kernel and its hyperparameters.

const SQRT5: f64 = 2.236_067_977_499_79;

/// Smallest noise variance the model may use (on standardized y). Low, because
/// on deterministic objectives the floor limits how precisely the optimum is
/// located (1e-6 was visibly worse on branin); the jittered Cholesky handles the
/// conditioning.
pub(crate) const NOISE_FLOOR: f64 = 1e-8;

/// Hyperparameters of the GP, on standardized y and unit-cube inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelParams {
    /// One lengthscale per encoded column.
    pub lengthscales: Vec<f64>,
    /// Prior variance of the latent function.
    pub signal_var: f64,
    /// Observation noise variance (at least `NOISE_FLOOR`).
    pub noise_var: f64,
}

impl KernelParams {
    /// Unconstrained vector `[ln l_1..ln l_d, ln s2, ln(noise - floor)]` that the fit optimizes.
    pub(crate) fn to_log(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.lengthscales.iter().map(|l| l.ln()).collect();
        t.push(self.signal_var.ln());
        t.push((self.noise_var - NOISE_FLOOR).max(1e-12).ln());
        t
    }

    /// Inverse of [`KernelParams::to_log`].
    pub(crate) fn from_log(theta: &[f64]) -> Self {
        let d = theta.len() - 2;
        KernelParams {
            lengthscales: theta[..d].iter().map(|t| t.exp()).collect(),
            signal_var: theta[d].exp(),
            noise_var: NOISE_FLOOR + theta[d + 1].exp(),
        }
    }

    /// `1 / l_c^2` per column, the form every kernel evaluation needs.
    pub(crate) fn inv_sq_lengthscales(&self) -> Vec<f64> {
        self.lengthscales.iter().map(|l| 1.0 / (l * l)).collect()
    }

    /// Whether every value is finite and positive.
    pub(crate) fn is_valid(&self) -> bool {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        self.lengthscales.iter().all(|l| ok(*l)) && ok(self.signal_var) && ok(self.noise_var)
    }
}

/// Scaled squared distance `sum_c (a_c - b_c)^2 / l_c^2`.
#[inline]
pub(crate) fn scaled_sq_dist(a: &[f64], b: &[f64], inv_l2: &[f64]) -> f64 {
    a.iter().zip(b).zip(inv_l2).map(|((x, y), w)| (x - y) * (x - y) * w).sum()
}

/// Unit-variance Matérn-5/2 correlation at scaled squared distance `r2`, together with
/// `g = -dm/d(r2)`, which every derivative of the kernel is built from.
#[inline]
pub(crate) fn matern52(r2: f64) -> (f64, f64) {
    let r = r2.sqrt();
    let e = (-SQRT5 * r).exp();
    let m = (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
    let g = 5.0 / 6.0 * (1.0 + SQRT5 * r) * e;
    (m, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_matches_finite_difference() {
        for r2 in [0.01, 0.3, 1.0, 4.0] {
            let h = 1e-6;
            let fd = (matern52(r2 + h).0 - matern52(r2 - h).0) / (2.0 * h);
            assert!((fd + matern52(r2).1).abs() < 1e-6, "r2={r2}");
        }
    }

    #[test]
    fn log_round_trip() {
        let p = KernelParams { lengthscales: vec![0.3, 2.0], signal_var: 1.5, noise_var: 1e-3 };
        let q = KernelParams::from_log(&p.to_log());
        assert!((q.noise_var - p.noise_var).abs() < 1e-12 && (q.lengthscales[1] - 2.0).abs() < 1e-12);
    }
}
