//! Several objectives and constraints through the whole path: a real study whose worker reports
//! two objectives and a constrained metric; `sweep best` names its Pareto set, `status` its size
//! and hypervolume, `export` marks each trial; a changed objective or constraint is refused.

use crate::support::*;
use serde_json::Value;

const WORKER: &str = r#"import json, sys
p = json.loads(sys.stdin.readline())["params"]
x, y = p["x"], p["y"]
final = {"f1": x, "f2": (1 - x) ** 2 + y, "size": 10 * y}
if p.get("drop_f2"):
    del final["f2"]
print(json.dumps({"final": final}))
"#;

fn study(name: &str, constraints: &str, extra_param: &str) -> Study {
    let s = Study::new(
        name,
        &format!(
            "seed = 5\nconstraints = [{constraints}]\n\n[budget]\ntrials = 16\nparallel = 2\n\n\
             [params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n[params.y]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n\
             {extra_param}[trial]\ncommand = [\"python3\", \"obj.py\"]\n\n\
             [[objectives]]\nmetric = \"f1\"\ndirection = \"minimize\"\n\n[[objectives]]\nmetric = \"f2\"\ndirection = \"minimize\"\n"
        ),
    );
    s.write("obj.py", WORKER);
    s
}

/// The Pareto set by the definition, independently of sweep's code: feasible complete trials
/// no other feasible one is at least as good in both objectives and better in one.
fn pareto_by_hand(trials: &[Value], size_limit: f64) -> Vec<u64> {
    let points: Vec<(u64, f64, f64)> = trials
        .iter()
        .filter(|t| t["state"] == "complete" && t["metrics"]["size"].as_f64().unwrap() <= size_limit)
        .map(|t| {
            (t["number"].as_u64().unwrap(), t["metrics"]["f1"].as_f64().unwrap(), t["metrics"]["f2"].as_f64().unwrap())
        })
        .collect();
    let dominated = |a: &(u64, f64, f64)| points.iter().any(|b| b.1 <= a.1 && b.2 <= a.2 && (b.1 < a.1 || b.2 < a.2));
    points.iter().filter(|p| !dominated(p)).map(|p| p.0).collect()
}

#[test]
fn a_two_objective_study_with_a_constraint_reports_its_pareto_set() {
    let s = study("mo", "\"size <= 5\"", "");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Pareto set:"), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 16);
    let expected = pareto_by_hand(&trials, 5.0);
    assert!(!expected.is_empty() && expected.len() < 16, "{expected:?}");

    let best = text(&s.command(&["best", "mo"]).output().unwrap());
    let listed: Vec<u64> =
        best.lines().filter_map(|l| l.strip_prefix("trial ")?.split(':').next()?.parse().ok()).collect();
    assert_eq!(listed, expected, "{best}");
    assert!(best.contains("hypervolume"), "{best}");
    let json: Value = serde_json::from_str(&text(&s.command(&["best", "mo", "--json"]).output().unwrap())).unwrap();
    assert_eq!(json["feasible"], true);
    assert!(json["hypervolume"].as_f64().unwrap() > 0.0, "{json}");
    let numbers: Vec<u64> = json["trials"].as_array().unwrap().iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, expected);

    let listing = text(&s.command(&["trials", "mo"]).output().unwrap());
    let header = listing.lines().next().unwrap_or_default();
    assert!(header.contains("f1") && header.contains("f2"), "a column per objective: {header}");
    let status = text(&s.command(&["status"]).output().unwrap());
    assert!(status.contains(&format!("{} hv ", expected.len())), "{status}");

    let csv = text(&s.command(&["export", "mo", "--format", "csv"]).output().unwrap());
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column =
        |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    let (number, feasible, pareto, size) =
        (column("number"), column("feasible"), column("pareto"), column("metric_size"));
    for row in reader.records() {
        let row = row.unwrap();
        let n: u64 = row[number].parse().unwrap();
        assert_eq!(&row[pareto] == "true", expected.contains(&n), "{row:?}");
        assert_eq!(&row[feasible] == "true", row[size].parse::<f64>().unwrap() <= 5.0, "{row:?}");
    }
}

