//! A thin wrapper over argmin's L-BFGS for box-bounded objectives that compute
//! value and gradient together.

use argmin::core::{CostFunction, Error, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::cell::RefCell;

/// Adapts a joint value-and-gradient closure to argmin's separate traits. It
/// caches the last evaluation (argmin asks for cost and gradient at the same
/// point) and remembers the best point seen, so a failed line search still
/// yields the best progress made.
/// A point with its value and gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

struct Problem<'a, F> {
    f: F,
    last: RefCell<Option<Evaluation>>,
    best: &'a RefCell<Option<(Vec<f64>, f64)>>,
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Problem<'_, F> {
    fn eval(&self, x: &[f64]) -> (f64, Vec<f64>) {
        if let Some((lx, v, g)) = self.last.borrow().as_ref() {
            if lx.as_slice() == x {
                return (*v, g.clone());
            }
        }
        let (v, g) = (self.f)(x);
        let (v, g) = if v.is_finite() && g.iter().all(|gi| gi.is_finite()) {
            (v, g)
        } else {
            (f64::INFINITY, vec![0.0; x.len()])
        };
        *self.last.borrow_mut() = Some((x.to_vec(), v, g.clone()));
        let mut best = self.best.borrow_mut();
        if best.as_ref().is_none_or(|(_, bv)| v < *bv) {
            *best = Some((x.to_vec(), v));
        }
        (v, g)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Problem<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.eval(x).0)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for Problem<'_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.eval(x).1)
    }
}

/// Stopping tolerances: the fit and the acquisition need a good point, not a
/// precise optimum, and every extra iteration costs a factorization or a solve.
const TOL_GRAD: f64 = 1e-4;
const TOL_COST: f64 = 1e-6;
/// Weight of the quadratic penalty on leaving the box.
const BOX_PENALTY: f64 = 1e3;

/// Minimizes `f` over the box `[lower, upper]` from `x0` with at most `max_iters`
/// L-BFGS iterations; returns the best point evaluated (inside the box) and its value.
///
/// L-BFGS runs unconstrained on `f(clamp(u)) + penalty * |u - clamp(u)|^2`: the
/// penalty pushes it back into the box instead of leaving it on a flat plateau.
pub(crate) fn minimize_in_box<F>(f: F, x0: &[f64], lower: &[f64], upper: &[f64], max_iters: u64) -> (Vec<f64>, f64)
where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    let clamp =
        |u: &[f64]| -> Vec<f64> { u.iter().zip(lower).zip(upper).map(|((v, lo), hi)| v.clamp(*lo, *hi)).collect() };
    let penalized = |u: &[f64]| {
        let x = clamp(u);
        let (mut v, g) = f(&x);
        let g = u
            .iter()
            .zip(&x)
            .zip(g)
            .map(|((ui, xi), gi)| {
                let out = ui - xi;
                v += BOX_PENALTY * out * out;
                if out == 0.0 {
                    gi
                } else {
                    2.0 * BOX_PENALTY * out
                }
            })
            .collect();
        (v, g)
    };
    let (u, v) = minimize(penalized, clamp(x0), max_iters);
    (clamp(&u), v)
}

fn minimize<F>(f: F, x0: Vec<f64>, max_iters: u64) -> (Vec<f64>, f64)
where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    let best = RefCell::new(None);
    let problem = Problem { f, last: RefCell::new(None), best: &best };
    let start = problem.eval(&x0).0;
    if start.is_finite() {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 8)
            .with_tolerance_grad(TOL_GRAD)
            .and_then(|s| s.with_tolerance_cost(TOL_COST));
        if let Ok(solver) = solver {
            // Errors (e.g. a failed line search) only end the run early: the best point is kept.
            let _ = Executor::new(problem, solver).configure(|s| s.param(x0).max_iters(max_iters)).timer(false).run();
        }
    }
    best.into_inner().unwrap_or((vec![], f64::INFINITY))
}

#[cfg(test)]
mod tests {
    #[test]
    fn minimizes_a_quadratic_in_a_box() {
        let f = |x: &[f64]| {
            let v = (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
            (v, vec![2.0 * (x[0] - 1.0), 20.0 * (x[1] + 2.0)])
        };
        let (x, v) = super::minimize_in_box(f, &[0.0, 0.0], &[-5.0, -1.0], &[5.0, 5.0], 50);
        assert!((v - 10.0).abs() < 1e-6 && (x[0] - 1.0).abs() < 1e-3 && x[1] == -1.0, "{x:?} {v}");
    }
}
