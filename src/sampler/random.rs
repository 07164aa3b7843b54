use super::Sampler;
use crate::space::{Params, Space};
use crate::trial::History;
use rand::rngs::StdRng;

/// Independent uniform draws (log-uniform for log parameters).
pub struct RandomSampler;

impl Sampler for RandomSampler {
    fn propose(&self, space: &Space, _history: &History, rng: &mut StdRng) -> Params {
        space.sample(rng)
    }
}