#[test]
fn changed_objectives_or_constraints_are_refused_on_resume() {
    let s = study("mo-change", "\"size <= 5\"", "");
    assert!(s.run().status.success());
    let toml = std::fs::read_to_string(s.path()).unwrap();
    let changes = [
        (toml.replace("size <= 5", "size <= 4"), "constraints"),
        (toml.replace("metric = \"f2\"", "metric = \"size\""), "objectives"),
    ];
    for (changed, what) in changes {
        std::fs::write(s.path(), &changed).unwrap();
        let out = s.run();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(what), "{}", text(&out));
    }
}

#[test]
fn a_trial_without_every_objective_fails_saying_which() {
    let s = study("mo-missing", "", "[params.drop_f2]\nvalue = true\n\n");
    let toml = std::fs::read_to_string(s.path()).unwrap();
    std::fs::write(s.path(), toml.replace("trials = 16", "trials = 2")).unwrap();
    assert!(s.run().status.success());
    for t in s.trials() {
        assert_eq!(t["state"], "failed");
        assert_eq!(t["reason"], "worker did not report objective `f2`", "{t:#}");
    }
}

/// The testfn worker's constrained three-objective problem: every trial `sweep best` lists
/// meets the constraint, and none it leaves out that does is better in all three.
#[test]
fn a_constrained_three_objective_problem_lists_only_feasible_trials() {
    let params: String = (0..12).map(|i| format!("[params.x{i}]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n")).collect();
    let objectives: String =
        (1..=3).map(|i| format!("[[objectives]]\nmetric = \"f{i}\"\ndirection = \"minimize\"\n")).collect();
    let s = Study::new(
        "c2",
        &format!(
            "seed = 2\nconstraints = [\"c <= 0\"]\n[budget]\ntrials = 40\nparallel = 2\n{params}\
             [trial]\nworker = \"testfn\"\nargs = [\"--fn\", \"c2dtlz2\"]\n{objectives}"
        ),
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let json: Value = serde_json::from_str(&text(&s.command(&["best", "c2", "--json"]).output().unwrap())).unwrap();
    let listed = json["trials"].as_array().unwrap();
    let trials = s.trials();
    let f = |t: &Value| -> Vec<f64> { (1..=3).map(|i| t["metrics"][format!("f{i}")].as_f64().unwrap()).collect() };
    if json["feasible"] == true {
        for t in listed {
            assert!(t["metrics"]["c"].as_f64().unwrap() <= 0.0, "{t:#}");
            let dominated_by = |o: &Value| {
                o["metrics"]["c"].as_f64().unwrap() <= 0.0
                    && f(o).iter().zip(f(t)).all(|(a, b)| *a <= b)
                    && f(o).iter().zip(f(t)).any(|(a, b)| *a < b)
            };
            assert!(!trials.iter().any(dominated_by), "{t:#}");
        }
    } else {
        assert!(trials.iter().all(|t| t["metrics"]["c"].as_f64().unwrap() > 0.0), "none was feasible");
    }
    assert!(!listed.is_empty());
}

/// The page's Pareto card reads `/api/studies/NAME/front`: each complete trial's objectives, its
/// feasibility and membership of the set, which agree with `sweep best`.
#[test]
fn the_api_serves_the_front_for_the_page() {
    let s = study("mo-api", "\"size <= 5\"", "");
    assert!(s.run().status.success());
    let expected = pareto_by_hand(&s.trials(), 5.0);
    let served = crate::api::serve(&s, &[]);
    let (status, front) = crate::api::get(&served.base, "/api/studies/mo-api/front", None);
    assert_eq!(status, 200, "{front}");
    let numbers: Vec<u64> = front["number"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert_eq!(numbers.len(), 16);
    let on: Vec<u64> =
        numbers.iter().zip(front["pareto"].as_array().unwrap()).filter(|(_, p)| **p == true).map(|(n, _)| *n).collect();
    assert_eq!(on, expected);
    assert_eq!(front["values"]["f1"].as_array().unwrap().len(), 16);
    assert_eq!(front["constraints"][0], "size <= 5");
    assert!(front["hypervolume"].as_f64().unwrap() > 0.0);
    let (_, summary) = crate::api::get(&served.base, "/api/studies/mo-api", None);
    assert_eq!(summary["objectives"][1]["metric"], "f2", "{summary}");
    assert_eq!(crate::api::get(&served.base, "/api/studies/mo-api/front?x=1", None).0, 400);
    assert_eq!(crate::api::get(&served.base, "/api/studies/nope/front", None).0, 404);
}

/// The GP with two objectives over a mixed and conditional space (the testfn worker's `mixed`):
/// its proposals come from its models (kernels in each trial's state, no fallback), and a
/// coordinator killed with -9 twice and resumed tries exactly the configurations, with the same
/// values, of an uninterrupted run.
#[test]
fn the_multi_objective_gp_resumes_after_kill_9_as_if_never_stopped() {
    let text = |sleep_ms: u32| {
        format!(
            "seed = 4\n[budget]\ntrials = 14\n[sampler]\nkind = \"gp\"\nstartup_trials = 5\n\
             [params.x0]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[params.x1]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\
             [params.x2]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[params.x3]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\
             [params.shape]\nchoices = [\"a\", \"b\"]\n[params.k]\ntype = \"int\"\nlow = 0\nhigh = 10\n\
             [params.x4]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\nwhen = {{ shape = \"b\" }}\n\
             [trial]\nworker = \"testfn\"\nargs = [\"--fn\", \"mixed\", \"--steps\", \"3\", \"--sleep-ms\", \"{sleep_ms}\"]\n\
             grace = \"300ms\"\n\
             [[objectives]]\nmetric = \"f1\"\ndirection = \"minimize\"\n[[objectives]]\nmetric = \"f2\"\ndirection = \"minimize\"\n"
        )
    };
    let s = Study::new("mo-gp", &text(60));
    for finished in [3, 8] {
        let mut child = s.spawn();
        let limit = std::time::Duration::from_secs(60);
        wait_for("trials to finish", limit, || s.try_trials().is_ok_and(|t| counted(&t) >= finished));
        kill9(&mut child);
    }
    let out = s.run();
    assert!(out.status.success(), "{}", crate::support::text(&out));
    let whole = Study::new("mo-gp", &text(0));
    assert!(whole.run().status.success());
    let outcomes = |s: &Study| {
        let mut v: Vec<String> = s
            .in_state("complete")
            .iter()
            .map(|t| format!("{} -> {} {}", t["params"], t["metrics"]["f1"], t["metrics"]["f2"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(outcomes(&s), outcomes(&whole));
    assert_eq!(outcomes(&whole).len(), 14);
    let server = crate::api::serve(&whole, &[]);
    for number in 5..14 {
        let (code, t) = crate::api::get(&server.base, &format!("/api/studies/mo-gp/trials/{number}"), None);
        assert_eq!(code, 200, "{t}");
        let state = &t["sampler_state"];
        assert!(state["models"].as_array().is_some_and(|m| m.len() == 2), "trial {number}: {state}");
    }
}

/// MO-ASHA through the whole path: the testfn worker reports both ZDT1 objectives at every
/// step; trials dominated at a rung stop there with a reason that names both values, and the
/// trials that ran to the end make the Pareto set.
#[test]
fn asha_prunes_a_two_objective_study_by_non_dominated_sorting() {
    let params: String = (0..6).map(|i| format!("[params.x{i}]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n")).collect();
    let s = Study::new(
        "mo-asha",
        &format!(
            "seed = 3\n[budget]\ntrials = 27\nparallel = 3\n{params}\
             [pruner]\nkind = \"asha\"\nmin_resource = 1\nmax_resource = 9\neta = 3\n\
             [trial]\nworker = \"testfn\"\nargs = [\"--fn\", \"zdt1\", \"--steps\", \"9\"]\n\
             [[objectives]]\nmetric = \"f1\"\ndirection = \"minimize\"\n[[objectives]]\nmetric = \"f2\"\ndirection = \"minimize\"\n"
        ),
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 27);
    let pruned = s.in_state("pruned");
    assert!(pruned.len() >= 9, "eta 3 stops about two in three at step 1: {} pruned", pruned.len());
    for t in &pruned {
        let reason = t["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("asha: rung") && reason.contains("(f1 ") && reason.contains(", f2 "), "{reason}");
    }
    let complete = s.in_state("complete");
    assert!(!complete.is_empty());
    let json: Value =
        serde_json::from_str(&text(&s.command(&["best", "mo-asha", "--json"]).output().unwrap())).unwrap();
    let listed = json["trials"].as_array().unwrap();
    assert!(!listed.is_empty() && listed.iter().all(|t| complete.iter().any(|c| c["number"] == t["number"])));
}
