//! Standard optimization test functions with known optima, shared by the testfn worker,
//! the tests and the sampler benchmarks. Each takes a point in its natural domain.

use std::f64::consts::{E, PI};

/// A test function: its name, domain and known global minimum.
#[derive(Debug, Clone, Copy)]
pub struct TestFn {
    pub name: &'static str,
    pub dims: usize,
    /// Lower and upper bound, the same in every dimension unless `bounds_2d` is set.
    pub low: f64,
    pub high: f64,
    /// Per-dimension bounds for functions whose box is not a cube (branin).
    pub bounds_2d: Option<[(f64, f64); 2]>,
    pub minimum: f64,
    pub eval: fn(&[f64]) -> f64,
}

impl TestFn {
    /// Bounds of dimension `i`.
    pub fn bounds(&self, i: usize) -> (f64, f64) {
        match self.bounds_2d {
            Some(b) => b[i],
            None => (self.low, self.high),
        }
    }
}

/// Looks a function up by name: `branin`, `hartmann6`, `ackley5`, `rosenbrock4`, `levy10`,
/// or `ackley`/`rosenbrock`/`levy` followed by any dimension.
pub fn by_name(name: &str) -> Option<TestFn> {
    let split = name.find(|c: char| c.is_ascii_digit()).unwrap_or(name.len());
    let (base, digits) = name.split_at(split);
    let dims: Option<usize> = if digits.is_empty() { None } else { digits.parse().ok() };
    let f = match base {
        "branin" if dims.is_none() || dims == Some(2) => TestFn {
            name: "branin",
            dims: 2,
            low: -5.0,
            high: 15.0,
            bounds_2d: Some([(-5.0, 10.0), (0.0, 15.0)]),
            minimum: 0.397_887_357_729_738,
            eval: branin,
        },
        "hartmann" if dims.is_none() || dims == Some(6) => TestFn {
            name: "hartmann6",
            dims: 6,
            low: 0.0,
            high: 1.0,
            bounds_2d: None,
            minimum: -3.322_368_011_415_515,
            eval: hartmann6,
        },
        "ackley" => cube("ackley", dims.unwrap_or(5), -32.768, 32.768, ackley),
        "rosenbrock" => cube("rosenbrock", dims.unwrap_or(4), -5.0, 10.0, rosenbrock),
        "levy" => cube("levy", dims.unwrap_or(10), -10.0, 10.0, levy),
        _ => return None,
    };
    (f.dims > 0).then_some(f)
}

/// The five functions of the sampler benchmark.
pub fn benchmark_suite() -> Vec<TestFn> {
    ["branin", "hartmann6", "ackley5", "rosenbrock4", "levy10"]
        .iter()
        .map(|n| by_name(n).expect("known function"))
        .collect()
}

fn cube(name: &'static str, dims: usize, low: f64, high: f64, eval: fn(&[f64]) -> f64) -> TestFn {
    TestFn { name, dims, low, high, bounds_2d: None, minimum: 0.0, eval }
}

pub fn branin(x: &[f64]) -> f64 {
    let (x1, x2) = (x[0], x[1]);
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

pub fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4)
        .map(|i| {
            let inner: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum::<f64>()
}

pub fn ackley(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let sq = x.iter().map(|v| v * v).sum::<f64>() / n;
    let cs = x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / n;
    -20.0 * (-0.2 * sq.sqrt()).exp() - cs.exp() + 20.0 + E
}

pub fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2).map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2)).sum()
}

pub fn levy(x: &[f64]) -> f64 {
    let w: Vec<f64> = x.iter().map(|v| 1.0 + (v - 1.0) / 4.0).collect();
    let d = w.len();
    let head = (PI * w[0]).sin().powi(2);
    let middle: f64 =
        w[..d - 1].iter().map(|wi| (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2))).sum();
    let last = (w[d - 1] - 1.0).powi(2) * (1.0 + (2.0 * PI * w[d - 1]).sin().powi(2));
    head + middle + last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_minima_are_reached_at_known_points() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        assert!(close(branin(&[PI, 2.275]), 0.397887));
        assert!(close(hartmann6(&[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]), -3.32237));
        assert!(close(ackley(&[0.0; 5]), 0.0));
        assert!(close(rosenbrock(&[1.0; 4]), 0.0));
        assert!(close(levy(&[1.0; 10]), 0.0));
    }

    #[test]
    fn names_resolve_with_dimensions() {
        assert_eq!(by_name("ackley5").unwrap().dims, 5);
        assert_eq!(by_name("levy").unwrap().dims, 10);
        assert_eq!(by_name("rosenbrock7").unwrap().dims, 7);
        assert!(by_name("hartmann3").is_none());
        assert!(by_name("nope").is_none());
        assert_eq!(benchmark_suite().len(), 5);
    }
}
