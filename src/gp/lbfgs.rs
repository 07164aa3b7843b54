//! A thin wrapper over argmin's L-BFGS for box-bounded objectives that compute
//! value and gradient together.

use argmin::core::{CostFunction, Error, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::cell::Cell;
use std::cell::RefCell;

/// A point with its value and gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// Adapts a joint value-and-gradient closure to argmin's separate traits. It
/// caches the last evaluation (argmin asks for cost and gradient at the same
/// point) and remembers the best point seen, so a failed line search or an
/// exhausted budget still yields the best progress made.
struct Problem<'a, F> {
    f: F,
    last: RefCell<Option<Evaluation>>,
    best: &'a RefCell<Option<(Vec<f64>, f64)>>,
    /// Evaluations left; line searches can take many per iteration, so
    /// iterations alone do not bound the cost.
    evals_left: Cell<u64>,
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Problem<'_, F> {
    fn eval(&self, x: &[f64]) -> Result<(f64, Vec<f64>), Error> {
        if let Some((lx, v, g)) = self.last.borrow().as_ref() {
            if lx.as_slice() == x {
                return Ok((*v, g.clone()));
            }
        }
        let left = self.evals_left.get();
        if left == 0 {
            return Err(Error::msg("evaluation budget exhausted"));
        }
        self.evals_left.set(left - 1);
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
        Ok((v, g))
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Problem<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.eval(x)?.0)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for Problem<'_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, x: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.eval(x)?.1)
    }
}

/// Relative change of the value below which the run stops: the fit and the
/// acquisition need a good point, not a precise optimum, and every extra
/// iteration costs a factorization or a solve.
const TOL_COST: f64 = 1e-6;
/// Weight of the quadratic penalty on leaving the box.
const BOX_PENALTY: f64 = 1e3;

/// Minimizes `f` over the box `[lower, upper]` from `x0` with at most `max_evals`
/// evaluations of `f`, stopping once the gradient norm is below `tol_grad`;
/// returns the best point evaluated (inside the box) and its value.
///
/// L-BFGS runs unconstrained on `f(clamp(u)) + penalty * |u - clamp(u)|^2`: the
/// penalty pushes it back into the box instead of leaving it on a flat plateau.
pub(crate) fn minimize_in_box<F>(
    f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    max_evals: u64,
    tol_grad: f64,
) -> (Vec<f64>, f64)
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
            .zip(lower.iter().zip(upper))
            .zip(g)
            .map(|((ui, (lo, hi)), gi)| {
                let out = ui - ui.clamp(*lo, *hi);
                v += BOX_PENALTY * out * out;
                // On a bound with descent pointing out of the box, report no slope,
                // so an optimum on the boundary passes the gradient tolerance
                // instead of burning the budget on line searches.
                let blocked = (*ui == *lo && gi > 0.0) || (*ui == *hi && gi < 0.0);
                if out != 0.0 {
                    2.0 * BOX_PENALTY * out
                } else if blocked {
                    0.0
                } else {
                    gi
                }
            })
            .collect();
        (v, g)
    };
    let (u, v) = minimize(penalized, clamp(x0), max_evals, tol_grad);
    (clamp(&u), v)
}

fn minimize<F>(f: F, x0: Vec<f64>, max_evals: u64, tol_grad: f64) -> (Vec<f64>, f64)
where
    F: Fn(&[f64]) -> (f64, Vec<f64>),
{
    let best = RefCell::new(None);
    let problem = Problem { f, last: RefCell::new(None), best: &best, evals_left: Cell::new(max_evals.max(1)) };
    let start = problem.eval(&x0).map_or(f64::INFINITY, |(v, _)| v);
    if start.is_finite() {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 8)
            .with_tolerance_grad(tol_grad)
            .and_then(|s| s.with_tolerance_cost(TOL_COST));
        if let Ok(solver) = solver {
            // Errors (a failed line search, the budget) only end the run early: the best point is kept.
            let _ = Executor::new(problem, solver).configure(|s| s.param(x0).max_iters(max_evals)).timer(false).run();
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
        let (x, v) = super::minimize_in_box(f, &[0.0, 0.0], &[-5.0, -1.0], &[5.0, 5.0], 50, 1e-6);
        assert!((v - 10.0).abs() < 1e-6 && (x[0] - 1.0).abs() < 1e-3 && x[1] == -1.0, "{x:?} {v}");
    }

    #[test]
    fn stops_at_the_evaluation_budget() {
        let calls = std::cell::Cell::new(0);
        let f = |x: &[f64]| {
            calls.set(calls.get() + 1);
            let v: f64 = x.iter().map(|xi| (xi - 0.3).powi(4)).sum();
            (v, x.iter().map(|xi| 4.0 * (xi - 0.3).powi(3)).collect())
        };
        let (x, v) = super::minimize_in_box(f, &[0.9; 3], &[0.0; 3], &[1.0; 3], 5, 1e-12);
        assert!(calls.get() <= 5 && x.len() == 3 && v < 3.0 * 0.6f64.powi(4), "{} calls, {v}", calls.get());
    }
}
