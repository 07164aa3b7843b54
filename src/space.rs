//! The search space: parameter distributions, conditions, random draws, and the mapping of
//! numeric parameters to and from the unit interval that model-based samplers work in.

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One trial's configuration: parameter name to value (numbers, strings, booleans).
/// Inactive conditional parameters are absent.
pub type Params = Map<String, Value>;

/// How a parameter's values are distributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Distribution {
    Float { low: f64, high: f64, log: bool, step: Option<f64> },
    Int { low: i64, high: i64, log: bool, step: i64 },
    Categorical { choices: Vec<Value> },
    Fixed { value: Value },
}

/// Most configurations a grid search enumerates: more is a space to sample, not to list.
pub const MAX_GRID: usize = 100_000;

/// A parameter exists only when every named parent has one of the listed values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub parent: String,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub distribution: Distribution,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The values a grid search tries for a float or int parameter (`grid = [...]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Vec<Value>>,
}

/// The validated search space. Parameters are ordered so that every parent comes before the
/// parameters that depend on it; walking them in order decides activity in one pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub params: Vec<Param>,
}

impl Param {
    /// The values a grid search tries: the `grid` list, the choices, or the fixed value; None
    /// for a numeric range without a grid.
    pub fn grid_values(&self) -> Option<Vec<Value>> {
        match (&self.grid, &self.distribution) {
            (Some(values), _) => Some(values.clone()),
            (None, Distribution::Categorical { choices }) => Some(choices.clone()),
            (None, Distribution::Fixed { value }) => Some(vec![value.clone()]),
            (None, _) => None,
        }
    }

    /// Whether this parameter is active given the values chosen so far.
    pub fn is_active(&self, chosen: &Params) -> bool {
        self.conditions
            .iter()
            .all(|c| chosen.get(&c.parent).is_some_and(|v| c.values.iter().any(|w| values_equal(v, w))))
    }
}

impl Distribution {
    /// Draws a value uniformly (log-uniformly where `log`).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Value {
        match self {
            Distribution::Categorical { choices } => choices[rng.random_range(0..choices.len())].clone(),
            Distribution::Fixed { value } => value.clone(),
            _ => self.from_unit(rng.random::<f64>()),
        }
    }

    /// Maps a numeric value to [0, 1] (log space for log parameters). Categorical values map
    /// to their index over the number of choices; fixed values to 0.
    pub fn to_unit(&self, value: &Value) -> Option<f64> {
        let unit = match self {
            Distribution::Float { low, high, log, step } => {
                let (lo, hi) = self.padded_range(*low, *high, *log, *step);
                scale(warp(value.as_f64()?, *log), lo, hi)
            }
            Distribution::Int { low, high, log, step } => {
                let (lo, hi) = self.padded_range(*low as f64, *high as f64, *log, Some(*step as f64));
                scale(warp(value.as_f64()?, *log), lo, hi)
            }
            Distribution::Categorical { choices } => {
                let i = choices.iter().position(|c| values_equal(c, value))?;
                (i as f64 + 0.5) / choices.len() as f64
            }
            Distribution::Fixed { .. } => 0.0,
        };
        Some(unit.clamp(0.0, 1.0))
    }

    /// Maps u in [0, 1] back to a valid value: inverse of `to_unit`, then rounded to the
    /// step grid and clamped into bounds, so every u yields a legal value.
    pub fn from_unit(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0);
        match self {
            Distribution::Float { low, high, log, step } => {
                let (lo, hi) = self.padded_range(*low, *high, *log, *step);
                let x = unwarp(lo + u * (hi - lo), *log);
                let x = match step {
                    Some(s) => low + ((x - low) / s).round() * s,
                    None => x,
                };
                Value::from(x.clamp(*low, *high))
            }
            Distribution::Int { low, high, log, step } => {
                let (lo, hi) = self.padded_range(*low as f64, *high as f64, *log, Some(*step as f64));
                let x = unwarp(lo + u * (hi - lo), *log);
                let k = ((x - *low as f64) / *step as f64).round() as i64;
                Value::from((low + k * step).clamp(*low, *high))
            }
            Distribution::Categorical { choices } => {
                let i = ((u * choices.len() as f64) as usize).min(choices.len() - 1);
                choices[i].clone()
            }
            Distribution::Fixed { value } => value.clone(),
        }
    }

    /// The interval the unit cube spans, in warped space. Discrete grids are padded by half a
    /// step so that each grid value owns an equal share of [0, 1] and the ends are not
    /// under-sampled.
    fn padded_range(&self, low: f64, high: f64, log: bool, step: Option<f64>) -> (f64, f64) {
        match step {
            Some(s) if !log => (low - s / 2.0, high + s / 2.0),
            Some(_) => (warp((low - 0.5).max(low / 2.0), true), warp(high + 0.5, true)),
            None => (warp(low, log), warp(high, log)),
        }
    }

    /// Whether `value` is a legal value of this distribution.
    pub fn contains(&self, value: &Value) -> bool {
        match self {
            Distribution::Float { low, high, step, .. } => {
                value.as_f64().is_some_and(|x| x >= *low && x <= *high && step.is_none_or(|s| on_grid(x - low, s)))
            }
            Distribution::Int { low, high, step, .. } => {
                value.as_i64().is_some_and(|x| x >= *low && x <= *high && (x - low) % step == 0)
            }
            Distribution::Categorical { choices } => choices.iter().any(|c| values_equal(c, value)),
            Distribution::Fixed { value: v } => values_equal(v, value),
        }
    }
}

