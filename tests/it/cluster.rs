//! One contract, two executors: the same studies run on the local executor and on a real
//! single-node Slurm (started by tests/slurm/up.sh). Without Slurm the Slurm half is skipped,
//! unless SWEEP_REQUIRE_SLURM=1 (as tests/run.sh sets), when it fails instead.

use crate::support::{counted, kill9, wait_for, Study};
use serde_json::Value;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// A user script that speaks the protocol: reports a falling loss, obeys `stop` unless told to
/// ignore it, leaves its pid behind, and ends with the GPU it saw and when it ran.
const WORKER: &str = r#"
import json, os, sys, time
hello = json.loads(sys.stdin.readline())
x = hello["params"]["x"]
gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "")
steps = int(os.environ["STEPS"]); pause = float(os.environ["PAUSE"])
ignore = os.environ.get("IGNORE_STOP") == "1"
open("pid-%d" % hello["trial"], "w").write(str(os.getpid()))
start = time.time()
for s in range(1, steps + 1):
    time.sleep(pause)
    print(json.dumps({"step": s, "loss": x + (steps - s)}), flush=True)
    if not ignore and json.loads(sys.stdin.readline())["decision"] == "stop":
        sys.exit(0)
print(json.dumps({"final": {"loss": x, "gpu": float(gpu or -1), "start": start, "end": time.time()}}), flush=True)
"#;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Local,
    Slurm,
}

/// Slurm tests share one node with two GPUs: one at a time.
static SLURM: Mutex<()> = Mutex::new(());

fn slurm_ready() -> bool {
    let up = std::env::var_os("SLURM_CONF").is_some()
        && Command::new("sinfo").arg("--noheader").output().is_ok_and(|o| o.status.success());
    if !up && std::env::var("SWEEP_REQUIRE_SLURM").as_deref() == Ok("1") {
        panic!("SWEEP_REQUIRE_SLURM=1 but no Slurm answers: run `eval \"$(tests/slurm/up.sh)\"` first");
    }
    if !up {
        eprintln!("no Slurm here (run `eval \"$(tests/slurm/up.sh)\"`): skipping the Slurm half");
    }
    up
}

/// Runs `test` on an executor; Slurm only where a Slurm answers.
fn on(kind: Kind, test: impl FnOnce(Kind)) {
    match kind {
        Kind::Local => test(kind),
        Kind::Slurm => {
            if slurm_ready() {
                let _one_at_a_time = SLURM.lock().unwrap_or_else(|e| e.into_inner());
                test(kind);
            }
        }
    }
}

fn study(kind: Kind, name: &str, budget: &str, env: &str, extra: &str) -> Study {
    let executor = match kind {
        // Two GPUs, one trial each: what Slurm's gres gives below.
        Kind::Local => "[devices]\ngpus = [0, 1]\n",
        Kind::Slurm => "[executor]\nkind = \"slurm\"\ngres = \"gpu:1\"\nlisten = \"127.0.0.1:0\"\npoll = \"1s\"\n",
    };
    let toml = format!(
        "metric = \"loss\"\ndirection = \"minimize\"\nseed = 5\n\n[budget]\n{budget}\n\n\
         [params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 10.0\n\n\
         [trial]\ncommand = [\"python3\", \"worker.py\"]\ngrace = \"300ms\"\nenv = {{ {env} }}\n\n{extra}\n{executor}"
    );
    let s = Study::new(name, &toml);
    s.write("worker.py", WORKER);
    s
}

fn jobs(trials: &[Value]) -> Vec<String> {
    trials.iter().filter_map(|t| t["job"].as_str().map(String::from)).collect()
}

/// Running, with a report in.
fn reporting(t: &Value) -> bool {
    t["state"] == "running" && t["reports"].as_array().is_some_and(|r| !r.is_empty())
}

