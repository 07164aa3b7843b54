//! Kill the coordinator at any moment, run it again: nothing finished is lost or run twice.

use crate::support::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// Kills the coordinator once `finished` trials are done (plus `delay`), then resumes.
fn kill_then_resume(s: &Study, finished: usize, delay: Duration) {
    let mut child = s.spawn();
    wait_for("trials to finish", LIMIT, || s.try_trials().is_ok_and(|t| counted(&t) >= finished));
    std::thread::sleep(delay);
    kill9(&mut child);
    wait_for("workers to die with the coordinator", Duration::from_secs(5), || s.live_workers().is_empty());
}

#[test]
fn kill_9_at_several_points_then_resume_ends_with_exactly_the_budget() {
    let s = Study::new("killed", &testfn_study(16, 2, 4, 30));
    let before: Vec<(usize, Duration)> = vec![
        (0, Duration::ZERO),
        (3, Duration::from_millis(45)),
        (7, Duration::from_millis(10)),
        (11, Duration::from_millis(130)),
    ];
    for (finished, delay) in before {
        kill_then_resume(&s, finished, delay);
        let trials = s.trials();
        assert!(numbers_are_unique(&trials));
        assert!(counted(&trials) <= 16);
    }
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 16, "{trials:#?}");
    assert!(numbers_are_unique(&trials));
    assert!(s.in_state("running").is_empty() && s.in_state("waiting").is_empty());
    // Each interrupted trial was re-run with the same params by a later trial.
    for t in s.in_state("interrupted") {
        let rerun = trials.iter().find(|r| r["rerun_of"] == t["number"]).expect("interrupted trial re-run");
        assert_eq!(rerun["params"], t["params"]);
    }
    // A finished trial is never run again: complete configurations are distinct.
    let complete: Vec<_> = s.in_state("complete").into_iter().map(|t| t["params"].to_string()).collect();
    let mut unique = complete.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), complete.len());
    // And they are the configurations an uninterrupted run of the study tries, with its values.
    let whole = Study::new("killed", &testfn_study(16, 2, 4, 0));
    assert!(whole.run().status.success());
    let outcomes = |trials: Vec<serde_json::Value>| {
        let mut v: Vec<String> = trials.iter().map(|t| format!("{} -> {}", t["params"], t["value"])).collect();
        v.sort();
        v
    };
    assert_eq!(outcomes(s.in_state("complete")), outcomes(whole.in_state("complete")));
}

#[test]
fn ctrl_c_stops_workers_records_them_interrupted_and_resume_finishes() {
    let s = Study::new("ctrlc", &testfn_study(6, 2, 50, 40));
    let mut child = s.spawn();
    s.wait_for_state("running", 2);
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(s.live_workers().is_empty(), "workers outlived Ctrl-C");
    assert_eq!(s.in_state("interrupted").len(), 2);
    assert_eq!(s.in_state("waiting").len(), 2, "their slots are queued");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(counted(&s.trials()), 6);
}

#[test]
fn a_changed_space_is_refused_but_a_bigger_budget_resumes() {
    let s = Study::new("changes", &testfn_study(3, 1, 0, 0));
    assert!(s.run().status.success());
    let original = std::fs::read_to_string(s.path()).unwrap();
    std::fs::write(s.path(), original.replace("high = 15.0", "high = 20.0")).unwrap();
    let out = s.run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("parameter `x1` changed"), "{}", text(&out));
    assert!(text(&out).contains("another `name`"), "{}", text(&out));
    std::fs::write(s.path(), original.replace("direction = \"minimize\"", "direction = \"maximize\"")).unwrap();
    let out = s.run();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("direction"), "{}", text(&out));
    assert_eq!(s.trials().len(), 3, "refusals change nothing");
    std::fs::write(s.path(), original.replace("trials = 3", "trials = 5")).unwrap();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(counted(&s.trials()), 5);
}

#[test]
fn the_study_timeout_stops_new_trials_and_a_rerun_continues() {
    let s =
        Study::new("timeout", &testfn_study(40, 1, 4, 100).replace("parallel = 1", "parallel = 1\ntimeout = \"1s\""));
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("study timeout reached"), "{}", text(&out));
    let done = counted(&s.trials());
    assert!((1..40).contains(&done), "{done} trials in about a second");
    assert!(s.in_state("running").is_empty(), "running trials finish before the coordinator exits");
    let status = text(&s.command(&["status"]).output().unwrap());
    assert!(status.contains("running"), "the study is not complete: {status}");
}

#[test]
fn a_grid_runs_every_configuration_exactly_once_across_kill_9_and_resume() {
    let grid = testfn_study(1, 2, 4, 40)
        .replace("trials = 1\n", "")
        .replace("[params.x0]", "[sampler]\nkind = \"grid\"\n\n[params.x0]")
        .replace("high = 10.0\n", "high = 10.0\ngrid = [-5.0, 0.0, 5.0]\n")
        .replace("high = 15.0\n", "high = 15.0\ngrid = [1.0, 2.0, 3.0, 4.0]\n");
    let s = Study::new("grid", &grid);
    kill_then_resume(&s, 3, Duration::from_millis(60));
    kill_then_resume(&s, 7, Duration::ZERO);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 12, "the grid's size is the budget");
    let mut done: Vec<(i64, i64)> = trials
        .iter()
        .filter(|t| t["state"] == "complete")
        .map(|t| (t["params"]["x0"].as_f64().unwrap() as i64, t["params"]["x1"].as_f64().unwrap() as i64))
        .collect();
    done.sort();
    let every: Vec<(i64, i64)> = [-5, 0, 5].iter().flat_map(|&a| [1, 2, 3, 4].map(|b| (a, b))).collect();
    assert_eq!(done, every, "each configuration completed exactly once");
    assert!(trials.iter().all(|t| t["state"] != "running" && t["state"] != "waiting"));
}
