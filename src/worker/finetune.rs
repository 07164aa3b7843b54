//! `sweep worker finetune`: a classification head on the encoder, trained on labeled passages,
//! from scratch or from a pretraining checkpoint: a directory, the best trial of a pretraining
//! study, or (joint tuning) a pretraining run keyed by its params and cached, so trials that
//! share those params pretrain once.

use super::common::{self, Card, Checkpoint, CommonArgs, RunError};
use super::data::{self, Labeled};
use super::hparams::{self, FinetuneParams, Keep, Shape};
use super::model::{self, Classifier, Dropout, Encoder};
use super::pretrain;
use super::shared;
use super::tokenizer::{Vocab, CLS, PAD, SEP};
use super::train::{smoothed_cross_entropy, Progress};
use super::Channel;
use crate::layout;
use crate::protocol::Decision;
use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where the encoder starts: `scratch`; `pretrain` (joint tuning: pretrain with the
    /// `pretrain_*` params, cached by them); `study:NAME` (the best trial of that pretraining
    /// study in the same database); or a checkpoint directory. A param `init` overrides it.
    #[arg(long, default_value = "scratch")]
    pub init: String,
    /// Labeled training passages, TSV or JSONL with `text` and `label` (default: Brown genres).
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Scored once at the end and reported as `test_acc`.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Unlabeled text for the tokenizer and for joint pretraining (default: Brown's).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    #[arg(long)]
    pub corpus_valid: Option<PathBuf>,
    /// Train on a class-stratified subset of this many labeled passages, drawn with the
    /// trial's `seed` (0: all). A param `train_examples` overrides it.
    #[arg(long, default_value_t = 0)]
    pub train_examples: usize,
    /// The database holding `study:NAME` (default: the coordinator's, SWEEP_DB).
    #[arg(long, env = crate::protocol::env::DB)]
    pub db: Option<PathBuf>,
}

/// Passages timed one at a time for `latency_ms`.
const LATENCY_SAMPLES: usize = 33;

/// The encoder with a classification head.
pub struct ClsModel {
    pub vars: VarMap,
    pub encoder: Encoder,
    pub head: Classifier,
    device: Device,
}

/// A batch of passages: ids and padding mask `[batch, len]`, labels `[batch]`.
pub struct Batch {
    pub ids: Tensor,
    pub pad: Tensor,
    pub labels: Tensor,
}

impl ClsModel {
    pub fn new(shape: &Shape, classes: usize, device: &Device, seed: u64) -> Result<ClsModel> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let encoder = Encoder::new(shape, vb.clone())?;
        let head = Classifier::new(shape.hidden, classes, vb)?;
        model::initialise(&vars, seed)?;
        Ok(ClsModel { vars, encoder, head, device: device.clone() })
    }

    pub fn logits(&self, batch: &Batch, drop: &mut Dropout) -> Result<Tensor> {
        let hidden = self.encoder.forward(&batch.ids, Some(&batch.pad), drop)?;
        self.head.forward(&hidden, &batch.pad, drop)
    }

    /// `[CLS] text [SEP]` for each picked passage, cut to `len` and padded to the longest.
    pub fn batch(&self, encoded: &[Vec<u32>], labels: &[usize], picked: &[usize], len: usize) -> Result<Batch> {
        let longest = picked.iter().map(|&i| (encoded[i].len() + 2).min(len)).max().unwrap_or(2);
        let (mut ids, mut pad) = (Vec::new(), Vec::new());
        for &i in picked {
            let body = &encoded[i][..encoded[i].len().min(longest - 2)];
            let row: Vec<u32> = [CLS].into_iter().chain(body.iter().copied()).chain([SEP]).collect();
            pad.extend(row.iter().map(|_| 1f32).chain(std::iter::repeat_n(0.0, longest - row.len())));
            ids.extend(row.iter().copied().chain(std::iter::repeat_n(PAD, longest - row.len())));
        }
        let b = picked.len();
        let labels: Vec<u32> = picked.iter().map(|&i| labels[i] as u32).collect();
        Ok(Batch {
            ids: Tensor::from_vec(ids, (b, longest), &self.device)?,
            pad: Tensor::from_vec(pad, (b, longest), &self.device)?,
            labels: Tensor::from_vec(labels, b, &self.device)?,
        })
    }

    /// Weights in the model a user would ship (encoder and head), what accuracy is traded
    /// against in `studies/accuracy-vs-size.toml`.
    pub fn parameter_count(&self) -> usize {
        self.vars.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Median milliseconds to classify one passage alone (a request served at batch 1), over
    /// up to `n` passages of `set` after one warm-up, on this trial's device and threads.
    pub fn latency_ms(&self, set: &Encoded, len: usize, n: usize) -> Result<f64> {
        let picked: Vec<usize> = (0..set.ids.len().min(n)).collect();
        let mut times = Vec::with_capacity(picked.len());
        for (k, &i) in picked.iter().enumerate() {
            let started = std::time::Instant::now();
            let b = self.batch(&set.ids, &set.labels, &[i], len)?;
            // Reading the answer back waits for the device.
            self.logits(&b, &mut Dropout::eval())?.argmax(D::Minus1)?.to_vec1::<u32>()?;
            if k > 0 || picked.len() == 1 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times.get(times.len() / 2).copied().unwrap_or(f64::NAN))
    }

    /// Mean loss (no smoothing) and accuracy over a whole set. Passages go in batches of
    /// similar length, shortest first: each batch is padded to its longest, and in the
    /// shipped order a batch of 64 was nearly always padded to the full length.
    pub fn evaluate(&self, set: &Encoded, len: usize, batch: usize) -> Result<(f64, f64)> {
        let (mut loss, mut correct) = (0.0, 0usize);
        let mut all: Vec<usize> = (0..set.ids.len()).collect();
        all.sort_by_key(|&i| set.ids[i].len().min(len));
        for picked in all.chunks(batch) {
            let b = self.batch(&set.ids, &set.labels, picked, len)?;
            let logits = self.logits(&b, &mut Dropout::eval())?;
            loss += smoothed_cross_entropy(&logits, &b.labels, 0.0)?.to_scalar::<f32>()? as f64 * picked.len() as f64;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let truth = b.labels.to_vec1::<u32>()?;
            correct += predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
        }
        let n = set.ids.len().max(1) as f64;
        Ok((loss / n, correct as f64 / n))
    }
}

/// A labeled set, tokenized.
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    pub labels: Vec<usize>,
}

