//! Pruning with real workers: trials stopped early are recorded PRUNED with their reason, last
//! values and step, whether the worker reads decisions (and exits on its own) or ignores them
//! (and is stopped by signal); pruning goes on the same way after kill -9 and resume.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const ASHA: &str = "\n[pruner]\nkind = \"asha\"\nmin_resource = 1\nmax_resource = 9\neta = 3\n";

fn pruned(trials: &[Value]) -> Vec<&Value> {
    trials.iter().filter(|t| t["state"] == "pruned").collect()
}

/// The study's trials as the store holds them (sampler states included), objective `loss`.
fn stored(s: &Study) -> Vec<sweep::trial::Trial> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut store = sweep::store::Store::open_read_only(&s.db()).await.unwrap();
        let id = store.find_study(&s.name).await.unwrap().unwrap().id;
        store.trials(id, &["loss"]).await.unwrap()
    })
}

/// `n` out of the ASHA reason "... rank r of n, keeps top k ...".
fn rung_size(reason: &str) -> usize {
    let after = reason.split(" of ").nth(1).expect("rank r of n");
    after.split(',').next().unwrap().trim().parse().expect("a count")
}

#[test]
fn asha_prunes_testfn_trials_which_stop_on_the_decision() {
    let s = Study::new("asha", &(testfn_study(12, 2, 9, 10) + ASHA));
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 12);
    let stopped = pruned(&trials);
    assert!(!stopped.is_empty(), "some trials are pruned: {trials:#?}");
    assert!(trials.iter().any(|t| t["state"] == "complete"));
    for t in stopped {
        let step = t["last_step"].as_i64().unwrap();
        assert!(step < 9, "stopped before the end: {t:#}");
        let reason = t["reason"].as_str().unwrap();
        assert!(reason.starts_with("asha: rung ") && reason.contains("keeps top"), "{reason}");
        // Its last report is its value, and no report came after the stop.
        let reports = t["reports"].as_array().unwrap();
        assert_eq!(reports.len() as i64, step, "{t:#}");
        assert_eq!(reports.last().unwrap()["loss"], t["value"], "{t:#}");
        assert!(t["value"].as_f64().is_some(), "{t:#}");
        // The worker read the decision and said so before exiting on its own.
        let stderr = t["stderr_tail"].as_str().unwrap_or("");
        assert!(stderr.contains(&format!("stopped at step {step} by the coordinator")), "{t:#}");
    }
}

#[test]
fn a_worker_that_ignores_decisions_is_stopped_by_signal_and_recorded_pruned() {
    let s = Study::new(
        "deaf",
        r#"metric = "loss"
direction = "minimize"
[budget]
trials = 3
parallel = 3
[params.x]
type = "float"
low = 0.0
high = 1.0
[[enqueue]]
x = 0.9
[[enqueue]]
x = 0.7
[[enqueue]]
x = 0.2
[trial]
command = ["/bin/sh", "worker.sh", "{x}"]
grace = "200ms"
[pruner]
kind = "median"
upper = 50
"#,
    );
    // Never reads stdin: a diverging run hangs on after its bad report until it is killed.
    s.write(
        "worker.sh",
        r#"echo '{"step": 1, "loss": 1.0}'
trap 'echo "terminated by signal" >&2; exit 143' TERM
if [ "$1" = "0.9" ]; then echo '{"step": 2, "loss": NaN}'; sleep 30 & wait; fi
if [ "$1" = "0.7" ]; then echo '{"step": 2, "loss": 100}'; sleep 30 & wait; fi
echo '{"step": 2, "loss": 0.5}'
echo '{"final": {"loss": 0.4}}'
"#,
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    let by_x = |x: f64| trials.iter().find(|t| t["params"]["x"] == x).unwrap_or_else(|| panic!("x = {x}: {trials:#?}"));
    let nan = by_x(0.9);
    assert_eq!(nan["state"], "pruned", "{nan:#}");
    assert_eq!(nan["last_step"], 2);
    assert_eq!(nan["reason"], "threshold: value NaN at step 2 is not a finite number");
    let high = by_x(0.7);
    assert_eq!(high["state"], "pruned", "{high:#}");
    assert_eq!((high["last_step"].as_i64(), high["value"].as_f64()), (Some(2), Some(100.0)));
    assert_eq!(high["reason"], "threshold: value 100 at step 2 is above upper = 50");
    for t in [nan, high] {
        assert!(t["stderr_tail"].as_str().unwrap_or("").contains("terminated by signal"), "{t:#}");
    }
    let fine = by_x(0.2);
    assert_eq!((fine["state"].as_str(), fine["value"].as_f64()), (Some("complete"), Some(0.4)));
    assert!(s.live_workers().is_empty(), "the hanging workers were killed");
}

#[test]
fn pruning_carries_on_after_kill_9_and_resume() {
    let s = Study::new("asha-resume", &(testfn_study(16, 2, 9, 20) + ASHA));
    let mut child = s.spawn();
    wait_for("trials to finish", Duration::from_secs(60), || s.try_trials().is_ok_and(|t| counted(&t) >= 6));
    kill9(&mut child);
    wait_for("workers to die with the coordinator", Duration::from_secs(5), || s.live_workers().is_empty());
    let before = s.trials().len() as u64;
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 16);
    assert!(numbers_are_unique(&trials));
    // Trials started after the resume were ranked against those from before it too: their
    // rungs hold more trials than were started since.
    let later: Vec<&Value> = pruned(&trials).into_iter().filter(|t| t["number"].as_u64().unwrap() >= before).collect();
    assert!(!later.is_empty(), "pruning goes on after resume: {trials:#?}");
    let started_since = trials.len() as u64 - before;
    assert!(
        later.iter().any(|t| rung_size(t["reason"].as_str().unwrap()) as u64 > started_since),
        "rungs after resume include earlier trials: {later:#?}"
    );
}

