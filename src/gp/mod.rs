//! Gaussian-process Bayesian optimization on the unit cube.
//!
//! Everything here works on encoded points: vectors whose columns lie in `[0, 1]`,
//! laid out by a list of [`Dim`]s. The caller maps its own search space in and out.
//! The objective is always minimized.

mod acquisition;
mod ehvi;
mod encoding;
mod fit;
mod goals;
mod kernel;
mod lbfgs;
mod linalg;
mod optimize;
mod parego;
mod posterior;
mod suggest;

pub use encoding::{encoded_width, snap, Dim};
pub use goals::{suggest_goals, ConstraintObservations, GoalObservations, GoalSuggestion, Rows};
pub use kernel::KernelParams;
pub use suggest::{suggest, suggest_reusing, Observations, Suggestion};

/// Why a suggestion could not be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GpError {
    #[error("no observations to fit")]
    NoObservations,
    #[error("{what} has {got} columns, expected {expected}")]
    WidthMismatch { what: &'static str, expected: usize, got: usize },
    #[error("x has {x} rows but y has {y}")]
    LengthMismatch { x: usize, y: usize },
    #[error("non-finite value in {0}")]
    NonFinite(&'static str),
    #[error("kernel matrix is not positive definite even with jitter")]
    NotPositiveDefinite,
}
