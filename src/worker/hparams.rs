//! The hyperparameters of the candle workers, read by name from the trial's params. Every name
//! is checked: a typo or a value out of range fails the trial with a message saying which
//! param and why, instead of being silently ignored.

use crate::space::Params;
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("param `{name}`: {message}")]
    Invalid { name: String, message: String },
    #[error("unknown param{} {} for the {task} worker (known: {known})", if .names.len() > 1 { "s" } else { "" }, .names.join(", "))]
    Unknown { names: Vec<String>, task: &'static str, known: String },
}

fn invalid(name: &str, message: impl Into<String>) -> ParamError {
    ParamError::Invalid { name: name.to_string(), message: message.into() }
}

/// How the learning rate moves after warmup.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Linear,
    Cosine,
    Constant,
}

/// Which subword tokenizer to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    Bpe,
    Wordpiece,
}

/// The optimisation recipe shared by pretraining and fine-tuning.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Optim {
    pub lr: f64,
    /// Fraction of the steps spent warming the learning rate up from 0.
    pub warmup: f64,
    pub schedule: Schedule,
    /// Decoupled (AdamW) weight decay, applied to weight matrices and embeddings only.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f64,
    pub batch_size: usize,
    pub steps: usize,
    pub dropout: f64,
    pub seq_len: usize,
}

/// The encoder's shape and its tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab_size: usize,
    pub tokenizer: TokenizerKind,
    /// Longest sequence the position table holds.
    pub max_len: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PretrainParams {
    pub shape: Shape,
    pub optim: Optim,
    pub mask_rate: f64,
    pub seed: u64,
    /// Evaluations between checkpoints (0: none; None: the worker's `--checkpoint-every`).
    /// Not part of a cached run's key: it changes no result.
    #[serde(skip)]
    pub checkpoint_every: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FinetuneParams {
    pub optim: Optim,
    /// Passes over the training set; when given, it sets the steps once the set's size is known.
    pub epochs: Option<f64>,
    /// The label budget: a stratified subset of this many training passages (None: all).
    pub train_examples: Option<usize>,
    pub label_smoothing: f64,
    /// Which weights the run ends with: the last step's, or the best validation accuracy's.
    pub keep: Keep,
    /// Used only when training from scratch (a checkpoint brings its own shape).
    pub shape: Shape,
    pub seed: u64,
    /// Set in the joint case: the `pretrain_*` params of the pretraining run to reuse.
    pub pretrain: Option<PretrainParams>,
    /// Evaluations between checkpoints (0: none; None: the worker's `--checkpoint-every`).
    pub checkpoint_every: Option<usize>,
}

/// The weights a fine-tune ends with, and reports its final and test metrics for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The last step's.
    Last,
    /// Those of the evaluation with the highest validation accuracy (the earliest on a tie):
    /// early stopping's choice, made on validation data only.
    Best,
}

/// Reads params by name, remembering which were used so leftovers can be reported.
struct ParamReader<'a> {
    params: &'a Params,
    prefix: &'static str,
    used: BTreeSet<String>,
}

impl<'a> ParamReader<'a> {
    fn new(params: &'a Params, prefix: &'static str) -> Self {
        ParamReader { params, prefix, used: BTreeSet::new() }
    }

    fn raw(&mut self, name: &str) -> Option<(String, &'a Value)> {
        let key = format!("{}{name}", self.prefix);
        let value = self.params.get(&key)?;
        self.used.insert(key.clone());
        Some((key, value))
    }

    fn float(&mut self, name: &str, default: f64, ok: impl Fn(f64) -> bool, range: &str) -> Result<f64, ParamError> {
        let Some((key, value)) = self.raw(name) else { return Ok(default) };
        let x = value.as_f64().ok_or_else(|| invalid(&key, format!("expected a number, got {value}")))?;
        if !x.is_finite() || !ok(x) {
            return Err(invalid(&key, format!("{x} is out of range: {range}")));
        }
        Ok(x)
    }