/// With Hyperband the GP models configuration and resource together. Every GP proposal of a study
/// killed with -9 and resumed is what the sampler proposes from the trials the database holds
/// from before it: the rung values it read survive the restart, and proposals are a function of
/// them and the seed (one trial at a time, so each proposal saw all earlier trials finished).
#[test]
fn gp_with_hyperband_proposals_replay_from_the_database_after_kill_9() {
    use sweep::sampler::{trial_rng, GpSampler, Sampler};
    use sweep::trial::{History, TrialState};
    let gp_hb = "\n[sampler]\nkind = \"gp\"\nstartup_trials = 4\n\
                 [pruner]\nkind = \"hyperband\"\nmin_resource = 1\nmax_resource = 9\neta = 3\n";
    let s = Study::new("mf-resume", &(testfn_study(18, 1, 9, 5) + gp_hb));
    let mut child = s.spawn();
    wait_for("trials to finish", Duration::from_secs(60), || s.try_trials().is_ok_and(|t| counted(&t) >= 9));
    kill9(&mut child);
    wait_for("workers to die with the coordinator", Duration::from_secs(5), || s.live_workers().is_empty());
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let config = sweep::study::load(&s.path()).unwrap();
    let trials = stored(&s);
    assert!(trials.iter().any(|t| t.state == TrialState::Pruned), "hyperband pruned some trials");
    let sampler = GpSampler::new(4);
    let (mut replayed, mut with_rungs) = (0, 0);
    for (i, t) in trials.iter().enumerate() {
        let Some(state) = t.sampler_state.as_ref().filter(|s| s.get("lengthscales").is_some()) else { continue };
        let before = History::new(config.objective.clone(), trials[..i].to_vec());
        let index = before.first_attempts_before(t.number);
        let proposal = sampler.propose(&config.space, &before, &mut trial_rng(config.seed, index));
        assert_eq!(proposal.params, t.params, "trial {} proposed again from the database", t.number);
        assert_eq!(proposal.state.as_ref(), Some(state), "trial {}", t.number);
        replayed += 1;
        with_rungs += usize::from(state["rows_below_full"].as_u64().is_some_and(|n| n > 0));
    }
    assert!(replayed >= 6 && with_rungs >= 1, "{replayed} GP proposals, {with_rungs} modelling rung values");
}

/// The learning-curve veto in a real study: the GP leaves what it expects of each proposal in
/// the trial's sampler state, the pruner's stops that stand say what the forecast gave, and
/// the study ends like any other.
#[test]
fn min_promise_reads_the_gps_expectation_and_explains_the_stops_it_lets_stand() {
    let table = "\n[sampler]\nkind = \"gp\"\nstartup_trials = 4\n\
                 [pruner]\nkind = \"hyperband\"\nmin_resource = 1\nmax_resource = 9\neta = 3\nmin_promise = 0.1\n";
    let s = Study::new("veto", &(testfn_study(24, 2, 9, 5) + table));
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 24);
    let stopped = pruned(&trials);
    assert!(!stopped.is_empty(), "hyperband's stops stand where the forecast is hopeless: {trials:#?}");
    for t in &stopped {
        let reason = t["reason"].as_str().unwrap();
        assert!(reason.contains("; forecast beats ") && reason.ends_with("(min_promise 0.1)"), "{reason}");
    }
    let expected = stored(&s)
        .iter()
        .filter_map(|t| t.sampler_state.as_ref())
        .filter(|state| {
            state["expected"]["median"].is_f64() && state["expected"]["sd"].as_f64().is_some_and(|sd| sd > 0.0)
        })
        .count();
    assert!(expected >= 10, "{expected} GP proposals left their expectation");
}