/// Tokenizes as much of each passage as a batch of `len` keeps (`[CLS]` and `[SEP]` aside),
/// through the cache the trials of a study share.
fn encode(vocab: &Vocab, set: &Labeled, len: usize, cache: &Path) -> std::result::Result<Encoded, RunError> {
    let ids = vocab.encode_heads_cached(&set.texts, len.saturating_sub(2), cache)?;
    Ok(Encoded { ids, labels: set.labels.clone() })
}

/// The encoder to start from: its shape, tokenizer, and weights (none: from scratch).
struct Start {
    shape: Shape,
    vocab: Vocab,
    checkpoint: Option<(PathBuf, Checkpoint)>,
}

fn corpus_text(args: &FinetuneArgs) -> std::result::Result<(Vec<String>, Vec<String>), RunError> {
    let train = data::read_text(&data::source(args.corpus.as_deref(), "pretrain-train"))?;
    let valid = data::read_text(&data::source(args.corpus_valid.as_deref(), "pretrain-valid"))?;
    Ok((train, valid))
}

/// Where the encoder starts; None when the coordinator stopped the trial while it waited for
/// the shared pretraining run.
fn start(
    args: &FinetuneArgs,
    p: &FinetuneParams,
    device: &Device,
    channel: &mut Channel,
) -> std::result::Result<Option<Start>, RunError> {
    let from = |dir: PathBuf| -> std::result::Result<Start, RunError> {
        let checkpoint = common::load_checkpoint(&dir, device)?;
        Ok(Start {
            shape: checkpoint.card.shape.clone(),
            vocab: checkpoint.vocab.clone(),
            checkpoint: Some((dir, checkpoint)),
        })
    };
    let start = match args.init.as_str() {
        "scratch" => {
            let (text, _) = corpus_text(args)?;
            let vocab = pretrain::vocab_for(&p.shape, &text, &args.common)?;
            let mut shape = p.shape.clone();
            shape.vocab_size = vocab.size();
            Start { shape, vocab, checkpoint: None }
        }
        "pretrain" => {
            let pretrain = p.pretrain.as_ref().expect("joint params were read");
            let (train, valid) = corpus_text(args)?;
            match shared::pretrained(&args.common, pretrain, &train, &valid, device, channel)? {
                Some(dir) => from(dir)?,
                None => return Ok(None),
            }
        }
        init => match init.strip_prefix("study:") {
            Some(study) => from(best_of_study(args, study)?)?,
            None => from(PathBuf::from(init))?,
        },
    };
    Ok(Some(start))
}

