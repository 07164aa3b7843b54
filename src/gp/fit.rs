//! Hyperparameter fitting: maximum a posteriori estimate of the kernel
//! parameters (log marginal likelihood plus log priors), in log space, with
//! analytic gradients and L-BFGS.

use super::kernel::{matern52, KernelParams};
use super::lbfgs;
use super::linalg::{cholesky_with_jitter, dot, packed_inverse, packed_row};
use nalgebra::DVector;
use rand::rngs::StdRng;
use rand::Rng;

/// Most points the fit looks at; beyond this a random subset is used, since
/// each likelihood evaluation costs O(n^3). The posterior still uses all points.
/// 128 rather than 256 halved the multi-fidelity GP's time per proposal (two to four rows a
/// trial; `cargo bench --bench multifidelity`, final regret within the seeds' spread); 64 cost
/// regret on the noisy variants of `benches/samplers.rs` at 100 trials.
const MAX_FIT_POINTS: usize = 128;
/// Objective evaluations for a fit from the prior's centre and from a warm
/// start. The warm budget bounds the per-suggestion cost: with clustered
/// points late in a run, an unbounded warm fit took 20 to 50 evaluations.
const COLD_EVALS: u64 = 100;
const WARM_EVALS: u64 = 10;
/// Gradient norm at which the fit stops. The objective sums over all points, so
/// its gradient is large in absolute terms; 1e-4 kept warm fits polishing
/// digits that do not move the suggestion, at up to twice the time per suggestion.
const FIT_TOL_GRAD: f64 = 1e-2;
/// One warm-started fit in this many (at random) checks the prior's centre.
const CENTRE_CHECK_EVERY: u32 = 4;
/// Weight of the lengthscale prior `-(a / ils + a ils)` on each inverse squared
/// lengthscale `ils = 1 / l^2`: it peaks at `l = 1` and rules out both very short
/// and very long lengthscales without pulling hard in between. Its peak is the lever on
/// levy10: moved to 2, the median regret at trial 100 went from 5.8 to 4.1 (60 seeds), but
/// hartmann6 with noise and ackley5 got worse (README, Performance).
const ILS_PRIOR_WEIGHT: f64 = 0.1;
/// Spread of the log-normal prior on the signal variance (y is standardized, so centred on 1).
const SIGNAL_PRIOR_SD: f64 = 1.0;
/// The prior on the noise variance (of standardized y) is an even mixture of two beliefs:
/// "deterministic", an exponential with a steep rate (1000 against 10 helped levy10 and
/// rosenbrock4 at trial 50), and "noisy", a gamma with shape 1.1 and rate 30 (Optuna
/// GPSampler's noise prior), whose mass sits around a few hundredths. A noiseless objective
/// keeps the fit on the first (about 5 nats more prior there); seed-to-seed noise in a training
/// metric earns more likelihood than that and moves it to the second.
const NOISELESS_RATE: f64 = 1000.0;
const NOISY_SHAPE: f64 = 1.1;
const NOISY_RATE: f64 = 30.0;
/// Noise variance of the second cold start, in the noisy component's bulk.
const NOISY_START: f64 = 0.05;
/// Box for the log-parameters: keeps every evaluation finite and rules out runaway fits.
const LN_LS_RANGE: (f64, f64) = (-6.9, 6.9);
const LN_SIGNAL_RANGE: (f64, f64) = (-6.9, 6.9);
const LN_NOISE_RANGE: (f64, f64) = (-23.0, 2.3);

/// The prior's centre (its mode for the lengthscales): where a fit starts when
/// nothing better is known.
pub(crate) fn default_params(d: usize) -> KernelParams {
    KernelParams { lengthscales: vec![1.0; d], signal_var: 1.0, noise_var: 1e-3, log_warp: true }
}

/// Training data for the fit, with squared coordinate differences of every pair cached.
pub(crate) struct FitData {
    n: usize,
    d: usize,
    y: Vec<f64>,
    /// `(x_i,c - x_j,c)^2` for pairs `i > j`, dimension-major: pair `p` (in row order) of
    /// coordinate `c` at `c * pairs + p`, so the per-pair sums over coordinates vectorize.
    sq_diff: Vec<f64>,
}

