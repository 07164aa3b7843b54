//! Long trials survive: a trial whose worker checkpoints goes on from its last durable
//! checkpoint after `kill -9` of the coordinator, and ends exactly where an uninterrupted run
//! of it ends, with one continuous curve.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// A one-trial study with fixed params, `[trial]` as given.
fn one_trial(name: &str, metric: &str, params: &str, trial: &str) -> Study {
    Study::new(
        name,
        &format!("metric = \"{metric}\"\ndirection = \"minimize\"\n[budget]\ntrials = 1\n{params}\n{trial}"),
    )
}

/// Runs `s` to the end; returns its one trial.
fn finished(s: &Study) -> Value {
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let t = s.trials().remove(0);
    assert_eq!(t["state"], "complete", "{t:#}");
    t
}

/// Starts `s` and kills its coordinator with `kill -9` as soon as trial 0 has a recorded
/// checkpoint at `at_least`, before the trial ends.
fn kill_after_checkpoint(s: &Study, at_least: i64) {
    let mut child = s.spawn();
    let checkpointed =
        |t: &Vec<Value>| t.first().and_then(|t| t["checkpoint_step"].as_i64()).is_some_and(|c| c >= at_least);
    wait_for("a recorded checkpoint", LIMIT, || s.try_trials().is_ok_and(|t| checkpointed(&t)));
    kill9(&mut child);
    wait_for("workers to die with the coordinator", Duration::from_secs(10), || s.live_workers().is_empty());
    let first = s.trials();
    assert_eq!(first[0]["state"], "running", "killed before the trial ended: {first:#?}");
}

/// `kill_after_checkpoint`, then runs `s` again to the end. Returns every trial.
fn kill_after_checkpoint_then_resume(s: &Study, at_least: i64) -> Vec<Value> {
    kill_after_checkpoint(s, at_least);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    s.trials()
}

/// `t` ended as the uninterrupted `reference`: the same value, bit for bit, and the same curve.
fn assert_same_end(t: &Value, reference: &Value, metric: &str) {
    let value = |t: &Value| t["value"].as_f64().expect("value").to_bits();
    assert_eq!(value(t), value(reference), "{t:#} vs uninterrupted {reference:#}");
    assert_eq!(curve(t, metric), curve(reference, metric), "one continuous curve, as if never stopped");
}

/// The objective's value per reported step.
fn curve(t: &Value, metric: &str) -> Vec<(i64, f64)> {
    let reports = t["reports"].as_array().expect("reports");
    reports.iter().map(|r| (r["step"].as_i64().unwrap(), r[metric].as_f64().unwrap())).collect()
}

/// Checks that the re-run resumed where its predecessor's last checkpoint was and ended as the
/// uninterrupted `reference` did: same value bit for bit, the same curve, each step once.
fn assert_resumed_exactly(trials: &[Value], reference: &Value, metric: &str) {
    assert_eq!(trials.len(), 2, "{trials:#?}");
    let (killed, rerun) = (&trials[0], &trials[1]);
    assert_eq!(killed["state"], "interrupted");
    assert_eq!(rerun["state"], "complete", "{rerun:#}");
    assert_eq!(rerun["rerun_of"], 0);
    let at = killed["checkpoint_step"].as_i64().expect("the killed attempt's checkpoint");
    assert_eq!(rerun["resumed_from"].as_i64(), Some(at), "{rerun:#}");
    assert!(rerun["stderr_tail"].as_str().unwrap_or("").contains(&format!("resuming from step {at}")), "{rerun:#}");
    assert_same_end(rerun, reference, metric);
}

