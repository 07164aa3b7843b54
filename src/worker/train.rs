//! What pretraining and fine-tuning share: AdamW with decoupled weight decay on the weight
//! matrices only, warmup then linear/cosine/constant learning rate, global-norm gradient
//! clipping, and label-smoothed cross entropy.

use super::adamw::FusedAdamW;
use super::hparams::{Optim, Schedule};
use super::model;
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};

/// The learning rate at `step` (1-based) of `optim.steps`.
pub fn learning_rate(optim: &Optim, step: usize) -> f64 {
    let warmup = (optim.warmup * optim.steps as f64).ceil() as usize;
    if step <= warmup {
        return optim.lr * step as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (optim.steps - warmup).max(1) as f64;
    let factor = match optim.schedule {
        Schedule::Linear => 1.0 - progress,
        Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Schedule::Constant => 1.0,
    };
    optim.lr * factor.max(0.0)
}

/// AdamW over the trained variables: fused and in place on the CPU, candle_nn's two groups
/// (with and without weight decay) elsewhere.
pub struct Trainer {
    optimizer: Optimizers,
    vars: Vec<Var>,
    optim: Optim,
    step: usize,
}

enum Optimizers {
    Fused(FusedAdamW),
    Candle { decayed: AdamW, plain: AdamW },
}

impl Trainer {
    /// Trains every variable in `vars` whose name starts with one of `prefixes`.
    pub fn new(vars: &VarMap, prefixes: &[&str], optim: &Optim) -> Result<Trainer> {
        let data = vars.data().lock().expect("var map lock");
        let mut named: Vec<(&String, &Var)> =
            data.iter().filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p))).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let on_cpu = named.iter().all(|(_, var)| var.device().is_cpu());
        let optimizer = if on_cpu {
            let decay = |name: &str, var: &Var| if model::decays(name, var.rank()) { optim.weight_decay } else { 0.0 };
            Optimizers::Fused(FusedAdamW::new(named.iter().map(|(n, v)| ((*v).clone(), decay(n, v))).collect()))
        } else {
            let (decayed, plain): (Vec<_>, Vec<_>) =
                named.iter().partition(|(name, var)| model::decays(name, var.rank()));
            let params = |weight_decay| ParamsAdamW { lr: optim.lr, weight_decay, ..ParamsAdamW::default() };
            Optimizers::Candle {
                decayed: AdamW::new(decayed.iter().map(|(_, v)| (*v).clone()).collect(), params(optim.weight_decay))?,
                plain: AdamW::new(plain.iter().map(|(_, v)| (*v).clone()).collect(), params(0.0))?,
            }
        };
        Ok(Trainer {
            optimizer,
            vars: named.iter().map(|(_, v)| (*v).clone()).collect(),
            optim: optim.clone(),
            step: 0,
        })
    }

    /// One optimisation step on `loss`; returns the loss value.
    pub fn step(&mut self, loss: &Tensor) -> Result<f32> {
        self.update(loss.backward()?)?;
        loss.to_scalar::<f32>()
    }

    /// Clips the gradients and applies them at this step's learning rate.
    pub fn update(&mut self, mut grads: GradStore) -> Result<()> {
        self.step += 1;
        let lr = learning_rate(&self.optim, self.step);
        let scale = self.clip_scale(&grads)?;
        match &mut self.optimizer {
            Optimizers::Fused(adamw) => adamw.step(&grads, lr, scale),
            Optimizers::Candle { decayed, plain } => {
                if scale != 1.0 {
                    for var in &self.vars {
                        if let Some(g) = grads.remove(var) {
                            grads.insert(var, (g * scale)?);
                        }
                    }
                }
                decayed.set_learning_rate(lr);
                plain.set_learning_rate(lr);
                decayed.step(&grads)?;
                plain.step(&grads)
            }
        }
    }

    /// What the gradients are multiplied by so their global norm is at most `grad_clip`.
    fn clip_scale(&self, grads: &GradStore) -> Result<f64> {
        if self.optim.grad_clip <= 0.0 {
            return Ok(1.0);
        }
        let mut total = 0f64;
        for g in self.vars.iter().filter_map(|var| grads.get(var)) {
            total += match g.device().is_cpu() {
                true => super::adamw::sum_of_squares(g)?,
                false => g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64,
            };
        }
        let norm = total.sqrt();
        Ok(if norm > self.optim.grad_clip { self.optim.grad_clip / (norm + 1e-6) } else { 1.0 })
    }
}

/// Mean cross entropy of `logits [n, classes]` against `targets [n]`, with the target's
/// probability mass spread by `smoothing` over all classes. One fused kernel on CPU.
pub fn smoothed_cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    if logits.device().is_cpu() {
        return super::fused::cross_entropy(logits, targets, smoothing);
    }
    composed_cross_entropy(logits, targets, smoothing)
}

/// The same loss from candle's ops, for other devices (and as the fused kernel's reference).
pub fn composed_cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    if smoothing == 0.0 {
        return nll.mean_all();
    }
    let uniform = log_probs.mean(D::Minus1)?.neg()?;
    ((nll * (1.0 - smoothing))? + (uniform * smoothing)?)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optim(schedule: Schedule) -> Optim {
        Optim {
            lr: 1.0,
            warmup: 0.1,
            schedule,
            weight_decay: 0.0,
            grad_clip: 0.0,
            batch_size: 1,
            steps: 100,
            dropout: 0.0,
            seq_len: 8,
        }
    }

    #[test]
    fn warmup_then_decay() {
        let linear = optim(Schedule::Linear);
        assert_eq!(learning_rate(&linear, 5), 0.5);
        assert_eq!(learning_rate(&linear, 10), 1.0);
        assert!((learning_rate(&linear, 55) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(&linear, 100), 0.0);
        let cosine = optim(Schedule::Cosine);
        assert!((learning_rate(&cosine, 55) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(&optim(Schedule::Constant), 90), 1.0);
    }

    #[test]
    fn smoothing_spreads_the_target() {
        let logits = Tensor::new(&[[2.0f32, 0.0, 0.0]], &candle_core::Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32], &candle_core::Device::Cpu).unwrap();
        let plain = composed_cross_entropy(&logits, &targets, 0.0).unwrap().to_scalar::<f32>().unwrap();
        let reference = candle_nn::loss::cross_entropy(&logits, &targets).unwrap().to_scalar::<f32>().unwrap();
        assert!((plain - reference).abs() < 1e-6);
        let smoothed = composed_cross_entropy(&logits, &targets, 0.3).unwrap().to_scalar::<f32>().unwrap();
        assert!(smoothed > plain, "smoothing penalises a confident right answer");
    }
}
