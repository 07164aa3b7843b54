//! Bad study files: one clear message with file, line, column and key; exit code 2; the
//! database is not touched.

use crate::support::*;

const BASE: &str = "metric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 2\n[params.lr]\ntype = \"float\"\nlow = 0.001\nhigh = 0.1\nlog = true\n[params.opt]\nchoices = [\"sgd\", \"adam\"]\n[trial]\ncommand = [\"echo\", \"{lr}\"]\n";

fn assert_refused(case: &str, toml: &str, expect: &str) {
    let s = Study::new("bad", toml);
    let out = s.run();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{case}: {msg}");
    assert!(msg.contains(expect), "{case}: `{msg}` lacks `{expect}`");
    assert!(msg.contains("study.toml:"), "{case}: no file name in `{msg}`");
    assert!(!exists(&s.db()), "{case}: the database was created");
}

#[test]
fn every_bad_input_gets_located_message_and_exit_2() {
    let cases = [
        ("malformed", BASE.replace("trials = 2", "trials = "), "study.toml:5:"),
        ("unknown key", BASE.replace("log = true", "log = true\nlgo = 1"), "`params.lr.lgo`"),
        ("wrong type", BASE.replace("trials = 2", "trials = \"two\""), "`budget.trials`"),
        (
            "low > high",
            BASE.replace("low = 0.001", "low = 1.0"),
            "study.toml:8:1: `params.lr.low`: low (1) is greater than high (0.1)",
        ),
        ("log low <= 0", BASE.replace("low = 0.001", "low = 0.0"), "`params.lr.low`: must be > 0 when log = true"),
        (
            "empty choices",
            BASE.replace("[\"sgd\", \"adam\"]", "[]"),
            "`params.opt.choices`: must list at least one choice",
        ),
        (
            "unknown condition",
            BASE.replace("log = true", "log = true\nwhen = { optimizer = \"sgd\" }"),
            "`params.lr.when.optimizer`: condition names unknown parameter",
        ),
        (
            "placeholder",
            BASE.replace("{lr}", "{learning_rate}"),
            "`trial.command.1`: placeholder `{learning_rate}` names no parameter",
        ),
        ("bad direction", BASE.replace("minimize", "minimise"), "`direction`"),
        ("bad duration", BASE.replace("trials = 2", "trials = 2\ntrial_timeout = \"soon\""), "`budget.trial_timeout`"),
    ];
    for (case, toml, expect) in cases {
        assert_refused(case, &toml, expect);
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let s = Study::new("x", "");
    let out = s.command(&["run", "nope.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cannot read study file nope.toml"), "{}", text(&out));
}

#[test]
fn an_unknown_study_is_named_in_reads() {
    let s = Study::new("known", &testfn_study(1, 1, 0, 0));
    assert!(s.run().status.success());
    let out = s.command(&["best", "unknown"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown study is bad input");
    assert!(text(&out).contains("no study named `unknown`") && text(&out).contains("known"), "{}", text(&out));
}