/// Starts `s`; once trial 0 has a recorded checkpoint at `at_least` and ran on for `after`,
/// stops the coordinator with `signal` (SIGINT as Ctrl-C, SIGTERM as `kill`), then runs `s`
/// again to the end. Returns every trial.
fn signal_after_checkpoint_then_resume(s: &Study, at_least: i64, after: Duration, signal: i32) -> Vec<Value> {
    let mut child = s.spawn();
    let checkpointed =
        |t: &Vec<Value>| t.first().and_then(|t| t["checkpoint_step"].as_i64()).is_some_and(|c| c >= at_least);
    wait_for("a recorded checkpoint", LIMIT, || s.try_trials().is_ok_and(|t| checkpointed(&t)));
    std::thread::sleep(after);
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    assert!(!child.wait().unwrap().success(), "the coordinator stops without finishing the study");
    assert!(s.live_workers().is_empty(), "workers outlived the coordinator");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    s.trials()
}

/// Asked to stop between two reports, a worker saves where it is first: the re-run resumes
/// from that step, strictly between the reports, and ends as an uninterrupted run does.
fn assert_resumed_from_between(trials: &[Value], reference: &Value, metric: &str, reports: (i64, i64)) {
    let at = trials[0]["checkpoint_step"].as_i64().expect("a checkpoint");
    assert!(reports.0 < at && at < reports.1, "saved at the step it was stopped at, not a report's: {at}");
    assert_resumed_exactly(trials, reference, metric);
}

fn python_study(name: &str, keep_checkpoints: bool) -> Study {
    let params = "[params.lr]\nvalue = 0.02\n[params.momentum]\nvalue = 0.8\n";
    let s = python_study_with(name, params, "\"--steps\", \"80\", \"--report-every\", \"5\", \"--sleep-ms\", \"25\"");
    let toml = std::fs::read_to_string(s.path()).unwrap();
    std::fs::write(s.path(), format!("{toml}keep_checkpoints = {keep_checkpoints}\n")).unwrap();
    s
}

/// A one-trial study of `studies/python/train.py` with `params` and these script arguments.
fn python_study_with(name: &str, params: &str, args: &str) -> Study {
    let s = one_trial(name, "loss", params, &format!("[trial]\ncommand = [\"python3\", \"train.py\", {args}]\n"));
    copy_python_example(&s);
    s
}

