//! Log expected hypervolume improvement of independent normal predictions, exact: the region
//! a new point would improve is cut into boxes (`pareto::improvement_cells`), and under
//! independent objectives the expected improvement inside a box is a product of
//! one-dimensional terms, `E[(u - max(Y, l))+] = sigma (h(z_u) - h(z_l))` with
//! `h(z) = z Phi(z) + phi(z)`. Everything is kept in logs (as log EI is) so the acquisition
//! has a gradient far from the front, where the plain value underflows.

use super::acquisition::log_h;
use crate::pareto;

/// The improvement region of a front, as each box's bounds: indices into per-objective levels,
/// so that a prediction evaluates `h` once per distinct bound, not once per box.
pub(crate) struct Cells {
    /// Per objective, the distinct finite bounds of the boxes, ascending.
    levels: Vec<Vec<f64>>,
    /// Per box, per objective: (lower bound's level, or None for -inf; upper bound's level).
    boxes: Vec<Vec<(Option<usize>, usize)>>,
}

/// One objective's share of a box's log expected improvement, with its derivatives in mu and
/// sigma.
#[derive(Clone, Copy)]
struct Term {
    value: f64,
    dmu: f64,
    dsigma: f64,
}

impl Cells {
    /// The boxes where a point would improve on `front` (values to minimize) below `reference`.
    pub(crate) fn new(front: &[Vec<f64>], reference: &[f64]) -> Cells {
        let cells = pareto::improvement_cells(front, reference);
        let levels: Vec<Vec<f64>> = (0..reference.len())
            .map(|j| {
                let mut v: Vec<f64> =
                    cells.iter().flat_map(|c| [c.lower[j], c.upper[j]]).filter(|v| v.is_finite()).collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v
            })
            .collect();
        let at = |j: usize, v: f64| levels[j].partition_point(|l| *l < v);
        let boxes = cells
            .iter()
            .filter(|c| c.lower.iter().zip(&c.upper).all(|(l, u)| l < u))
            .map(|c| {
                (0..reference.len())
                    .map(|j| (c.lower[j].is_finite().then(|| at(j, c.lower[j])), at(j, c.upper[j])))
                    .collect()
            })
            .collect();
        Cells { levels, boxes }
    }

    /// `ln E[HVI]` for predictions N(`mu[j]`, `sigma[j]`²), and its derivatives in each `mu[j]`
    /// and `sigma[j]` (zeros unless `grad`).
    pub(crate) fn log_ehvi(&self, mu: &[f64], sigma: &[f64], grad: bool) -> (f64, Vec<f64>, Vec<f64>) {
        let m = mu.len();
        // ln(sigma h(z)) at every level of every objective: the log of E[(level - Y)+].
        let at_levels: Vec<Vec<Term>> = (0..m)
            .map(|j| {
                let s = sigma[j];
                self.levels[j]
                    .iter()
                    .map(|level| {
                        let z = (level - mu[j]) / s;
                        let (lh, dlh) = log_h(z);
                        Term { value: lh + s.ln(), dmu: -dlh / s, dsigma: (1.0 - dlh * z) / s }
                    })
                    .collect()
            })
            .collect();
        let terms: Vec<Vec<Term>> = self
            .boxes
            .iter()
            .map(|b| b.iter().enumerate().map(|(j, &(lower, upper))| box_term(&at_levels[j], lower, upper)).collect())
            .collect();
        let logs: Vec<f64> = terms.iter().map(|t| t.iter().map(|t| t.value).sum()).collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (mut dmu, mut dsigma) = (vec![0.0; m], vec![0.0; m]);
        if top == f64::NEG_INFINITY {
            return (top, dmu, dsigma);
        }
        let weights: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = weights.iter().sum();
        if grad {
            for (w, t) in weights.iter().zip(&terms) {
                for j in 0..m {
                    dmu[j] += w / total * t[j].dmu;
                    dsigma[j] += w / total * t[j].dsigma;
                }
            }
        }
        (top + total.ln(), dmu, dsigma)
    }
}