fn slurm_state(job: &str) -> String {
    let out = Command::new("squeue").args(["--noheader", "--states=all", "--format=%T", "--jobs", job]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn runs_to_budget_each_trial_on_its_own_gpu(kind: Kind) {
    let s = study(kind, "budget", "trials = 4\nparallel = 2", "STEPS = \"4\", PAUSE = \"0.2\"", "");
    // From the folder above, as `sweep run studies/x.toml` is: relative paths must still hold
    // on the node.
    let folder = s.dir.path().file_name().unwrap().to_string_lossy().into_owned();
    let out = Command::new(crate::support::BIN)
        .arg("--db")
        .arg(s.db())
        .args(["run", &format!("{folder}/study.toml"), "--no-progress"])
        .current_dir(s.dir.path().parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 4);
    assert!(trials.iter().all(|t| t["state"] == "complete"), "{trials:#?}");
    let gpu = |t: &Value| t["metrics"]["gpu"].as_f64().unwrap();
    assert!(trials.iter().all(|t| gpu(t) == 0.0 || gpu(t) == 1.0), "every trial sees one GPU: {trials:#?}");
    for a in &trials {
        for b in &trials {
            let overlap = a["metrics"]["start"].as_f64() < b["metrics"]["end"].as_f64()
                && b["metrics"]["start"].as_f64() < a["metrics"]["end"].as_f64();
            if a["number"] != b["number"] && overlap {
                assert_ne!(gpu(a), gpu(b), "trials {} and {} ran at once on one GPU", a["number"], b["number"]);
            }
        }
    }
    if kind == Kind::Slurm {
        let mut ids = jobs(&trials);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "one recorded job per trial: {trials:#?}");
    }
}

#[test]
fn local_runs_to_budget_each_trial_on_its_own_gpu() {
    on(Kind::Local, runs_to_budget_each_trial_on_its_own_gpu);
}

#[test]
fn slurm_runs_to_budget_each_trial_on_its_own_gpu() {
    on(Kind::Slurm, runs_to_budget_each_trial_on_its_own_gpu);
}

/// A script that ignores `stop` is still stopped: by signal locally, by scancel on Slurm.
fn pruned_trial_is_stopped(kind: Kind) {
    let env = "STEPS = \"200\", PAUSE = \"0.1\", IGNORE_STOP = \"1\"";
    let s = study(kind, "pruned", "trials = 2\nparallel = 2", env, "[pruner]\nupper = 100.0\n");
    let out = s.run();
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 2);
    for t in &trials {
        assert_eq!(t["state"], "pruned", "{t:#}");
        assert!(t["last_step"].as_i64().unwrap() < 100, "stopped long before its 200 steps: {t:#}");
        assert!(t["reason"].as_str().unwrap().contains("upper = 100"), "the reason names the bound: {t:#}");
    }
    assert!(s.live_workers().is_empty(), "no worker outlives its trial");
    if kind == Kind::Slurm {
        for job in jobs(&trials) {
            wait_for("the pruned job to end", Duration::from_secs(20), || {
                !matches!(slurm_state(&job).as_str(), "RUNNING" | "PENDING" | "COMPLETING")
            });
        }
    }
}

#[test]
fn local_pruned_trial_is_stopped() {
    on(Kind::Local, pruned_trial_is_stopped);
}

#[test]
fn slurm_pruned_trial_is_stopped() {
    on(Kind::Slurm, pruned_trial_is_stopped);
}