impl FitData {
    pub(crate) fn new(x: &[f64], d: usize, y: &[f64]) -> Self {
        let n = y.len();
        let pairs = n * (n - 1) / 2;
        let mut sq_diff = vec![0.0; pairs * d];
        let mut p = 0;
        for i in 0..n {
            for j in 0..i {
                for c in 0..d {
                    let diff = x[i * d + c] - x[j * d + c];
                    sq_diff[c * pairs + p] = diff * diff;
                }
                p += 1;
            }
        }
        FitData { n, d, y: y.to_vec(), sq_diff }
    }

    fn pairs(&self) -> usize {
        self.n * (self.n - 1) / 2
    }

    fn sq_diff(&self, c: usize) -> &[f64] {
        let pairs = self.pairs();
        &self.sq_diff[c * pairs..(c + 1) * pairs]
    }

    /// Negative log posterior of `theta` (see [`KernelParams::to_log`]) and its gradient.
    pub(crate) fn objective(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let (n, d, pairs) = (self.n, self.d, self.pairs());
        let p = KernelParams::from_log(theta);
        let inv_l2 = p.inv_sq_lengthscales();
        let s2 = p.signal_var;
        // Each pair's scaled squared distance, then its correlation m and slope g.
        let mut m = vec![0.0; pairs];
        for (c, w) in inv_l2.iter().enumerate() {
            m.iter_mut().zip(self.sq_diff(c)).for_each(|(r2, sq)| *r2 += sq * w);
        }
        let mut g = vec![0.0; pairs];
        for (mp, gp) in m.iter_mut().zip(&mut g) {
            (*mp, *gp) = matern52(*mp);
        }
        let mut k = nalgebra::DMatrix::from_diagonal_element(n, n, s2);
        let mut pidx = 0;
        for i in 0..n {
            for j in 0..i {
                k[(i, j)] = s2 * m[pidx];
                k[(j, i)] = s2 * m[pidx];
                pidx += 1;
            }
        }
        let Some(chol) = cholesky_with_jitter(&k, p.noise_var) else {
            return (f64::INFINITY, vec![0.0; theta.len()]);
        };
        let alpha = chol.solve(&DVector::from_column_slice(&self.y));
        let log_det_half: f64 = chol.l_dirty().diagonal().iter().map(|v| v.ln()).sum();
        let lml = -0.5 * self.y.iter().zip(alpha.iter()).map(|(a, b)| a * b).sum::<f64>()
            - log_det_half
            - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        // d lml / d theta = 0.5 tr(W dK/dtheta), W = alpha alpha^T - K^-1, summed over pairs
        // (each counted once, so without the 0.5).
        let k_inv = packed_inverse(&chol);
        let mut w = vec![0.0; pairs];
        let mut pidx = 0;
        for i in 0..n {
            for j in 0..i {
                w[pidx] = alpha[i] * alpha[j] - k_inv[packed_row(i) + j];
                pidx += 1;
            }
        }
        let mut grad = vec![0.0; d + 2];
        // d K_ij / d ln l_c = 2 s2 g_ij sq_ij,c / l_c^2.
        let wg: Vec<f64> = w.iter().zip(&g).map(|(wp, gp)| wp * 2.0 * s2 * gp).collect();
        for (c, gc) in grad[..d].iter_mut().enumerate() {
            *gc = dot(&wg, self.sq_diff(c)) * inv_l2[c];
        }
        grad[d] = s2 * dot(&w, &m);
        let trace_w: f64 = (0..n).map(|i| alpha[i] * alpha[i] - k_inv[packed_row(i) + i]).sum();
        grad[d] += 0.5 * s2 * trace_w;
        grad[d + 1] = 0.5 * theta[d + 1].exp() * trace_w;
        let lp = self.add_log_prior(theta, &mut grad);
        (-(lml + lp), grad.into_iter().map(|g| -g).collect())
    }

    /// Adds the gradient of the log prior to `grad` and returns the log prior.
    fn add_log_prior(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.d;
        let mut lp = 0.0;
        for c in 0..d {
            // theta_c = ln l_c, so ils = exp(-2 theta_c) and d ils / d theta_c = -2 ils.
            let ils = (-2.0 * theta[c]).exp();
            lp -= ILS_PRIOR_WEIGHT * (1.0 / ils + ils);
            grad[c] += 2.0 * ILS_PRIOR_WEIGHT * (ils - 1.0 / ils);
        }
        let z = theta[d] / SIGNAL_PRIOR_SD;
        lp -= 0.5 * z * z;
        grad[d] -= z / SIGNAL_PRIOR_SD;
        let (noise_lp, noise_slope) = noise_log_prior(theta[d + 1]);
        grad[d + 1] += noise_slope;
        lp + noise_lp
    }
}

