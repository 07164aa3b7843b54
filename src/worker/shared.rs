//! The pretraining run that `init = "pretrain"` trials share: done once per distinct set of
//! `pretrain_*` params, cached, resumed from its newest checkpoint if it was killed, and
//! watched by every trial that needs it. Its progress goes to a file beside the cache, and each
//! of those trials (the one training it and the ones waiting) reports it as its step-0 report
//! (`pretrain_step`, `pretrain_val_ppl`, ...), so the page and `sweep trials` show what a
//! trial that waits for it is waiting for.

use super::checkpoint::Checkpoints;
use super::common::{self, Card, CommonArgs, RunError};
use super::hparams::PretrainParams;
use super::pretrain::{self, Corpus};
use super::Channel;
use crate::protocol::Decision;
use candle_core::Device;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting trial looks at the shared run's progress.
const POLL: Duration = Duration::from_millis(500);

/// The checkpoint directory of the pretraining run for these params: reused from the cache, or
/// trained now (once, even when several trials ask at the same time) and cached. None when the
/// coordinator stopped this trial meanwhile (a run it was training goes on from its checkpoint
/// in the next trial that asks).
pub fn pretrained(
    common_args: &CommonArgs,
    p: &PretrainParams,
    train: &[String],
    valid: &[String],
    device: &Device,
    channel: &mut Channel,
) -> Result<Option<PathBuf>, RunError> {
    let corpus: Vec<String> = train.iter().chain(valid).cloned().collect();
    let key = super::tokenizer::cache_key(&serde_json::to_string(p).expect("params serialise"), &corpus);
    let cache = common_args.cache_dir();
    let dir = cache.join(format!("pretrain-{key}"));
    let progress = cache.join(format!("pretrain-{key}.progress.json"));
    let io = |e: std::io::Error| RunError::Setup(format!("cache {}: {e}", cache.display()));
    std::fs::create_dir_all(&cache).map_err(io)?;
    let lock_path = cache.join(format!("pretrain-{key}.lock"));
    let mut shown = None;
    let _lock = loop {
        if let Some(lock) = crate::lock::try_lock_exclusive(&lock_path).map_err(io)? {
            break lock;
        }
        // Another trial trains it: show its progress here too.
        let now = std::fs::read(&progress).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(now) = now.filter(|n| shown.as_ref() != Some(n)) {
            if channel.report(&report(&now)) == Decision::Stop {
                return Ok(None);
            }
            shown = Some(now);
        }
        std::thread::sleep(POLL);
    };
    if common::has_checkpoint(&dir) {
        eprintln!("reusing cached pretraining run {}", dir.display());
        return Ok(Some(dir));
    }
    eprintln!("pretraining into {} (cached for trials with the same pretrain_* params)", dir.display());
    let vocab = pretrain::vocab_for(&p.shape, train, common_args)?;
    let corpus = Corpus::new(&vocab, train, valid, p.optim.seq_len)?;
    // Ten evaluations (and checkpoints), whatever `--eval-every` says of the fine-tuning.
    let every = p.optim.steps.div_ceil(10).max(1);
    let started = std::time::Instant::now();
    let checkpoints = Checkpoints::newest(cache.join(format!("pretrain-{key}.checkpoints")));
    publish(&progress, &json!({ "step": 0, "steps": p.optim.steps }));
    // The whole curve goes on the card, so the cached model says how it was made.
    let mut curve = Vec::new();
    let outcome = pretrain::train(p, &vocab, &corpus, device, every, 64, &checkpoints, |step, metrics| {
        if metrics.get("val_loss").is_none() {
            // Its checkpoint on SIGTERM: the shared run's own, in the cache, not the trial's.
            return Decision::Stop;
        }
        eprintln!("pretraining step {step}: {metrics}");
        let now = json!({
            "step": step,
            "steps": p.optim.steps,
            "val_loss": metrics["val_loss"],
            "val_ppl": metrics["val_ppl"],
        });
        publish(&progress, &now);
        curve.push(metrics);
        channel.report(&report(&now))
    })?;
    let Some((model, val_loss)) = outcome else { return Ok(None) };
    let mut shape = p.shape.clone();
    shape.vocab_size = vocab.size();
    let made_by = json!({
        "params": p,
        "val_loss": val_loss,
        "val_ppl": val_loss.exp(),
        "seconds": started.elapsed().as_secs_f64(),
        "threads": candle_core::utils::get_num_threads(),
        "curve": curve,
    });
    common::save_checkpoint(&dir, &model.vars, &vocab, &Card { shape, made_by })?;
    let _ = std::fs::remove_dir_all(&checkpoints.dir);
    let _ = std::fs::remove_file(&progress);
    Ok(Some(dir))
}

/// The shared run's progress as a fine-tuning trial's report: at step 0, before any step of its
/// own, with the run's fields prefixed `pretrain_` (annotations and metrics, not the objective).
fn report(progress: &Value) -> Value {
    let mut line = json!({ "step": 0 });
    if let Some(fields) = progress.as_object() {
        for (k, v) in fields {
            line[format!("pretrain_{k}")] = v.clone();
        }
    }
    line
}

/// Writes the progress file whole; best effort: it only informs.
fn publish(path: &Path, progress: &Value) {
    let _ = crate::durable::write_atomically(path, progress.to_string().as_bytes(), 0o644);
}
