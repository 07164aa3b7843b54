//! The web API against a real server process and a real database: pagination, filters,
//! projection, auth, malformed input (400, never 500), and live events.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

/// A `sweep serve` or `sweep run --serve` process; killed on drop.
pub struct Served {
    pub child: Child,
    pub base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the command and reads the URL it prints.
pub fn start(mut cmd: std::process::Command) -> Served {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://") {
                    let _ = tx.send(line[at..].trim_end_matches('/').to_string());
                }
            }
        });
    }
    let base = rx.recv_timeout(Duration::from_secs(30)).expect("the server prints its URL");
    Served { child, base }
}

pub fn finished_study() -> Study {
    let s = Study::new("api", &testfn_study(12, 2, 3, 0));
    assert!(s.run().status.success());
    s
}

pub fn serve(s: &Study, extra: &[&str]) -> Served {
    let mut args = vec!["serve", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    start(s.command(&args))
}

/// GET a path; the status and the JSON body.
pub fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = ureq::get(&format!("{base}{path}")).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    let body: Value = resp.into_json().unwrap_or(Value::Null);
    (status, body)
}

#[test]
fn studies_trials_pages_filters_and_projection() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let (status, body) = get(&srv.base, "/api/studies", None);
    assert_eq!(status, 200);
    let study = &body["studies"][0];
    assert_eq!((study["name"].as_str(), study["finished"].as_i64()), (Some("api"), Some(12)));
    assert_eq!(study["counts"]["complete"], 12);
    assert!(study["best"]["value"].is_number());

    let (_, page) = get(&srv.base, "/api/studies/api/trials?limit=5&offset=10", None);
    assert_eq!((page["total"].as_i64(), page["trials"].as_array().unwrap().len()), (Some(12), 2));
    let (_, sorted) = get(&srv.base, "/api/studies/api/trials?sort=value&limit=12", None);
    let values: Vec<f64> = sorted["trials"].as_array().unwrap().iter().map(|t| t["value"].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    assert_eq!(values[0], study["best"]["value"].as_f64().unwrap());
    let (_, desc) = get(&srv.base, "/api/studies/api/trials?sort=param:x0&order=desc&fields=number,params", None);
    let first = &desc["trials"][0];
    assert_eq!(first.as_object().unwrap().len(), 2, "projection keeps only the asked fields: {first}");
    let xs: Vec<f64> = desc["trials"].as_array().unwrap().iter().map(|t| t["params"]["x0"].as_f64().unwrap()).collect();
    assert!(xs.windows(2).all(|w| w[0] >= w[1]), "{xs:?}");
    let (_, filtered) = get(&srv.base, "/api/studies/api/trials?param.x0.min=0&param.x0.max=5&limit=100", None);
    for t in filtered["trials"].as_array().unwrap() {
        let x = t["params"]["x0"].as_f64().unwrap();
        assert!((0.0..=5.0).contains(&x), "{x}");
    }
    let (_, none) = get(&srv.base, "/api/studies/api/trials?state=failed,running", None);
    assert_eq!(none["total"], 0);

    let (status, trial) = get(&srv.base, "/api/studies/api/trials/3", None);
    assert_eq!(status, 200);
    assert_eq!(trial["reports"].as_array().unwrap().len(), 3);
    let (_, history) = get(&srv.base, "/api/studies/api/history", None);
    assert_eq!(history["points"].as_array().unwrap().len(), 12);
    assert_eq!(history["points"][11]["best"], study["best"]["value"]);
    let (_, curves) = get(&srv.base, "/api/studies/api/curves?trials=4&points=2", None);
    let curves = curves["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 4);
    assert!(curves.iter().all(|c| c["points"].as_array().unwrap().len() == 2));
    let (_, importance) = get(&srv.base, "/api/studies/api/importance", None);
    assert_eq!(importance["params"].as_array().unwrap().len(), 2);
}

#[test]
fn malformed_queries_and_traversal_get_4xx_with_a_message() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let cases = [
        ("/api/studies/api/trials?limit=abc", 400, "`limit` must be a number"),
        ("/api/studies/api/trials?limit=0", 400, "`limit` must be 1 to"),
        ("/api/studies/api/trials?sort=bogus", 400, "cannot sort by `bogus`"),
        ("/api/studies/api/trials?state=done", 400, "unknown state `done`"),
        ("/api/studies/api/trials?fields=number,secret", 400, "unknown field `secret`"),
        ("/api/studies/api/trials?param.nope.min=1", 400, "no parameter `nope`"),
        ("/api/studies/api/trials?param.x0.min=NaN", 400, "finite number"),
        ("/api/studies/api/trials?colour=red", 400, "unknown query parameter `colour`"),
        ("/api/studies/api/trials?limit=1&limit=2", 400, "given twice"),
        ("/api/studies/api/trials/x", 400, "is not a number"),
        ("/api/studies/api/trials/999", 404, "has no trial 999"),
        ("/api/studies/nope", 404, "no study named `nope`"),
        ("/../../etc/passwd", 404, "no such page"),
        ("/api/%2e%2e/%2e%2e/etc/passwd", 404, "no such page"),
        ("/static/..%2f..%2fsweep.db", 404, "no such page"),
    ];
    for (path, code, message) in cases {
        let (status, body) = get(&srv.base, path, None);
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(message), "{path}: {body}");
    }
}

