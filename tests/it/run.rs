//! A study runs to its budget, with the params, devices and order a user asked for.

use crate::support::*;
use serde_json::json;

#[test]
fn a_study_runs_to_its_budget_and_reports_the_best() {
    let s = Study::new("budget", &testfn_study(12, 3, 3, 0));
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("12/12 trials finished"), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 12);
    assert!(trials.iter().all(|t| t["state"] == "complete"));
    assert!(trials.iter().all(|t| t["reports"].as_array().unwrap().len() == 3), "three reports each");
    let best = trials.iter().map(|t| t["value"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    let out = s.command(&["best", "budget", "--json"]).output().unwrap();
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["value"].as_f64().unwrap(), best);
    let status = text(&s.command(&["status"]).output().unwrap());
    assert!(status.contains("budget") && status.contains("complete") && status.contains("12/12"), "{status}");
    // Running again with the budget spent runs nothing more.
    let again = s.run();
    assert!(again.status.success());
    assert_eq!(s.trials().len(), 12);
}

#[test]
fn the_same_seed_gives_the_same_params() {
    let a = Study::new("seeded", &testfn_study(6, 2, 0, 0));
    let b = Study::new("seeded", &testfn_study(6, 2, 0, 0));
    assert!(a.run().status.success() && b.run().status.success());
    let params =
        |s: &Study| -> Vec<serde_json::Value> { s.trials().into_iter().map(|t| t["params"].clone()).collect() };
    assert_eq!(params(&a), params(&b));
    let c = Study::new("seeded", &testfn_study(6, 2, 0, 0).replace("seed = 11", "seed = 12"));
    assert!(c.run().status.success());
    assert_ne!(params(&a), params(&c));
}

#[test]
fn enqueued_configs_run_first_and_conditional_params_only_when_active() {
    let s = Study::new(
        "conditional",
        r#"metric = "loss"
direction = "minimize"
[budget]
trials = 30
parallel = 2
[params.opt]
choices = ["sgd", "adam"]
[params.momentum]
type = "float"
low = 0.0
high = 0.9
when = { opt = "sgd" }
[params.layers]
type = "int"
low = 1
high = 4
[[enqueue]]
opt = "adam"
layers = 3
[trial]
command = ["/bin/sh", "-c", "echo '{{\"final\": {{\"loss\": 1}}}}'", "--momentum={momentum}"]
"#,
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials[0]["params"], json!({"opt": "adam", "layers": 3}));
    let mut seen_sgd = false;
    for t in &trials {
        let p = &t["params"];
        let sgd = p["opt"] == "sgd";
        seen_sgd |= sgd;
        assert_eq!(p.get("momentum").is_some(), sgd, "{p}");
        let layers = p["layers"].as_i64().unwrap();
        assert!((1..=4).contains(&layers));
    }
    assert!(seen_sgd);
}

#[test]
fn workers_get_params_three_ways_and_their_own_gpu() {
    let s = Study::new(
        "devices",
        &format!(
            r#"metric = "loss"
direction = "minimize"
[budget]
trials = 8
parallel = 4
[params.lr]
type = "float"
low = 0.001
high = 0.1
log = true
[devices]
gpus = [0, 1]
per_gpu = 1
{}"#,
            script_trial("worker.sh")
        ),
    );
    // Checks that argv, env and stdin agree, records its GPU, and holds it a while.
    s.write(
        "worker.sh",
        r#"read -r hello
case "$hello" in *'"protocol":1'*) ;; *) echo "bad hello: $hello" >&2; exit 9;; esac
lr=$(echo "$SWEEP_PARAMS" | sed 's/.*"lr":\([^,}]*\).*/\1/')
case "$hello" in *"\"lr\":$lr"*) ;; *) echo "stdin and env disagree" >&2; exit 8;; esac
[ -n "$CUDA_VISIBLE_DEVICES" ] || exit 7
mkdir "gpu$CUDA_VISIBLE_DEVICES.lock" || { echo "GPU shared" >&2; exit 6; }
sleep 0.2
rmdir "gpu$CUDA_VISIBLE_DEVICES.lock"
echo "{\"final\": {\"loss\": $lr, \"gpu\": $CUDA_VISIBLE_DEVICES}}"
"#,
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 8, "{trials:#?}");
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        let gpu = t["metrics"]["gpu"].as_f64().unwrap().to_string();
        assert_eq!(t["device"].as_str().unwrap(), gpu);
        assert_eq!(t["value"], t["params"]["lr"]);
    }
}

#[test]
fn a_second_coordinator_on_the_same_database_is_refused() {
    let s = Study::new("locked", &testfn_study(4, 1, 20, 50));
    let mut first = s.spawn();
    s.wait_for_state("running", 1);
    let out = s.run();
    assert_eq!(out.status.code(), Some(2), "a database in use is bad input: {}", text(&out));
    assert!(text(&out).contains("in use by another sweep coordinator"), "{}", text(&out));
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_gp_study_runs_in_parallel_and_resumes() {
    let s = Study::new("gp", &(testfn_study(10, 2, 0, 0) + "\n[sampler]\nkind = \"gp\"\nstartup_trials = 6\n"));
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(s.path(), std::fs::read_to_string(s.path()).unwrap().replace("trials = 10", "trials = 16")).unwrap();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 16);
    let distinct: std::collections::BTreeSet<String> = trials.iter().map(|t| t["params"].to_string()).collect();
    assert_eq!(distinct.len(), 16, "no configuration proposed twice");
    let best = trials.iter().map(|t| t["value"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert!(best < 5.0, "gp found nothing better than {best} on branin (optimum 0.398)");
}
