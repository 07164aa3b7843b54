//! Study-file parsing and validation: each bad input names its line, column and key.

use super::*;
use serde_json::json;

const GOOD: &str = r#"
name = "demo"
metric = "val_loss"
direction = "minimize"
seed = 3

[budget]
trials = 10
parallel = 2
trial_timeout = "30m"
timeout = 3600
retries = 1

[params.lr]
type = "float"
low = 1e-5
high = 1e-1
log = true

[params.layers]
type = "int"
low = 1
high = 8
step = 1

[params.optimizer]
choices = ["adam", "sgd"]

[params.momentum]
type = "float"
low = 0.0
high = 0.99
when = { optimizer = "sgd" }

[params.epochs]
value = 3

[trial]
command = ["python3", "train.py", "--lr={lr}", "--momentum={momentum}", "--trial={trial}"]
env = { WANDB_MODE = "offline" }

[[enqueue]]
lr = 0.001
layers = 2
optimizer = "adam"

[devices]
gpus = [0, 1]
per_gpu = 2
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Path::new(".")) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(p) => p,
    }
}

/// The good file with `old` replaced by `new`.
fn edit(old: &str, new: &str) -> String {
    assert!(GOOD.contains(old), "fixture lacks {old}");
    GOOD.replacen(old, new, 1)
}

fn one(text: &str) -> Problem {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    p.into_iter().next().unwrap()
}

