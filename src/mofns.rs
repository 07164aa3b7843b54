//! Multi-objective test problems with known Pareto fronts (Zitzler, Deb and Thiele 2000; Deb
//! et al. 2002; Jain and Deb 2014), shared by the testfn worker and `benches/multiobjective.rs`.
//! Every variable lies in [0, 1] (but `mixed`'s); every objective is minimized. A constrained
//! problem also returns its constraint value, feasible when <= 0.

use crate::space::{Condition, Distribution, Param, Params, Space};
use serde_json::{json, Value};
use std::f64::consts::FRAC_PI_2;

/// Objective values, and the constraint value of a constrained problem.
pub type Evaluation = (Vec<f64>, Option<f64>);

/// A problem: its name, size, and a fixed reference point for the hypervolume (beyond what a
/// random point of the box usually reaches in each objective, so early trials count too).
#[derive(Debug, Clone, Copy)]
pub struct MoFn {
    pub name: &'static str,
    pub dims: usize,
    pub objectives: usize,
    pub constrained: bool,
    /// `mixed`'s space (a categorical, an int and a conditional float) instead of `dims` floats.
    pub mixed: bool,
    pub reference: &'static [f64],
    /// Objective values, then the constraint value when `constrained`.
    pub eval: fn(&[f64], usize) -> Evaluation,
}

/// `zdt1`, `zdt2` (6 variables; `zdt1:10` for 10), `dtlz2` (3 objectives, 12 variables),
/// `c2dtlz2` (the same with the C2 constraint), `mixed` (see [`mixed`]).
pub fn by_name(name: &str) -> Option<MoFn> {
    let (base, dims) = match name.split_once(':') {
        Some((b, d)) => (b, Some(d.parse::<usize>().ok().filter(|d| (2..=100).contains(d))?)),
        None => (name, None),
    };
    Some(match base {
        "zdt1" => MoFn {
            name: "zdt1",
            dims: dims.unwrap_or(6),
            objectives: 2,
            constrained: false,
            mixed: false,
            reference: &[1.1, 11.0],
            eval: zdt1,
        },
        "zdt2" => MoFn {
            name: "zdt2",
            dims: dims.unwrap_or(6),
            objectives: 2,
            constrained: false,
            mixed: false,
            reference: &[1.1, 11.0],
            eval: zdt2,
        },
        "dtlz2" => MoFn {
            name: "dtlz2",
            dims: dims.unwrap_or(12),
            objectives: 3,
            constrained: false,
            mixed: false,
            reference: &[2.5, 2.5, 2.5],
            eval: dtlz2,
        },
        "c2dtlz2" => MoFn {
            name: "c2dtlz2",
            dims: dims.unwrap_or(12),
            objectives: 3,
            constrained: true,
            mixed: false,
            reference: &[2.5, 2.5, 2.5],
            eval: c2dtlz2,
        },
        "mixed" if dims.is_none() => MoFn {
            name: "mixed",
            dims: 7,
            objectives: 2,
            constrained: false,
            mixed: true,
            reference: &[1.1, 11.0],
            eval: mixed,
        },
        _ => return None,
    })
}

/// The problems of `benches/multiobjective.rs`.
pub fn suite() -> Vec<MoFn> {
    ["zdt1", "zdt2", "dtlz2", "c2dtlz2", "mixed"].iter().filter_map(|n| by_name(n)).collect()
}

fn zdt_g(x: &[f64]) -> f64 {
    1.0 + 9.0 * x[1..].iter().sum::<f64>() / (x.len() - 1) as f64
}

pub fn zdt1(x: &[f64], _: usize) -> Evaluation {
    let g = zdt_g(x);
    (vec![x[0], g * (1.0 - (x[0] / g).sqrt())], None)
}

pub fn zdt2(x: &[f64], _: usize) -> Evaluation {
    let g = zdt_g(x);
    (vec![x[0], g * (1.0 - (x[0] / g).powi(2))], None)
}

/// DTLZ2 with `m` objectives: the front is the unit sphere's positive part.
pub fn dtlz2(x: &[f64], m: usize) -> Evaluation {
    let m = if m == 0 { 3 } else { m };
    let g: f64 = x[m - 1..].iter().map(|v| (v - 0.5).powi(2)).sum();
    let f = (0..m)
        .map(|i| {
            let mut v = 1.0 + g;
            for xj in &x[..m - 1 - i] {
                v *= (xj * FRAC_PI_2).cos();
            }
            if i > 0 {
                v *= (x[m - 1 - i] * FRAC_PI_2).sin();
            }
            v
        })
        .collect();
    (f, None)
}

