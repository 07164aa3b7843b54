//! What a study optimizes: one metric, minimized or maximized, or several (`Goals`), and the
//! constraints a trial's metrics must meet. Below trials, studies and pruners, which all
//! compare values by it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// The text a study file and the database use (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        [Direction::Minimize, Direction::Maximize].into_iter().find(|d| d.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

impl Objective {
    /// 1 to minimize, -1 to maximize: a value times its sign is a value to minimize.
    pub fn sign(&self) -> f64 {
        match self.direction {
            Direction::Minimize => 1.0,
            Direction::Maximize => -1.0,
        }
    }

    /// Whether value `a` is better than `b` in this objective's direction.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.direction {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

/// `metric <= bound` or `metric >= bound` on a finished trial's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub metric: String,
    pub at_most: bool,
    pub bound: f64,
}

impl Constraint {
    /// Reads `"n_params <= 2e6"` or `"val_acc >= 0.8"`.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let (metric, at_most, bound) = match (text.split_once("<="), text.split_once(">=")) {
            (Some((m, b)), None) => (m, true, b),
            (None, Some((m, b))) => (m, false, b),
            _ => return Err(format!("`{text}` is not `metric <= number` or `metric >= number`")),
        };
        let metric = metric.trim();
        if metric.is_empty() || metric.contains(|c: char| c.is_whitespace() || "<>=".contains(c)) {
            return Err(format!("`{text}`: `{metric}` is not a metric name"));
        }
        let bound = bound.trim();
        let bound = bound
            .parse::<f64>()
            .ok()
            .filter(|b| b.is_finite())
            .ok_or_else(|| format!("`{text}`: `{bound}` is not a finite number"))?;
        Ok(Constraint { metric: metric.to_string(), at_most, bound })
    }

    /// How far `metrics` are from meeting it, relative to the bound (0 when met; infinite when
    /// the metric is missing or NaN).
    pub fn violation(&self, metrics: &crate::trial::Metrics) -> f64 {
        let Some(&v) = metrics.get(&self.metric).filter(|v| !v.is_nan()) else { return f64::INFINITY };
        let excess = if self.at_most { v - self.bound } else { self.bound - v };
        if excess <= 0.0 {
            0.0
        } else if self.bound != 0.0 {
            excess / self.bound.abs()
        } else {
            excess
        }
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, if self.at_most { "<=" } else { ">=" }, self.bound)
    }
}

/// All a study asks of a finished trial: its objectives (the first is the one single-objective
/// parts follow) and its constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct Goals {
    pub objectives: Vec<Objective>,
    pub constraints: Vec<Constraint>,
}

impl Goals {
    pub fn single(objective: Objective) -> Goals {
        Goals { objectives: vec![objective], constraints: Vec::new() }
    }

    /// The objectives' metric names, in order.
    pub fn objective_metrics(&self) -> Vec<&str> {
        self.objectives.iter().map(|o| o.metric.as_str()).collect()
    }

    /// Whether `sweep best` answers with a set rather than one trial.
    pub fn is_plain(&self) -> bool {
        self.objectives.len() == 1 && self.constraints.is_empty()
    }

    /// The objective values to minimize (maximized ones negated); None unless all are finite.
    pub fn vector(&self, metrics: &crate::trial::Metrics) -> Option<Vec<f64>> {
        self.objectives
            .iter()
            .map(|o| {
                let v = *metrics.get(&o.metric).filter(|v| v.is_finite())?;
                Some(v * o.sign())
            })
            .collect()
    }

    /// The sum of the constraints' violations: 0 for a feasible trial.
    pub fn violation(&self, metrics: &crate::trial::Metrics) -> f64 {
        self.constraints.iter().map(|c| c.violation(metrics)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_read_and_measure() {
        let c = Constraint::parse(" n_params <= 2e6 ").unwrap();
        assert_eq!(c, Constraint { metric: "n_params".into(), at_most: true, bound: 2e6 });
        assert_eq!(c.to_string(), "n_params <= 2000000");
        let metrics = |v: f64| [("n_params".to_string(), v)].into_iter().collect();
        assert_eq!(c.violation(&metrics(1e6)), 0.0);
        assert_eq!(c.violation(&metrics(3e6)), 0.5);
        assert_eq!(c.violation(&metrics(f64::NAN)), f64::INFINITY);
        assert_eq!(c.violation(&Default::default()), f64::INFINITY);
        let at_least = Constraint::parse("acc>=0.5").unwrap();
        assert!(!at_least.at_most);
        for bad in ["acc < 3", "acc <= ", "<= 3", "acc <= 1 >= 2", "a b <= 1", "acc <= nan", "acc == 1"] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn goals_orient_every_objective_to_minimize() {
        let goals = Goals {
            objectives: vec![
                Objective { metric: "acc".into(), direction: Direction::Maximize },
                Objective { metric: "size".into(), direction: Direction::Minimize },
            ],
            constraints: vec![Constraint::parse("size <= 10").unwrap()],
        };
        let m: crate::trial::Metrics = [("acc".to_string(), 0.9), ("size".to_string(), 15.0)].into_iter().collect();
        assert_eq!(goals.vector(&m), Some(vec![-0.9, 15.0]));
        assert_eq!(goals.violation(&m), 0.5);
        let missing: crate::trial::Metrics = [("acc".to_string(), 0.9)].into_iter().collect();
        assert_eq!(goals.vector(&missing), None);
        assert!(!goals.is_plain());
    }

    #[test]
    fn the_stored_text_is_serdes() {
        for d in [Direction::Minimize, Direction::Maximize] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Direction::parse("max"), None);
    }
}