/// `ln E[(u - max(Y, l))+] = ln(E[(u - Y)+] - E[(l - Y)+])`, from the logs at both bounds.
fn box_term(at: &[Term], lower: Option<usize>, upper: usize) -> Term {
    let u = at[upper];
    let Some(l) = lower.map(|i| at[i]) else { return u };
    let x = l.value - u.value;
    if x >= 0.0 {
        // Equal bounds after rounding: an empty box.
        return Term { value: f64::NEG_INFINITY, dmu: 0.0, dsigma: 0.0 };
    }
    // ln(1 - e^x), and its derivative -1 / (e^-x - 1).
    let log1mexp = if x > -std::f64::consts::LN_2 { (-x.exp_m1()).ln() } else { (-x.exp()).ln_1p() };
    let slope = -1.0 / (-x).exp_m1();
    Term {
        value: u.value + log1mexp,
        dmu: u.dmu + slope * (l.dmu - u.dmu),
        dsigma: u.dsigma + slope * (l.dsigma - u.dsigma),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};

    /// The hypervolume improvement of `y`, by its definition.
    fn improvement(front: &[Vec<f64>], reference: &[f64], y: &[f64]) -> f64 {
        let mut with = front.to_vec();
        with.push(y.to_vec());
        pareto::hypervolume(&with, reference) - pareto::hypervolume(front, reference)
    }

    #[test]
    fn matches_monte_carlo_in_two_and_three_objectives() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for m in [1, 2, 3] {
            let front: Vec<Vec<f64>> = (0..6).map(|_| (0..m).map(|_| rng.random::<f64>()).collect()).collect();
            let front: Vec<Vec<f64>> = pareto::nondominated(&front).into_iter().map(|i| front[i].clone()).collect();
            let reference = vec![1.2; m];
            let cells = Cells::new(&front, &reference);
            let mu: Vec<f64> = (0..m).map(|_| rng.random_range(0.2..0.8)).collect();
            let sigma = vec![0.3; m];
            let normals: Vec<Normal<f64>> = (0..m).map(|j| Normal::new(mu[j], sigma[j]).unwrap()).collect();
            let draws = 100_000;
            let mc = (0..draws)
                .map(|_| {
                    improvement(&front, &reference, &normals.iter().map(|n| n.sample(&mut rng)).collect::<Vec<_>>())
                })
                .sum::<f64>()
                / draws as f64;
            let exact = cells.log_ehvi(&mu, &sigma, false).0.exp();
            assert!((exact - mc).abs() < 0.03 * mc + 1e-5, "{m} objectives: exact {exact} vs Monte Carlo {mc}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences_near_and_far() {
        let front = vec![vec![0.2, 0.8, 0.5], vec![0.6, 0.3, 0.4], vec![0.5, 0.5, 0.1]];
        let cells = Cells::new(&front, &[1.0, 1.0, 1.0]);
        for (mu, sigma) in [([0.4, 0.4, 0.4], [0.2, 0.1, 0.3]), ([3.0, 4.0, 2.5], [0.1, 0.2, 0.1])] {
            let (v, dmu, dsigma) = cells.log_ehvi(&mu, &sigma, true);
            assert!(v.is_finite(), "{v}");
            let h = 1e-6;
            for j in 0..3 {
                let (mut a, mut b) = (mu, mu);
                a[j] += h;
                b[j] -= h;
                let fd = (cells.log_ehvi(&a, &sigma, false).0 - cells.log_ehvi(&b, &sigma, false).0) / (2.0 * h);
                assert!((fd - dmu[j]).abs() < 1e-4 * (1.0 + fd.abs()), "dmu {j}: {fd} vs {}", dmu[j]);
                let (mut a, mut b) = (sigma, sigma);
                a[j] += h;
                b[j] -= h;
                let fd = (cells.log_ehvi(&mu, &a, false).0 - cells.log_ehvi(&mu, &b, false).0) / (2.0 * h);
                assert!((fd - dsigma[j]).abs() < 1e-4 * (1.0 + fd.abs()), "dsigma {j}: {fd} vs {}", dsigma[j]);
            }
        }
    }

    #[test]
    fn one_objective_is_log_ei() {
        let cells = Cells::new(&[vec![0.3], vec![0.5]], &[2.0]);
        let (v, _, _) = cells.log_ehvi(&[0.6], &[0.2], false);
        assert!((v - super::super::acquisition::log_ei(0.6, 0.04, 0.3)).abs() < 1e-12);
    }
}
