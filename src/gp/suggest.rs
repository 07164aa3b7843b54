//! The public entry point: fit the GP to the observations, fantasize the pending
//! points, and return the point that maximizes log EI.

use super::encoding::{encoded_width, Dim};
use super::fit::fit_params;
use super::kernel::KernelParams;
use super::optimize::{maximize, LogEi};
use super::posterior::Posterior;
use super::GpError;
use rand::rngs::StdRng;

/// Observed points with the best posterior means, whose neighbourhoods the acquisition search
/// always explores.
const INCUMBENTS: usize = 3;

/// What is known so far, in encoded coordinates.
pub struct Observations<'a> {
    /// Evaluated points, each `encoded_width(dims)` long.
    pub x: &'a [Vec<f64>],
    /// Objective values to minimize, finite, one per point.
    pub y: &'a [f64],
    /// Points being evaluated now; the next suggestion should steer clear of them.
    pub pending: &'a [Vec<f64>],
    /// A column held at one value wherever the acquisition looks (a fidelity column at the full
    /// resource): the incumbents are the tried points moved there.
    pub target: Option<(usize, f64)>,
}

/// The next point to evaluate, and the kernel parameters fitted on the way
/// (pass them back as `warm_start` next time).
#[derive(Debug, Clone)]
pub struct Suggestion {
    pub x: Vec<f64>,
    pub params: KernelParams,
    /// What the model expects of a report at `x` (at the target resource), in the units of
    /// the observed y: its median and a standard deviation read off the 10% and 90% quantiles
    /// (the log warp skews it). The learning-curve veto starts from it (`pruner/promise.rs`).
    pub expected: (f64, f64),
}

/// Suggests the next point to evaluate.
///
/// Pending points are handled by the kriging believer: each is added as an
/// observation whose value is the posterior mean there, which collapses the
/// variance (and so the EI) around it without moving the model's beliefs.
/// Deterministic for a given `rng` state.
pub fn suggest(
    dims: &[Dim],
    obs: &Observations,
    warm_start: Option<&KernelParams>,
    rng: &mut StdRng,
) -> Result<Suggestion, GpError> {
    let d = encoded_width(dims);
    validate(d, obs)?;
    let x: Vec<f64> = obs.x.iter().flatten().copied().collect();
    // Two models, y as it is and log-warped, each fitted; the one under which the observed y
    // are more probable wins (its log posterior per point plus the log Jacobian of its
    // transform). The warp tames heavy tails (rosenbrock) but stretches noise near the
    // minimum: on noisy objectives the plain model wins.
    let mut chosen: Option<(Vec<f64>, KernelParams, f64)> = None;
    for log_warp in [true, false] {
        let (y, log_jacobian) = scaled(obs.y, log_warp)?;
        let (mut params, log_post) = fit_params(&x, d, &y, warm_start, rng);
        params.log_warp = log_warp;
        let score = log_post + log_jacobian / obs.y.len() as f64;
        if chosen.as_ref().is_none_or(|c| score > c.2) {
            chosen = Some((y, params, score));
        }
    }
    let (y, params, _) = chosen.expect("two candidates");
    suggest_with(dims, obs, x, y, params, rng)
}

/// Like [`suggest`], but with given kernel parameters instead of a fit: a model-based caller
/// can refit only every few observations, since the fit is most of a suggestion's cost and
/// the hyperparameters move little from one observation to the next.
pub fn suggest_reusing(
    dims: &[Dim],
    obs: &Observations,
    params: &KernelParams,
    rng: &mut StdRng,
) -> Result<Suggestion, GpError> {
    let d = encoded_width(dims);
    validate(d, obs)?;
    if params.lengthscales.len() != d {
        return Err(GpError::WidthMismatch {
            what: "kernel lengthscales",
            expected: d,
            got: params.lengthscales.len(),
        });
    }
    let x: Vec<f64> = obs.x.iter().flatten().copied().collect();
    let (y, _) = scaled(obs.y, params.log_warp)?;
    suggest_with(dims, obs, x, y, params.clone(), rng)
}

fn suggest_with(
    dims: &[Dim],
    obs: &Observations,
    x: Vec<f64>,
    y: Vec<f64>,
    params: KernelParams,
    rng: &mut StdRng,
) -> Result<Suggestion, GpError> {
    let d = encoded_width(dims);
    let mut post = Posterior::new(x.clone(), d, &y, params.clone())?;
    // The incumbent is the best posterior mean at an observed point, not the best observed
    // value: on a noisy objective the latter is a lucky draw that EI would then only chase.
    // Without noise the two agree.
    let mut tried = obs.x.to_vec();
    if let Some((column, value)) = obs.target {
        tried.iter_mut().for_each(|row| row[column] = value);
    }
    let mut means = post.predict_means(&tried.concat());
    let incumbents = best_points(&tried, &means, INCUMBENTS);
    if !obs.pending.is_empty() {
        let pending: Vec<f64> = obs.pending.iter().flatten().copied().collect();
        let believed = post.predict_means(&pending);
        post = Posterior::new([x, pending].concat(), d, &[y, believed.clone()].concat(), params.clone())?;
        means.extend(believed);
    }
    let best = means.iter().copied().fold(f64::INFINITY, f64::min);
    let x = maximize(&LogEi { post: &post, best }, dims, &incumbents, rng);
    let (mean, var) = post.predict_batch(&x)[0];
    let sd = (var + post.params().noise_var).sqrt();
    let back = to_objective(obs.y, post.params().log_warp);
    let expected = (back(mean), (back(mean + 1.2816 * sd) - back(mean - 1.2816 * sd)) / 2.5631);
    Ok(Suggestion { x, params: post.params().clone(), expected })
}