impl Space {
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Draws a full configuration uniformly, leaving inactive parameters out.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Params {
        let mut chosen = Params::new();
        for p in &self.params {
            if p.is_active(&chosen) {
                let v = p.distribution.sample(rng);
                chosen.insert(p.name.clone(), v);
            }
        }
        chosen
    }

    /// Checks a user-given configuration (enqueued, or from the web page): every active
    /// parameter present and legal, nothing unknown or inactive. Fixed parameters may be left
    /// out and are filled in. Returns the completed configuration.
    pub fn complete(&self, given: &Params) -> Result<Params, String> {
        if let Some(unknown) = given.keys().find(|k| self.get(k).is_none()) {
            return Err(format!("unknown parameter `{unknown}`"));
        }
        let mut chosen = Params::new();
        for p in &self.params {
            let active = p.is_active(&chosen);
            match (given.get(&p.name), active, &p.distribution) {
                (Some(_), false, _) => return Err(format!("parameter `{}` is inactive under its condition", p.name)),
                (None, true, Distribution::Fixed { value }) => {
                    chosen.insert(p.name.clone(), value.clone());
                }
                (None, true, _) => return Err(format!("missing parameter `{}`", p.name)),
                (Some(v), true, d) => {
                    let v = normalize_number(d, v);
                    if !d.contains(&v) {
                        return Err(format!("`{}` = {v} is outside its distribution {}", p.name, describe(d)));
                    }
                    chosen.insert(p.name.clone(), v);
                }
                (None, false, _) => {}
            }
        }
        Ok(chosen)
    }

    /// Every configuration of a grid search, in a fixed order: parameters in the space's order
    /// (the first changes slowest), each one's values as listed, a conditional parameter only
    /// where its condition holds. Err names a numeric parameter with no `grid`, or says that
    /// the grid has more than `limit` configurations.
    pub fn grid(&self, limit: usize) -> Result<Vec<Params>, String> {
        let mut configs = vec![Params::new()];
        for p in &self.params {
            let values = p.grid_values().ok_or_else(|| format!("`{}` needs a `grid = [...]` list", p.name))?;
            let mut next = Vec::new();
            for config in configs {
                if !p.is_active(&config) {
                    next.push(config);
                    continue;
                }
                for v in &values {
                    let mut c = config.clone();
                    c.insert(p.name.clone(), v.clone());
                    next.push(c);
                }
            }
            if next.len() > limit {
                return Err(format!("the grid has more than {limit} configurations"));
            }
            configs = next;
        }
        Ok(configs)
    }

    /// Canonical JSON of the space: equal spaces give equal text, used for the stored hash
    /// and to tell a user what changed between runs.
    pub fn canonical(&self) -> Value {
        serde_json::to_value(self).expect("space serializes")
    }

