//! The database file alone holds every trial after each exit sweep controls, `sweep backup`
//! copies a running study, a diverged report never hangs its worker, a failed GP fit says so
//! on its trial, and errors about the database are one line with exit code 2.

use crate::api::{get, serve, start};
use crate::support::*;
use std::path::Path;
use std::time::Duration;

/// Copies only the `.db` file (no `-wal`, no `-shm`) and exports the study from the copy.
fn trials_in_copy_of(s: &Study) -> Vec<serde_json::Value> {
    let copy = s.dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let db = copy.join("alone.db");
    std::fs::copy(s.db(), &db).unwrap();
    exported(&db, &s.name)
}

fn exported(db: &Path, study: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(["export", study, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "export from {}: {}", db.display(), text(&out));
    let status = std::process::Command::new(BIN).arg("--db").arg(db).arg("status").output().unwrap();
    assert!(status.status.success() && text(&status).contains(study), "{}", text(&status));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn finished(trials: &[serde_json::Value]) -> Vec<u64> {
    let mut n: Vec<u64> = trials
        .iter()
        .filter(|t| matches!(t["state"].as_str(), Some("complete" | "pruned" | "failed")))
        .map(|t| t["number"].as_u64().unwrap())
        .collect();
    n.sort();
    n
}

fn wal_bytes(s: &Study) -> u64 {
    std::fs::metadata(format!("{}-wal", s.db().display())).map_or(0, |m| m.len())
}

#[test]
fn the_db_file_alone_holds_every_trial_after_a_normal_end() {
    let s = Study::new("whole", &testfn_study(6, 2, 2, 0));
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(wal_bytes(&s), 0, "the log was folded back");
    let copy = trials_in_copy_of(&s);
    assert_eq!(finished(&copy).len(), 6, "{copy:#?}");
    assert_eq!(finished(&copy), finished(&s.trials()));
}

#[test]
fn the_db_file_alone_holds_every_trial_after_ctrl_c() {
    let s = Study::new("whole-int", &testfn_study(200, 2, 3, 30));
    let mut child = s.spawn();
    s.wait_for_state("complete", 3);
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let copy = trials_in_copy_of(&s);
    assert!(finished(&copy).len() >= 3, "{copy:#?}");
    assert_eq!(finished(&copy), finished(&s.trials()), "the copy lacks trials the database holds");
}

#[test]
fn the_db_file_alone_holds_every_trial_after_the_study_timeout() {
    let s = Study::new(
        "whole-timeout",
        &testfn_study(200, 2, 3, 30).replace("parallel = 2", "parallel = 2\ntimeout = \"1500ms\""),
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("study timeout reached"), "{}", text(&out));
    let copy = trials_in_copy_of(&s);
    assert!(!finished(&copy).is_empty());
    assert_eq!(finished(&copy), finished(&s.trials()));
}

#[test]
fn a_backup_taken_while_a_study_runs_holds_every_trial_finished_before_it() {
    let s = Study::new("backup", &testfn_study(300, 2, 3, 20));
    let mut child = s.spawn();
    s.wait_for_state("complete", 4);
    let before = finished(&s.trials());
    let dest = s.dir.path().join("backup.db");
    let out = std::process::Command::new(BIN).arg("backup").arg(s.db()).arg(&dest).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(exists(&dest) && !exists(&s.dir.path().join("backup.db-wal")));
    let held = finished(&exported(&dest, "backup"));
    assert!(before.iter().all(|n| held.contains(n)), "before: {before:?}, backup: {held:?}");
    // The coordinator was not disturbed, and a second backup to the same path is refused.
    assert!(child.try_wait().unwrap().is_none(), "the coordinator still runs");
    let again = std::process::Command::new(BIN).arg("backup").arg(s.db()).arg(&dest).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    let _ = child.kill();
    let _ = child.wait();
}

/// The worker reads a reply after each report; without one it would block until the timeout.
const REPLIES: &str = r#"read hello
echo '{"step": 1, "phase": "warmup"}'
read r1
echo 'a log line gets no reply'
echo '{"step": 2}'
read r2
echo '{"step": 3, "loss": null}'
read r3
echo "$r1 $r2 $r3" > "replies-$SWEEP_TRIAL_ID.txt"
"#;

fn null_study(name: &str, pruner: &str) -> Study {
    let s = Study::new(
        name,
        &format!(
            "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 1\ntrial_timeout = \"60s\"\n{pruner}\n{}",
            script_trial("worker.sh")
        ),
    );
    s.write("worker.sh", REPLIES);
    s
}

#[test]
fn a_null_metric_gets_its_reply_and_the_trial_ends_as_diverged() {
    let s = null_study("null", "");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "failed", "{t:#}");
    assert_eq!(t["reason"], "objective `loss` is NaN", "{t:#}");
    let replies = std::fs::read_to_string(s.dir.path().join("replies-0.txt")).unwrap();
    assert_eq!(replies.matches(r#"{"decision":"continue"}"#).count(), 3, "one reply per report: {replies}");

    let s = null_study("null-pruned", "[pruner]\nkind = \"median\"\n");
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let t = &s.trials()[0];
    assert_eq!(t["state"], "pruned", "{t:#}");
    assert!(t["reason"].as_str().unwrap().contains("value NaN at step 3"), "{t:#}");
    let replies = std::fs::read_to_string(s.dir.path().join("replies-0.txt")).unwrap();
    assert!(replies.ends_with("{\"decision\":\"stop\"}\n"), "{replies}");
}

#[test]
fn a_failed_gp_fit_leaves_its_reason_on_the_trial() {
    // Objective values a whole f64 range apart: the GP's scaling overflows, so it cannot fit.
    let s = Study::new(
        "gp-fails",
        &format!(
            "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 3\n[sampler]\nkind = \"gp\"\n\
             startup_trials = 2\n[params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n{}",
            script_trial("worker.sh")
        ),
    );
    s.write(
        "worker.sh",
        "case $SWEEP_TRIAL_ID in 0) v=1e308;; 1) v=-1e308;; *) v=0.5;; esac\necho \"{\\\"final\\\": {\\\"loss\\\": $v}}\"\n",
    );
    let out = s.run();
    assert!(out.status.success(), "{}", text(&out));
    let server = serve(&s, &[]);
    let (code, t) = get(&server.base, "/api/studies/gp-fails/trials/2", None);
    assert_eq!(code, 200, "{t}");
    let why = t["sampler_state"]["fallback"].as_str().unwrap_or_else(|| panic!("no fallback reason: {t:#}"));
    assert!(why.contains("the GP failed") && why.contains("overflows"), "{why}");
    let (_, first) = get(&server.base, "/api/studies/gp-fails/trials/0", None);
    assert!(first["sampler_state"].is_null(), "a startup trial has no sampler state: {first:#}");
}

#[test]
fn errors_about_the_database_are_one_line_and_bad_input() {
    let s = Study::new("errors", &testfn_study(1, 1, 1, 0));
    std::fs::write(
        s.db(),
        "this is not a database, it is a text file that is long enough to have a header\n".repeat(80),
    )
    .unwrap();
    for args in [&["status"][..], &["export", "errors"], &["run", "study.toml", "--no-progress"]] {
        let out = s.command(args).output().unwrap();
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {msg}");
        assert_eq!(msg.lines().count(), 1, "{args:?}: {msg}");
        assert!(msg.contains("is not a SQLite database"), "{args:?}: {msg}");
    }
    let out = s.command(&["backup", "missing.db", "b.db"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn serve_folds_the_log_back_when_it_stops() {
    let s = Study::new("serve-fold", &testfn_study(3, 1, 2, 0));
    // A coordinator killed with -9 leaves its log beside the database.
    let mut child = s.spawn();
    s.wait_for_state("complete", 1);
    let _ = child.kill();
    let _ = child.wait();
    let mut server = start(s.command(&["serve", "127.0.0.1:0"]));
    let (code, _) = get(&server.base, "/api/studies/serve-fold", None);
    assert_eq!(code, 200);
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGINT) };
    wait_for("serve to exit", Duration::from_secs(20), || server.child.try_wait().unwrap().is_some());
    assert_eq!(wal_bytes(&s), 0);
    assert!(!finished(&trials_in_copy_of(&s)).is_empty());
}