#[test]
fn a_good_file_validates_fully() {
    let c = parse(GOOD, Path::new(".")).unwrap();
    assert_eq!(c.name, "demo");
    assert_eq!(c.budget.trials, 10);
    assert_eq!(c.budget.trial_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(c.budget.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(c.devices.gpus, ["0", "1"]);
    // Parents come before the parameters that depend on them.
    let names: Vec<&str> = c.space.params.iter().map(|p| p.name.as_str()).collect();
    let pos = |n| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("optimizer") < pos("momentum"));
    assert_eq!(c.enqueue[0]["epochs"], json!(3), "fixed params are filled into enqueued configs");
    let params: Params = serde_json::from_value(json!({"lr": 0.01, "momentum": 0.9})).unwrap();
    let argv: Vec<String> = c.trial.argv.iter().filter_map(|a| a.render(&params, 4)).collect();
    assert_eq!(argv, ["python3", "train.py", "--lr=0.01", "--momentum=0.9", "--trial=4"]);
    let inactive: Params = serde_json::from_value(json!({"lr": 0.01})).unwrap();
    let argv: Vec<String> = c.trial.argv.iter().filter_map(|a| a.render(&inactive, 4)).collect();
    assert_eq!(argv.len(), 4, "an argument naming an inactive parameter is left out");
}

#[test]
fn malformed_toml_points_at_the_spot() {
    let p = one("name = \"x\"\nmetric = \n");
    assert_eq!((p.line, p.key.as_str()), (2, ""));
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let p = one(&edit("log = true", "log = true\nhihg = 3"));
    assert_eq!((p.key.as_str(), p.line, p.column), ("params.lr.hihg", 19, 1));
    assert!(p.message.contains("unknown field `hihg`"), "{}", p.message);
}

#[test]
fn wrong_type_is_named() {
    let p = one(&edit("trials = 10", "trials = \"ten\""));
    assert_eq!((p.key.as_str(), p.line), ("budget.trials", 8));
    assert!(p.message.contains("invalid type"), "{}", p.message);
}

/// Trials keep checkpoints in `sweep-runs/NAME/trial-N/`: a name that would put them in
/// another folder (outside, nested, the shared cache) is refused where it is written.
#[test]
fn a_study_name_that_leaves_its_folder_is_refused_at_its_line() {
    for bad in ["../elsewhere", "a/b", "cache", ".."] {
        let p = one(&edit("name = \"demo\"", &format!("name = \"{bad}\"")));
        assert_eq!((p.key.as_str(), p.line), ("name", 2), "{bad}");
        assert!(p.message.contains("sweep-runs/"), "{bad}: {}", p.message);
    }
}

#[test]
fn missing_key_is_named() {
    let p = one(&edit("metric = \"val_loss\"\n", ""));
    assert_eq!(p.key, "metric");
}

#[test]
fn low_above_high() {
    let p = one(&edit("low = 1\nhigh = 8", "low = 9\nhigh = 8"));
    assert_eq!((p.key.as_str(), p.line, p.column), ("params.layers.low", 22, 1));
    assert!(p.message.contains("greater than high"));
}

#[test]
fn log_needs_a_positive_low() {
    let p = one(&edit("low = 1e-5", "low = 0.0"));
    assert_eq!(p.key, "params.lr.low");
    assert!(p.message.contains("> 0 when log"));
}

#[test]
fn empty_choices() {
    let p = one(&edit("choices = [\"adam\", \"sgd\"]", "choices = []\ntype = \"categorical\""));
    assert_eq!(p.key, "params.optimizer.choices");
}

#[test]
fn condition_on_an_unknown_parameter() {
    let p = one(&edit("when = { optimizer = \"sgd\" }", "when = { optimiser = \"sgd\" }"));
    assert_eq!((p.key.as_str(), p.line, p.column), ("params.momentum.when.optimiser", 33, 10));
    assert!(p.message.contains("unknown parameter `optimiser`"));
}

#[test]
fn condition_on_an_impossible_value() {
    let p = one(&edit("when = { optimizer = \"sgd\" }", "when = { optimizer = \"rmsprop\" }"));
    assert!(p.message.contains("never a value"), "{}", p.message);
}

#[test]
fn placeholder_without_parameter() {
    let p = one(&edit("\"--lr={lr}\"", "\"--lr={learning_rate}\""));
    assert_eq!((p.key.as_str(), p.line), ("trial.command.2", 39));
    assert!(p.message.contains("{learning_rate}"));
}

#[test]
fn unbalanced_placeholder() {
    let p = one(&edit("\"--lr={lr}\"", "\"--lr={lr\""));
    assert!(p.message.contains("malformed placeholder"));
}

#[test]
fn a_bad_enqueued_config_is_named() {
    let p = one(&edit("layers = 2", "layers = 20"));
    assert_eq!(p.key, "enqueue.0");
    assert!(p.message.contains("outside"), "{}", p.message);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = edit("trials = 10", "trials = 0").replace("low = 1\nhigh = 8", "low = 9\nhigh = 8");
    assert_eq!(problems(&text).len(), 2);
}

#[test]
fn cycles_in_conditions_are_refused() {
    let text = edit(
        "[params.epochs]",
        "[params.a]\nchoices = [1]\nwhen = { b = 1 }\n[params.b]\nchoices = [1]\nwhen = { a = 1 }\n[params.epochs]",
    );
    let p = one(&text);
    assert!(p.message.contains("cycle"));
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, edit("low = 1e-5", "low = -1.0")).unwrap();
    let message = load(&path).unwrap_err().to_string();
    assert!(message.starts_with(&format!("{}:16:1: `params.lr.low`", path.display())), "{message}");
}

/// Every example study in `studies/` is valid as shipped.
#[test]
fn the_example_studies_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 5, "expected the example studies, found {seen}");
}

/// The good file on Slurm: its `[devices]` (this machine's GPUs) swapped for `[executor]`.
fn on_slurm(executor: &str) -> String {
    edit("[devices]\ngpus = [0, 1]\nper_gpu = 2", &format!("[executor]\nkind = \"slurm\"\n{executor}"))
}