    fn int(&mut self, name: &str, default: usize, min: usize, max: usize) -> Result<usize, ParamError> {
        let Some((key, value)) = self.raw(name) else { return Ok(default) };
        let x = match value {
            Value::Number(n) => {
                n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64))
            }
            _ => None,
        };
        let x = x.ok_or_else(|| invalid(&key, format!("expected a whole number, got {value}")))? as usize;
        if !(min..=max).contains(&x) {
            return Err(invalid(&key, format!("{x} is out of range: {min}..={max}")));
        }
        Ok(x)
    }

    fn choice<T: Copy>(&mut self, name: &str, default: T, options: &[(&str, T)]) -> Result<T, ParamError> {
        let Some((key, value)) = self.raw(name) else { return Ok(default) };
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        value
            .as_str()
            .and_then(|s| options.iter().find(|(n, _)| *n == s))
            .map(|(_, v)| *v)
            .ok_or_else(|| invalid(&key, format!("expected one of {}, got {value}", names.join(", "))))
    }
}

fn optim(r: &mut ParamReader, defaults: &Optim, max_steps: usize) -> Result<Optim, ParamError> {
    let lr = r.float("lr", defaults.lr, |x| x > 0.0 && x <= 1.0, "0 < lr <= 1")?;
    let warmup =
        r.float("warmup", defaults.warmup, |x| (0.0..1.0).contains(&x), "0 <= warmup < 1 (a fraction of the steps)")?;
    let schedule = r.choice(
        "schedule",
        defaults.schedule,
        &[("linear", Schedule::Linear), ("cosine", Schedule::Cosine), ("constant", Schedule::Constant)],
    )?;
    let weight_decay =
        r.float("weight_decay", defaults.weight_decay, |x| (0.0..1.0).contains(&x), "0 <= weight_decay < 1")?;
    let grad_clip = r.float("grad_clip", defaults.grad_clip, |x| x >= 0.0, ">= 0 (0 turns clipping off)")?;
    let batch_size = r.int("batch_size", defaults.batch_size, 1, 4096)?;
    let steps = r.int("steps", defaults.steps, 1, max_steps)?;
    let dropout = r.float("dropout", defaults.dropout, |x| (0.0..1.0).contains(&x), "0 <= dropout < 1")?;
    let seq_len = r.int("seq_len", defaults.seq_len, 8, 4096)?;
    Ok(Optim { lr, warmup, schedule, weight_decay, grad_clip, batch_size, steps, dropout, seq_len })
}

fn shape(r: &mut ParamReader, max_len: usize) -> Result<Shape, ParamError> {
    let layers = r.int("layers", 2, 1, 48)?;
    let hidden = r.int("hidden", 128, 8, 8192)?;
    let heads = r.int("heads", 4, 1, 256)?;
    let ffn = r.int("ffn", 4 * hidden, 8, 32768)?;
    let vocab_size = r.int("vocab_size", 8000, 100, 250_000)?;
    let tokenizer = r.choice(
        "tokenizer",
        TokenizerKind::Bpe,
        &[("bpe", TokenizerKind::Bpe), ("wordpiece", TokenizerKind::Wordpiece)],
    )?;
    if hidden % heads != 0 {
        let key = format!("{}heads", r.prefix);
        return Err(invalid(&key, format!("hidden size {hidden} is not divisible by {heads} heads")));
    }
    Ok(Shape { layers, hidden, heads, ffn, vocab_size, tokenizer, max_len })
}

/// Pretraining's optimiser defaults; fine-tuning's differ only in steps and sequence length.
const PRETRAIN_OPTIM: Optim = Optim {
    lr: 1e-3,
    warmup: 0.1,
    schedule: Schedule::Linear,
    weight_decay: 0.01,
    grad_clip: 1.0,
    batch_size: 32,
    steps: 300,
    dropout: 0.1,
    seq_len: 128,
};
const FINETUNE_OPTIM: Optim = Optim { steps: 200, seq_len: 64, ..PRETRAIN_OPTIM };

fn pretrain_with(r: &mut ParamReader) -> Result<PretrainParams, ParamError> {
    let optim = optim(r, &PRETRAIN_OPTIM, 10_000_000)?;
    let shape = shape(r, optim.seq_len)?;
    let mask_rate = r.float("mask_rate", 0.15, |x| x > 0.0 && x < 1.0, "0 < mask_rate < 1")?;
    let seed = r.int("seed", 0, 0, u32::MAX as usize)? as u64;
    Ok(PretrainParams { shape, optim, mask_rate, seed, checkpoint_every: None })
}