/// `studies/python/train.py` and its helper, beside the study.
fn copy_python_example(s: &Study) {
    for file in ["train.py", "sweep_worker.py"] {
        let text = std::fs::read_to_string(format!("{}/studies/python/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        s.write(file, &text);
    }
}

/// The README's Python helper against a real study: a plain `python3` script that checkpoints
/// through it is killed with the coordinator and ends as if it never was.
#[test]
fn a_python_trial_resumes_from_its_checkpoint_after_kill_9() {
    let whole = python_study("py-whole", true);
    let reference = finished(&whole);
    let kept = whole.dir.path().join("sweep-runs/py-whole/trial-0/checkpoints");
    let status = text(&whole.command(&["status"]).output().unwrap());
    assert!(status.contains("files") && status.contains(" KiB"), "status says what the trials' folders hold: {status}");
    assert!(kept.join("step-00000075.ckpt").is_file(), "keep_checkpoints = true keeps them");

    let s = python_study("py-killed", false);
    let trials = kill_after_checkpoint_then_resume(&s, 20);
    assert_resumed_exactly(&trials, &reference, "loss");
    let folder = s.dir.path().join("sweep-runs/py-killed/trial-0/checkpoints");
    assert!(!folder.exists(), "a finished trial's checkpoints are removed");
}

/// Ctrl-C of the coordinator between two reports of a Python trial: the helper's `stopping`
/// lets the script save the step it is at, and the trial goes on from there.
#[test]
fn a_python_trial_stopped_between_reports_resumes_from_where_it_stopped() {
    let args = "\"--steps\", \"200\", \"--report-every\", \"100\", \"--sleep-ms\", \"25\"";
    let params = "[params.lr]\nvalue = 0.02\n[params.momentum]\nvalue = 0.8\n";
    let study = |name: &str| {
        let s = python_study_with(name, params, args);
        let toml = std::fs::read_to_string(s.path()).unwrap();
        std::fs::write(s.path(), format!("{toml}grace = \"200ms\"\n")).unwrap();
        s
    };
    let reference = finished(&study("py-stop-ref"));
    let s = study("py-stop");
    let trials = signal_after_checkpoint_then_resume(&s, 100, Duration::from_millis(300), libc::SIGINT);
    assert_resumed_from_between(&trials, &reference, "loss", (100, 200));
}

/// A hung or slow attempt killed by `trial_timeout` is retried from its last checkpoint, not
/// from step 0: with a timeout shorter than the whole run, the trial still ends, and ends as an
/// uninterrupted run does (the timeout counts per attempt).
#[test]
fn a_timed_out_attempt_is_retried_from_its_checkpoint() {
    let reference = finished(&python_study("py-timeout-ref", false));

    let s = python_study("py-timeout", false);
    let toml = std::fs::read_to_string(s.path()).unwrap();
    std::fs::write(s.path(), toml.replace("trials = 1\n", "trials = 1\ntrial_timeout = \"1200ms\"\nretries = 3\n"))
        .unwrap();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    let last = trials.last().unwrap();
    assert_eq!(last["state"], "complete", "{trials:#?}");
    assert!(trials.len() >= 2, "80 steps of 25 ms do not fit in one attempt of 1.2 s: {trials:#?}");
    for pair in trials.windows(2) {
        assert_eq!(pair[0]["state"], "failed");
        assert!(pair[0]["reason"].as_str().unwrap().contains("timed out"), "{:#}", pair[0]);
        assert_eq!(pair[1]["resumed_from"], pair[0]["checkpoint_step"], "{:#}", pair[1]);
    }
    assert_same_end(last, &reference, "loss");
}

/// A deleted checkpoint folder: the next attempt starts over from step 0, says so, and still
/// ends with the uninterrupted run's value (its reports replace the copied ones).
#[test]
fn a_deleted_checkpoint_folder_starts_over_and_says_so() {
    let reference = finished(&python_study("py-ref", false));
    let s = python_study("py-deleted", false);
    kill_after_checkpoint(&s, 10);
    std::fs::remove_dir_all(s.dir.path().join("sweep-runs/py-deleted/trial-0/checkpoints")).unwrap();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    let rerun = &trials[1];
    assert_eq!(rerun["state"], "complete");
    assert!(rerun["stderr_tail"].as_str().unwrap().contains("starting over from step 0"), "{rerun:#}");
    assert_same_end(rerun, &reference, "loss");
}

/// A one-trial study of the built-in pretraining worker on a small model (an evaluation and a
/// checkpoint every 20 steps), with its corpus in `workdir` (relative to the study folder).
fn pretrain_study(name: &str, steps: u32, threads: u32, workdir: &str) -> Study {
    let s = one_trial(
        name,
        "val_loss",
        &format!(
            "[params.layers]\nvalue = 2\n[params.hidden]\nvalue = 64\n[params.heads]\nvalue = 4\n\
             [params.ffn]\nvalue = 128\n[params.vocab_size]\nvalue = 200\n[params.seq_len]\nvalue = 64\n\
             [params.batch_size]\nvalue = 16\n[params.steps]\nvalue = {steps}\n[params.dropout]\nvalue = 0.1\n"
        ),
        &format!(
            "[trial]\nworker = \"pretrain\"\nworkdir = \"{workdir}\"\nargs = [\"--train\", \"corpus.txt\", \
             \"--valid\", \"corpus.txt\", \"--eval-every\", \"20\", \"--eval-windows\", \"8\", \"--threads\", \"{threads}\"]\n"
        ),
    );
    let corpus: String =
        (0..400).map(|i| format!("the cat {i} sat on the mat while {} dogs ran in the park\n", i * 7 % 13)).collect();
    std::fs::create_dir_all(s.dir.path().join(workdir)).unwrap();
    s.write(&format!("{workdir}/corpus.txt"), &corpus);
    s
}

/// The built-in pretraining worker, at 1 and 2 threads: killed mid-run, resumed from the
/// checkpoint the coordinator recorded, it ends with the uninterrupted run's `val_loss`.
#[test]
fn a_pretrain_trial_resumes_exactly_after_kill_9() {
    for threads in [1, 2] {
        let study = |name: &str| pretrain_study(name, 240, threads, ".");
        let reference = finished(&study("pt-whole"));
        let s = study("pt-killed");
        let trials = kill_after_checkpoint_then_resume(&s, 60);
        let text = |t: &Value| t["metrics"].to_string();
        assert_resumed_exactly(&trials, &reference, "val_loss");
        assert_eq!(text(&trials[1]), text(&reference), "threads {threads}");
    }
}

/// The built-in pretraining worker, stopped (SIGTERM of the coordinator) between two
/// evaluations: it saves the step it is at and reports that checkpoint alone; the re-run
/// resumes there and ends with the uninterrupted run's `val_loss`.
#[test]
fn a_pretrain_trial_stopped_between_evaluations_resumes_from_where_it_stopped() {
    let study = |name: &str| {
        let s = pretrain_study(name, 240, 1, ".");
        let toml = std::fs::read_to_string(s.path()).unwrap().replace("\"20\"", "\"100\"");
        std::fs::write(s.path(), format!("{toml}grace = \"100ms\"\n")).unwrap();
        s
    };
    let reference = finished(&study("pt-stop-ref"));
    let s = study("pt-stop");
    let trials = signal_after_checkpoint_then_resume(&s, 100, Duration::from_millis(300), libc::SIGTERM);
    assert_resumed_from_between(&trials, &reference, "val_loss", (100, 200));
    let at = trials[0]["checkpoint_step"].as_i64().unwrap();
    let said = trials[0]["stderr_tail"].as_str().unwrap_or("");
    assert!(said.contains(&format!("stopped at step {at} (SIGTERM), after a checkpoint of it")), "{said}");
}

/// The built-in fine-tuning worker with `keep = "best"`: the best weights and metrics so far
/// are part of the checkpoint, so the resumed trial ends with the same best step, validation
/// and test metrics as an uninterrupted one.
#[test]
fn a_finetune_trial_keeping_the_best_resumes_exactly_after_kill_9() {
    let study = |name: &str| {
        let s = one_trial(
            name,
            "val_loss",
            "[params.layers]\nvalue = 2\n[params.hidden]\nvalue = 64\n[params.heads]\nvalue = 4\n\
             [params.ffn]\nvalue = 128\n[params.vocab_size]\nvalue = 120\n[params.seq_len]\nvalue = 16\n\
             [params.batch_size]\nvalue = 16\n[params.steps]\nvalue = 300\n[params.dropout]\nvalue = 0.1\n\
             [params.lr]\nvalue = 0.003\n[params.keep]\nvalue = \"best\"\n",
            "[trial]\nworker = \"finetune\"\nargs = [\"--train\", \"train.tsv\", \"--valid\", \"valid.tsv\", \
             \"--test\", \"valid.tsv\", \"--corpus\", \"corpus.txt\", \"--corpus-valid\", \"corpus.txt\", \
             \"--eval-every\", \"10\", \"--threads\", \"1\"]\n",
        );
        crate::workers::write_data(&s);
        s
    };
    let reference = finished(&study("ft-whole"));
    // Between the runs the study file changes how often checkpoints are written.
    let s = study("ft-killed");
    kill_after_checkpoint(&s, 100);
    let toml = std::fs::read_to_string(s.path()).unwrap();
    std::fs::write(s.path(), toml.replace("\"--threads\"", "\"--checkpoint-every\", \"3\", \"--threads\"")).unwrap();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_resumed_exactly(&trials, &reference, "val_loss");
    // All but the measured time per passage and peak memory, which are the machine's and the
    // process's, not the model's.
    let exact = |t: &Value| {
        let mut m = t["metrics"].clone();
        for measured in ["latency_ms", "peak_mem_mb"] {
            let v = m.as_object_mut().unwrap().remove(measured).and_then(|l| l.as_f64());
            assert!(v.is_some_and(|l| l > 0.0), "{measured}: {t:#}");
        }
        m
    };
    assert_eq!(exact(&trials[1]), exact(&reference), "best_step, test_acc, n_params and the rest");
    assert!(reference["metrics"]["n_params"].as_f64().unwrap() > 10_000.0, "{reference:#}");
    // The best evaluation came before the kill: its weights went through the checkpoint.
    let best = reference["metrics"]["best_step"].as_f64().expect("best_step");
    assert!(best <= trials[0]["checkpoint_step"].as_f64().unwrap(), "{reference:#}");
}

/// A full disk while a checkpoint is written costs that checkpoint, not the trial: the worker
/// goes on, the database keeps the last durable step, and after a `kill -9` (and room again)
/// the trial resumes from that step and ends as an uninterrupted run does.
#[test]
fn a_full_disk_fails_a_checkpoint_not_the_trial() {
    let study = |name: &str, workdir: &str| pretrain_study(name, 300, 1, workdir);
    let reference = finished(&study("disk-whole", "."));

    let s = study("disk-full", "disk");
    let mnt = s.dir.path().join("disk");
    let corpus = std::fs::read(mnt.join("corpus.txt")).unwrap();
    let Some(_disk) = crate::disk::SmallDisk::mount(&mnt, "8m") else {
        // SAFETY: plain syscall.
        assert_ne!(unsafe { libc::geteuid() }, 0, "running as root, yet tmpfs could not be mounted");
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    std::fs::write(mnt.join("corpus.txt"), corpus).unwrap();
    let mut child = s.spawn();
    let first = |t: &Vec<Value>, key: &str| t.first().and_then(|t| t[key].as_i64());
    wait_for("a recorded checkpoint", LIMIT, || s.try_trials().is_ok_and(|t| first(&t, "checkpoint_step") >= Some(60)));
    // Fill the disk: every later checkpoint fails to write.
    let filler = mnt.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &[0u8; 1 << 16]).is_ok() {}
    let stuck = first(&s.trials(), "checkpoint_step").unwrap();
    wait_for("reports past the full disk", LIMIT, || {
        s.try_trials().is_ok_and(|t| first(&t, "last_step") >= Some(stuck + 60))
    });
    kill9(&mut child);
    wait_for("workers to die with the coordinator", Duration::from_secs(10), || s.live_workers().is_empty());
    let killed = s.trials().remove(0);
    assert_eq!(killed["state"], "running", "the trial went on with the disk full: {killed:#}");
    assert_eq!(killed["checkpoint_step"].as_i64(), Some(stuck), "no checkpoint was recorded without its file");
    drop(file);
    std::fs::remove_file(&filler).unwrap();
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert_resumed_exactly(&s.trials(), &reference, "val_loss");
}

/// ASHA with `mode = "pause"`: a trial below the cut at a rung pauses (pruned, paused, its
/// checkpoint kept) and, once enough trials reached the rung behind it, is promoted: a re-run
/// resumes it from its checkpoint and it ends as if it had never stopped. Paused trials never
/// promoted stay pruned, and no checkpoint folder outlives the study.
#[test]
fn a_paused_trial_is_promoted_and_resumed_from_its_checkpoint() {
    let configs = [(0.02, 0.8), (0.05, 0.8), (0.01, 0.5), (0.003, 0.5), (0.002, 0.3), (0.001, 0.2)];
    let enqueue: String = configs.iter().map(|(lr, m)| format!("[[enqueue]]\nlr = {lr}\nmomentum = {m}\n")).collect();
    let s = Study::new(
        "paused",
        &format!(
            "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 6\nparallel = 1\n\
             [params.lr]\ntype = \"float\"\nlow = 0.001\nhigh = 0.1\n[params.momentum]\ntype = \"float\"\nlow = 0.0\nhigh = 0.9\n\
             [pruner]\nkind = \"asha\"\nmin_resource = 10\nmax_resource = 80\neta = 3\nmode = \"pause\"\n\
             [trial]\ncommand = [\"python3\", \"train.py\", \"--steps\", \"80\", \"--sleep-ms\", \"5\"]\n{enqueue}"
        ),
    );
    copy_python_example(&s);
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("trial 1 is promoted: trial 6 resumes it from step 10"), "{}", text(&out));
    let trials = s.trials();
    assert_eq!(counted(&trials), 6, "{trials:#?}");
    assert_eq!(trials.len(), 7, "{trials:#?}");
    // Trial 0 leads at both rungs; trials 1-5 pause at step 10; with six at the rung, the top two
    // go on, so trial 1 is promoted and resumed as trial 6.
    assert_eq!(trials[0]["state"], "complete");
    for t in &trials[1..6] {
        assert_eq!(
            (t["state"].as_str(), t["paused"].as_bool(), t["last_step"].as_i64()),
            (Some("pruned"), Some(true), Some(10))
        );
        assert!(t["reason"].as_str().unwrap().contains("paused at rung 0 (step 10)"), "{t:#}");
    }
    let promoted = &trials[6];
    assert_eq!((promoted["rerun_of"].as_u64(), promoted["resumed_from"].as_i64()), (Some(1), Some(10)), "{promoted:#}");
    assert_eq!(promoted["state"], "complete", "{promoted:#}");
    // It ends as the same configuration run without a pruner does.
    let reference = finished(&python_study_with(
        "pause-ref",
        "[params.lr]\nvalue = 0.05\n[params.momentum]\nvalue = 0.8\n",
        "\"--steps\", \"80\"",
    ));
    assert_same_end(promoted, &reference, "loss");
    let leftovers: Vec<_> = (0..7)
        .map(|n| s.dir.path().join(format!("sweep-runs/paused/trial-{n}/checkpoints")))
        .filter(|p| p.exists())
        .collect();
    assert!(leftovers.is_empty(), "checkpoints left after the study: {leftovers:?}");
}

/// A worker that says a checkpoint is durable and dies before its file is whole: the next
/// attempt finds it unreadable, says so, and goes on from the checkpoint before it, ending
/// where an uninterrupted run ends.
#[test]
fn a_checkpoint_claimed_but_cut_short_falls_back_to_the_one_before() {
    let s =
        one_trial("cut-short", "loss", "[params.x]\nvalue = 1\n", "[trial]\ncommand = [\"python3\", \"worker.py\"]\n");
    let toml = std::fs::read_to_string(s.path()).unwrap();
    std::fs::write(s.path(), toml.replace("trials = 1\n", "trials = 1\nretries = 1\n")).unwrap();
    copy_python_example(&s);
    s.write(
        "worker.py",
        r#"import json, os, sweep_worker
t = sweep_worker.Trial()
state = t.load(lambda f: json.loads(f.read())) or {"step": 0, "x": 0.0}
for step in range(state["step"] + 1, 41):
    state = {"step": step, "x": state["x"] + step * 0.5}
    if step % 10 == 0:
        saved = t.save(step, lambda f: f.write(json.dumps(state).encode()))
        if t.attempt == 1 and step == 30:
            path = t.checkpoint_dir / f"step-{step:08d}.ckpt"
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
            t.report(step, checkpoint=True, loss=state["x"])
            os._exit(1)
        t.report(step, checkpoint=saved, loss=state["x"])
t.final(loss=state["x"])
"#,
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let trials = s.trials();
    assert_eq!((trials[0]["state"].as_str(), trials[0]["checkpoint_step"].as_i64()), (Some("failed"), Some(30)));
    let retry = &trials[1];
    assert_eq!((retry["state"].as_str(), retry["resumed_from"].as_i64()), (Some("complete"), Some(30)), "{retry:#}");
    let tail = retry["stderr_tail"].as_str().unwrap_or("");
    assert!(tail.contains("step 30 is not usable") && tail.contains("resuming from step 20"), "{tail}");
    assert_eq!(retry["value"].as_f64(), Some(410.0), "0.5 * (1 + ... + 40), as without the crash");
    let steps: Vec<i64> = curve(retry, "loss").into_iter().map(|p| p.0).collect();
    assert_eq!(steps, vec![10, 20, 30, 40]);
}
