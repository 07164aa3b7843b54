//! Learning-curve extrapolation: from a trial's reports so far, the distribution of its value
//! at the end of the run (Domhan et al. 2015's idea, made closed-form and fast).
//!
//! A curve is modelled as `y(x) = c + a g(x) + noise`, with `x = step / horizon` and `g` one
//! of the parametric shapes below (power law, exponential decay, inverse log, Weibull /
//! Janoschek), normalized so that `g(1) = 0` and `g` is 1 at the first report: `c` is then
//! the final value and `a` the drop from the first report to the end. Given the shape's own
//! parameter `θ` (a grid), the model is linear in `(c, a)`, so each `(shape, θ)` is a
//! Bayesian linear regression with a conjugate prior and a closed-form evidence. The prior on
//! the final `c` comes from the study (`Prior`: how far finished curves moved after the same
//! step), which is where configurations share what they learned; the curve's own reports
//! then pull each shape's `c` where its fit says. The forecast is the
//! mixture of every component's Gaussian predictive of the final report, weighted by prior
//! times evidence: its spread covers both the noise and the disagreement between shapes. A
//! forecast costs 144 two-by-two solves over the reports (6 shapes x 24 grid values; 25 - 70
//! microseconds, `cargo bench --bench curve_model`).
//!
//! Values are to minimize: a maximized metric is negated by the caller.

/// The distribution of a curve's value at the horizon: a mixture of Gaussians.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// `(weight, mean, sd)`; weights sum to 1.
    components: Vec<(f64, f64, f64)>,
}

impl Forecast {
    /// A known value (the curve already reached the horizon).
    fn exact(value: f64) -> Forecast {
        Forecast { components: vec![(1.0, value, 0.0)] }
    }

    pub fn mean(&self) -> f64 {
        self.components.iter().map(|&(w, m, _)| w * m).sum()
    }

    pub fn sd(&self) -> f64 {
        let mean = self.mean();
        let second: f64 = self.components.iter().map(|&(w, m, s)| w * (s * s + m * m)).sum();
        (second - mean * mean).max(0.0).sqrt()
    }

    /// The probability that the final value is below `bar`.
    pub fn prob_below(&self, bar: f64) -> f64 {
        self.components.iter().map(|&(w, m, s)| w * normal_cdf(bar, m, s)).sum::<f64>().clamp(0.0, 1.0)
    }

    /// The value the final is below with probability `p` (bisection on the mixture's CDF).
    pub fn quantile(&self, p: f64) -> f64 {
        let spread = self.components.iter().map(|c| c.1.abs() + 10.0 * c.2).fold(1e-12, f64::max);
        let (mut lo, mut hi) = (-spread, spread);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if self.prob_below(mid) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }
}

/// A shape family: its basis function `φ(x; θ)` and the range of `θ` it is averaged over (a
/// geometric grid, fine enough that neighbours predict alike: a coarse one lets a single
/// component win by luck).
struct Shape {
    basis: fn(f64, f64) -> f64,
    low: f64,
    high: f64,
}

/// Grid points per shape.
const GRID: usize = 24;

/// Power law / pow3: `x^-α`.
fn power(x: f64, alpha: f64) -> f64 {
    x.powf(-alpha)
}

/// Exponential decay: `e^(-b x)`.
fn exponential(x: f64, b: f64) -> f64 {
    (-b * x).exp()
}

/// Inverse log (ilog2): `1 / ln(1 + κ x)`.
fn inverse_log(x: f64, kappa: f64) -> f64 {
    1.0 / (1.0 + kappa * x).ln()
}

/// Weibull / Janoschek, a plateau before the fall (warmup): `e^(-k x^δ)`, δ = 2 and 3.
fn weibull2(x: f64, k: f64) -> f64 {
    (-k * x * x).exp()
}

fn weibull3(x: f64, k: f64) -> f64 {
    (-k * x * x * x).exp()
}

/// Stretched exponential, δ = 1/2: a fast start and a long tail.
fn stretched(x: f64, k: f64) -> f64 {
    (-k * x.sqrt()).exp()
}

const SHAPES: &[Shape] = &[
    Shape { basis: power, low: 0.03, high: 3.0 },
    Shape { basis: exponential, low: 0.2, high: 50.0 },
    Shape { basis: inverse_log, low: 1.2, high: 3000.0 },
    Shape { basis: weibull2, low: 0.2, high: 50.0 },
    Shape { basis: weibull3, low: 0.2, high: 50.0 },
    Shape { basis: stretched, low: 0.2, high: 50.0 },
];

