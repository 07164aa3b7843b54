//! The Slurm command-line tools, as the coordinator uses them: `sbatch` to submit, `squeue`
//! (then `sacct`) to watch, `scancel` to stop. Parsing is separate so it is tested without Slurm.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::process::Command;

/// How long one Slurm command may take before it counts as failed (slurmctld busy or down).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What sbatch is asked for, beyond the script.
pub struct Submission<'a> {
    pub name: &'a str,
    pub script: &'a Path,
    pub output: &'a Path,
    pub workdir: &'a Path,
    pub partition: Option<&'a str>,
    pub gres: Option<&'a str>,
    pub time: Option<&'a str>,
    /// Ask Slurm for SIGUSR1 to the job's script this long before its time limit (zero: not).
    pub warning: Duration,
    pub extra: &'a [String],
}

/// Submits a job and returns its id.
pub async fn sbatch(s: &Submission<'_>) -> Result<String, String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable").arg("--job-name").arg(s.name).arg("--output").arg(s.output).arg("--chdir").arg(s.workdir);
    // Preempted or requeued by an admin, the job starts again and resumes from its checkpoint.
    cmd.arg("--requeue");
    // Before its time limit, the job stops its worker, which checkpoints first (see relay.rs).
    if !s.warning.is_zero() {
        cmd.arg(format!("--signal=B:USR1@{}", s.warning.as_secs().clamp(1, 65535)));
    }
    for (flag, value) in [("--partition", s.partition), ("--gres", s.gres), ("--time", s.time)] {
        if let Some(v) = value {
            cmd.arg(format!("{flag}={v}"));
        }
    }
    cmd.args(s.extra).arg(s.script);
    let stdout = output(cmd, "sbatch").await?;
    parse_job_id(&stdout).ok_or_else(|| format!("sbatch printed no job id: `{}`", stdout.trim()))
}

/// Slurm's `--time` as a duration: "minutes", "minutes:seconds", "hours:minutes:seconds",
/// "days-hours", "days-hours:minutes" or "days-hours:minutes:seconds"; None for no limit
/// ("UNLIMITED", "INFINITE", "-1", "0").
pub fn time_limit(text: &str) -> Result<Option<Duration>, String> {
    let bad = || {
        format!(
            "`{text}` is not a Slurm time: \"minutes\", \"minutes:seconds\", \"hours:minutes:seconds\", \
             \"days-hours\", \"days-hours:minutes\" or \"days-hours:minutes:seconds\""
        )
    };
    if matches!(text.to_ascii_uppercase().as_str(), "UNLIMITED" | "INFINITE" | "-1") {
        return Ok(None);
    }
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, text),
    };
    let number = |s: &str| s.parse::<u64>().ok().filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let parts: Option<Vec<u64>> = rest.split(':').map(number).collect();
    let parts = parts.ok_or_else(bad)?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => number(d).ok_or_else(bad)? * 86400 + h * 3600,
        (Some(d), [h, m]) => number(d).ok_or_else(bad)? * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => number(d).ok_or_else(bad)? * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    // Zero asks for no limit, as sbatch reads it.
    Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
}

/// `--parsable` prints `id` or `id;cluster`.
pub fn parse_job_id(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

/// A job as squeue or sacct last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub state: String,
    pub reason: String,
}

/// What a job's state means for its trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Waiting for resources, or suspended.
    Queued,
    Running,
    /// Over, and the worker's own word (a done message, outcome.json) says how.
    Ended,
    /// Over because the cluster took it away; the trial deserves a re-run.
    TakenAway,
}

impl JobState {
    pub fn phase(&self) -> Phase {
        // sacct writes "CANCELLED by 0"; squeue plain names.
        match self.state.split_whitespace().next().unwrap_or("") {
            // Suspended jobs send no heartbeats either.
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "CONFIGURING" | "SUSPENDED"
            | "STOPPED" => Phase::Queued,
            "RUNNING" | "COMPLETING" | "SIGNALING" | "STAGE_OUT" | "RESIZING" => Phase::Running,
            "PREEMPTED" | "NODE_FAIL" => Phase::TakenAway,
            _ => Phase::Ended,
        }
    }

    /// Whether Slurm ended the job, rather than the job ending on its own.
    pub fn ended_by_slurm(&self) -> bool {
        let state = self.state.split_whitespace().next().unwrap_or("");
        matches!(state, "CANCELLED" | "TIMEOUT" | "DEADLINE" | "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL")
    }

    pub fn describe(&self, id: &str) -> String {
        match self.reason.as_str() {
            "" | "None" => format!("slurm job {id} ended {}", self.state),
            r => format!("slurm job {id} ended {} ({r})", self.state),
        }
    }
}

