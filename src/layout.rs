//! Where sweep keeps files beside a study: the runs folder, each trial's own folder, and the
//! cache the trials of a project share (tokenizers, pretraining runs). One home, so the
//! coordinator, the Slurm executor and the workers always agree on a path.

use std::path::{Path, PathBuf};

/// The runs folder's name, created in the study's working directory.
pub const RUNS_DIR: &str = "sweep-runs";

/// Where trials keep their files (checkpoints, cached pretraining runs): beside the study's
/// working directory, so the studies of one project share it.
pub fn runs_dir(workdir: &Path) -> PathBuf {
    workdir.join(RUNS_DIR)
}

/// Why `name` cannot name a study's folder under the runs folder, if it cannot: its trials'
/// folders (and their checkpoints) must stay inside that study's own folder, never in another
/// study's, in the shared cache, or outside the runs folder.
pub fn study_name_problem(name: &str) -> Option<&'static str> {
    if name.contains(['/', '\\', '\0']) {
        Some("must not contain `/`, `\\` or NUL: it names the study's folder under sweep-runs/")
    } else if name == "." || name == ".." {
        Some("must not be `.` or `..`: it names the study's folder under sweep-runs/")
    } else if name == CACHE {
        Some("`cache` is the folder under sweep-runs/ that every study shares; choose another name")
    } else {
        None
    }
}

/// One study's folder under the runs folder (Slurm's scripts and logs live here too).
pub fn study_dir(runs: &Path, study: &str) -> PathBuf {
    runs.join(study)
}

/// One trial's own folder; a fine-tune finds a pretraining study's best checkpoint here by
/// its number.
pub fn trial_dir(runs: &Path, study: &str, number: u64) -> PathBuf {
    study_dir(runs, study).join(format!("trial-{number}"))
}

/// A trial's checkpoints, in the folder of its first attempt: every attempt (a re-run after a
/// crash, a retry) reads and writes the same one.
pub fn checkpoint_dir(runs: &Path, study: &str, first_attempt: u64) -> PathBuf {
    trial_dir(runs, study, first_attempt).join("checkpoints")
}

/// Tokenizers and pretraining runs, shared by every trial that asks for the same ones.
pub fn cache_dir(runs: &Path) -> PathBuf {
    runs.join(CACHE)
}

const CACHE: &str = "cache";

/// The runs folder a worker was given (SWEEP_RUNS_DIR), else `sweep-runs` here.
pub fn runs_dir_from_env() -> PathBuf {
    std::env::var_os(crate::protocol::env::RUNS_DIR).map_or_else(|| PathBuf::from(RUNS_DIR), PathBuf::from)
}

/// Bytes of the files under `dir` (0 if it is absent); symbolic links are not followed.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_nest_under_the_working_directory() {
        let runs = runs_dir(Path::new("/p"));
        assert_eq!(runs, Path::new("/p/sweep-runs"));
        assert_eq!(trial_dir(&runs, "s", 3), Path::new("/p/sweep-runs/s/trial-3"));
        assert_eq!(checkpoint_dir(&runs, "s", 3), Path::new("/p/sweep-runs/s/trial-3/checkpoints"));
        assert_eq!(cache_dir(&runs), Path::new("/p/sweep-runs/cache"));
    }

    #[test]
    fn a_study_name_that_would_leave_its_folder_is_refused() {
        for bad in ["../elsewhere", "a/b", "/abs", "..", ".", "cache", "a\\b"] {
            assert!(study_name_problem(bad).is_some(), "{bad}");
        }
        for good in ["pretrain", "label efficiency", "v1.2", "caches", "..x"] {
            assert_eq!(study_name_problem(good), None, "{good}");
        }
    }
}
