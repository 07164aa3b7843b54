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
    /// Whether y was log-warped before standardizing (see `suggest::warp`): chosen at each
    /// fit by the evidence, reused with these parameters between fits.
    pub log_warp: bool,
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
            log_warp: true,
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

/// Unit-variance Matérn-5/2 correlation at scaled squared distance `r2`, together with
/// `g = -dm/d(r2)`, which every derivative of the kernel is built from.
#[inline(always)]
pub(crate) fn matern52(r2: f64) -> (f64, f64) {
    let r = r2.sqrt();
    let e = exp_nonpositive(-SQRT5 * r);
    let m = (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
    let g = 5.0 / 6.0 * (1.0 + SQRT5 * r) * e;
    (m, g)
}

/// `e^x` for `x <= 0` (larger `x` are not supported), within a few ulps of `f64::exp`.
///
/// Written without branches or library calls so that loops over many kernel values
/// vectorize: glibc's `exp` is a scalar call and was the largest single cost of a
/// suggestion. `x = k ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by its Taylor series to
/// degree 13 (truncation error below 1e-17), and `2^k` built in the exponent bits.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f64) -> f64 {
    // Adding 1.5 * 2^52 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // ln 2 split so that `k * LN2_HI` is exact for every k reached here (fdlibm's split).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // Below this e^x is under 2^-1021; clamping keeps 2^k a normal number.
    let x = x.max(-708.0);
    let t = x * std::f64::consts::LOG2_E + ROUND;
    let k = t - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    for inv_fact in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + inv_fact;
    }
    let k_int = (t.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    p * f64::from_bits(((k_int + 1023) << 52) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpositive_matches_std() {
        let mut x = 0.0;
        while x > -720.0 {
            let (ours, std) = (exp_nonpositive(x), x.exp());
            let err = if std > 0.0 { ((ours - std) / std).abs() } else { ours };
            assert!(err < 4e-16 || (x < -708.0 && ours < 1e-307), "x = {x}: {ours} vs {std}");
            x -= 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-0.0), 1.0);
    }

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
        let p = KernelParams { lengthscales: vec![0.3, 2.0], signal_var: 1.5, noise_var: 1e-3, log_warp: true };
        let q = KernelParams::from_log(&p.to_log());
        assert!((q.noise_var - p.noise_var).abs() < 1e-12 && (q.lengthscales[1] - 2.0).abs() < 1e-12);
    }
}
