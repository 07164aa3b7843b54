//! What a study optimizes: one metric, minimized or maximized. Below trials, studies and
//! pruners, which all compare values by it.

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

impl Objective {
    /// Whether value `a` is better than `b` in this objective's direction.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.direction {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_text_is_serdes() {
        for d in [Direction::Minimize, Direction::Maximize] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Direction::parse("max"), None);
    }
}
