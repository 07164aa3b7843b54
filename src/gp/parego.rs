//! ParEGO's scalarization (Knowles 2006): the objectives folded into one value by a random
//! augmented Chebyshev weighting, for a GP of its own to model.
//!
//! Why beside EHVI: on DTLZ2 every one of ten "distance" variables moves all three objectives a
//! little, and each objective's GP fitted them lengthscales of 2 to 5 (irrelevant), so EHVI never
//! valued bringing them to their optimum together. The scalarization worsens with each of them
//! at once, and its GP finds them. Alternating the two (`gp_goals.rs`) lifted DTLZ2 from 0.886 to
//! 0.957 of the true front's hypervolume at trial 100 and left the other problems of
//! `cargo bench --bench multiobjective` where they were (benches/RESULTS.md).

use rand::rngs::StdRng;
use rand::Rng;

/// Weight of the sum beside the maximum: keeps weakly dominated points worse than the points
/// that dominate them.
const AUGMENT: f64 = 0.05;
/// Added to an infeasible point's value, above any feasible one's (those lie in [0, 1.05]).
const INFEASIBLE: f64 = 2.0;

/// Each point's scalarized value (lower is better) under one random weighting: every objective
/// scaled to [0, 1] over the points, `max_j w_j f_j + AUGMENT sum_j w_j f_j`, with `w` uniform on
/// the simplex; an infeasible point is put behind every feasible one.
pub(super) fn scalarize(objectives: &[Vec<f64>], feasible: &[bool], rng: &mut StdRng) -> Vec<f64> {
    let m = objectives.len();
    let mut w: Vec<f64> = (0..m).map(|_| -rng.random::<f64>().max(1e-12).ln()).collect();
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= total);
    let span = |c: &[f64]| {
        let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, (hi - lo).max(1e-12))
    };
    let spans: Vec<(f64, f64)> = objectives.iter().map(|c| span(c)).collect();
    (0..feasible.len())
        .map(|i| {
            let f: Vec<f64> = (0..m).map(|j| w[j] * (objectives[j][i] - spans[j].0) / spans[j].1).collect();
            let value = f.iter().copied().fold(f64::NEG_INFINITY, f64::max) + AUGMENT * f.iter().sum::<f64>();
            if feasible[i] {
                value
            } else {
                value + INFEASIBLE
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_dominating_point_scalarizes_lower_and_infeasible_ones_last() {
        // Point 1 dominates point 0; point 2 trades; point 3 is best but infeasible.
        let objectives = vec![vec![0.5, 0.4, 0.0, -1.0], vec![0.5, 0.4, 1.0, -1.0]];
        let feasible = [true, true, true, false];
        for seed in 0..20 {
            let s = scalarize(&objectives, &feasible, &mut StdRng::seed_from_u64(seed));
            assert!(s[1] < s[0], "{s:?}");
            assert!(s[..3].iter().all(|v| (0.0..=1.05 + 1e-12).contains(v)), "{s:?}");
            assert!(s[3] > s[0].max(s[1]).max(s[2]), "{s:?}");
        }
    }
}
