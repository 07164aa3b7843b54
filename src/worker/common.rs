//! The setup the candle workers share: command-line options, threads, device, directories,
//! checkpoints, and one error type whose message becomes the failed trial's reason.

use super::checkpoint::Checkpoints;
use super::data::DataError;
use super::hparams::{ParamError, Shape};
use super::tokenizer::{TokenizerError, Vocab};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Channel(#[from] super::WorkerError),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("{0}")]
    Setup(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// cpu or cuda:N; auto picks cuda:0 when built with `cuda` and the coordinator assigned a GPU.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads for this trial (the coordinator suggests cores / parallel in SWEEP_CPU_THREADS).
    #[arg(long, env = crate::protocol::env::CPU_THREADS)]
    pub threads: Option<usize>,
    /// Evaluate and report every N steps (default: 10 reports per run).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Where the trial's files go (default: SWEEP_TRIAL_DIR, set by the coordinator).
    #[arg(long, env = crate::protocol::env::TRIAL_DIR, default_value = "sweep-runs/manual")]
    pub out: PathBuf,
    /// Cached tokenizers and pretraining runs (default: SWEEP_RUNS_DIR/cache).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Write a checkpoint at every Nth evaluation, so an interrupted trial resumes there
    /// (0: never). A param `checkpoint_every` overrides it.
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: usize,
}

impl CommonArgs {
    /// Pins the thread count before candle or rayon start their pools, then opens the device.
    pub fn setup(&self) -> Result<Device, RunError> {
        keep_freed_memory();
        quiet_idle_threads();
        if let Some(n) = self.threads.filter(|n| *n > 0) {
            // Set before any pool exists; both candle's own pool and rayon's read these.
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        }
        let name = match self.device.as_str() {
            "auto" if cfg!(feature = "cuda") && std::env::var("CUDA_VISIBLE_DEVICES").is_ok_and(|v| !v.is_empty()) => {
                "cuda:0"
            }
            "auto" => "cpu",
            other => other,
        };
        super::model::device(name).map_err(RunError::Setup)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| crate::layout::cache_dir(&crate::layout::runs_dir_from_env()))
    }

    pub fn eval_every(&self, steps: usize) -> usize {
        self.eval_every.unwrap_or(steps.div_ceil(10)).max(1)
    }

    /// The trial's checkpoints as the coordinator described them (none when run by hand), at
    /// the param's frequency if it gave one, else the flag's.
    pub fn checkpoints(&self, channel: &super::Channel, param: Option<usize>) -> Checkpoints {
        Checkpoints {
            dir: channel.checkpoint_dir.clone().unwrap_or_default(),
            every: if channel.checkpoint_dir.is_some() { param.unwrap_or(self.checkpoint_every) } else { 0 },
            resume_step: channel.resume_step.filter(|_| channel.checkpoint_dir.is_some()),
        }
    }
}

/// Every candle op allocates its output; glibc hands big buffers back to the kernel on free,
/// so each step page-faults its whole working set again (measured: a sixth of a CPU step).
/// Keeping freed memory in the heap makes the next step reuse it.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before the training threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Idle threads of candle's element-wise pool spin 25,000 rounds before they sleep. With as
/// many threads as cores, that spinning takes the cores from rayon's GEMM workers and our
/// kernels' threads, which run right after (measured on 2 cores: cls at 2 threads took 0.8 of
/// the time with 1,000 rounds, 0.9 for mlm). A user's own setting wins. Call before any pool
/// starts.
pub fn quiet_idle_threads() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000");
    }
}

/// The worker process's peak resident memory in MB (`VmHWM` in /proc/self/status), where the
/// system tells it (Linux): weights, activations, optimizer state and the data, in host memory.
/// A GPU's own memory is not in it.
pub fn peak_resident_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kb: f64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// What `model.json` in a checkpoint directory says about the weights beside it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Card {
    pub shape: Shape,
    /// The params and metrics of the run that made it, for people reading the directory.
    pub made_by: serde_json::Value,
}

const WEIGHTS: &str = "model.safetensors";
const CARD: &str = "model.json";
const TOKENIZER: &str = "tokenizer.json";

/// Writes weights, tokenizer and card into `dir`; the card goes last, so a directory with a
/// card is complete even if the process died while writing.
pub fn save_checkpoint(dir: &Path, vars: &VarMap, vocab: &Vocab, card: &Card) -> Result<(), RunError> {
    let fail = |message: String| RunError::Checkpoint { path: dir.to_path_buf(), message };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let partial = dir.join(format!("{WEIGHTS}.partial"));
    vars.save(&partial).map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&partial, dir.join(WEIGHTS)).map_err(|e| fail(e.to_string()))?;
    if vocab.path != dir.join(TOKENIZER) {
        std::fs::copy(&vocab.path, dir.join(TOKENIZER)).map_err(|e| fail(e.to_string()))?;
    }
    let json = serde_json::to_string_pretty(card).expect("card serialises");
    std::fs::write(dir.join(format!("{CARD}.partial")), json).map_err(|e| fail(e.to_string()))?;
    std::fs::rename(dir.join(format!("{CARD}.partial")), dir.join(CARD)).map_err(|e| fail(e.to_string()))
}

/// A complete checkpoint: its card, tokenizer and tensors.
pub struct Checkpoint {
    pub card: Card,
    pub vocab: Vocab,
    pub tensors: HashMap<String, Tensor>,
}

pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(CARD).is_file()
}

pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint, RunError> {
    let fail = |message: String| RunError::Checkpoint { path: dir.to_path_buf(), message };
    let text = std::fs::read_to_string(dir.join(CARD))
        .map_err(|e| fail(format!("no {CARD} ({e}): not a finished pretraining checkpoint")))?;
    let card: Card = serde_json::from_str(&text).map_err(|e| fail(format!("{CARD}: {e}")))?;
    let vocab = Vocab::load(&dir.join(TOKENIZER))?;
    let tensors = candle_core::safetensors::load(dir.join(WEIGHTS), device).map_err(|e| fail(e.to_string()))?;
    Ok(Checkpoint { card, vocab, tensors })
}

/// Copies the checkpoint's tensors under `prefix` into the model's variables of the same name.
pub fn restore(vars: &VarMap, tensors: &HashMap<String, Tensor>, prefix: &str, dir: &Path) -> Result<(), RunError> {
    let fail = |message: String| RunError::Checkpoint { path: dir.to_path_buf(), message };
    let data = vars.data().lock().expect("var map lock");
    for (name, var) in data.iter().filter(|(n, _)| n.starts_with(prefix)) {
        let tensor = tensors.get(name).ok_or_else(|| fail(format!("has no tensor `{name}`")))?;
        if tensor.shape() != var.shape() {
            return Err(fail(format!("`{name}` has shape {:?}, the model wants {:?}", tensor.shape(), var.shape())));
        }
        var.set(tensor)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_peak_resident_memory_counts_what_was_touched() {
        let before = super::peak_resident_mb().expect("Linux reports VmHWM");
        let touched = vec![1u8; 64 << 20];
        let after = super::peak_resident_mb().unwrap();
        assert_eq!(touched.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
        // Process-wide (other tests share it), so only: never falls, and holds the 64 MB.
        assert!(after >= before && after >= 64.0, "{before} MB -> {after} MB after touching 64 MB");
    }
}
