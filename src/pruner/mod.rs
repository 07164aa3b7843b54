//! Pruners decide, after each report, whether a trial goes on. They are pure:
//! `(trial, history) -> decision`.

use crate::study::PrunerKind;
use crate::trial::{History, Trial};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue,
    /// Stop the trial; the reason is stored with it.
    Stop(String),
}

pub trait Pruner: Send + Sync {
    /// `trial.curve` already holds the report just received.
    fn decide(&self, trial: &Trial, history: &History) -> Verdict;
}

/// Never stops a trial.
pub struct NoPruner;

impl Pruner for NoPruner {
    fn decide(&self, _trial: &Trial, _history: &History) -> Verdict {
        Verdict::Continue
    }
}

pub fn from_config(kind: PrunerKind) -> Box<dyn Pruner> {
    match kind {
        PrunerKind::None => Box::new(NoPruner),
    }
}