/// The states of the given jobs; a job Slurm no longer knows is absent from the map.
pub async fn squeue(ids: &[String]) -> Result<HashMap<String, JobState>, String> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut cmd = Command::new("squeue");
    cmd.args(["--noheader", "--states=all", "--format=%i|%T|%r"]).arg(format!("--jobs={}", ids.join(",")));
    match output(cmd, "squeue").await {
        Ok(stdout) => Ok(parse_squeue(&stdout)),
        // Every id unknown (all long gone) is an answer, not a failure.
        Err(e) if e.contains("Invalid job id") => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

pub fn parse_squeue(stdout: &str) -> HashMap<String, JobState> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, '|');
            let id = fields.next()?.trim();
            let state = fields.next()?.trim();
            if id.is_empty() || state.is_empty() {
                return None;
            }
            let reason = fields.next().unwrap_or("").trim().to_string();
            Some((id.to_string(), JobState { state: state.to_string(), reason }))
        })
        .collect()
}

/// A job squeue has forgotten, from accounting where the cluster keeps it; None without it.
pub async fn sacct(id: &str) -> Option<JobState> {
    let mut cmd = Command::new("sacct");
    cmd.args(["--noheader", "--parsable2", "--allocations", "--format=State,ExitCode"]).arg(format!("--jobs={id}"));
    let stdout = output(cmd, "sacct").await.ok()?;
    let line = stdout.lines().next()?;
    let (state, code) = line.split_once('|').unwrap_or((line, ""));
    (!state.trim().is_empty())
        .then(|| JobState { state: state.trim().to_string(), reason: format!("exit code {}", code.trim()) })
}

/// The id of our job with this name, if Slurm still knows one (for a trial whose id the
/// coordinator died before recording).
pub async fn find_by_name(name: &str) -> Result<Option<String>, String> {
    let user = std::env::var("USER").ok();
    let mut cmd = Command::new("squeue");
    cmd.args(["--noheader", "--states=all", "--format=%i|%T|%r", "--name"]).arg(name);
    if let Some(u) = user {
        cmd.arg(format!("--user={u}"));
    }
    let jobs = parse_squeue(&output(cmd, "squeue").await?);
    // Prefer one still alive; several would mean an earlier duplicate, which we leave alone.
    Ok(jobs
        .iter()
        .find(|(_, s)| matches!(s.phase(), Phase::Queued | Phase::Running))
        .or_else(|| jobs.iter().next())
        .map(|(id, _)| id.clone()))
}

/// Sends `signal` to every process of the job, batch script included; None cancels it.
pub async fn scancel(id: &str, signal: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("scancel");
    if let Some(s) = signal {
        cmd.arg("--full").arg(format!("--signal={s}"));
    }
    cmd.arg(id);
    output(cmd, "scancel").await.map(drop)
}

async fn output(mut cmd: Command, name: &str) -> Result<String, String> {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Err(_) => return Err(format!("{name} did not answer within {}s", COMMAND_TIMEOUT.as_secs())),
        Ok(Err(e)) => return Err(format!("cannot run {name}: {e} (is Slurm installed and on PATH?)")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{name} failed ({}): {}", out.status, stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_job_ids_and_states() {
        assert_eq!(parse_job_id("1234\n").as_deref(), Some("1234"));
        assert_eq!(parse_job_id("77;cluster2").as_deref(), Some("77"));
        assert_eq!(parse_job_id("sbatch: error"), None);
        let jobs = parse_squeue("5|CANCELLED|Resources\n4|RUNNING|None\ngarbage\n");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs["4"].phase(), Phase::Running);
        assert_eq!(jobs["5"].phase(), Phase::Ended);
        assert_eq!(jobs["5"].describe("5"), "slurm job 5 ended CANCELLED (Resources)");
        let taken = JobState { state: "PREEMPTED".into(), reason: "None".into() };
        assert_eq!(taken.phase(), Phase::TakenAway);
        assert_eq!(JobState { state: "CANCELLED by 0".into(), reason: String::new() }.phase(), Phase::Ended);
        assert_eq!(JobState { state: "PENDING".into(), reason: "Priority".into() }.phase(), Phase::Queued);
    }

    #[test]
    fn reads_slurm_times() {
        let secs = |t: &str| time_limit(t).map(|d| d.map(|d| d.as_secs()));
        assert_eq!(secs("1"), Ok(Some(60)));
        assert_eq!(secs("90:30"), Ok(Some(5430)));
        assert_eq!(secs("02:00:00"), Ok(Some(7200)));
        assert_eq!(secs("1-12"), Ok(Some(129600)));
        assert_eq!(secs("1-0:30"), Ok(Some(88200)));
        assert_eq!(secs("2-01:02:03"), Ok(Some(2 * 86400 + 3723)));
        assert_eq!(secs("UNLIMITED"), Ok(None));
        assert_eq!(secs("0"), Ok(None));
        for bad in ["", "2h", "1:2:3:4", "-5", "1-", "1-2:3:4:5", "a-1", "1:-2"] {
            assert!(time_limit(bad).is_err(), "{bad}");
        }
    }
}