    /// The space back from its canonical JSON (as stored with the study), so configurations
    /// from the web page are checked exactly like the study file's `[[enqueue]]` entries.
    pub fn from_canonical(value: &Value) -> Result<Space, serde_json::Error> {
        Space::deserialize(value)
    }
}

/// A short human description of a distribution, for messages.
pub fn describe(d: &Distribution) -> String {
    serde_json::to_string(d).unwrap_or_default()
}

/// Integers given for an int parameter may arrive as floats (e.g. 3.0 from JSON); make them
/// integers so they compare and store the same.
fn normalize_number(d: &Distribution, v: &Value) -> Value {
    match (d, v.as_f64()) {
        (Distribution::Int { .. }, Some(x)) if x.fract() == 0.0 && v.as_i64().is_none() => Value::from(x as i64),
        _ => v.clone(),
    }
}

/// Values are equal if they are the same JSON value, numbers compared numerically (1 == 1.0).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn on_grid(offset: f64, step: f64) -> bool {
    let k = offset / step;
    (k - k.round()).abs() < 1e-9 * k.abs().max(1.0)
}

fn warp(x: f64, log: bool) -> f64 {
    if log {
        x.ln()
    } else {
        x
    }
}

fn unwarp(x: f64, log: bool) -> f64 {
    if log {
        x.exp()
    } else {
        x
    }
}

fn scale(x: f64, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        (x - lo) / (hi - lo)
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};
    use serde_json::json;

    fn float(low: f64, high: f64, log: bool, step: Option<f64>) -> Distribution {
        Distribution::Float { low, high, log, step }
    }

    #[test]
    fn unit_round_trip_hits_every_value_legally() {
        let dists = [
            float(1e-5, 1e-1, true, None),
            float(0.0, 1.0, false, Some(0.25)),
            Distribution::Int { low: 1, high: 9, log: false, step: 2 },
            Distribution::Int { low: 16, high: 1024, log: true, step: 1 },
            Distribution::Categorical { choices: vec![json!("a"), json!(2), json!(true)] },
        ];
        for d in &dists {
            for i in 0..=100 {
                let v = d.from_unit(i as f64 / 100.0);
                assert!(d.contains(&v), "{d:?} gave {v}");
                let back = d.from_unit(d.to_unit(&v).unwrap());
                assert!(values_equal(&back, &v), "{d:?}: {v} -> {back}");
            }
        }
    }

    #[test]
    fn stepped_ints_are_drawn_evenly() {
        let d = Distribution::Int { low: 0, high: 2, log: false, step: 1 };
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts = [0; 3];
        for _ in 0..3000 {
            counts[d.sample(&mut rng).as_i64().unwrap() as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 900), "{counts:?}");
    }

    #[test]
    fn conditional_parameters_are_only_present_when_active() {
        let space = Space {
            params: vec![
                Param {
                    name: "opt".into(),
                    distribution: Distribution::Categorical { choices: vec![json!("sgd"), json!("adam")] },
                    conditions: vec![],
                    grid: None,
                },
                Param {
                    name: "momentum".into(),
                    distribution: float(0.0, 0.99, false, None),
                    conditions: vec![Condition { parent: "opt".into(), values: vec![json!("sgd")] }],
                    grid: Some(vec![json!(0.0), json!(0.9)]),
                },
            ],
        };
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let p = space.sample(&mut rng);
            assert_eq!(p.contains_key("momentum"), p["opt"] == json!("sgd"));
        }
        let bad: Params = serde_json::from_value(json!({"opt": "adam", "momentum": 0.5})).unwrap();
        assert!(space.complete(&bad).unwrap_err().contains("inactive"));
        let good: Params = serde_json::from_value(json!({"opt": "sgd", "momentum": 0.5})).unwrap();
        assert_eq!(space.complete(&good).unwrap(), good);
        assert_eq!(Space::from_canonical(&space.canonical()).unwrap(), space);
        let grid: Vec<Value> = space.grid(10).unwrap().into_iter().map(Value::Object).collect();
        assert_eq!(
            grid,
            [json!({"opt": "sgd", "momentum": 0.0}), json!({"opt": "sgd", "momentum": 0.9}), json!({"opt": "adam"})],
            "a conditional parameter multiplies only the configurations where it is active"
        );
        assert!(space.grid(2).unwrap_err().contains("more than 2"));
    }
}