/// The weights at the best evaluation so far (`keep = "best"`), with its metrics.
struct Best {
    step: usize,
    val_loss: f64,
    val_acc: f64,
    weights: Vec<(String, Tensor)>,
}

/// Prefix of the best weights in a checkpoint.
const BEST: &str = "best.";

impl Best {
    fn copy(vars: &VarMap) -> Result<Vec<(String, Tensor)>> {
        let data = vars.data().lock().expect("var map lock");
        data.iter().map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?))).collect()
    }

    /// The tensors and state a checkpoint keeps of it.
    fn checkpointed(best: Option<&Best>) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let Some(b) = best else { return (Vec::new(), serde_json::Value::Null) };
        let tensors = b.weights.iter().map(|(n, t)| (format!("{BEST}{n}"), t.clone())).collect();
        (tensors, json!({ "step": b.step, "val_loss": b.val_loss, "val_acc": b.val_acc }))
    }

    /// What `checkpointed` wrote (None: no best yet).
    fn from_checkpoint(state: &serde_json::Value, tensors: &std::collections::HashMap<String, Tensor>) -> Option<Best> {
        let metric = |k: &str| state.get(k).and_then(serde_json::Value::as_f64);
        let weights = tensors.iter().filter_map(|(n, t)| Some((n.strip_prefix(BEST)?.to_string(), t.clone())));
        Some(Best {
            step: state.get("step")?.as_u64()? as usize,
            val_loss: metric("val_loss")?,
            val_acc: metric("val_acc")?,
            weights: weights.collect(),
        })
    }

    fn restore(&self, vars: &VarMap) -> Result<()> {
        let data = vars.data().lock().expect("var map lock");
        for (name, saved) in &self.weights {
            data[name].set(saved)?;
        }
        Ok(())
    }
}

