//! What pretraining and fine-tuning share: AdamW with decoupled weight decay on the weight
//! matrices only, warmup then linear/cosine/constant learning rate, global-norm gradient
//! clipping, label-smoothed cross entropy, and the training loop's moving parts (`Progress`:
//! optimizer, data order, dropout, running loss) with their checkpoint and exact resume.

use super::adamw::{FusedAdamW, TensorAdamW};
use super::checkpoint::Checkpoints;
use super::hparams::{Optim, Schedule};
use super::model;
use super::model::Dropout;
use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var, D};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

/// AdamW over the trained variables: fused and in place on the CPU, from candle's tensor ops
/// elsewhere; both with decoupled weight decay on the weight matrices only.
pub struct Trainer {
    optimizer: Optimizers,
    /// The trained variables and their names, in name order.
    vars: Vec<(String, Var)>,
    optim: Optim,
    step: usize,
}

enum Optimizers {
    Fused(FusedAdamW),
    Tensor(TensorAdamW),
}

/// Names of the optimizer's tensors in a checkpoint.
const STEP: &str = "adamw.step";
const FIRST: &str = "adamw.m.";
const SECOND: &str = "adamw.v.";

impl Trainer {
    /// Trains every variable in `vars` whose name starts with one of `prefixes`.
    pub fn new(vars: &VarMap, prefixes: &[&str], optim: &Optim) -> Result<Trainer> {
        let data = vars.data().lock().expect("var map lock");
        let mut named: Vec<(String, Var)> = data
            .iter()
            .filter(|(name, _)| prefixes.iter().any(|p| name.starts_with(p)))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let decay = |name: &str, var: &Var| if model::decays(name, var.rank()) { optim.weight_decay } else { 0.0 };
        let with_decay = named.iter().map(|(n, v)| (v.clone(), decay(n, v))).collect();
        let optimizer = match named.iter().all(|(_, var)| var.device().is_cpu()) {
            true => Optimizers::Fused(FusedAdamW::new(with_decay)),
            false => Optimizers::Tensor(TensorAdamW::new(with_decay)?),
        };
        Ok(Trainer { optimizer, vars: named, optim: optim.clone(), step: 0 })
    }

    /// One optimisation step on `loss`; returns the loss value.
    pub fn step(&mut self, loss: &Tensor) -> Result<f32> {
        self.update(loss.backward()?)?;
        loss.to_scalar::<f32>()
    }

    /// Clips the gradients and applies them at this step's learning rate.
    pub fn update(&mut self, grads: GradStore) -> Result<()> {
        self.step += 1;
        let lr = learning_rate(&self.optim, self.step);
        let scale = self.clip_scale(&grads)?;
        match &mut self.optimizer {
            Optimizers::Fused(adamw) => adamw.step(&grads, lr, scale),
            Optimizers::Tensor(adamw) => adamw.step(&grads, lr, scale),
        }
    }

    /// The optimizer's state as named tensors, for a checkpoint: its step count and each
    /// variable's moments (the schedule's position is the step).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let (steps, moments) = match &self.optimizer {
            Optimizers::Fused(adamw) => adamw.state(),
            Optimizers::Tensor(adamw) => adamw.state()?,
        };
        let cpu = &Device::Cpu;
        let mut out = vec![(STEP.to_string(), Tensor::new(&[self.step as f32, steps as f32], cpu)?)];
        for ((name, _), (m, v)) in self.vars.iter().zip(moments) {
            let (mn, vn) = (m.len(), v.len());
            out.push((format!("{FIRST}{name}"), Tensor::from_vec(m, mn, cpu)?));
            out.push((format!("{SECOND}{name}"), Tensor::from_vec(v, vn, cpu)?));
        }
        Ok(out)
    }

    /// Puts back the state `state` wrote.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let get = |name: String| {
            tensors.get(&name).ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint has no `{name}`")))
        };
        let steps = get(STEP.to_string())?.to_vec1::<f32>()?;
        let [trainer, optimizer] = steps[..] else { candle_core::bail!("`{STEP}` holds {} values", steps.len()) };
        let mut moments = Vec::with_capacity(self.vars.len());
        for (name, _) in &self.vars {
            moments.push((get(format!("{FIRST}{name}"))?.to_vec1()?, get(format!("{SECOND}{name}"))?.to_vec1()?));
        }
        match &mut self.optimizer {
            Optimizers::Fused(adamw) => adamw.set_state((optimizer as i32, moments))?,
            Optimizers::Tensor(adamw) => adamw.set_state((optimizer as i32, moments))?,
        }
        self.step = trainer as usize;
        Ok(())
    }

    /// What the gradients are multiplied by so their global norm is at most `grad_clip`.
    fn clip_scale(&self, grads: &GradStore) -> Result<f64> {
        if self.optim.grad_clip <= 0.0 {
            return Ok(1.0);
        }
        let mut total = 0f64;
        for g in self.vars.iter().filter_map(|(_, var)| grads.get(var)) {
            total += match g.device().is_cpu() {
                true => super::adamw::sum_of_squares(g)?,
                false => g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64,
            };
        }
        let norm = total.sqrt();
        Ok(if norm > self.optim.grad_clip { self.optim.grad_clip / (norm + 1e-6) } else { 1.0 })
    }
}