/// DTLZ2 with the C2 constraint: only the sphere's parts near each axis and near its centre
/// direction are feasible (radius 0.4 for 3 objectives, 0.5 beyond).
pub fn c2dtlz2(x: &[f64], m: usize) -> Evaluation {
    let (f, _) = dtlz2(x, m);
    let m = f.len();
    let r: f64 = if m == 3 { 0.4 } else { 0.5 };
    let squares: f64 = f.iter().map(|v| v * v).sum();
    let near_axis = (0..m).map(|i| (f[i] - 1.0).powi(2) + squares - f[i] * f[i] - r * r).fold(f64::INFINITY, f64::min);
    let centre = 1.0 / (m as f64).sqrt();
    let near_centre = f.iter().map(|v| (v - centre).powi(2)).sum::<f64>() - r * r;
    (f, Some(near_axis.min(near_centre)))
}

/// A mixed and conditional space with a ZDT-like front made of two branches: `x0..x3` floats,
/// `shape` "a" or "b", `k` an int in 0..=10 (best at 3), and `x4` a float only `shape` "b" has
/// (best at 0.7). As a vector: `[x0, x1, x2, x3, shape (0 or 1), k, x4 (NaN for "a")]`. With
/// the distance terms at their best, "a" gives `1 - sqrt(f1)` and "b" `0.6 (1 - f1)`: the true
/// front takes "b" below f1 = 4/9 and "a" above it.
pub fn mixed(x: &[f64], _: usize) -> Evaluation {
    let g = 1.0 + 9.0 * (x[1] + x[2] + x[3] + (x[5] - 3.0).abs() / 7.0) / 4.0;
    let f2 = if x[4] == 0.0 {
        g * (1.0 - (x[0] / g).sqrt())
    } else {
        let g = g + 4.0 * (x[6] - 0.7).powi(2);
        0.6 * g * (1.0 - x[0] / g)
    };
    (vec![x[0], f2], None)
}

impl MoFn {
    /// The search space: floats `x0..x{dims-1}` in [0, 1], or `mixed`'s.
    pub fn space(&self) -> Space {
        let p =
            |name: &str, distribution, conditions| Param { name: name.into(), distribution, conditions, grid: None };
        let unit = || Distribution::Float { low: 0.0, high: 1.0, log: false, step: None };
        if !self.mixed {
            return Space { params: (0..self.dims).map(|i| p(&format!("x{i}"), unit(), vec![])).collect() };
        }
        let mut params: Vec<Param> = (0..4).map(|i| p(&format!("x{i}"), unit(), vec![])).collect();
        params.push(p("shape", Distribution::Categorical { choices: vec![json!("a"), json!("b")] }, vec![]));
        params.push(p("k", Distribution::Int { low: 0, high: 10, log: false, step: 1 }, vec![]));
        let only_b = Condition { parent: "shape".into(), values: vec![json!("b")] };
        params.push(p("x4", unit(), vec![only_b]));
        Space { params }
    }

    /// The vector `eval` takes, from a trial's params; None if one is missing or of the wrong
    /// kind.
    pub fn point(&self, params: &Params) -> Option<Vec<f64>> {
        let float = |name: &str| params.get(name).and_then(Value::as_f64);
        if !self.mixed {
            return (0..self.dims).map(|i| float(&format!("x{i}"))).collect();
        }
        let mut x: Vec<f64> = (0..4).map(|i| float(&format!("x{i}"))).collect::<Option<_>>()?;
        let b = match params.get("shape").and_then(Value::as_str)? {
            "a" => false,
            "b" => true,
            _ => return None,
        };
        x.extend([f64::from(u8::from(b)), float("k")?, if b { float("x4")? } else { f64::NAN }]);
        Some(x)
    }

    /// Objectives (and constraint) at `x`.
    pub fn at(&self, x: &[f64]) -> Evaluation {
        (self.eval)(x, self.objectives)
    }