/// The directory of the best finished trial of a pretraining study in the same database.
fn best_of_study(args: &FinetuneArgs, study: &str) -> std::result::Result<PathBuf, RunError> {
    let db = args.db.clone().ok_or_else(|| {
        RunError::Setup(format!("--init study:{study} needs the database: pass --db or run under the coordinator"))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let best = rt.block_on(async {
        let reader =
            crate::store::Reader::open(&db).await.map_err(|e| RunError::Setup(format!("{}: {e}", db.display())))?;
        let record = reader.study(study).await.map_err(|e| RunError::Setup(e.to_string()))?;
        let record = record.ok_or_else(|| RunError::Setup(format!("no study `{study}` in {}", db.display())))?;
        reader.best(&record).await.map_err(|e| RunError::Setup(e.to_string()))
    })?;
    let best = best.ok_or_else(|| RunError::Setup(format!("study `{study}` has no finished trial yet")))?;
    let runs = std::env::var_os(crate::protocol::env::RUNS_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| layout::runs_dir(db.parent().unwrap_or(Path::new("."))));
    Ok(layout::trial_dir(&runs, study, best.number))
}

pub fn run(args: &FinetuneArgs) -> std::result::Result<(), RunError> {
    let (mut channel, params) = Channel::open()?;
    let mut args = args.clone();
    if let Some(init) = params.get("init") {
        let init =
            init.as_str().ok_or_else(|| RunError::Setup(format!("param `init`: expected a string, got {init}")))?;
        args.init = init.to_string();
    }
    let args = &args;
    let mut p = hparams::finetune(&params, args.init == "pretrain")?;
    let device = args.common.setup()?;
    let train_set = data::read_train(&data::source(args.train.as_deref(), "genre-train"))?;
    let budget = p.train_examples.or((args.train_examples > 0).then_some(args.train_examples));
    let train_set = match budget {
        Some(n) => data::stratified_subset(&train_set, n, p.seed),
        None => train_set,
    };
    let valid_set = data::read_eval(&data::source(args.valid.as_deref(), "genre-valid"), &train_set.classes)?;
    let test_set = match (&args.test, &args.train) {
        (Some(path), _) => Some(data::read_eval(&data::Source::File(path.clone()), &train_set.classes)?),
        (None, None) => Some(data::read_eval(&data::Source::Brown("genre-test"), &train_set.classes)?),
        (None, Some(_)) => None,
    };
    if let Some(epochs) = p.epochs {
        p.optim.steps = ((epochs * train_set.texts.len() as f64) / p.optim.batch_size as f64).ceil().max(1.0) as usize;
    }
    let Some(start) = start(args, &p, &device, &mut channel)? else {
        eprintln!("stopped by the coordinator's decision while the shared pretraining ran");
        return Ok(());
    };
    if p.optim.seq_len > start.shape.max_len {
        return Err(RunError::Setup(format!(
            "seq_len {} is longer than the checkpoint's position table ({})",
            p.optim.seq_len, start.shape.max_len
        )));
    }
    let model = ClsModel::new(&start.shape, train_set.classes.len(), &device, p.seed)?;
    if let Some((dir, checkpoint)) = &start.checkpoint {
        common::restore(&model.vars, &checkpoint.tensors, "encoder.", dir)?;
    }
    let cache = args.common.cache_dir();
    let train = encode(&start.vocab, &train_set, p.optim.seq_len, &cache)?;
    let valid = encode(&start.vocab, &valid_set, p.optim.seq_len, &cache)?;
    let mut run = Progress::new(&model.vars, &["encoder.", "classifier."], &p.optim, p.seed)?;
    let checkpoints = args.common.checkpoints(&channel, p.checkpoint_every);
    let mut best: Option<Best> = None;
    if let Some((state, tensors)) = run.resume(&checkpoints, &model.vars, &device)? {
        best = Best::from_checkpoint(&state, &tensors);
    }
    let every = args.common.eval_every(p.optim.steps);
    let (len, size) = (p.optim.seq_len, p.optim.batch_size);
    let n_params = model.parameter_count();
    let (mut val_loss, mut val_acc) = (f64::NAN, f64::NAN);
    let _armed = (checkpoints.every > 0).then(super::stop::arm);
    while run.step < p.optim.steps {
        if super::stop::requested() {
            let step = run.step;
            let saved = run.checkpoint_on_stop(&checkpoints, &model.vars, Best::checkpointed(best.as_ref()));
            if saved {
                channel.report(&json!({ "step": step, "checkpoint": true }));
            }
            eprintln!("stopped at step {step} (SIGTERM){}", if saved { ", after a checkpoint of it" } else { "" });
            return Ok(());
        }
        let picked = run.batches.next(train.ids.len(), size);
        let batch = model.batch(&train.ids, &train.labels, &picked, len)?;
        let loss = smoothed_cross_entropy(&model.logits(&batch, &mut run.drop)?, &batch.labels, p.label_smoothing)?;
        run.train(&loss)?;
        let step = run.step;
        if step % every == 0 || step == p.optim.steps {
            (val_loss, val_acc) = model.evaluate(&valid, len, 64)?;
            if p.keep == Keep::Best && best.as_ref().is_none_or(|b| val_acc > b.val_acc) {
                best = Some(Best { step, val_loss, val_acc, weights: Best::copy(&model.vars)? });
            }
            let mut line = json!({
                "step": step,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "train_loss": run.evaluated(),
                "n_params": n_params,
            });
            // The last step ends the run: its model is saved whole instead.
            if step < p.optim.steps && run.checkpoint(&checkpoints, &model.vars, Best::checkpointed(best.as_ref())) {
                line["checkpoint"] = json!(true);
            }
            if channel.report(&line) == Decision::Stop {
                eprintln!("stopped at step {step} by the coordinator's decision");
                return Ok(());
            }
        }
    }
    let mut last = json!({ "val_loss": val_loss, "val_acc": val_acc });
    if let Some(best) = best {
        best.restore(&model.vars)?;
        last = json!({ "val_loss": best.val_loss, "val_acc": best.val_acc, "best_step": best.step });
    }
    last["n_params"] = json!(n_params);
    last["latency_ms"] = json!(model.latency_ms(&valid, len, LATENCY_SAMPLES)?);
    if let Some(mb) = common::peak_resident_mb() {
        last["peak_mem_mb"] = json!(mb);
    }
    if let Some(test) = &test_set {
        let (test_loss, test_acc) = model.evaluate(&encode(&start.vocab, test, len, &cache)?, len, 64)?;
        last["test_loss"] = json!(test_loss);
        last["test_acc"] = json!(test_acc);
    }
    let card =
        Card { shape: start.shape.clone(), made_by: json!({ "params": &p, "init": &args.init, "metrics": &last }) };
    common::save_checkpoint(&args.common.out, &model.vars, &start.vocab, &card)?;
    channel.finish(&json!({ "final": last }));
    Ok(())
}