/// The order training examples are drawn in: a fresh shuffle for each epoch, from a generator
/// whose position a checkpoint keeps (ChaCha12: `StdRng`'s stream for the same seed).
pub struct Batches {
    pub rng: ChaCha12Rng,
    /// What is left of the current epoch's order.
    order: Vec<usize>,
}

impl Batches {
    pub fn new(seed: u64) -> Batches {
        Batches { rng: ChaCha12Rng::seed_from_u64(seed), order: Vec::new() }
    }

    /// The next `size` of `examples` examples, topping the order up with a new epoch first.
    pub fn next(&mut self, examples: usize, size: usize) -> Vec<usize> {
        if self.order.len() < size {
            let mut epoch: Vec<usize> = (0..examples).collect();
            epoch.shuffle(&mut self.rng);
            self.order.extend(epoch);
        }
        self.order.drain(..size.min(self.order.len())).collect()
    }
}

/// The loop's state in a checkpoint, beside the tensors.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoopState {
    step: usize,
    evaluations: usize,
    /// The data generator's position in its stream, in 32-bit words.
    rng_words: u128,
    order: Vec<usize>,
    dropout_draws: u64,
    running: f64,
    seen: usize,
    /// What the task adds (fine-tuning: the best evaluation so far).
    extra: serde_json::Value,
}

/// A training run's moving parts besides the model: optimizer, data order, dropout, the
/// training loss since the last report and the evaluations so far. With the weights, a
/// checkpoint of these is everything the next step depends on.
pub struct Progress {
    pub trainer: Trainer,
    pub batches: Batches,
    pub drop: Dropout,
    /// Steps done.
    pub step: usize,
    pub evaluations: usize,
    running: f64,
    seen: usize,
    seed: u64,
    /// The step of the newest checkpoint this run wrote or resumed from.
    saved: Option<usize>,
}

/// Prefix of the model's weights in a checkpoint.
const WEIGHTS: &str = "model.";

impl Progress {
    /// A run from step 0 over the variables of `vars` under `prefixes`.
    pub fn new(vars: &VarMap, prefixes: &[&str], optim: &Optim, seed: u64) -> Result<Progress> {
        Ok(Progress {
            trainer: Trainer::new(vars, prefixes, optim)?,
            batches: Batches::new(seed),
            drop: Dropout::train(optim.dropout, seed),
            step: 0,
            evaluations: 0,
            running: 0.0,
            seen: 0,
            seed,
            saved: None,
        })
    }

    /// One optimisation step on `loss`.
    pub fn train(&mut self, loss: &Tensor) -> Result<()> {
        self.running += self.trainer.step(loss)? as f64;
        self.seen += 1;
        self.step += 1;
        Ok(())
    }

    /// At an evaluation: the mean training loss since the last one (the count starts anew).
    pub fn evaluated(&mut self) -> f64 {
        let mean = self.running / self.seen.max(1) as f64;
        (self.running, self.seen) = (0.0, 0);
        self.evaluations += 1;
        mean
    }