/// What a study's finished curves say about the rest of a curve, before its own reports do:
/// the final value lies around `last report + shift`, give or take `spread` (it also sets how
/// far the first report may lie from the final).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub shift: f64,
    pub spread: f64,
    /// The typical noise of a report, for curves too short to show their own.
    pub noise: f64,
}

impl Prior {
    /// From finished curves (`(step, value)`, each ending at or past `horizon`): how a value at
    /// `step` moved by the end: the median change, and the root mean square of the changes around
    /// it (at least what two reports' noise gives); and the curves' median noise. `None` under
    /// three such curves.
    pub fn from_finished<'a>(curves: impl Iterator<Item = &'a [(i64, f64)]>, step: i64, horizon: i64) -> Option<Prior> {
        let (mut changes, mut ranges, mut noises) = (Vec::new(), Vec::new(), Vec::new());
        for curve in curves {
            let finite: Vec<(i64, f64)> = curve.iter().copied().filter(|p| p.1.is_finite()).collect();
            let (Some(&(end, last)), Some(&(_, at))) = (finite.last(), finite.iter().find(|p| p.0 >= step)) else {
                continue;
            };
            if end < horizon {
                continue;
            }
            changes.push(last - at);
            let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.1), h.max(p.1)));
            ranges.push(hi - lo);
            noises.extend(noise_sd(&finite.iter().map(|p| p.1).collect::<Vec<_>>()));
        }
        if changes.len() < 3 {
            return None;
        }
        let shift = median(&mut changes);
        let sd = (changes.iter().map(|c| (c - shift).powi(2)).sum::<f64>() / changes.len() as f64).sqrt();
        let noise = if noises.is_empty() { 0.01 * median(&mut ranges) } else { median(&mut noises) };
        // A change between two noisy reports is at least as uncertain as their noise.
        let spread = sd.max(std::f64::consts::SQRT_2 * noise);
        Some(Prior { shift, spread, noise })
    }

    /// No finished curves to learn from: no change expected, give or take `scale`.
    pub fn flat(scale: f64) -> Prior {
        Prior { shift: 0.0, spread: scale, noise: 0.1 * scale }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Forecast the value at `horizon` of a curve `points` (`(step, value)`, steps ascending and
/// positive, values to minimize, NaN left out by the caller), from `prior` and its own
/// reports. `None` without points.
pub fn forecast(points: &[(f64, f64)], horizon: f64, prior: Prior) -> Option<Forecast> {
    let &(last_step, last) = points.last()?;
    if last_step >= horizon {
        return Some(Forecast::exact(last));
    }
    let xs: Vec<f64> = points.iter().map(|p| (p.0 / horizon).max(1e-9)).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    let prior = Prior { spread: prior.spread.abs().max(1e-9 * (1.0 + last.abs())), ..prior };
    // A curve's own noise estimate needs a few second differences to beat the study's.
    let own = noise_sd(&ys);
    let sigma = own.unwrap_or(prior.noise).max(1e-3 * prior.spread);
    if points.len() == 1 {
        // One report says nothing about shape: the prior alone, from any of them.
        let (_, mean, var) = regress(&[1.0], &ys, prior, sigma)?;
        return Some(Forecast { components: vec![(1.0, mean, var.sqrt())] });
    }
    let mut components = Vec::new();
    for shape in SHAPES {
        let weight = (1.0 / (SHAPES.len() * GRID) as f64).ln();
        for i in 0..GRID {
            let theta = shape.low * (shape.high / shape.low).powf(i as f64 / (GRID - 1) as f64);
            let end = (shape.basis)(1.0, theta);
            let span = (shape.basis)(xs[0], theta) - end;
            if !span.is_finite() || span.abs() < 1e-12 {
                continue;
            }
            let g: Vec<f64> = xs.iter().map(|&x| ((shape.basis)(x, theta) - end) / span).collect();
            if let Some((log_evidence, mean, var)) = regress(&g, &ys, prior, sigma) {
                components.push((weight + log_evidence, mean, var.sqrt()));
            }
        }
    }
    let top = components.iter().map(|c| c.0).fold(f64::NEG_INFINITY, f64::max);
    if !top.is_finite() {
        let sd = prior.spread.hypot(sigma);
        return Some(Forecast { components: vec![(1.0, last + prior.shift, sd)] });
    }
    components.iter_mut().for_each(|c| c.0 = (c.0 - top).exp());
    let total: f64 = components.iter().map(|c| c.0).sum();
    components.retain(|c| c.0 > 1e-9 * total);
    // Shapes can all agree and all be wrong (a curve about to jump); the prior keeps a say,
    // less with each report.
    let population = POPULATION / points.len() as f64;
    components.iter_mut().for_each(|c| c.0 *= (1.0 - population) / total);
    components.push((population, last + prior.shift, prior.spread.hypot(sigma)));
    Some(Forecast { components })
}

/// The weight of the prior as a forecast of its own, beside the fitted shapes, times the
/// number of reports (a half at two reports, a tenth at five).
const POPULATION: f64 = 0.5;

/// The noise of a curve from its second differences (a smooth trend cancels out of them);
/// `None` under four points.
fn noise_sd(ys: &[f64]) -> Option<f64> {
    if ys.len() < 4 {
        return None;
    }
    let mut d2: Vec<f64> = ys.windows(3).map(|w| (w[0] - 2.0 * w[1] + w[2]).abs()).collect();
    d2.sort_by(f64::total_cmp);
    // The median of |N(0, 6σ²)| is 0.674 sqrt(6) σ; the median resists a curve's few kinks.
    Some(d2[d2.len() / 2] / (0.674 * 6f64.sqrt()))
}

/// Bayesian linear regression of `ys` on `[1, g]` with a normal-inverse-gamma prior: noise
/// variance `σ² ~ IG(2, sigma²)` (mean `sigma²`), and given it `c ~ N(last + shift, spread²)`
/// and `a ~ N(drop, max(spread, |drop|)²)` (`drop`: first report minus that final), both
/// scaled by `σ²/sigma²`. The noise is thus fitted per shape: a shape that misses the curve pays in
/// evidence and widens its own forecast. Returns the log evidence and the predictive mean and
/// variance of a report at the horizon (where `g` is 0; the Student-t's variance).
fn regress(g: &[f64], ys: &[f64], prior: Prior, sigma: f64) -> Option<(f64, f64, f64)> {
    const SHAPE0: f64 = 2.0;
    let rate0 = sigma * sigma;
    let last = ys[ys.len() - 1] + prior.shift;
    let drop = ys[0] - last;
    // V0⁻¹ = diag(vc, va); prior mean (last, drop).
    let vc = (sigma / prior.spread).powi(2);
    let va = (sigma / prior.spread.max(drop.abs())).powi(2);
    let (sg, sgg) = (g.iter().sum::<f64>(), g.iter().map(|x| x * x).sum::<f64>());
    let n = g.len() as f64;
    // Vn⁻¹ = V0⁻¹ + XᵀX.
    let (p00, p01, p11) = (vc + n, sg, va + sgg);
    let det = p00 * p11 - p01 * p01;
    if !det.is_finite() || det <= 0.0 {
        return None;
    }
    // b = V0⁻¹ m0 + Xᵀy.
    let (sy, sgy) = (ys.iter().sum::<f64>(), g.iter().zip(ys).map(|(a, b)| a * b).sum::<f64>());
    let (b0, b1) = (vc * last + sy, va * drop + sgy);
    let (m0, m1) = ((p11 * b0 - p01 * b1) / det, (p00 * b1 - p01 * b0) / det);
    let yy = ys.iter().map(|y| y * y).sum::<f64>();
    let residual = (yy + vc * last * last + va * drop * drop - (m0 * b0 + m1 * b1)).max(0.0);
    let (shape, rate) = (SHAPE0 + 0.5 * n, rate0 + 0.5 * residual);
    // ½ ln|Vn| - ½ ln|V0| = -½ ln det + ½ ln(vc va).
    let log_evidence = -0.5 * det.ln() + 0.5 * (vc * va).ln() + SHAPE0 * rate0.ln() - shape * rate.ln()
        + libm::lgamma(shape)
        - libm::lgamma(SHAPE0)
        - 0.5 * n * (2.0 * std::f64::consts::PI).ln();
    // Student-t with 2 shape degrees of freedom, scale² (rate / shape)(1 + Vn[0,0]).
    let t_scale2 = rate / shape * (1.0 + p11 / det);
    let variance = t_scale2 * shape / (shape - 1.0);
    log_evidence.is_finite().then_some((log_evidence, m0, variance))
}

/// The normal distribution's CDF at `x`; a step at the mean when `sd` is 0.
fn normal_cdf(x: f64, mean: f64, sd: f64) -> f64 {
    if sd <= 0.0 {
        return if x >= mean { 1.0 } else { 0.0 };
    }
    0.5 * libm::erfc(-(x - mean) / (sd * std::f64::consts::SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    fn curve(f: impl Fn(f64) -> f64, steps: impl Iterator<Item = i64>, sd: f64, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0, sd.max(1e-300)).unwrap();
        steps.map(|s| (s as f64, f(s as f64) + if sd > 0.0 { noise.sample(&mut rng) } else { 0.0 })).collect()
    }

    #[test]
    fn a_noiseless_power_law_extrapolates_to_its_final() {
        let f = |t: f64| 0.3 + 2.0 * t.powf(-0.5);
        let points = curve(f, (1..=10).map(|i| i * 10), 0.0, 0);
        let fc = forecast(&points, 300.0, Prior::flat(1.0)).unwrap();
        assert!((fc.mean() - f(300.0)).abs() < 0.02, "mean {} want {}", fc.mean(), f(300.0));
        assert!(fc.quantile(0.1) < f(300.0) && f(300.0) < fc.quantile(0.9), "{fc:?}");
    }

    #[test]
    fn an_exponential_decay_with_noise_lands_in_its_interval() {
        let f = |t: f64| 1.0 + 3.0 * (-t / 40.0).exp();
        let mut inside = 0;
        for seed in 0..40 {
            let points = curve(f, (1..=12).map(|i| i * 5), 0.05, seed);
            let fc = forecast(&points, 200.0, Prior::flat(1.0)).unwrap();
            // The truth a report at the horizon would show, noise included.
            let truth = curve(f, std::iter::once(200), 0.05, 1000 + seed)[0].1;
            inside += usize::from(fc.quantile(0.1) < truth && truth < fc.quantile(0.9));
        }
        assert!((26..=40).contains(&inside), "{inside} of 40 inside the 80% interval");
    }

    #[test]
    fn a_curve_still_falling_fast_is_less_certain_than_a_flat_one() {
        let falling = curve(|t| 2.0 - 0.01 * t, (1..=10).map(|i| i * 3), 0.0, 0);
        let flat = curve(|t| 1.0 + 0.5 * (-t / 3.0).exp(), (1..=10).map(|i| i * 3), 0.0, 0);
        let prior = Prior::flat(0.05);
        let (a, b) = (forecast(&falling, 300.0, prior).unwrap(), forecast(&flat, 300.0, prior).unwrap());
        assert!(a.mean() < 1.7, "a falling curve is expected to fall on: {}", a.mean());
        assert!(a.sd() > 3.0 * b.sd(), "{} vs {}", a.sd(), b.sd());
        assert!((b.mean() - 1.0).abs() < 0.02);
    }

    #[test]
    fn one_point_gives_the_prior_and_a_finished_curve_its_value() {
        let fc = forecast(&[(1.0, 2.0)], 100.0, Prior::flat(0.5)).unwrap();
        assert!((fc.mean() - 2.0).abs() < 1e-6 && fc.sd() > 0.25, "{fc:?}");
        assert!((fc.prob_below(2.0) - 0.5).abs() < 1e-3);
        let done = forecast(&[(1.0, 2.0), (100.0, 1.5)], 100.0, Prior::flat(0.5)).unwrap();
        assert_eq!((done.mean(), done.sd(), done.prob_below(1.6), done.prob_below(1.4)), (1.5, 0.0, 1.0, 0.0));
        assert!(forecast(&[], 10.0, Prior::flat(1.0)).is_none());
    }

    #[test]
    fn the_prior_learns_how_finished_curves_moved_after_a_step() {
        // Curves falling straight by 0.5, 0.6, 0.7 from step 2 to 10 (and one that stopped
        // early: skipped).
        let curves: Vec<Vec<(i64, f64)>> = [0.5, 0.6, 0.7]
            .iter()
            .map(|drop| (1..=10).map(|t| (t, if t == 1 { 2.0 } else { 1.5 - drop * (t - 2) as f64 / 8.0 })).collect())
            .chain(std::iter::once(vec![(1, 9.0), (2, 0.0)]))
            .collect();
        let prior = Prior::from_finished(curves.iter().map(Vec::as_slice), 2, 10).unwrap();
        assert!((prior.shift + 0.6).abs() < 1e-12, "{prior:?}");
        assert!((prior.spread - (0.02f64 / 3.0).sqrt()).abs() < 1e-9, "{prior:?}");
        // Smooth curves have no noise, and no floor under the spread.
        assert!(prior.noise < 1e-12, "{prior:?}");
        let at6 = Prior::from_finished(curves.iter().map(Vec::as_slice), 6, 10).unwrap();
        assert!((at6.shift + 0.3).abs() < 1e-12, "{at6:?}");
        assert_eq!(Prior::from_finished(curves[..2].iter().map(Vec::as_slice), 2, 10), None);
    }

    #[test]
    fn quantiles_invert_the_probabilities() {
        let points = curve(|t| 1.0 + (-t / 10.0).exp(), 1..=8, 0.02, 3);
        let fc = forecast(&points, 50.0, Prior::flat(1.0)).unwrap();
        let (lo, hi) = (fc.quantile(0.1), fc.quantile(0.9));
        assert!((fc.prob_below(lo) - 0.1).abs() < 1e-6 && (fc.prob_below(hi) - 0.9).abs() < 1e-6);
    }
}
