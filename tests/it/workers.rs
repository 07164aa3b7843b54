//! The built-in candle workers as real processes under a real coordinator, on tiny data and
//! tiny models so each trial takes seconds.

use crate::support::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// Tiny labeled and unlabeled files (two easy classes) beside the study.
pub fn write_data(s: &Study) {
    let animals =
        ["the cat sat on the mat", "a dog ran in the park", "the bird sang in a tree", "my cat sleeps all day"];
    let numbers =
        ["one plus two is three", "four times five is twenty", "six minus one is five", "ten over two is five"];
    let mut train = String::from("text\tlabel\n");
    for i in 0..24 {
        train += &format!("{} {}\tanimal\n{} {}\tnumber\n", animals[i % 4], i, numbers[i % 4], i);
    }
    s.write("train.tsv", &train);
    s.write("valid.tsv", "text\tlabel\nthe dog sat in the tree\tanimal\nseven plus one is eight\tnumber\n");
    let corpus: String = (0..40).map(|i| format!("{} and {} {i}\n", animals[i % 4], numbers[i % 4])).collect();
    s.write("corpus.txt", &corpus);
}

const DATA_ARGS: &str = r#""--train", "train.tsv", "--valid", "valid.tsv", "--corpus", "corpus.txt", "--corpus-valid", "corpus.txt", "--eval-every", "2""#;

const TINY_SHAPE: &str = r#"
[params.layers]
value = 1
[params.hidden]
value = 16
[params.heads]
value = 2
[params.ffn]
value = 32
[params.vocab_size]
value = 120
[params.seq_len]
value = 16
[params.batch_size]
value = 8
"#;

fn finetune_study(name: &str, trials: u32, extra_args: &str, params: &str) -> Study {
    let s = Study::new(
        name,
        &format!(
            "metric = \"val_acc\"\ndirection = \"maximize\"\n[budget]\ntrials = {trials}\nparallel = 2\n{TINY_SHAPE}{params}\n[trial]\nworker = \"finetune\"\nargs = [{DATA_ARGS}{extra_args}]\n"
        ),
    );
    write_data(&s);
    s
}

#[test]
fn a_finetune_study_reports_curves_and_keeps_checkpoints() {
    let s = finetune_study(
        "ft",
        2,
        "",
        "[params.lr]\ntype = \"float\"\nlow = 1e-3\nhigh = 1e-2\nlog = true\n[params.steps]\nvalue = 6\n",
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(trials.len(), 2, "{trials:#?}");
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        let acc = t["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{t:#}");
        assert_eq!(t["reports"].as_array().map(Vec::len), Some(3), "reports at steps 2, 4, 6: {t:#}");
        let card = s.dir.path().join(format!("sweep-runs/ft/trial-{}/model.json", t["number"]));
        assert!(card.is_file(), "{} missing", card.display());
    }
}

#[test]
fn bad_data_and_bad_params_fail_the_trial_with_the_reason() {
    let s = finetune_study("bad-data", 1, "", "[params.steps]\nvalue = 2\n");
    s.write("train.tsv", "text\tlabel\nfine line\tanimal\nno tab on this line\n");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let failed = s.in_state("failed");
    assert!(!failed.is_empty(), "{:#?}", s.trials());
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("train.tsv:3: expected `text<TAB>label`"), "{reason}");

    let s = finetune_study("bad-param", 1, "", "[params.learning_rate]\nvalue = 0.1\n");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let reason = s.in_state("failed")[0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("unknown param learning_rate for the finetune worker"), "{reason}");
}

#[test]
fn a_stop_decision_stops_the_worker_and_saves_nothing() {
    let s = finetune_study("stop", 1, "", "");
    let out_dir = s.dir.path().join("out");
    let mut child = Command::new(BIN)
        .args(["worker", "finetune", "--train", "train.tsv", "--valid", "valid.tsv", "--corpus", "corpus.txt"])
        .args(["--corpus-valid", "corpus.txt", "--eval-every", "1", "--out"])
        .arg(&out_dir)
        .current_dir(s.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let hello = r#"{"protocol":1,"study":"stop","trial":0,"attempt":1,"params":{"layers":1,"hidden":16,"heads":2,"ffn":32,"vocab_size":120,"seq_len":16,"batch_size":8,"steps":50}}"#;
    writeln!(stdin, "{hello}").unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"step\":1"), "first report: {first}");
    writeln!(stdin, r#"{{"decision":"stop"}}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped at step 1 by the coordinator's decision"), "{stderr}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(rest.trim().is_empty(), "nothing more after a stop: {rest}");
    assert!(!out_dir.join("model.json").exists(), "a stopped run saves no checkpoint");
}