    /// Writes a checkpoint of this step if one is due (`extra`: the task's own tensors and
    /// state) and says whether it is durable. A failed write costs this checkpoint only: the
    /// run goes on, and the earlier ones stay.
    pub fn checkpoint(
        &mut self,
        checkpoints: &Checkpoints,
        vars: &VarMap,
        extra: (Vec<(String, Tensor)>, serde_json::Value),
    ) -> bool {
        checkpoints.due(self.evaluations) && self.save(checkpoints, vars, extra)
    }

    /// Asked to stop (SIGTERM, see `stop`): writes a checkpoint of this step unless checkpoints
    /// are off or the newest one is of this step already. True when one was written now (then
    /// report it, so the next attempt resumes here).
    pub fn checkpoint_on_stop(
        &mut self,
        checkpoints: &Checkpoints,
        vars: &VarMap,
        extra: (Vec<(String, Tensor)>, serde_json::Value),
    ) -> bool {
        checkpoints.every > 0 && self.saved != Some(self.step) && self.save(checkpoints, vars, extra)
    }

    fn save(
        &mut self,
        checkpoints: &Checkpoints,
        vars: &VarMap,
        extra: (Vec<(String, Tensor)>, serde_json::Value),
    ) -> bool {
        let saved = self.tensors(vars, extra.0).map_err(|e| e.to_string()).and_then(|tensors| {
            let state = LoopState {
                step: self.step,
                evaluations: self.evaluations,
                rng_words: self.batches.rng.get_word_pos(),
                order: self.batches.order.clone(),
                dropout_draws: self.drop.draws(),
                running: self.running,
                seen: self.seen,
                extra: extra.1,
            };
            checkpoints.save(self.step, &tensors, &state)
        });
        match saved {
            Ok(()) => {
                self.saved = Some(self.step);
                true
            }
            Err(e) => {
                eprintln!("checkpoint of step {} failed, the run goes on from the previous one: {e}", self.step);
                false
            }
        }
    }

    fn tensors(&self, vars: &VarMap, extra: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let mut out = self.trainer.state()?;
        let data = vars.data().lock().expect("var map lock");
        out.extend(data.iter().map(|(name, var)| (format!("{WEIGHTS}{name}"), var.as_tensor().clone())));
        out.extend(extra);
        Ok(out)
    }

    /// Goes on from the newest usable checkpoint at or before the recorded resume step, if
    /// there is one: weights into `vars`, the rest into this run. Returns the task's extra
    /// state and every tensor (the task takes its own by name), or None for a fresh start.
    pub fn resume(
        &mut self,
        checkpoints: &Checkpoints,
        vars: &VarMap,
        device: &Device,
    ) -> Result<Option<(serde_json::Value, HashMap<String, Tensor>)>> {
        let Some(restored) = checkpoints.restore::<LoopState>(device) else { return Ok(None) };
        let (tensors, state) = (restored.tensors, restored.state);
        {
            let data = vars.data().lock().expect("var map lock");
            for (name, var) in data.iter() {
                let saved = tensors.get(&format!("{WEIGHTS}{name}"));
                let saved = saved.ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint has no `{name}`")))?;
                var.set(saved)?;
            }
        }
        self.trainer.restore(&tensors)?;
        self.batches = Batches { rng: ChaCha12Rng::seed_from_u64(self.seed), order: state.order };
        self.batches.rng.set_word_pos(state.rng_words);
        self.drop = Dropout::train(self.drop.p(), self.seed);
        self.drop.skip(state.dropout_draws);
        (self.step, self.evaluations, self.running, self.seen) =
            (state.step, state.evaluations, state.running, state.seen);
        self.saved = Some(state.step);
        Ok(Some((state.extra, tensors)))
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
        let logits = Tensor::new(&[[2.0f32, 0.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let plain = composed_cross_entropy(&logits, &targets, 0.0).unwrap().to_scalar::<f32>().unwrap();
        let reference = candle_nn::loss::cross_entropy(&logits, &targets).unwrap().to_scalar::<f32>().unwrap();
        assert!((plain - reference).abs() < 1e-6);
        let smoothed = composed_cross_entropy(&logits, &targets, 0.3).unwrap().to_scalar::<f32>().unwrap();
        assert!(smoothed > plain, "smoothing penalises a confident right answer");
    }
}