pub(super) fn validate(d: usize, obs: &Observations) -> Result<(), GpError> {
    if obs.y.is_empty() {
        return Err(GpError::NoObservations);
    }
    if obs.x.len() != obs.y.len() {
        return Err(GpError::LengthMismatch { x: obs.x.len(), y: obs.y.len() });
    }
    for (what, rows) in [("x", obs.x), ("pending", obs.pending)] {
        if let Some(r) = rows.iter().find(|r| r.len() != d) {
            return Err(GpError::WidthMismatch { what, expected: d, got: r.len() });
        }
        if rows.iter().flatten().any(|v| !v.is_finite()) {
            return Err(GpError::NonFinite(what));
        }
    }
    if obs.y.iter().any(|v| !v.is_finite()) {
        return Err(GpError::NonFinite("y"));
    }
    Ok(())
}

/// The values the model fits: standardized, after the log warp if asked, and the log of the
/// transform's Jacobian, `sum ln |dz_i / dy_i|`. Finite values can still overflow on the way (a
/// spread beyond f64's range): that is an error, not a fit on NaN.
fn scaled(y: &[f64], log_warp: bool) -> Result<(Vec<f64>, f64), GpError> {
    let (warped, warp_jacobian) = if log_warp { warp(y) } else { (y.to_vec(), 0.0) };
    let (z, _, sd) = standardize(&warped);
    let log_jacobian = warp_jacobian - y.len() as f64 * sd.ln();
    if z.iter().any(|v| !v.is_finite()) || !log_jacobian.is_finite() {
        return Err(GpError::NonFinite("the scaled objective values (their spread overflows)"));
    }
    Ok((z, log_jacobian))
}

/// `scaled` undone: the observed-y value of a model value `z` (standardized, maybe warped).
fn to_objective(y: &[f64], log_warp: bool) -> impl Fn(f64) -> f64 {
    let (lo, gap) = if log_warp { warp_origin(y) } else { (0.0, 0.0) };
    let warped = if gap > 0.0 { warp(y).0 } else { y.to_vec() };
    let (_, mean, sd) = standardize(&warped);
    move |z| {
        let w = mean + sd * z;
        if gap > 0.0 {
            lo + gap * (w.exp() - 1.0)
        } else {
            w
        }
    }
}

/// The warp's minimum and median gap above it.
fn warp_origin(y: &[f64]) -> (f64, f64) {
    let lo = y.iter().copied().fold(f64::INFINITY, f64::min);
    let mut gaps: Vec<f64> = y.iter().map(|v| v - lo).collect();
    gaps.sort_by(f64::total_cmp);
    (lo, gaps[gaps.len() / 2])
}

/// Maps y to `ln(1 + (y - min) / s)`, with `s` the median gap above the minimum.
///
/// Monotone, so the ranking of points is kept, and nearly linear just above the
/// minimum; but it compresses the upper tail, which on heavy-tailed objectives
/// (rosenbrock spans six decades) would otherwise dominate the fit and squash
/// every good point to the same standardized value. Took rosenbrock4 from ~450
/// to ~10 regret at trial 50; a stronger warp (`s / 10`) ruined ackley5.
fn warp(y: &[f64]) -> (Vec<f64>, f64) {
    let (lo, s) = warp_origin(y);
    if s > 0.0 {
        let warped = y.iter().map(|v| (1.0 + (v - lo) / s).ln()).collect();
        (warped, -y.iter().map(|v| (s + v - lo).ln()).sum::<f64>())
    } else {
        (y.to_vec(), 0.0)
    }
}

/// Shifts and scales y to mean 0, standard deviation 1 (only shifts a constant y), and the
/// mean and scale used.
pub(super) fn standardize(y: &[f64]) -> (Vec<f64>, f64, f64) {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let sd = if sd > 1e-12 * (1.0 + mean.abs()) { sd } else { 1.0 };
    (y.iter().map(|v| (v - mean) / sd).collect(), mean, sd)
}

