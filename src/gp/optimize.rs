//! Maximizes an acquisition (log EI, log EHVI) over the search space: a space-filling candidate set plus
//! perturbations of the best points, L-BFGS refinement of the most promising in
//! the continuous relaxation, then snapping and an exhaustive sweep of small
//! discrete and categorical dimensions.

use super::acquisition::{log_ei, log_ei_with_grad};
use super::encoding::{column_ranges, encoded_width, random_point, snap, Dim};
use super::posterior::Posterior;
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Scrambled Sobol points screened per suggestion. Screening dominates the
/// acquisition's cost; 2048 was no better on the benchmark, 512 no better than 256.
const SOBOL_POINTS: usize = 256;
/// Perturbed copies of each incumbent screened per suggestion.
const PERTURBATIONS_PER_INCUMBENT: usize = 32;
/// Expected number of dimensions a perturbation changes (4 beat 2 on levy10).
const PERTURBED_DIMS: f64 = 4.0;
/// Relative step sizes of incumbent perturbations, from broad to fine.
const PERTURB_SCALES: [f64; 4] = [0.2, 0.05, 0.01, 0.002];
/// Best screened candidates refined by L-BFGS. More effort in this search did not pay on the
/// samplers bench (30 and 60 seeds, 2026-12-03): 10 starts, 30 or 60 evaluations, Optuna's
/// preconditioning (coordinates divided by the lengthscales), roulette-picked starts and 1024
/// or 2048 Sobol points, alone and together, left levy10's median regret at trial 100 between
/// 3.3 and 7.0 (this setting: 5.8 over 60 seeds), none reaching Optuna's on its noisy variants.
const REFINE_STARTS: usize = 3;
/// Log EI evaluations per refinement. 15 instead of 30 took the median suggestion at trial
/// 100 from 3.6-6.9 ms to 3.0-4.0 ms, and no function's median regret at trials 50 or 100
/// got worse beyond the seeds' spread (hartmann6 at 50 improved).
const REFINE_EVALS: u64 = 15;
/// Gradient norm of log EI at which refinement stops.
const REFINE_TOL_GRAD: f64 = 1e-4;
/// Discrete or categorical dimensions up to this size are swept level by level.
const MAX_SWEEP_LEVELS: usize = 64;

/// What the search maximizes: a log acquisition value at many points, and its negative with
/// a gradient at one (L-BFGS minimizes).
pub(crate) trait Acquisition {
    fn values(&self, rows: &[f64]) -> Vec<f64>;

    fn cost(&self, x: &[f64]) -> (f64, Vec<f64>);

    fn value(&self, x: &[f64]) -> f64 {
        self.values(x)[0]
    }
}

/// Log EI of a fitted posterior against an incumbent value.
pub(crate) struct LogEi<'a> {
    pub(crate) post: &'a Posterior,
    pub(crate) best: f64,
}

impl Acquisition for LogEi<'_> {
    fn values(&self, rows: &[f64]) -> Vec<f64> {
        self.post.predict_batch(rows).into_iter().map(|(m, v)| log_ei(m, v, self.best)).collect()
    }

    /// Negative log EI and its gradient, for minimization.
    fn cost(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let (m, v, dm, dv) = self.post.predict_with_grad(x);
        let (val, grad) = log_ei_with_grad(m, v, &dm, &dv, self.best);
        (-val, grad.into_iter().map(|g| -g).collect())
    }
}

/// Returns the valid point with the highest acquisition value that the search finds.
pub(crate) fn maximize(acq: &dyn Acquisition, dims: &[Dim], incumbents: &[&[f64]], rng: &mut StdRng) -> Vec<f64> {
    let width = encoded_width(dims);
    let mut rows = sobol_points(dims, SOBOL_POINTS, rng);
    let n_sobol = rows.len() / width;
    for inc in incumbents {
        rows.extend(perturbations(dims, inc, PERTURBATIONS_PER_INCUMBENT, rng));
    }
    let values = acq.values(&rows);
    let mut best: (Vec<f64>, f64) = (rows[..width].to_vec(), f64::NEG_INFINITY);
    for start in refine_starts(&values, n_sobol) {
        let x0 = rows[start * width..(start + 1) * width].to_vec();
        let x = refine(acq, dims, x0.clone());
        for cand in [x0, x] {
            let v = acq.value(&cand);
            if v > best.1 {
                best = (cand, v);
            }
        }
    }
    sweep_levels(acq, dims, best.0)
}