#[test]
fn beyond_loopback_needs_a_token_and_then_every_request_carries_it() {
    let s = finished_study();
    let out = s.command(&["serve", "0.0.0.0:0"]).env_remove("SWEEP_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("without a token"), "{}", text(&out));
    let srv = serve(&s, &["--token", "s3cret"]);
    assert_eq!(get(&srv.base, "/api/studies", None).0, 401);
    assert_eq!(get(&srv.base, "/api/studies", Some("wrong")).0, 401);
    assert_eq!(get(&srv.base, "/api/studies", Some("s3cret")).0, 200);
    assert_eq!(get(&srv.base, "/api/studies?token=s3cret", None).0, 200);
    assert_eq!(get(&srv.base, "/api/studies/api/events?token=nope", None).0, 401);
}

#[test]
fn live_events_carry_each_report_and_state_change() {
    let s = Study::new("live", &testfn_study(4, 2, 30, 60));
    let srv = start(s.command(&["run", "study.toml", "--no-progress", "--serve", "127.0.0.1:0"]));
    // The study exists once the coordinator has started; then follow its events.
    let mut stream = None;
    for _ in 0..100 {
        match ureq::get(&format!("{}/api/studies/live/events?after=0", srv.base))
            .timeout(Duration::from_secs(30))
            .call()
        {
            Ok(r) => {
                stream = Some(r);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let reader = BufReader::new(stream.expect("event stream opens").into_reader());
    let mut kinds = Vec::new();
    for line in reader.lines().map_while(Result::ok) {
        if let Some(kind) = line.strip_prefix("event: ") {
            kinds.push(kind.to_string());
        }
        if kinds.iter().any(|k| k == "report") && kinds.iter().any(|k| k == "insert") {
            break;
        }
    }
    assert!(kinds.contains(&"insert".to_string()) && kinds.contains(&"report".to_string()), "{kinds:?}");
}

const GRID: &str = r#"metric = "loss"
direction = "minimize"

[sampler]
kind = "grid"

[params.x0]
type = "float"
low = -5.0
high = 10.0
grid = [-5.0, 2.5, 10.0]

[params.x1]
type = "float"
low = 0.0
high = 15.0
grid = [1.0, 9.0]

[params.opt]
choices = ["adam", "sgd"]

[trial]
worker = "testfn"
args = ["--fn", "branin", "--steps", "2", "--metric", "loss"]
"#;

#[test]
fn the_comparison_is_one_answer_and_the_cli_prints_the_same() {
    let s = Study::new("grid", GRID);
    assert!(s.run().status.success());
    let srv = serve(&s, &[]);
    let (status, c) = get(&srv.base, "/api/studies/grid/compare?x=x0&group=opt", None);
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["trials"], 12);
    assert_eq!(c["metrics"], serde_json::json!(["loss"]));
    let series = c["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["group"]["opt"], "adam");
    let cells = series[0]["cells"].as_array().unwrap();
    let xs: Vec<f64> = cells.iter().map(|k| k["x"].as_f64().unwrap()).collect();
    assert_eq!(xs, [-5.0, 2.5, 10.0]);
    assert!(cells.iter().all(|k| k["n"] == 2 && k["std"].as_f64().unwrap() > 0.0), "{cells:?}");
    // Branin at x0 = -5 is the mean of its two x1 values.
    let at = |x1: f64| {
        let (x0, pi) = (-5.0f64, std::f64::consts::PI);
        let b = 5.1 / (4.0 * pi * pi);
        (x1 - b * x0 * x0 + 5.0 / pi * x0 - 6.0).powi(2) + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x0.cos() + 10.0
    };
    let mean = cells[0]["mean"].as_f64().unwrap();
    assert!((mean - (at(1.0) + at(9.0)) / 2.0).abs() < 1e-6, "{mean}");

    let out = s.command(&["compare", "grid", "--x", "x0", "--group", "opt", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, c, "the CLI and the page read the same comparison");
    let table = s.command(&["compare", "grid", "--x", "x0", "--group", "opt"]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(text.lines().count(), 2 + 6, "{text}");

    for (path, message) in [
        ("/api/studies/grid/compare", "`x` is required"),
        ("/api/studies/grid/compare?x=x9", "`x` names `x9`, which is not a param"),
        ("/api/studies/grid/compare?x=x0&group=x0", "twice, or also as `x`"),
        ("/api/studies/grid/compare?x=x0&metric=acc", "no complete trial reported the metric `acc`"),
        ("/api/studies/grid/compare?x=x0&colour=red", "unknown query parameter `colour`"),
    ] {
        let (status, body) = get(&srv.base, path, None);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap_or("").contains(message), "{path}: {body}");
    }
    let bad = s.command(&["compare", "grid", "--x", "x9"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`x` names `x9`"));
}
