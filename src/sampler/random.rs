use super::{Proposal, Sampler};
use crate::space::Space;
use crate::trial::History;
use rand::rngs::StdRng;

/// Independent uniform draws (log-uniform for log parameters).
pub struct RandomSampler;

impl Sampler for RandomSampler {
    fn propose(&self, space: &Space, _history: &History, rng: &mut StdRng) -> Proposal {
        Proposal { params: space.sample(rng), state: None }
    }
}
