//! Helpers: a study in a temporary folder, the binary, and reading the database back.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sweep");

/// A study file and its database in a fresh folder.
pub struct Study {
    pub dir: tempfile::TempDir,
    pub name: String,
}

impl Study {
    /// Writes `toml` (with `name = "..."` prepended) as study.toml.
    pub fn new(name: &str, toml: &str) -> Study {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("study.toml"), format!("name = \"{name}\"\n{toml}")).expect("write study");
        Study { dir, name: name.to_string() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("study.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("sweep.db")
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).expect("write file");
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--db").arg(self.db()).args(args).current_dir(self.dir.path());
        cmd
    }

    /// Runs `sweep run study.toml` to the end.
    pub fn run(&self) -> Output {
        self.command(&["run", "study.toml", "--no-progress"]).output().expect("run sweep")
    }

    pub fn spawn(&self) -> Child {
        self.command(&["run", "study.toml", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sweep")
    }

    /// All trials, as `sweep export --format json` writes them.
    pub fn trials(&self) -> Vec<Value> {
        self.try_trials().unwrap_or_else(|e| panic!("export failed: {e}"))
    }

    /// The trials of another study in the same database.
    pub fn trials_of(&self, study: &str) -> Vec<Value> {
        let out = self.command(&["export", study, "--format", "json"]).output().expect("export");
        assert!(out.status.success(), "export failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("export is JSON")
    }

    /// The trials, or the error while the study does not exist yet.
    pub fn try_trials(&self) -> Result<Vec<Value>, String> {
        let out = self.command(&["export", &self.name, "--format", "json"]).output().expect("export");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("export is JSON"))
    }

    /// Waits until the study has `n` trials in `state`.
    pub fn wait_for_state(&self, state: &str, n: usize) {
        wait_for(&format!("{n} {state} trials"), Duration::from_secs(60), || {
            self.try_trials().is_ok_and(|t| t.iter().filter(|t| t["state"] == state).count() >= n)
        });
    }

    pub fn in_state(&self, state: &str) -> Vec<Value> {
        self.trials().into_iter().filter(|t| t["state"] == state).collect()
    }

    /// Live processes whose working directory is this study's folder (its workers).
    pub fn live_workers(&self) -> Vec<u32> {
        let dir = std::fs::canonicalize(self.dir.path()).expect("dir");
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let zombie = std::fs::read_to_string(entry.path().join("stat")).map(|s| s.contains(") Z ")).unwrap_or(true);
            if !zombie
                && std::fs::read_link(entry.path().join("cwd")).ok().as_deref() == Some(dir.as_path())
                && pid != std::process::id()
            {
                pids.push(pid);
            }
        }
        pids
    }
}

/// kill -9 of a process we started (a coordinator), and reaps it.
pub fn kill9(child: &mut Child) {
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Counted finished trials: complete, and pruned or failed ones that were not re-run (a paused
/// trial that was promoted, a failure that was retried).
pub fn counted(trials: &[Value]) -> usize {
    let retried: Vec<&Value> = trials.iter().filter_map(|t| t.get("rerun_of").filter(|r| !r.is_null())).collect();
    trials
        .iter()
        .filter(|t| match t["state"].as_str() {
            Some("complete") => true,
            Some("pruned") | Some("failed") => !retried.contains(&&t["number"]),
            _ => false,
        })
        .count()
}

pub fn numbers_are_unique(trials: &[Value]) -> bool {
    let mut numbers: Vec<u64> = trials.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    numbers.sort();
    numbers.windows(2).all(|w| w[0] != w[1])
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A `[trial]` section running a shell script from the study folder.
pub fn script_trial(script: &str) -> String {
    format!("[trial]\ncommand = [\"/bin/sh\", \"{script}\"]\ngrace = \"200ms\"\n")
}

/// The testfn worker on branin with a learning curve.
pub fn testfn_study(trials: u32, parallel: u32, steps: u32, sleep_ms: u32) -> String {
    format!(
        r#"metric = "loss"
direction = "minimize"
seed = 11

[budget]
trials = {trials}
parallel = {parallel}

[params.x0]
type = "float"
low = -5.0
high = 10.0

[params.x1]
type = "float"
low = 0.0
high = 15.0

[trial]
worker = "testfn"
args = ["--fn", "branin", "--steps", "{steps}", "--sleep-ms", "{sleep_ms}", "--metric", "loss"]
grace = "300ms"
"#
    )
}
