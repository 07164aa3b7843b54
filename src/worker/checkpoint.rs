//! Checkpoints of a training run in progress, in one place: the files that let an attempt of a
//! trial go on where an earlier one stopped, bit for bit.
//!
//! One file per checkpoint, `step-00000300.safetensors` in the trial's checkpoint folder
//! (`SWEEP_CHECKPOINT_DIR`): the tensors a step depends on, and in the file's metadata the
//! training loop's own state as JSON and a SHA-256 of every tensor. It is written to a
//! temporary name, fsynced, renamed into place and the folder fsynced; only then may the
//! worker tell the coordinator it is durable. A file that is truncated, damaged or unreadable
//! is never loaded: the worker falls back to the one before it, or to step 0, and says so.

use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;

/// Checkpoints kept while a trial runs: the newest, and the one before it in case the newest
/// was written but never recorded (the coordinator resumes from the step it recorded).
const KEEP: usize = 2;
const STATE: &str = "sweep.state";
const DIGEST: &str = "sweep.sha256";

/// A trial's checkpoint folder and when to write into it.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub dir: PathBuf,
    /// Every how many evaluations a checkpoint is written (0: never).
    pub every: usize,
    /// The step the coordinator recorded as this trial's last durable checkpoint, if any.
    pub resume_step: Option<usize>,
}

/// What a checkpoint held: its step, tensors by name, and the loop's state.
pub struct Restored<S> {
    pub step: usize,
    pub tensors: HashMap<String, Tensor>,
    pub state: S,
}

impl Checkpoints {
    /// A run with no coordinator to record its steps (the shared pretraining run): a
    /// checkpoint at every evaluation, and a restart goes on from the newest usable one.
    pub fn newest(dir: PathBuf) -> Checkpoints {
        Checkpoints { dir, every: 1, resume_step: Some(usize::MAX) }
    }

    /// Whether the `evaluation`-th evaluation (1-based) writes a checkpoint.
    pub fn due(&self, evaluation: usize) -> bool {
        self.every > 0 && evaluation.is_multiple_of(self.every)
    }

    fn path(&self, step: usize) -> PathBuf {
        self.dir.join(format!("step-{step:08}.safetensors"))
    }

    /// Writes the checkpoint of `step` durably, then removes all but the newest few. An error
    /// (a full disk, a folder that cannot be written) leaves the earlier checkpoints as they
    /// were and no partial file behind.
    pub fn save<S: Serialize>(&self, step: usize, tensors: &[(String, Tensor)], state: &S) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let bytes = encode(tensors, state)?;
        let path = self.path(step);
        crate::durable::write_atomically(&path, &bytes, 0o644)
            .and_then(|()| crate::durable::sync_parent(&path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for old in self.steps().into_iter().skip(KEEP) {
            let _ = std::fs::remove_file(self.path(old));
        }
        Ok(())
    }

    /// The newest checkpoint that loads whole, at or before the recorded resume step; None
    /// when the trial has no resume step or none of its files is usable (then it starts
    /// over). Each file passed over is named on stderr with the reason.
    pub fn restore<S: DeserializeOwned>(&self, device: &Device) -> Option<Restored<S>> {
        let at_most = self.resume_step?;
        let steps: Vec<usize> = self.steps().into_iter().filter(|&s| s <= at_most).collect();
        if steps.first() != Some(&at_most) && at_most != usize::MAX {
            eprintln!("checkpoint: no file for step {at_most} in {}", self.dir.display());
        }
        for step in steps {
            let path = self.path(step);
            match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| decode(&b, device)) {
                Ok((tensors, state)) => {
                    eprintln!("checkpoint: resuming from step {step} ({})", path.display());
                    return Some(Restored { step, tensors, state });
                }
                Err(why) => eprintln!("checkpoint: {} is not usable ({why}); trying an earlier one", path.display()),
            }
        }
        if at_most != usize::MAX || self.dir.exists() {
            eprintln!("checkpoint: no usable checkpoint in {}: starting over from step 0", self.dir.display());
        }
        None
    }

    /// Steps of the checkpoint files in the folder, newest first.
    fn steps(&self) -> Vec<usize> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut steps: Vec<usize> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()
            })
            .collect();
        steps.sort_unstable_by(|a, b| b.cmp(a));
        steps
    }
}

