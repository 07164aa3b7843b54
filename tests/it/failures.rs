//! Failures are data: each bad worker becomes a FAILED trial with its reason, is retried, and
//! the sweep goes on.

use crate::support::*;

fn study_with_worker(name: &str, worker: &str, retries: u32, extra_budget: &str) -> Study {
    let s = Study::new(
        name,
        &format!(
            "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 2\nparallel = 2\nretries = {retries}\n{extra_budget}\n[params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n{}",
            script_trial("worker.sh")
        ),
    );
    s.write("worker.sh", worker);
    s
}

/// Runs a study whose worker always misbehaves; every attempt fails with `reason`.
fn assert_fails_with(name: &str, worker: &str, reason: &str, stderr: Option<&str>) {
    let s = study_with_worker(name, worker, 1, "trial_timeout = \"1s\"");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 4, "2 trials + 1 retry each: {trials:#?}");
    for t in &trials {
        assert_eq!(t["state"], "failed", "{t:#}");
        let why = t["reason"].as_str().unwrap();
        assert!(why.contains(reason), "reason `{why}` lacks `{reason}`");
        if let Some(tail) = stderr {
            assert!(t["stderr_tail"].as_str().unwrap_or("").contains(tail), "{t:#}");
        }
    }
    let retries: Vec<_> = trials.iter().filter(|t| t["attempt"] == 2).collect();
    assert_eq!(retries.len(), 2);
    for r in retries {
        let first = trials.iter().find(|t| t["number"] == r["rerun_of"]).unwrap();
        assert_eq!(first["params"], r["params"], "a retry runs the same params");
    }
    assert_eq!(counted(&trials), 2);
}

#[test]
fn a_crash_is_recorded_with_exit_code_and_stderr() {
    assert_fails_with(
        "crash",
        "echo 'CUDA out of memory' >&2\nexit 3\n",
        "exited with code 3",
        Some("CUDA out of memory"),
    );
}

#[test]
fn a_signal_death_is_recorded() {
    assert_fails_with("segv", "kill -SEGV $$\n", "SIGSEGV", None);
}

#[test]
fn a_hang_is_killed_at_the_timeout() {
    assert_fails_with("hang", "exec sleep 30\n", "timed out after 1s", None);
}

#[test]
fn garbage_without_metrics_fails_and_garbage_with_metrics_is_log() {
    assert_fails_with(
        "garbage",
        "printf 'not json\\n{broken\\n\\377\\376\\n{\"final\": 3}\\n'\n",
        "reported no metrics",
        None,
    );
    let s = study_with_worker(
        "garbage-ok",
        "echo 'epoch 1'\necho '{oops'\necho '{\"final\": {\"loss\": 0.5}}'\necho trailing\n",
        0,
        "",
    );
    assert!(s.run().status.success());
    assert!(s.trials().iter().all(|t| t["state"] == "complete" && t["value"] == 0.5));
}

#[test]
fn nan_and_missing_objective_fail() {
    assert_fails_with("nan", "echo '{\"final\": {\"loss\": NaN}}'\n", "is NaN", None);
    assert_fails_with(
        "missing",
        "echo '{\"final\": {\"acc\": 0.9}}'\n",
        "did not report `loss` (it reported: acc)",
        None,
    );
}

#[test]
fn a_missing_program_fails_without_stopping_the_sweep() {
    let s = Study::new(
        "noprogram",
        "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 2\n[trial]\ncommand = [\"/nonexistent/train\"]\n",
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 2);
    assert!(trials.iter().all(|t| t["reason"].as_str().unwrap().contains("cannot start `/nonexistent/train`")));
}

#[test]
fn a_flaky_worker_succeeds_on_retry() {
    let s =
        study_with_worker("flaky", "[ \"$SWEEP_ATTEMPT\" = 1 ] && exit 1\necho '{\"final\": {\"loss\": 1}}'\n", 2, "");
    assert!(s.run().status.success());
    let trials = s.trials();
    assert_eq!(trials.len(), 4);
    assert_eq!(s.in_state("failed").len(), 2);
    assert_eq!(s.in_state("complete").len(), 2);
    assert_eq!(counted(&trials), 2);
}

#[test]
fn a_command_left_empty_by_an_inactive_parameter_fails_with_its_reason() {
    let s = Study::new(
        "emptycmd",
        "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 1\n[params.mode]\nchoices = [\"a\", \"b\"]\n\
         [params.tool]\nvalue = \"/bin/true\"\nwhen = { mode = \"a\" }\n[[enqueue]]\nmode = \"b\"\n\
         [trial]\ncommand = [\"{tool}\"]\n",
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials[0]["state"], "failed");
    assert!(trials[0]["reason"].as_str().unwrap().contains("the command is empty for these params"), "{trials:#?}");
}