/// Log density of the noise prior (a mixture; see `NOISELESS_RATE`) at excess noise
/// `e = exp(ln_e)`, and its derivative with respect to `ln_e`.
fn noise_log_prior(ln_e: f64) -> (f64, f64) {
    let e = ln_e.exp();
    let noiseless = (0.5 * NOISELESS_RATE).ln() - NOISELESS_RATE * e;
    let noisy = 0.5f64.ln() + NOISY_SHAPE * NOISY_RATE.ln() - libm::lgamma(NOISY_SHAPE) + (NOISY_SHAPE - 1.0) * ln_e
        - NOISY_RATE * e;
    let top = noiseless.max(noisy);
    let lp = top + ((noiseless - top).exp() + (noisy - top).exp()).ln();
    let (w_noiseless, w_noisy) = ((noiseless - lp).exp(), (noisy - lp).exp());
    let slope = w_noiseless * (-NOISELESS_RATE * e) + w_noisy * (NOISY_SHAPE - 1.0 - NOISY_RATE * e);
    (lp, slope)
}

/// Fits kernel parameters to standardized `y` at points `x` (row-major, `d` columns).
///
/// Without a usable `warm` start, L-BFGS runs from the prior's centre and from the same
/// point with the noisy start's noise, and keeps the better. With one, it runs from `warm`
/// (one new point barely moves the optimum, so this converges in a few steps), and from a
/// centre only if that centre already scores better than the warm result. That check costs an evaluation per
/// centre, a fifth of a warm fit, so it runs on a random `1 / CENTRE_CHECK_EVERY` of
/// warm calls: a fit stuck in a poor optimum is still replaced within a few
/// suggestions.
/// Falls back to the prior's centre if the fit produces nothing finite.
/// Also returns the log posterior reached per point fitted (-inf for the fallback), so fits
/// of differently transformed y can be compared (`suggest` adds the transforms' Jacobians).
pub(crate) fn fit_params(
    x: &[f64],
    d: usize,
    y: &[f64],
    warm: Option<&KernelParams>,
    rng: &mut StdRng,
) -> (KernelParams, f64) {
    let data = subsample(x, d, y, rng);
    let (lo, hi) = theta_bounds(d);
    let run =
        |start: &[f64], evals| lbfgs::minimize_in_box(|t| data.objective(t), start, &lo, &hi, evals, FIT_TOL_GRAD);
    let default = default_params(d);
    // Two cold starts, one in each mode of the noise prior: from near-zero noise alone, L-BFGS
    // tends to stay in the interpolating optimum even where the data is noisy.
    let centres = [default.to_log(), KernelParams { noise_var: NOISY_START, ..default.clone() }.to_log()];
    let warm = warm.filter(|w| w.lengthscales.len() == d && w.is_valid());
    let mut best: Option<(Vec<f64>, f64)> = warm.map(|w| run(&w.to_log(), WARM_EVALS));
    let check = warm.is_none() || rng.random_range(0..CENTRE_CHECK_EVERY) == 0;
    for centre in centres.iter().filter(|_| check) {
        // A cold fit runs from every centre; a warm one only from a centre already scoring better.
        if warm.is_none() || best.as_ref().is_some_and(|b| data.objective(centre).0 < b.1) {
            let cold = run(centre, COLD_EVALS);
            if best.as_ref().is_none_or(|b| cold.1 < b.1) {
                best = Some(cold);
            }
        }
    }
    match best {
        Some((theta, value)) if value.is_finite() => (KernelParams::from_log(&theta), -value / data.n as f64),
        _ => (default, f64::NEG_INFINITY),
    }
}