/// The `k` points with the lowest y, best first.
fn best_points<'a>(x: &'a [Vec<f64>], y: &[f64], k: usize) -> Vec<&'a [f64]> {
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.sort_by(|&a, &b| y[a].total_cmp(&y[b]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|i| x[i].as_slice()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::encoding::{random_point, snap};
    use super::*;
    use rand::SeedableRng;

    fn bowl(x: &[f64]) -> f64 {
        x.iter().enumerate().map(|(i, v)| (v - 0.3 - 0.1 * i as f64).powi(2)).sum::<f64>() + (9.0 * x[0]).sin() * 0.1
    }

    fn random_obs(dims: &[Dim], n: usize, f: fn(&[f64]) -> f64, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let x: Vec<Vec<f64>> = (0..n).map(|_| random_point(dims, &mut rng)).collect();
        let y = x.iter().map(|p| f(p)).collect();
        (x, y)
    }

    #[test]
    fn pending_points_give_distinct_suggestions() {
        let dims = vec![Dim::Continuous; 3];
        let (x, y) = random_obs(&dims, 15, bowl, 1);
        let mut rng = StdRng::seed_from_u64(2);
        let mut pending: Vec<Vec<f64>> = Vec::new();
        for _ in 0..8 {
            let obs = Observations { x: &x, y: &y, pending: &pending, target: None };
            pending.push(suggest(&dims, &obs, None, &mut rng).unwrap().x);
        }
        for i in 0..8 {
            for j in 0..i {
                let dist: f64 = pending[i].iter().zip(&pending[j]).map(|(a, b)| (a - b).powi(2)).sum();
                assert!(dist.sqrt() > 1e-3, "suggestions {i} and {j} coincide: {:?}", pending[i]);
            }
        }
    }

    #[test]
    fn same_seed_same_suggestion() {
        let dims = vec![Dim::Continuous; 4];
        let (x, y) = random_obs(&dims, 20, bowl, 3);
        let pending = vec![vec![0.5; 4]];
        let obs = Observations { x: &x, y: &y, pending: &pending, target: None };
        let run = || suggest(&dims, &obs, None, &mut StdRng::seed_from_u64(9)).unwrap();
        let (a, b) = (run(), run());
        assert_eq!(a.x, b.x);
        assert_eq!(a.params, b.params);
        let warm = suggest(&dims, &obs, Some(&a.params), &mut StdRng::seed_from_u64(9)).unwrap();
        let again = suggest(&dims, &obs, Some(&a.params), &mut StdRng::seed_from_u64(9)).unwrap();
        assert_eq!(warm.x, again.x);
    }

    #[test]
    fn mixed_space_suggestions_are_valid_points() {
        let levels = vec![0.0, 0.25, 0.5, 0.75, 1.0];
        let dims = vec![Dim::Continuous, Dim::Discrete { levels: levels.clone() }, Dim::Categorical { choices: 3 }];
        // The categorical costs 0.5, 0.0 or 1.0 by choice (columns 2..5).
        let f: fn(&[f64]) -> f64 = |x| (x[0] - 0.6).powi(2) + (x[1] - 0.25).powi(2) + 0.5 * x[2] + x[4];
        let (mut x, mut y) = random_obs(&dims, 10, f, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let mut params = None;
        for _ in 0..6 {
            let obs = Observations { x: &x, y: &y, pending: &[], target: None };
            let s = suggest(&dims, &obs, params.as_ref(), &mut rng).unwrap();
            assert_eq!(s.x.len(), encoded_width(&dims));
            assert_eq!(snap(&dims, &s.x), s.x, "not a valid point: {:?}", s.x);
            assert!(levels.contains(&s.x[1]));
            assert_eq!(s.x[2..].iter().filter(|v| **v == 1.0).count(), 1);
            y.push(f(&s.x));
            x.push(s.x);
            params = Some(s.params);
        }
    }

    #[test]
    fn warp_keeps_order_and_tames_the_tail() {
        let y = [3.0, 1.0, 2.0, 1e6, 1.5];
        let (w, _) = warp(&y);
        for i in 0..y.len() {
            for j in 0..y.len() {
                assert_eq!(y[i] < y[j], w[i] < w[j]);
            }
        }
        assert_eq!(w[1], 0.0);
        assert!(w[3] < 20.0 * w[0], "tail not compressed: {w:?}");
        assert_eq!(warp(&[2.0, 2.0, 2.0, 5.0]).0, vec![2.0, 2.0, 2.0, 5.0]);
    }

    #[test]
    fn rejects_bad_input() {
        let dims = vec![Dim::Continuous; 2];
        let mut rng = StdRng::seed_from_u64(0);
        let empty = Observations { x: &[], y: &[], pending: &[], target: None };
        assert_eq!(suggest(&dims, &empty, None, &mut rng).unwrap_err(), GpError::NoObservations);
        let x = vec![vec![0.5; 3]];
        let wide = Observations { x: &x, y: &[1.0], pending: &[], target: None };
        assert!(matches!(suggest(&dims, &wide, None, &mut rng), Err(GpError::WidthMismatch { .. })));
    }
}
