//! `sweep worker pretrain`: masked-language-model pretraining of the encoder on unlabeled text.
//! Reports validation MLM loss and perplexity at every evaluation and saves a checkpoint
//! (weights, tokenizer, card) in the trial's directory at the end.

use super::checkpoint::Checkpoints;
use super::common::{self, Card, CommonArgs, RunError};
use super::data;
use super::hparams::{self, PretrainParams};
use super::model::{self, Dropout, Encoder, MlmHead};
use super::tokenizer::{self, Vocab, CLS, MASK, SEP};
use super::train::Progress;
use super::Channel;
use crate::protocol::Decision;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Unlabeled training text, one passage per line (default: the shipped Brown Corpus).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Unlabeled validation text (default: Brown's validation documents).
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Validation windows scored at each evaluation.
    #[arg(long, default_value_t = 64)]
    pub eval_windows: usize,
}

/// Fixed-length token windows cut from one stream of passages, each starting with [CLS].
pub struct Windows {
    pub tokens: Vec<u32>,
    pub len: usize,
}

impl Windows {
    pub fn new(encoded: &[Vec<u32>], len: usize) -> Windows {
        let stream: Vec<u32> = encoded.iter().flat_map(|ids| ids.iter().copied().chain([SEP])).collect();
        let body = len - 1;
        let mut tokens = Vec::with_capacity(stream.len() + stream.len() / body + 1);
        for chunk in stream.chunks_exact(body) {
            tokens.push(CLS);
            tokens.extend_from_slice(chunk);
        }
        Windows { tokens, len }
    }

    pub fn count(&self) -> usize {
        self.tokens.len() / self.len
    }

    fn get(&self, i: usize) -> &[u32] {
        &self.tokens[i * self.len..(i + 1) * self.len]
    }
}

/// A batch with some tokens masked: the corrupted ids, which flat positions were picked,
/// and the original tokens there.
pub struct Masked {
    pub ids: Vec<u32>,
    pub batch: usize,
    pub len: usize,
    pub positions: Vec<u32>,
    pub targets: Vec<u32>,
}

/// BERT's corruption: each non-[CLS] token is picked with probability `rate`; a picked token
/// becomes [MASK] 80% of the time, a random token 10%, and stays itself 10%.
pub fn mask(windows: &[&[u32]], rate: f64, vocab: usize, rng: &mut impl Rng) -> Masked {
    let len = windows[0].len();
    let mut ids = Vec::with_capacity(windows.len() * len);
    let (mut positions, mut targets) = (Vec::new(), Vec::new());
    for window in windows {
        for (i, &token) in window.iter().enumerate() {
            let flat = ids.len() as u32;
            if i > 0 && rng.random::<f64>() < rate {
                positions.push(flat);
                targets.push(token);
                let roll: f64 = rng.random();
                ids.push(if roll < 0.8 {
                    MASK
                } else if roll < 0.9 {
                    rng.random_range(MASK + 1..vocab as u32)
                } else {
                    token
                });
            } else {
                ids.push(token);
            }
        }
    }
    if positions.is_empty() {
        // Never an empty loss: pick the first window's second token.
        positions.push(1);
        targets.push(ids[1]);
        ids[1] = MASK;
    }
    Masked { ids, batch: windows.len(), len, positions, targets }
}

/// The encoder with its MLM head, on one device.
pub struct MlmModel {
    pub vars: VarMap,
    pub encoder: Encoder,
    pub head: MlmHead,
    device: Device,
}

impl MlmModel {
    pub fn new(shape: &hparams::Shape, device: &Device, seed: u64) -> Result<MlmModel> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let encoder = Encoder::new(shape, vb.clone())?;
        let head = MlmHead::new(shape, vb)?;
        model::initialise(&vars, seed)?;
        Ok(MlmModel { vars, encoder, head, device: device.clone() })
    }

    /// Mean cross entropy over the masked positions only.
    pub fn loss(&self, batch: &Masked, drop: &mut Dropout) -> Result<Tensor> {
        let ids = Tensor::from_slice(&batch.ids, (batch.batch, batch.len), &self.device)?;
        let hidden = self.encoder.forward(&ids, None, drop)?;
        let positions = Tensor::from_slice(&batch.positions, batch.positions.len(), &self.device)?;
        let logits = self.head.forward(&self.encoder, &hidden.index_select(&positions, 0)?)?;
        let targets = Tensor::from_slice(&batch.targets, batch.targets.len(), &self.device)?;
        super::train::smoothed_cross_entropy(&logits, &targets, 0.0)
    }

    /// Mean loss per masked token over fixed validation batches.
    pub fn evaluate(&self, batches: &[Masked]) -> Result<f64> {
        let (mut total, mut count) = (0.0, 0usize);
        for batch in batches {
            let loss = self.loss(batch, &mut Dropout::eval())?.to_scalar::<f32>()? as f64;
            total += loss * batch.targets.len() as f64;
            count += batch.targets.len();
        }
        Ok(total / count.max(1) as f64)
    }
}

/// The validation batches: the first `windows` windows, masked the same way for every trial.
pub fn eval_batches(valid: &Windows, windows: usize, batch: usize, rate: f64, vocab: usize) -> Vec<Masked> {
    let mut rng = StdRng::seed_from_u64(0xE7A1);
    let all: Vec<&[u32]> = (0..valid.count().min(windows)).map(|i| valid.get(i)).collect();
    all.chunks(batch).map(|chunk| mask(chunk, rate, vocab, &mut rng)).collect()
}