    /// The hypervolume of the true Pareto front against `reference`, from a dense sample of
    /// it (feasible points only): what a perfect optimizer approaches.
    pub fn front_hypervolume(&self) -> f64 {
        let mut points = Vec::new();
        let steps = if self.objectives == 2 { 4000 } else { 60 };
        let mut x = vec![0.0; self.dims];
        // Distance variables at their optimum: 0 for ZDT, 0.5 for DTLZ.
        let rest = if self.name.starts_with("zdt") { 0.0 } else { 0.5 };
        for v in &mut x[self.objectives - 1..] {
            *v = rest;
        }
        let grid = |k: usize| k as f64 / steps as f64;
        if self.mixed {
            for k in 0..=steps {
                for branch in [[grid(k), 0.0, 0.0, 0.0, 0.0, 3.0, f64::NAN], [grid(k), 0.0, 0.0, 0.0, 1.0, 3.0, 0.7]] {
                    points.push(self.at(&branch));
                }
            }
        } else if self.objectives == 2 {
            for k in 0..=steps {
                x[0] = grid(k);
                points.push(self.at(&x));
            }
        } else {
            for a in 0..=steps {
                for b in 0..=steps {
                    x[0] = grid(a);
                    x[1] = grid(b);
                    points.push(self.at(&x));
                }
            }
        }
        let feasible: Vec<Vec<f64>> =
            points.into_iter().filter(|(_, c)| c.is_none_or(|c| c <= 0.0)).map(|(f, _)| f).collect();
        crate::pareto::hypervolume(&feasible, self.reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_are_where_the_papers_put_them() {
        let zdt = by_name("zdt1").unwrap();
        let mut x = vec![0.0; 6];
        x[0] = 0.25;
        assert_eq!(zdt.at(&x).0, vec![0.25, 0.5]);
        assert_eq!(by_name("zdt2").unwrap().at(&x).0, vec![0.25, 1.0 - 0.0625]);
        assert_eq!(by_name("zdt1:10").unwrap().dims, 10);
        assert!(by_name("zdt1:x").is_none() && by_name("zdt3").is_none());
        let d = by_name("dtlz2").unwrap();
        let mut x = vec![0.5; 12];
        x[0] = 0.3;
        x[1] = 0.8;
        let f = d.at(&x).0;
        assert!((f.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12, "on the unit sphere: {f:?}");
        // C2: the axis point is feasible, the sphere between axis and centre is not.
        let c = by_name("c2dtlz2").unwrap();
        let mut axis = vec![0.5; 12];
        (axis[0], axis[1]) = (0.0, 0.0); // f = (1, 0, 0)
        assert!(c.at(&axis).1.unwrap() <= 0.0);
        let mut between = vec![0.5; 12];
        between[0] = 0.0; // f = (0.71, 0.71, 0): far from each axis and from the centre
        assert!(c.at(&between).1.unwrap() > 0.0);
    }

    #[test]
    fn mixed_reads_its_space_and_takes_the_better_branch() {
        let f = by_name("mixed").unwrap();
        let space = f.space();
        let a: Params =
            serde_json::from_value(json!({"x0": 0.9, "x1": 0.0, "x2": 0.0, "x3": 0.0, "shape": "a", "k": 3})).unwrap();
        assert!(space.complete(&a).is_ok());
        let mut b = a.clone();
        b.insert("shape".into(), json!("b"));
        assert!(f.point(&b).is_none(), "b needs x4");
        b.insert("x4".into(), json!(0.7));
        let (fa, fb) = (f.at(&f.point(&a).unwrap()).0, f.at(&f.point(&b).unwrap()).0);
        assert!((fa[1] - (1.0 - 0.9f64.sqrt())).abs() < 1e-12 && (fb[1] - 0.06).abs() < 1e-12, "{fa:?} {fb:?}");
        assert!(fa[1] < fb[1], "a is better at f1 = 0.9");
    }

    #[test]
    fn the_true_hypervolumes_match_closed_forms() {
        // DTLZ2: the box 2.5^3 less the unit ball's positive eighth.
        let d = by_name("dtlz2").unwrap().front_hypervolume();
        let exact = 2.5f64.powi(3) - std::f64::consts::PI / 6.0;
        assert!((d - exact).abs() < 0.02, "{d} vs {exact}");
        // ZDT1: the box 1.1 x 11 less the area under the front 1 - sqrt(f1) on [0, 1] (1/3).
        let z = by_name("zdt1").unwrap().front_hypervolume();
        let exact = 1.1 * 11.0 - 1.0 / 3.0;
        assert!((z - exact).abs() < 1e-3, "{z} vs {exact}");
        assert!(by_name("c2dtlz2").unwrap().front_hypervolume() < d);
        // Mixed: below the lower of 1 - sqrt(f1) and 0.6 (1 - f1), which cross where
        // sqrt(f1) = t with 0.6 t^2 - t + 0.4 = 0, t = 2/3.
        let m = by_name("mixed").unwrap().front_hypervolume();
        let t: f64 = 2.0 / 3.0;
        let (c, under_b, under_a) =
            (t * t, 0.6 * (t * t - t.powi(4) / 2.0), 1.0 - t * t - 2.0 / 3.0 * (1.0 - t.powi(3)));
        let exact = 1.1 * 11.0 - under_b - under_a;
        assert!((m - exact).abs() < 1e-3, "{m} vs {exact} (crossing at {c})");
    }
}