/// A worker killed from outside (kill -9 locally, scancel on Slurm) fails its trial with the
/// reason, and the retry runs it again.
fn killed_worker_fails_and_is_retried(kind: Kind) {
    let s = study(kind, "killed", "trials = 2\nparallel = 1\nretries = 1", "STEPS = \"30\", PAUSE = \"0.2\"", "");
    let mut child = s.spawn();
    let pid_file = s.dir.path().join("pid-0");
    wait_for("trial 0 to report", Duration::from_secs(60), || {
        s.try_trials().is_ok_and(|t| t.first().is_some_and(reporting))
    });
    match kind {
        Kind::Local => {
            let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        Kind::Slurm => {
            let job = s.trials()[0]["job"].as_str().expect("trial 0 has its job id").to_string();
            let out = Command::new("scancel").arg(&job).output().unwrap();
            assert!(out.status.success(), "scancel: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    let trials = s.trials();
    let first = &trials[0];
    assert_eq!(first["state"], "failed", "{first:#}");
    let reason = first["reason"].as_str().unwrap();
    let expected: &[&str] = if kind == Kind::Local { &["SIGKILL"] } else { &["CANCELLED", "SIGTERM"] };
    assert!(expected.iter().all(|e| reason.contains(e)), "{reason}");
    let retry = trials.iter().find(|t| t["rerun_of"] == 0).expect("a retry of trial 0");
    assert_eq!((retry["state"].as_str(), retry["attempt"].as_u64()), (Some("complete"), Some(2)));
    assert_eq!(counted(&trials), 2);
}

#[test]
fn local_killed_worker_fails_and_is_retried() {
    on(Kind::Local, killed_worker_fails_and_is_retried);
}

#[test]
fn slurm_killed_job_fails_and_is_retried() {
    on(Kind::Slurm, killed_worker_fails_and_is_retried);
}

/// kill -9 of the coordinator mid-sweep, then the same command again. Locally the workers die
/// with it and their trials run again; on Slurm the jobs go on and are adopted, none submitted
/// twice.
fn coordinator_killed_then_resumed(kind: Kind) {
    let s = study(kind, "resumed", "trials = 4\nparallel = 2", "STEPS = \"15\", PAUSE = \"0.2\"", "");
    let mut child = s.spawn();
    wait_for("two trials to report", Duration::from_secs(60), || {
        s.try_trials().is_ok_and(|t| t.iter().filter(|t| reporting(t)).count() >= 2)
    });
    let before = s.trials();
    kill9(&mut child);
    let out = s.run();
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 4);
    match kind {
        Kind::Local => {
            let interrupted = trials.iter().filter(|t| t["state"] == "interrupted").count();
            assert_eq!(interrupted, 2, "{trials:#?}");
            assert_eq!(trials.len(), 6);
        }
        Kind::Slurm => {
            assert_eq!(trials.len(), 4, "no trial run twice: {trials:#?}");
            assert!(trials.iter().all(|t| t["state"] == "complete"), "{trials:#?}");
            let mut ids = jobs(&trials);
            assert_eq!(ids.len(), 4);
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 4, "no duplicate submissions: {trials:#?}");
            for t in before.iter().filter(|t| t["state"] == "running") {
                let now = trials.iter().find(|n| n["number"] == t["number"]).unwrap();
                assert_eq!(now["job"], t["job"], "adopted, not resubmitted");
                assert_eq!(now["last_step"], 15, "ran to its end: {now:#}");
            }
        }
    }
}

#[test]
fn local_coordinator_killed_then_resumed() {
    on(Kind::Local, coordinator_killed_then_resumed);
}

#[test]
fn slurm_coordinator_killed_then_resumed() {
    on(Kind::Slurm, coordinator_killed_then_resumed);
}

/// Ctrl-C on Slurm leaves the jobs running (cluster time is dear) for the next run to adopt.
#[test]
fn slurm_ctrl_c_leaves_jobs_for_the_next_run() {
    on(Kind::Slurm, |kind| {
        let s = study(kind, "detached", "trials = 2\nparallel = 2", "STEPS = \"15\", PAUSE = \"0.2\"", "");
        let mut child = s.spawn();
        wait_for("two trials to report", Duration::from_secs(60), || {
            s.try_trials().is_ok_and(|t| t.iter().filter(|t| reporting(t)).count() >= 2)
        });
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        assert_eq!(child.wait().unwrap().code(), Some(130));
        let left = s.trials();
        assert!(left.iter().all(|t| t["state"] == "running"), "{left:#?}");
        for job in jobs(&left) {
            assert_eq!(slurm_state(&job), "RUNNING", "job {job} goes on without the coordinator");
        }
        let out = s.run();
        assert!(out.status.success(), "{}", crate::support::text(&out));
        let trials = s.trials();
        assert_eq!(trials.len(), 2, "{trials:#?}");
        assert!(trials.iter().all(|t| t["state"] == "complete" && t["last_step"] == 15), "{trials:#?}");
        assert_eq!(jobs(&trials), jobs(&left));
    });
}

/// A job near its Slurm time limit (one minute, the smallest; warned half a minute before) stops
/// its worker; one that made no checkpoint since it started fails saying so (retries apply),
/// and is not left running.
#[test]
fn slurm_job_near_its_time_limit_without_a_checkpoint_fails() {
    on(Kind::Slurm, |kind| {
        let s = study(kind, "overtime", "trials = 1", "STEPS = \"1000\", PAUSE = \"0.5\"", "");
        let text = std::fs::read_to_string(s.path()).unwrap().replace("poll = \"1s\"", "poll = \"1s\"\ntime = \"1\"");
        std::fs::write(s.path(), text).unwrap();
        let out = s.run();
        assert!(out.status.success(), "{}", crate::support::text(&out));
        let trials = s.trials();
        assert_eq!(trials.len(), 1);
        let t = &trials[0];
        assert_eq!(t["state"], "failed", "{t:#}");
        let reason = t["reason"].as_str().unwrap();
        assert!(reason.contains("neared its time limit") && reason.contains("no checkpoint"), "{reason}");
        assert!(t["last_step"].as_i64().unwrap() < 1000, "stopped before its end, its reports kept: {t:#}");
    });
}

/// A one-trial study of `studies/python/train.py` (it checkpoints at every report), `steps`
/// steps of `sleep` ms, with `budget` lines and `executor`.
fn checkpointing_study(name: &str, steps: u32, sleep: u32, budget: &str, executor: &str) -> Study {
    let s = Study::new(
        name,
        &format!(
            "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 1\n{budget}\n\
             [params.lr]\nvalue = 0.02\n[params.momentum]\nvalue = 0.8\n\
             [trial]\ncommand = [\"python3\", \"train.py\", \"--steps\", \"{steps}\", \"--report-every\", \"5\", \
             \"--sleep-ms\", \"{sleep}\"]\ngrace = \"2s\"\n{executor}"
        ),
    );
    for file in ["train.py", "sweep_worker.py"] {
        let text = std::fs::read_to_string(format!("{}/studies/python/{file}", env!("CARGO_MANIFEST_DIR")));
        s.write(file, &text.unwrap());
    }
    s
}

const ON_SLURM: &str = "[executor]\nkind = \"slurm\"\nlisten = \"127.0.0.1:0\"\npoll = \"1s\"\n";

/// The same run on this machine, without sleeping (the values do not depend on it).
fn uninterrupted(steps: u32) -> Value {
    let reference = checkpointing_study("reference", steps, 0, "", "");
    assert!(reference.run().status.success());
    reference.trials().remove(0)
}

/// A job that Slurm requeues mid-trial (`scontrol requeue`, as preemption with requeue does)
/// starts again and resumes from the last checkpoint the coordinator recorded, not from the
/// step it was submitted with: the trial ends, in one job, with an uninterrupted run's value.
#[test]
fn slurm_requeued_job_resumes_from_its_checkpoint() {
    on(Kind::Slurm, |_| {
        let reference = uninterrupted(200);
        let s = checkpointing_study("requeued", 200, 40, "", ON_SLURM);
        let mut child = s.spawn();
        let checkpointed =
            |t: &Vec<Value>| t.first().and_then(|t| t["checkpoint_step"].as_i64()).is_some_and(|c| c >= 40);
        wait_for("a recorded checkpoint", Duration::from_secs(120), || s.try_trials().is_ok_and(|t| checkpointed(&t)));
        let job = s.trials()[0]["job"].as_str().expect("trial 0 has its job id").to_string();
        let out = Command::new("scontrol").args(["requeue", &job]).output().unwrap();
        assert!(out.status.success(), "scontrol requeue: {}", String::from_utf8_lossy(&out.stderr));
        assert!(child.wait().unwrap().success());
        let trials = s.trials();
        assert_eq!(trials.len(), 1, "the requeued job finished the trial itself: {trials:#?}");
        let t = &trials[0];
        assert_eq!(t["state"], "complete", "{t:#}");
        assert!(t["stderr_tail"].as_str().unwrap_or("").contains("checkpoint: resuming from step"), "{t:#}");
        assert_eq!(t["value"].as_f64().unwrap().to_bits(), reference["value"].as_f64().unwrap().to_bits(), "{t:#}");
        let steps = |t: &Value| {
            t["reports"].as_array().unwrap().iter().map(|r| r["step"].as_i64().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(steps(t), steps(&reference), "each step once");
    });
}

/// A job near its Slurm time limit is warned (SIGUSR1, `--signal`), stops its worker, which
/// saves the step it is at (the script writes no other checkpoint before its end), and the
/// trial goes on in a new job from that step, not counted as a failure; it ends with an
/// uninterrupted run's value. (Two-minute limit, warned a minute and a half early at most:
/// Slurm may signal up to a minute before the time asked.)
#[test]
fn slurm_job_near_its_time_limit_checkpoints_and_goes_on_in_a_new_job() {
    on(Kind::Slurm, |_| {
        let reference = uninterrupted(1000);
        let slurm = ON_SLURM.replace("poll = \"1s\"", "poll = \"1s\"\ntime = \"2\"\nwarning = \"30s\"");
        let s = checkpointing_study("overtime-resumed", 1000, 100, "", &slurm);
        let text = std::fs::read_to_string(s.path()).unwrap();
        std::fs::write(s.path(), text.replace("\"--report-every\", \"5\"", "\"--report-every\", \"1000\"")).unwrap();
        let out = s.run();
        assert!(out.status.success(), "{}", crate::support::text(&out));
        let trials = s.trials();
        let last = trials.last().unwrap();
        assert_eq!(last["state"], "complete", "{trials:#?}");
        assert!(trials.len() >= 2, "100 s of steps do not fit before the first warning: {trials:#?}");
        for pair in trials.windows(2) {
            let (before, next) = (&pair[0], &pair[1]);
            assert_eq!(before["state"], "interrupted", "{before:#}");
            assert!(before["reason"].as_str().unwrap().contains("neared its time limit"), "{before:#}");
            let at = before["checkpoint_step"].as_i64().expect("a checkpoint made on the warning");
            assert_eq!(next["resumed_from"].as_i64(), Some(at), "{next:#}");
            assert_eq!(next["attempt"], before["attempt"], "not counted as a failure");
        }
        assert_eq!(last["value"].as_f64().unwrap().to_bits(), reference["value"].as_f64().unwrap().to_bits());
    });
}