/// `keep = "best"`: the trial ends with the weights of its best validation accuracy, and its
/// final metrics are that evaluation's (the earliest on a tie), not the last step's.
#[test]
fn keep_best_reports_the_best_evaluation_not_the_last() {
    let s = finetune_study(
        "best",
        2,
        "",
        "[params.steps]\nvalue = 12\n[params.lr]\nvalue = 0.05\n[params.keep]\nchoices = [\"best\", \"last\"]\n",
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    for t in s.trials() {
        assert_eq!(t["state"], "complete", "{t:#}");
        let reports = t["reports"].as_array().unwrap();
        let accs: Vec<(i64, f64)> =
            reports.iter().map(|r| (r["step"].as_i64().unwrap(), r["val_acc"].as_f64().unwrap())).collect();
        assert_eq!(accs.len(), 6, "{t:#}");
        let value = t["value"].as_f64().unwrap();
        if t["params"]["keep"] == "best" {
            let top = accs.iter().map(|a| a.1).fold(f64::MIN, f64::max);
            let first_top = accs.iter().find(|a| a.1 == top).unwrap().0;
            assert_eq!(value, top, "{t:#}");
            assert_eq!(t["metrics"]["best_step"].as_i64(), Some(first_top), "{t:#}");
        } else {
            assert_eq!(value, accs.last().unwrap().1, "{t:#}");
            assert!(t["metrics"].get("best_step").is_none(), "{t:#}");
        }
    }
}

#[test]
fn joint_trials_share_one_cached_pretraining_run_and_a_study_can_start_from_anothers_best() {
    // Joint: three trials with the same pretrain_* params and different fine-tuning lr.
    let s = finetune_study(
        "joint",
        3,
        r#", "--init", "pretrain""#,
        "[params.pretrain_steps]\nvalue = 4\n[params.lr]\nchoices = [0.001, 0.003, 0.01]\n[params.steps]\nvalue = 2\n",
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert!(trials.iter().all(|t| t["state"] == "complete"), "{trials:#?}");
    let cache = s.dir.path().join("sweep-runs/cache");
    let runs: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pretrain-") && !n.ends_with(".lock"))
        .collect();
    assert_eq!(runs.len(), 1, "one pretraining run for one set of pretrain_* params: {runs:?}");

    // Two stages: a pretraining study, then a fine-tune study from its best trial, one database.
    let pre = Study::new(
        "pre",
        &format!(
            "metric = \"val_loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 2\nparallel = 2\n{TINY_SHAPE}[params.steps]\nvalue = 4\n[params.lr]\nchoices = [0.001, 0.01]\n[trial]\nworker = \"pretrain\"\nargs = [\"--train\", \"corpus.txt\", \"--valid\", \"corpus.txt\"]\n"
        ),
    );
    write_data(&pre);
    let out = pre.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(pre.trials().iter().all(|t| t["state"] == "complete"), "{:#?}", pre.trials());
    std::fs::write(
        pre.dir.path().join("finetune.toml"),
        format!(
            "name = \"after\"\nmetric = \"val_acc\"\ndirection = \"maximize\"\n[budget]\ntrials = 1\n[params.steps]\nvalue = 2\n[params.seq_len]\nvalue = 16\n[trial]\nworker = \"finetune\"\nargs = [{DATA_ARGS}, \"--init\", \"study:pre\"]\n"
        ),
    )
    .unwrap();
    let out = pre.command(&["run", "finetune.toml", "--no-progress"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let trials = pre.trials_of("after");
    assert_eq!(trials[0]["state"], "complete", "{trials:#?}");
}

/// The shared pretraining run of `init = "pretrain"` trials shows its progress on each trial
/// that needs it (a step-0 report of `pretrain_*` values), and, killed with the coordinator,
/// goes on from its newest checkpoint in the next run.
#[test]
fn the_shared_pretraining_run_shows_its_progress_and_resumes_after_kill_9() {
    let s = finetune_study(
        "shared",
        2,
        r#", "--init", "pretrain""#,
        "[params.pretrain_steps]\nvalue = 3000\n[params.lr]\nchoices = [0.001, 0.01]\n[params.steps]\nvalue = 4\n",
    );
    let pretrain_step = |t: &serde_json::Value| {
        let reports = t["reports"].as_array().cloned().unwrap_or_default();
        reports.iter().find(|r| r["step"] == 0).and_then(|r| r["pretrain_step"].as_f64())
    };
    let mut child = s.spawn();
    let limit = std::time::Duration::from_secs(120);
    wait_for("the shared run's progress", limit, || {
        s.try_trials().is_ok_and(|t| t.iter().any(|t| pretrain_step(t) >= Some(900.0)))
    });
    kill9(&mut child);
    wait_for("workers to die with the coordinator", std::time::Duration::from_secs(10), || s.live_workers().is_empty());
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let complete = s.in_state("complete");
    assert_eq!(complete.len(), 2, "{:#?}", s.trials());
    let resumed = complete.iter().filter(|t| t["stderr_tail"].as_str().unwrap_or("").contains("resuming from step"));
    assert_eq!(resumed.count(), 1, "one trial took the shared run over from its checkpoint: {complete:#?}");
    let trained = complete.iter().filter(|t| pretrain_step(t) == Some(3000.0));
    assert_eq!(trained.count(), 1, "the trial that trained it showed its last evaluation: {complete:#?}");
}