#[test]
fn a_slurm_executor_validates() {
    let text = on_slurm("partition = \"gpu\"\ngres = \"gpu:1\"\ntime = \"02:00:00\"\nextra = [\"--qos=normal\"]\nmax_jobs = 16\nbinary = \"/opt/sweep\"\npoll = \"5s\"");
    let c = parse(&text, Path::new(".")).unwrap();
    let ExecutorConfig::Slurm(s) = &c.executor else { panic!("{:?}", c.executor) };
    assert_eq!((s.partition.as_deref(), s.gres.as_deref(), s.max_jobs), (Some("gpu"), Some("gpu:1"), 16));
    assert_eq!((s.extra.clone(), s.poll), (vec!["--qos=normal".to_string()], Duration::from_secs(5)));
    // Built-in workers start with the binary the nodes see.
    let worker = parse(
        &text.replace(
            "command = [\"python3\", \"train.py\", \"--lr={lr}\", \"--momentum={momentum}\", \"--trial={trial}\"]",
            "worker = \"testfn\"",
        ),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(worker.trial.argv[0], ArgTemplate(vec![Piece::Text("/opt/sweep".into())]));
    assert_eq!(parse(GOOD, Path::new(".")).unwrap().executor, ExecutorConfig::Local);
}

#[test]
fn slurm_settings_are_checked() {
    let p = one(&edit("[devices]", "[executor]\ngres = \"gpu:1\"\n\n[devices]"));
    assert_eq!(p.key, "executor.gres");
    assert!(p.message.contains("kind = \"slurm\""), "{}", p.message);
    let p = one(&edit("per_gpu = 2", "per_gpu = 2\n\n[executor]\nkind = \"slurm\""));
    assert_eq!(p.key, "devices.gpus");
    assert!(p.message.contains("gres"), "{}", p.message);
    let p = one(&on_slurm("binary = \"sweep\""));
    assert_eq!(p.key, "executor.binary");
    let p = one(&on_slurm("listen = \"everywhere\""));
    assert_eq!(p.key, "executor.listen");
    let p = one(&on_slurm("kind2 = 1"));
    assert_eq!(p.key, "executor.kind2");
    let p = one(&on_slurm("max_jobs = 0"));
    assert_eq!(p.key, "executor.max_jobs");
    let p = one(&on_slurm("gres = \"gpu 1\""));
    assert_eq!(p.key, "executor.gres");
    let p = one(&on_slurm("time = \"2h\""));
    assert_eq!(p.key, "executor.time");
    assert!(p.message.contains("days-hours:minutes:seconds"), "{}", p.message);
    let p = one(&on_slurm("time = \"10\"\nwarning = \"10m\""));
    assert_eq!(p.key, "executor.warning");
    assert!(p.message.contains("not shorter than the time limit"), "{}", p.message);
    let p = one(&on_slurm("warning = \"soon\""));
    assert_eq!(p.key, "executor.warning");
}

/// Jobs are warned two minutes before their time limit, at most half of it, unless told otherwise.
#[test]
fn slurm_jobs_are_warned_before_their_time_limit() {
    let warning = |executor: &str| match parse(&on_slurm(executor), Path::new(".")).unwrap().executor {
        ExecutorConfig::Slurm(s) => s.warning.as_secs(),
        other => panic!("{other:?}"),
    };
    assert_eq!(warning(""), 120);
    assert_eq!(warning("time = \"02:00:00\""), 120);
    assert_eq!(warning("time = \"1\""), 30);
    assert_eq!(warning("time = \"1-0\"\nwarning = \"10m\""), 600);
    assert_eq!(warning("warning = \"0s\""), 0);
    assert_eq!(warning("warning = 0"), 0);
}

const GRID: &str = r#"
name = "grid"
metric = "acc"
direction = "maximize"
[budget]
parallel = 2
[sampler]
kind = "grid"
[params.examples]
type = "int"
low = 100
high = 3000
grid = [100, 300, 3000]
[params.init]
choices = ["scratch", "pretrained"]
[params.lr]
value = 0.001
[trial]
command = ["true"]
"#;

#[test]
fn a_grid_defaults_its_budget_to_its_size() {
    let c = parse(GRID, Path::new(".")).unwrap();
    assert_eq!(c.budget.trials, 6);
    let smaller = parse(&GRID.replace("parallel = 2", "trials = 4"), Path::new(".")).unwrap();
    assert_eq!(smaller.budget.trials, 4, "a partial grid is allowed");
    let bare = parse(&GRID.replace("[budget]\nparallel = 2\n", ""), Path::new(".")).unwrap();
    assert_eq!((bare.budget.trials, bare.budget.parallel), (6, 1), "a grid needs no [budget] table");
    let random = GRID.replace("[budget]\nparallel = 2\n", "").replace("kind = \"grid\"", "kind = \"random\"");
    let p = one(&random);
    assert_eq!(p.key, "budget.trials");
    assert!(p.message.contains("is required"), "{}", p.message);
}

#[test]
fn bad_grids_are_located() {
    let cases = [
        (GRID.replace("grid = [100, 300, 3000]\n", ""), "params.examples", "needs a `grid = [...]` list"),
        (GRID.replace("[100, 300, 3000]", "[100, 5000]"), "params.examples.grid.1", "5000 is outside"),
        (GRID.replace("[100, 300, 3000]", "[100, 100]"), "params.examples.grid.1", "listed twice"),
        (GRID.replace("[100, 300, 3000]", "[]"), "params.examples.grid", "at least one value"),
        (GRID.replace("parallel = 2", "trials = 7"), "budget.trials", "more than the grid's 6 configurations"),
        (
            GRID.replace("choices = [\"scratch\", \"pretrained\"]", "choices = [\"a\"]\ngrid = [\"a\"]"),
            "params.init.grid",
            "is for float and int parameters",
        ),
        (GRID.replace("kind = \"grid\"", "kind = \"random\""), "budget.trials", "is required"),
    ];
    for (text, key, message) in cases {
        let p = one(&text);
        assert_eq!(p.key, key, "{p:?}");
        assert!(p.message.contains(message), "{key}: `{}` lacks `{message}`", p.message);
        assert!(p.line > 0, "{p:?}");
    }
}

/// GOOD with `[[objectives]]` tables in place of `metric` / `direction` (they must come after
/// the top-level keys, so they go last).
fn with_objectives(tables: &str) -> String {
    format!("{}\n{tables}", edit("metric = \"val_loss\"\ndirection = \"minimize\"\n", ""))
}

#[test]
fn several_objectives_and_constraints_validate() {
    let text = with_objectives(
        "[[objectives]]\nmetric = \"val_acc\"\ndirection = \"maximize\"\n\n[[objectives]]\nmetric = \"n_params\"\ndirection = \"minimize\"\n",
    )
    .replace("seed = 3", "seed = 3\nconstraints = [\"n_params <= 2e6\", \"latency_ms <= 5\"]");
    let c = parse(&text, Path::new(".")).unwrap();
    let metrics: Vec<&str> = c.goals.objectives.iter().map(|o| o.metric.as_str()).collect();
    assert_eq!(metrics, ["val_acc", "n_params"]);
    assert_eq!(c.objective, c.goals.objectives[0]);
    assert_eq!(c.goals.constraints[1].to_string(), "latency_ms <= 5");
    // Both are part of what a resume must not change; a one-objective fingerprint is as before.
    let print = serde_json::to_value(c.fingerprint()).unwrap();
    assert_eq!(print["objectives"][1]["metric"], "n_params");
    assert_eq!(print["constraints"][0]["bound"], 2e6);
    let plain = serde_json::to_value(parse(GOOD, Path::new(".")).unwrap().fingerprint()).unwrap();
    assert!(plain.get("objectives").is_none() && plain.get("constraints").is_none(), "{plain}");
    // Constraints on a one-objective study.
    let single = parse(&edit("seed = 3", "seed = 3\nconstraints = [\"val_acc >= 0.5\"]"), Path::new(".")).unwrap();
    assert_eq!(single.goals.objectives.len(), 1);
    assert!(!single.goals.is_plain());
}

#[test]
fn bad_objectives_and_constraints_are_located() {
    let two = "[[objectives]]\nmetric = \"a\"\ndirection = \"maximize\"\n\n[[objectives]]\nmetric = \"b\"\ndirection = \"minimize\"\n";
    let p = one(&with_objectives(&two.replace("\"maximize\"", "\"upward\"")));
    assert_eq!((p.key.as_str(), p.line), ("objectives.[0].direction", 51), "{p:?}");
    let p = one(&with_objectives(&two.replace("\"b\"", "\"a\"")));
    assert_eq!((p.key.as_str(), p.line), ("objectives.1.metric", 54), "{p:?}");
    assert!(p.message.contains("objective 1 already"), "{}", p.message);
    let p = one(&format!("{GOOD}\n{two}"));
    assert_eq!(p.key, "objectives");
    assert!(p.message.contains("not both"), "{}", p.message);
    let p = one(&edit("direction = \"minimize\"\n", ""));
    assert_eq!(p.key, "direction");
    let p = one(&edit("seed = 3", "seed = 3\nconstraints = [\"n_params <= 2e6\", \"latency < 5\"]"));
    assert_eq!((p.key.as_str(), p.line), ("constraints.1", 6), "{p:?}");
    assert!(p.message.contains("metric <= number"), "{}", p.message);
    let gp = with_objectives(two).replace("[devices]", "[sampler]\nkind = \"gp\"\n\n[devices]");
    assert_eq!(parse(&gp, Path::new(".")).unwrap().sampler.kind, SamplerKind::Gp, "a GP per objective");
    let pruned = |table: &str| with_objectives(two).replace("[devices]", &format!("[pruner]\n{table}\n\n[devices]"));
    let p = one(&pruned("kind = \"median\""));
    assert_eq!(p.key, "pruner.kind");
    assert!(p.message.contains("use `asha` or `hyperband`"), "{}", p.message);
    let p = one(&pruned("kind = \"asha\"\nmin_resource = 1\nupper = 3.0"));
    assert_eq!(p.key, "pruner.upper");
    let p = one(&pruned("kind = \"asha\"\nmax_resource = 9\nmin_promise = 0.1"));
    assert_eq!(p.key, "pruner.min_promise");
    assert!(p.message.contains("several objectives"), "{}", p.message);
    for table in [
        "kind = \"asha\"\nmin_resource = 1\npatience = 2",
        "kind = \"hyperband\"\nmin_resource = 1\nmax_resource = 27\nmode = \"pause\"",
    ] {
        let config = parse(&pruned(table), Path::new(".")).unwrap_or_else(|e| panic!("{table}: {e:?}"));
        assert!(config.pruner.rule != PrunerRule::None, "MO-ASHA takes several objectives");
    }
    // The GP models fidelities by default with one objective, not with several; either may be
    // asked for, but only of the GP.
    assert!(parse(&gp, Path::new(".")).is_ok_and(|c| !c.sampler.multi_fidelity));
    let on = gp.replace("kind = \"gp\"", "kind = \"gp\"\nmulti_fidelity = true");
    assert!(parse(&on, Path::new(".")).is_ok_and(|c| c.sampler.multi_fidelity));
    assert!(parse(GOOD, Path::new(".")).is_ok_and(|c| c.sampler.multi_fidelity));
    let p = one(&with_objectives(two).replace("[devices]", "[sampler]\nmulti_fidelity = false\n\n[devices]"));
    assert_eq!(p.key, "sampler.multi_fidelity");
}

/// Every study shipped in `studies/` is valid as it stands.
#[test]
fn the_shipped_studies_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load(&path) {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked}");
}