/// The fit's data: all points, or a random subset of `MAX_FIT_POINTS`.
fn subsample(x: &[f64], d: usize, y: &[f64], rng: &mut StdRng) -> FitData {
    if y.len() <= MAX_FIT_POINTS {
        return FitData::new(x, d, y);
    }
    let mut idx = rand::seq::index::sample(rng, y.len(), MAX_FIT_POINTS).into_vec();
    idx.sort_unstable();
    let xs: Vec<f64> = idx.iter().flat_map(|&i| x[i * d..(i + 1) * d].iter().copied()).collect();
    let ys: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
    FitData::new(&xs, d, &ys)
}

/// Lower and upper bounds of the log-parameter vector for `d` columns.
fn theta_bounds(d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut lo = vec![LN_LS_RANGE.0; d];
    let mut hi = vec![LN_LS_RANGE.1; d];
    lo.extend([LN_SIGNAL_RANGE.0, LN_NOISE_RANGE.0]);
    hi.extend([LN_SIGNAL_RANGE.1, LN_NOISE_RANGE.1]);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn toy_data(n: usize, d: usize) -> FitData {
        let mut rng = StdRng::seed_from_u64(3);
        let x: Vec<f64> = (0..n * d).map(|_| rng.random()).collect();
        let y: Vec<f64> = (0..n).map(|i| (6.0 * x[i * d]).sin() + x[i * d + 1] * x[i * d + 1]).collect();
        FitData::new(&x, d, &y)
    }

    #[test]
    fn analytic_gradient_matches_finite_differences() {
        let data = toy_data(25, 3);
        let theta = vec![-1.0, -0.2, 0.5, 0.3, -4.0];
        let (_, g) = data.objective(&theta);
        for i in 0..theta.len() {
            let h = 1e-5;
            let (mut a, mut b) = (theta.clone(), theta.clone());
            a[i] += h;
            b[i] -= h;
            let fd = (data.objective(&a).0 - data.objective(&b).0) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-4 * (1.0 + fd.abs()), "param {i}: fd {fd} analytic {}", g[i]);
        }
    }

    #[test]
    fn fit_improves_on_the_default() {
        let mut rng = StdRng::seed_from_u64(0);
        let x: Vec<f64> = (0..60).map(|_| rng.random()).collect();
        let y: Vec<f64> = (0..30).map(|i| (6.0 * x[2 * i]).sin()).collect();
        let (fitted, _) = fit_params(&x, 2, &y, None, &mut rng);
        let fd = FitData::new(&x, 2, &y);
        assert!(fd.objective(&fitted.to_log()).0 <= fd.objective(&default_params(2).to_log()).0);
    }

    /// Standardized as the suggestion path does.
    fn standardized(y: Vec<f64>) -> Vec<f64> {
        super::super::suggest::standardize(&y).0
    }

    #[test]
    fn noise_is_learned_where_the_data_shows_it_and_stays_near_zero_where_not() {
        let mut rng = StdRng::seed_from_u64(5);
        let x: Vec<f64> = (0..80).map(|_| rng.random()).collect();
        let smooth: Vec<f64> = (0..40).map(|i| (4.0 * x[2 * i]).sin() + x[2 * i + 1]).collect();
        let normal = rand_distr::Normal::new(0.0, 0.3).unwrap();
        let noisy: Vec<f64> = smooth.iter().map(|v| v + rand_distr::Distribution::sample(&normal, &mut rng)).collect();
        let (clean, _) = fit_params(&x, 2, &standardized(smooth), None, &mut rng);
        let (learned, _) = fit_params(&x, 2, &standardized(noisy), None, &mut rng);
        assert!(clean.noise_var < 1e-3, "noiseless data fitted with noise {}", clean.noise_var);
        // The noise added is 0.3 / sd(smooth) = about 0.06 in variance, once standardized.
        assert!(learned.noise_var > 0.02, "noisy data fitted with noise {}", learned.noise_var);
    }

    #[test]
    fn noise_prior_slope_matches_finite_differences() {
        for ln_e in [-20.0, -8.0, -5.0, -3.5, -2.0, 0.5] {
            let h = 1e-6;
            let fd = (noise_log_prior(ln_e + h).0 - noise_log_prior(ln_e - h).0) / (2.0 * h);
            let slope = noise_log_prior(ln_e).1;
            assert!((fd - slope).abs() < 1e-5 * (1.0 + fd.abs()), "at {ln_e}: fd {fd} analytic {slope}");
        }
    }
}