/// `checkpoint_every`, if given: evaluations between checkpoints, 0 for none.
fn checkpoint_every(r: &mut ParamReader) -> Result<Option<usize>, ParamError> {
    if !r.params.contains_key(CHECKPOINT_EVERY) {
        return Ok(None);
    }
    r.int(CHECKPOINT_EVERY, 1, 0, 1_000_000).map(Some)
}

const CHECKPOINT_EVERY: &str = "checkpoint_every";

fn leftovers(params: &Params, used: &BTreeSet<String>, task: &'static str, known: &[&str]) -> Result<(), ParamError> {
    let names: Vec<String> = params.keys().filter(|k| !used.contains(*k)).cloned().collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(ParamError::Unknown { names, task, known: known.join(", ") })
}

const OPTIM_NAMES: &[&str] =
    &["lr", "warmup", "schedule", "weight_decay", "grad_clip", "batch_size", "steps", "dropout", "seq_len", "seed"];
const SHAPE_NAMES: &[&str] = &["layers", "hidden", "heads", "ffn", "vocab_size", "tokenizer"];

/// The params of `sweep worker pretrain`.
pub fn pretrain(params: &Params) -> Result<PretrainParams, ParamError> {
    let mut r = ParamReader::new(params, "");
    let mut p = pretrain_with(&mut r)?;
    p.checkpoint_every = checkpoint_every(&mut r)?;
    let known: Vec<&str> =
        OPTIM_NAMES.iter().chain(SHAPE_NAMES).chain(&["mask_rate", CHECKPOINT_EVERY]).copied().collect();
    leftovers(params, &r.used, "pretrain", &known)?;
    Ok(p)
}

/// The params of `sweep worker finetune`. With `joint`, the `pretrain_*` params describe the
/// pretraining run to do (or reuse from the cache) first, and the shape params belong to it.
pub fn finetune(params: &Params, joint: bool) -> Result<FinetuneParams, ParamError> {
    let mut r = ParamReader::new(params, "");
    let epochs = r.float("epochs", 0.0, |x| x > 0.0 && x <= 1000.0, "0 < epochs <= 1000")?;
    let optim = optim(&mut r, &FINETUNE_OPTIM, 10_000_000)?;
    let label_smoothing = r.float("label_smoothing", 0.0, |x| (0.0..1.0).contains(&x), "0 <= label_smoothing < 1")?;
    let seed = r.int("seed", 0, 0, u32::MAX as usize)? as u64;
    // 0 stands for all, so a grid can list it beside the budgets.
    let train_examples = r.int("train_examples", 0, 0, 100_000_000)?;
    let keep = r.choice("keep", Keep::Last, &[("last", Keep::Last), ("best", Keep::Best)])?;
    let checkpoint_every = checkpoint_every(&mut r)?;
    if epochs > 0.0 && r.used.contains("steps") {
        return Err(invalid("epochs", "give either `steps` or `epochs`, not both"));
    }
    // `init` may come as a param too, so one study can compare starting points.
    r.raw("init");
    let mut known: Vec<&str> = OPTIM_NAMES
        .iter()
        .copied()
        .chain(["epochs", "label_smoothing", "init", "train_examples", "keep", CHECKPOINT_EVERY])
        .collect();
    // The `pretrain_*` params are checked whatever the start (so one study can compare starting
    // points), and used in the joint case, where the shape is the pretraining run's.
    let mut pr = ParamReader::new(params, "pretrain_");
    let mut pretrain = pretrain_with(&mut pr)?;
    r.used.extend(pr.used);
    known.extend(SHAPE_NAMES);
    known.push("pretrain_*");
    let max_len = if joint { pretrain.optim.seq_len.max(optim.seq_len) } else { optim.seq_len };
    let mut shape = shape(&mut r, max_len)?;
    if !SHAPE_NAMES.iter().any(|n| params.contains_key(*n)) && joint {
        shape = Shape { max_len, ..pretrain.shape.clone() };
    }
    pretrain.shape = shape.clone();
    let pretrain = joint.then_some(pretrain);
    leftovers(params, &r.used, "finetune", &known)?;
    let epochs = (epochs > 0.0).then_some(epochs);
    let train_examples = (train_examples > 0).then_some(train_examples);
    Ok(FinetuneParams { optim, epochs, train_examples, label_smoothing, keep, shape, seed, pretrain, checkpoint_every })
}
