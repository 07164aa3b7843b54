//! Samplers propose the next configuration. They are pure: `(space, history, rng) -> proposal`,
//! with no I/O and no clock, so a study replays the same way and tests are simple. What a
//! sampler wants to remember (a GP's fitted kernel) travels in the proposal's `state`, is stored
//! with the trial, and comes back in the history.

#[cfg(test)]
mod conformance;
mod fidelity;
mod gp;
mod gp_goals;
mod grid;
mod random;

pub use gp::GpSampler;
pub use grid::GridSampler;
pub use random::RandomSampler;

use crate::space::{Params, Space};
use crate::study::{SamplerConfig, SamplerKind};
use crate::trial::History;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// The next trial's params, and what the sampler learned while choosing them.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub params: Params,
    pub state: Option<serde_json::Value>,
}

pub trait Sampler: Send + Sync {
    /// Proposes the params of the next trial. `history` holds finished and running trials.
    fn propose(&self, space: &Space, history: &History, rng: &mut StdRng) -> Proposal;

    /// Whether a proposal may take long enough (a model fit) to run on a thread of its own
    /// instead of the coordinator's, which must keep answering workers meanwhile.
    fn runs_long(&self) -> bool {
        false
    }
}

/// A random proposal standing in for a sampler that could not do its job, with the reason
/// kept in the trial's sampler state (`{"fallback": why}`) so it shows with the trial.
pub fn fallback(space: &Space, rng: &mut StdRng, why: String) -> Proposal {
    Proposal { params: space.sample(rng), state: Some(serde_json::json!({ "fallback": why })) }
}

/// Builds the sampler a study asks for.
pub fn from_config(config: &SamplerConfig) -> Box<dyn Sampler> {
    match config.kind {
        SamplerKind::Random => Box::new(RandomSampler),
        SamplerKind::Gp => Box::new(GpSampler {
            multi_fidelity: config.multi_fidelity,
            ..GpSampler::new(config.startup_trials as usize)
        }),
        SamplerKind::Grid => Box::new(GridSampler),
    }
}

/// The RNG of one proposal, seeded from the study seed and the proposal's index (the trial's
/// number when no trial was re-run; see `History::first_attempts_before`), so proposals do
/// not depend on the order in which parallel trials finish, nor on crashes.
pub fn trial_rng(study_seed: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(study_seed ^ splitmix64(index.wrapping_add(0x9E37_79B9_7F4A_7C15))))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