/// The file's bytes: the tensors as f32, with the state and the digest in the metadata.
fn encode<S: Serialize>(tensors: &[(String, Tensor)], state: &S) -> Result<Vec<u8>, String> {
    let mut flat: Vec<(&str, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let values = tensor.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| format!("`{name}`: {e}"))?;
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        flat.push((name, tensor.dims().to_vec(), bytes));
    }
    flat.sort_by(|a, b| a.0.cmp(b.0));
    let digest = digest(flat.iter().map(|(name, _, bytes)| (*name, bytes.as_slice())));
    let views = flat
        .iter()
        .map(|(name, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map_err(|e| format!("`{name}`: {e}"))?;
            Ok((*name, view))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let state = serde_json::to_string(state).map_err(|e| e.to_string())?;
    let metadata = HashMap::from([(STATE.to_string(), state), (DIGEST.to_string(), digest)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Reads what `encode` wrote, refusing a file whose tensors do not match their digest.
fn decode<S: DeserializeOwned>(bytes: &[u8], device: &Device) -> Result<(HashMap<String, Tensor>, S), String> {
    let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("unreadable: {e}"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| format!("unreadable: {e}"))?;
    let metadata = header.metadata().as_ref().ok_or("no metadata")?;
    let (state, expected) = match (metadata.get(STATE), metadata.get(DIGEST)) {
        (Some(s), Some(d)) => (s, d),
        _ => return Err("not a sweep checkpoint".into()),
    };
    let mut names: Vec<&str> = file.names();
    names.sort_unstable();
    let views = names
        .into_iter()
        .map(|n| file.tensor(n).map(|v| (n, v)).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, String>>()?;
    if &digest(views.iter().map(|(n, v)| (*n, v.data()))) != expected {
        return Err("its tensors do not match their checksum".into());
    }
    let state = serde_json::from_str(state).map_err(|e| format!("its state: {e}"))?;
    let tensors = views
        .into_iter()
        .map(|(name, view)| Ok((name.to_string(), view.load(device).map_err(|e| format!("`{name}`: {e}"))?)))
        .collect::<Result<HashMap<_, _>, String>>()?;
    Ok((tensors, state))
}

/// SHA-256 over each tensor's name and bytes, in name order.
fn digest<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for (name, bytes) in tensors {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoints(dir: &std::path::Path, resume_step: Option<usize>) -> Checkpoints {
        Checkpoints { dir: dir.join("checkpoints"), every: 1, resume_step }
    }

    fn tensors(x: f32) -> Vec<(String, Tensor)> {
        let t = Tensor::new(&[[x, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        vec![("b".into(), t.clone()), ("a".into(), (t * 2.0).unwrap())]
    }

    #[test]
    fn a_checkpoint_comes_back_as_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let c = checkpoints(dir.path(), Some(10));
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct State {
            order: Vec<usize>,
            words: u128,
        }
        let state = State { order: vec![3, 1, 2], words: u128::MAX / 3 };
        c.save(10, &tensors(1.5), &state).unwrap();
        let back: Restored<State> = c.restore(&Device::Cpu).unwrap();
        assert_eq!(back.step, 10);
        assert_eq!(back.state, state);
        assert_eq!(back.tensors["b"].to_vec2::<f32>().unwrap(), vec![vec![1.5, 2.0], vec![3.0, 4.0]]);
        assert_eq!(back.tensors["a"].dims(), &[2, 2]);
    }

    #[test]
    fn a_damaged_or_unrecorded_checkpoint_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let c = checkpoints(dir.path(), Some(20));
        for step in [10, 20, 30] {
            c.save(step, &tensors(step as f32), &step).unwrap();
        }
        // Only the newest two are kept; 30 was never recorded, so 20 is the one to load.
        assert_eq!(c.steps(), vec![30, 20]);
        assert_eq!(c.restore::<usize>(&Device::Cpu).unwrap().step, 20);
        // A truncated file, then a flipped byte: neither loads; nothing older is left.
        let path = c.path(20);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        assert!(c.restore::<usize>(&Device::Cpu).is_none());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(c.restore::<usize>(&Device::Cpu).is_none());
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(c.restore::<usize>(&Device::Cpu).unwrap().state, 20);
        // No resume step: a fresh start, whatever the folder holds.
        assert!(checkpoints(dir.path(), None).restore::<usize>(&Device::Cpu).is_none());
    }

    #[test]
    fn a_failed_write_leaves_the_earlier_checkpoint_and_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = checkpoints(dir.path(), Some(10));
        c.save(10, &tensors(1.0), &10).unwrap();
        // A folder where the file should go makes the rename fail after the write.
        std::fs::create_dir(c.path(20)).unwrap();
        assert!(c.save(20, &tensors(2.0), &20).is_err());
        std::fs::remove_dir(c.path(20)).unwrap();
        assert_eq!(c.steps(), vec![10]);
        assert_eq!(std::fs::read_dir(&c.dir).unwrap().count(), 1, "no partial file left");
    }
}
