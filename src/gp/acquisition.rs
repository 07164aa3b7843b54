//! Log expected improvement, computed so that it stays finite and accurate far
//! from the incumbent, where plain EI underflows to zero and gives no gradient.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// Below this z the asymptotic series replaces the erfc-based form, whose
/// `1 - t*Phi/phi` cancels catastrophically for large `t = -z`.
const ASYMPTOTIC_BELOW: f64 = -12.0;
/// Smallest latent standard deviation considered, to keep z finite.
const MIN_SIGMA: f64 = 1e-12;

fn ln_phi(z: f64) -> f64 {
    -0.5 * z * z - 0.5 * (2.0 * PI).ln()
}

/// `ln h(z)` with `h(z) = z Phi(z) + phi(z)`, and `d ln h / dz = Phi(z) / h(z)`.
pub(crate) fn log_h(z: f64) -> (f64, f64) {
    if z > -1.0 {
        let cdf = 0.5 * libm::erfc(-z * FRAC_1_SQRT_2);
        let h = z * cdf + ln_phi(z).exp();
        (h.ln(), cdf / h)
    } else if z > ASYMPTOTIC_BELOW {
        let q = mills(z);
        let rest = 1.0 + z * q;
        (ln_phi(z) + rest.ln(), q / rest)
    } else {
        // 1 - t q(t) = sum_{k>=1} (-1)^(k+1) (2k-1)!! / t^(2k), asymptotic in 1/t^2.
        let inv_t2 = 1.0 / (z * z);
        let (mut term, mut rest) = (1.0, 0.0);
        for k in 1..=10 {
            term *= (2 * k - 1) as f64 * inv_t2 * if k == 1 { 1.0 } else { -1.0 };
            rest += term;
        }
        let q = (1.0 - rest) / -z;
        (ln_phi(z) + rest.ln(), q / rest)
    }
}

/// `ln Phi(z)` and its derivative `phi(z) / Phi(z)`, finite far into the lower tail (where
/// Phi underflows): the log probability that a constraint is met.
pub(crate) fn log_cdf(z: f64) -> (f64, f64) {
    if z > -1.0 {
        let cdf = 0.5 * libm::erfc(-z * FRAC_1_SQRT_2);
        (cdf.ln(), (ln_phi(z) - cdf.ln()).exp())
    } else {
        let q = mills(z);
        (ln_phi(z) + q.ln(), 1.0 / q)
    }
}

/// The Mills ratio `Phi(z) / phi(z)` for `z <= -1`.
fn mills(z: f64) -> f64 {
    if z > ASYMPTOTIC_BELOW {
        let x = -z * FRAC_1_SQRT_2;
        0.5 * libm::erfc(x) * (x * x).exp() * (2.0 * PI).sqrt()
    } else {
        // (1/t) sum_{k>=0} (-1)^k (2k-1)!! / t^(2k), asymptotic in 1/t^2, t = -z.
        let inv_t2 = 1.0 / (z * z);
        let (mut term, mut sum) = (1.0, 1.0);
        for k in 1..=10 {
            term *= -((2 * k - 1) as f64) * inv_t2;
            sum += term;
        }
        sum / -z
    }
}

/// Log EI for minimization at a point with latent mean `mu` and variance `var`,
/// against incumbent value `best`.
pub(crate) fn log_ei(mu: f64, var: f64, best: f64) -> f64 {
    let sigma = var.sqrt().max(MIN_SIGMA);
    log_h((best - mu) / sigma).0 + sigma.ln()
}

/// Log EI and its gradient, given the gradients of `mu` and `var`.
pub(crate) fn log_ei_with_grad(mu: f64, var: f64, dmu: &[f64], dvar: &[f64], best: f64) -> (f64, Vec<f64>) {
    let sigma = var.sqrt().max(MIN_SIGMA);
    let z = (best - mu) / sigma;
    let (lh, dlh) = log_h(z);
    // d ln sigma = dvar / (2 var); dz = -dmu / sigma - z d ln sigma.
    let grad = dmu
        .iter()
        .zip(dvar)
        .map(|(dm, dv)| {
            let dls = dv / (2.0 * sigma * sigma);
            dls + dlh * (-dm / sigma - z * dls)
        })
        .collect();
    (lh + sigma.ln(), grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_log_h(z: f64) -> f64 {
        let cdf = 0.5 * libm::erfc(-z * FRAC_1_SQRT_2);
        (z * cdf + ln_phi(z).exp()).ln()
    }

    #[test]
    fn matches_naive_formula_where_both_are_valid() {
        for i in 0..=100 {
            let z = -6.0 + 0.1 * i as f64;
            let (a, b) = (log_h(z).0, naive_log_h(z));
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "z={z}: {a} vs {b}");
        }
    }

    #[test]
    fn stays_finite_and_smooth_far_below() {
        let (v, g) = log_h(-40.0);
        assert!(v.is_finite() && g.is_finite());
        // ln h(z) ~ ln phi(z) - 2 ln|z| for large |z|.
        assert!((v - (ln_phi(-40.0) - 2.0 * 40f64.ln())).abs() < 1e-2);
        assert!((g - 40.0).abs() < 1.0);
        for z in [-1.0, ASYMPTOTIC_BELOW] {
            let (lo, hi) = (log_h(z - 1e-9), log_h(z + 1e-9));
            assert!((lo.0 - hi.0).abs() < 1e-7 && (lo.1 - hi.1).abs() < 1e-5, "jump at {z}");
        }
        assert!(log_ei(0.0, 1e-30, 5.0).is_finite() && log_ei(5.0, 1e-30, 0.0).is_finite());
    }

    #[test]
    fn log_cdf_is_accurate_and_smooth_into_the_tail() {
        for i in 0..=80 {
            let z = -30.0 + 0.5 * i as f64;
            let (v, g) = log_cdf(z);
            let naive = (0.5 * libm::erfc(-z * FRAC_1_SQRT_2)).ln();
            assert!((v - naive).abs() < 1e-9 * (1.0 + naive.abs()), "z={z}: {v} vs {naive}");
            let h = 1e-6;
            let fd = (log_cdf(z + h).0 - log_cdf(z - h).0) / (2.0 * h);
            assert!((fd - g).abs() < 1e-4 * (1.0 + g.abs()), "z={z}: {fd} vs {g}");
        }
        let (v, g) = log_cdf(-60.0);
        assert!(v.is_finite() && (g - 60.0).abs() < 0.1, "{v} {g}");
    }

    #[test]
    fn derivative_matches_finite_difference() {
        for z in [-30.0, -8.0, -2.0, 0.0, 3.0] {
            let h = 1e-6;
            let fd = (log_h(z + h).0 - log_h(z - h).0) / (2.0 * h);
            assert!((fd - log_h(z).1).abs() < 1e-4 * (1.0 + fd.abs()), "z={z}");
        }
    }
}