/// Pretraining data, tokenized.
pub struct Corpus {
    pub train: Windows,
    pub valid: Windows,
}

impl Corpus {
    pub fn new(vocab: &Vocab, train: &[String], valid: &[String], len: usize) -> std::result::Result<Corpus, RunError> {
        let corpus =
            Corpus { train: Windows::new(&vocab.encode(train)?, len), valid: Windows::new(&vocab.encode(valid)?, len) };
        if corpus.train.count() == 0 || corpus.valid.count() == 0 {
            return Err(RunError::Setup(format!(
                "not enough text for one window of {len} tokens (train has {}, validation {})",
                corpus.train.count(),
                corpus.valid.count()
            )));
        }
        Ok(corpus)
    }
}

/// Trains, from the trial's last usable checkpoint if it has one, writing checkpoints as
/// `checkpoints` says; `report` gets each evaluation's metrics (with `"checkpoint": true` when
/// one of that step is durable) and may stop the run (then `None`). Asked to stop by SIGTERM,
/// it saves a checkpoint of where it is and reports only that (`{"step", "checkpoint"}`).
#[allow(clippy::too_many_arguments)]
pub fn train(
    p: &PretrainParams,
    vocab: &Vocab,
    corpus: &Corpus,
    device: &Device,
    eval_every: usize,
    eval_windows: usize,
    checkpoints: &Checkpoints,
    mut report: impl FnMut(usize, serde_json::Value) -> Decision,
) -> std::result::Result<Option<(MlmModel, f64)>, RunError> {
    let mut shape = p.shape.clone();
    shape.vocab_size = vocab.size();
    let model = MlmModel::new(&shape, device, p.seed)?;
    let mut run = Progress::new(&model.vars, &["encoder.", "mlm."], &p.optim, p.seed)?;
    run.resume(checkpoints, &model.vars, device)?;
    let eval = eval_batches(&corpus.valid, eval_windows, p.optim.batch_size, p.mask_rate, shape.vocab_size);
    let mut val_loss = f64::NAN;
    let _armed = (checkpoints.every > 0).then(super::stop::arm);
    while run.step < p.optim.steps {
        if super::stop::requested() {
            let step = run.step;
            let saved = run.checkpoint_on_stop(checkpoints, &model.vars, Default::default());
            if saved {
                report(step, json!({ "step": step, "checkpoint": true }));
            }
            eprintln!("stopped at step {step} (SIGTERM){}", if saved { ", after a checkpoint of it" } else { "" });
            return Ok(None);
        }
        let picked = run.batches.next(corpus.train.count(), p.optim.batch_size);
        let windows: Vec<&[u32]> = picked.into_iter().map(|i| corpus.train.get(i)).collect();
        let batch = mask(&windows, p.mask_rate, shape.vocab_size, &mut run.batches.rng);
        let loss = model.loss(&batch, &mut run.drop)?;
        run.train(&loss)?;
        let step = run.step;
        if step % eval_every == 0 || step == p.optim.steps {
            val_loss = model.evaluate(&eval)?;
            let mut metrics = json!({
                "step": step,
                "val_loss": val_loss,
                "val_ppl": val_loss.exp(),
                "train_loss": run.evaluated(),
            });
            // The last step ends the run: its model is saved whole instead.
            if step < p.optim.steps && run.checkpoint(checkpoints, &model.vars, Default::default()) {
                metrics["checkpoint"] = json!(true);
            }
            if report(step, metrics) == Decision::Stop {
                return Ok(None);
            }
        }
    }
    Ok(Some((model, val_loss)))
}

/// The tokenizer for a pretraining corpus: trained on its text once, then cached.
pub fn vocab_for(shape: &hparams::Shape, text: &[String], args: &CommonArgs) -> std::result::Result<Vocab, RunError> {
    Ok(tokenizer::load_or_train(shape.tokenizer, shape.vocab_size, text, &args.cache_dir())?)
}

pub fn run(args: &PretrainArgs) -> std::result::Result<(), RunError> {
    let (mut channel, params) = Channel::open()?;
    let p = hparams::pretrain(&params)?;
    let device = args.common.setup()?;
    let train_text = data::read_text(&data::source(args.train.as_deref(), "pretrain-train"))?;
    let valid_text = data::read_text(&data::source(args.valid.as_deref(), "pretrain-valid"))?;
    let vocab = vocab_for(&p.shape, &train_text, &args.common)?;
    let corpus = Corpus::new(&vocab, &train_text, &valid_text, p.optim.seq_len)?;
    let eval_every = args.common.eval_every(p.optim.steps);
    let checkpoints = args.common.checkpoints(&channel, p.checkpoint_every);
    let outcome = train(&p, &vocab, &corpus, &device, eval_every, args.eval_windows, &checkpoints, |step, metrics| {
        let decision = channel.report(&metrics);
        if decision == Decision::Stop {
            eprintln!("stopped at step {step} by the coordinator's decision");
        }
        decision
    })?;
    let Some((model, val_loss)) = outcome else { return Ok(()) };
    let mut shape = p.shape.clone();
    shape.vocab_size = vocab.size();
    let card = Card { shape, made_by: json!({ "params": &p, "val_loss": val_loss }) };
    common::save_checkpoint(&args.common.out, &model.vars, &vocab, &card)?;
    channel.finish(&json!({ "final": { "val_loss": val_loss, "val_ppl": val_loss.exp() } }));
    Ok(())
}