/// Indices to refine: the best screened candidates, plus the best incumbent
/// perturbation so the neighbourhood of the best points is always polished.
fn refine_starts(values: &[f64], n_sobol: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut starts: Vec<usize> = order.iter().copied().take(REFINE_STARTS).collect();
    if let Some(local) = order.iter().copied().find(|&i| i >= n_sobol) {
        if !starts.contains(&local) {
            starts.push(local);
        }
    }
    starts
}

/// L-BFGS on the continuous relaxation, then snapped to a valid point.
fn refine(acq: &dyn Acquisition, dims: &[Dim], x0: Vec<f64>) -> Vec<f64> {
    let (lo, hi) = (vec![0.0; x0.len()], vec![1.0; x0.len()]);
    let (u, _) = super::lbfgs::minimize_in_box(|x| acq.cost(x), &x0, &lo, &hi, REFINE_EVALS, REFINE_TOL_GRAD);
    if u.is_empty() {
        return x0;
    }
    snap(dims, &u)
}

/// Tries every level of each small discrete or categorical dimension in turn,
/// keeping the others fixed, so rounding never leaves a better level untried.
fn sweep_levels(acq: &dyn Acquisition, dims: &[Dim], mut x: Vec<f64>) -> Vec<f64> {
    let width = x.len();
    for (dim, range) in dims.iter().zip(column_ranges(dims)) {
        let Some(k) = dim.cardinality().filter(|k| *k <= MAX_SWEEP_LEVELS) else { continue };
        let mut rows = Vec::with_capacity(k * width);
        for level in 0..k {
            let mut cand = x.clone();
            dim.set_level(&mut cand[range.clone()], level);
            rows.extend(cand);
        }
        let values = acq.values(&rows);
        let pick = (0..k).max_by(|&a, &b| values[a].total_cmp(&values[b]).then(b.cmp(&a))).unwrap_or(0);
        x.copy_from_slice(&rows[pick * width..(pick + 1) * width]);
    }
    x
}

/// `count` scrambled Sobol points mapped to valid points, one Sobol axis per dimension.
fn sobol_points(dims: &[Dim], count: usize, rng: &mut StdRng) -> Vec<f64> {
    let seed: u32 = rng.random();
    let width = encoded_width(dims);
    let ranges = column_ranges(dims);
    let mut rows = vec![0.0; count * width];
    for i in 0..count {
        let row = &mut rows[i * width..(i + 1) * width];
        if dims.len() > sobol_burley::NUM_DIMENSIONS as usize {
            row.copy_from_slice(&random_point(dims, rng));
            continue;
        }
        for (a, (dim, r)) in dims.iter().zip(&ranges).enumerate() {
            let u = sobol_burley::sample(i as u32, a as u32, seed) as f64;
            dim.set_from_uniform(&mut row[r.clone()], u);
        }
    }
    rows
}

/// Random valid points near `center`: each dimension is changed with probability
/// about `PERTURBED_DIMS / dims` (at least one always); continuous ones by Gaussian steps of a
/// scale cycling through `PERTURB_SCALES`, others by redrawing the level.
fn perturbations(dims: &[Dim], center: &[f64], count: usize, rng: &mut StdRng) -> Vec<f64> {
    let ranges = column_ranges(dims);
    let p_change = (PERTURBED_DIMS / dims.len() as f64).min(1.0);
    let mut rows = Vec::with_capacity(count * center.len());
    for i in 0..count {
        let scale = PERTURB_SCALES[i % PERTURB_SCALES.len()];
        let normal = Normal::new(0.0, scale).expect("positive scale");
        let forced = rng.random_range(0..dims.len());
        let mut x = center.to_vec();
        for (a, (dim, r)) in dims.iter().zip(&ranges).enumerate() {
            if a != forced && rng.random::<f64>() >= p_change {
                continue;
            }
            match dim {
                Dim::Continuous => x[r.start] = (x[r.start] + normal.sample(rng)).clamp(0.0, 1.0),
                _ => dim.set_from_uniform(&mut x[r.clone()], rng.random()),
            }
        }
        rows.extend(x);
    }
    rows
}
