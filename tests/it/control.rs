//! Control from the web API against real coordinators: stop a running trial, enqueue a
//! configuration (checked like the study file's), pause and resume (also across a restart),
//! commands that wait for a coordinator, and the token in front of it all.

use crate::api::{finished_study, get, serve, start, Served};
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

/// POST a JSON body; the status and the JSON answer.
pub fn post(base: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut req =
        ureq::post(&format!("{base}{path}")).timeout(Duration::from_secs(10)).set("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let resp = match req.send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    (status, resp.into_json().unwrap_or(Value::Null))
}

fn run_served(s: &Study) -> Served {
    start(s.command(&["run", "study.toml", "--no-progress", "--serve", "127.0.0.1:0"]))
}

/// Waits until the study (as the API shows it) satisfies `check`.
fn wait_api(srv: &Served, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    wait_for(what, Duration::from_secs(60), || {
        let (status, body) = get(&srv.base, &format!("/api/studies/{name}"), None);
        last = body;
        status == 200 && check(&last)
    });
    last
}

/// Waits until a command is applied; its result.
fn applied(srv: &Served, name: &str, id: &Value) -> String {
    let mut result = String::new();
    wait_for("the command to be applied", Duration::from_secs(30), || {
        let (_, c) = get(&srv.base, &format!("/api/studies/{name}/commands/{id}"), None);
        result = c["result"].as_str().unwrap_or("").to_string();
        !c["done_at"].is_null()
    });
    result
}

fn trial(srv: &Served, name: &str, number: u64) -> Value {
    get(&srv.base, &format!("/api/studies/{name}/trials/{number}"), None).1
}

#[test]
fn a_running_trial_is_stopped_from_the_api_and_recorded_pruned() {
    let s = Study::new("stop", &testfn_study(2, 1, 400, 50));
    let srv = run_served(&s);
    wait_api(&srv, "stop", "trial 0 running", |b| b["counts"]["running"] == 1);
    let (status, body) = post(&srv.base, "/api/studies/stop/trials/0/stop", "{}", None);
    assert_eq!(status, 202, "{body}");
    assert_eq!((body["status"].as_str(), body["coordinator_running"].as_bool()), (Some("pending"), Some(true)));
    assert_eq!(applied(&srv, "stop", &body["command"]), "stopping trial 0");
    wait_for("trial 0 to end", Duration::from_secs(30), || trial(&srv, "stop", 0)["state"] == "pruned");
    let t = trial(&srv, "stop", 0);
    assert_eq!(t["reason"], "stopped from the web page", "{t}");
    assert!(t["last_step"].as_i64().unwrap() < 400, "stopped early: {t}");
    // It counts toward the budget, and the next trial starts in its place.
    wait_api(&srv, "stop", "trial 1 running", |b| b["finished"] == 1 && b["counts"]["running"] == 1);

    let (status, body) = post(&srv.base, "/api/studies/stop/trials/0/stop", "{}", None);
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("trial 0 is pruned"), "{body}");
    assert_eq!(post(&srv.base, "/api/studies/stop/trials/99/stop", "{}", None).0, 404);
    assert_eq!(post(&srv.base, "/api/studies/stop/trials/x/stop", "{}", None).0, 400);
    assert_eq!(post(&srv.base, "/api/studies/nope/trials/1/stop", "{}", None).0, 404);
}

#[test]
fn pause_holds_new_trials_across_a_restart_and_resume_finishes_the_study() {
    let s = Study::new("pause", &testfn_study(4, 1, 8, 100));
    let srv = run_served(&s);
    wait_api(&srv, "pause", "the study to start", |b| b["counts"]["running"] == 1);
    let (status, body) = post(&srv.base, "/api/studies/pause/pause", "", None);
    assert_eq!(status, 202, "{body}");
    assert!(applied(&srv, "pause", &body["command"]).starts_with("paused"));
    // The running trial finishes; nothing new starts.
    let b = wait_api(&srv, "pause", "the running trial to finish", |b| b["counts"]["running"] == 0);
    assert_eq!(b["paused"], true);
    std::thread::sleep(Duration::from_millis(1500));
    let held = get(&srv.base, "/api/studies/pause", None).1;
    assert_eq!((held["counts"]["running"].as_i64(), held["finished"].as_i64()), (Some(0), b["finished"].as_i64()));
    drop(srv);

    // A new coordinator stays paused: the state lives on the study row.
    let srv = run_served(&s);
    std::thread::sleep(Duration::from_millis(1500));
    let still = get(&srv.base, "/api/studies/pause", None).1;
    assert_eq!((still["paused"].as_bool(), still["counts"]["running"].as_i64()), (Some(true), Some(0)), "{still}");
    let (status, body) = post(&srv.base, "/api/studies/pause/resume", "{}", None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(applied(&srv, "pause", &body["command"]), "resumed");
    let mut srv = srv;
    let status = srv.child.wait().expect("coordinator exits when the study is done");
    assert!(status.success());
    assert_eq!(counted(&s.trials()), 4);
}

#[test]
fn enqueued_params_are_checked_like_the_study_file_and_wait_for_a_coordinator() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let bad = [
        (json!({"params": {"x0": 99.0, "x1": 2.0}}), "`x0` = 99.0 is outside its distribution"),
        (json!({"params": {"x0": 1.0}}), "missing parameter `x1`"),
        (json!({"params": {"x0": 1.0, "x1": 2.0, "lr": 0.1}}), "unknown parameter `lr`"),
        (json!({"params": {"x0": "one", "x1": 2.0}}), "`x0` = \"one\" is outside"),
        (json!({"params": [1, 2]}), "`params` must be an object"),
        (json!({"x0": 1.0, "x1": 2.0}), "`params` must be an object"),
    ];
    for (body, message) in bad {
        let (status, answer) = post(&srv.base, "/api/studies/api/enqueue", &body.to_string(), None);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap_or("").contains(message), "{body}: {answer}");
    }
    let (status, answer) = post(&srv.base, "/api/studies/api/enqueue", "{not json", None);
    assert_eq!((status, answer["error"].as_str()), (400, Some("the request body is not valid JSON")));

    // Valid, but no coordinator runs: the command waits, and the answer says so.
    let (status, answer) = post(&srv.base, "/api/studies/api/enqueue", r#"{"params": {"x0": 1, "x1": 2.5}}"#, None);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["coordinator_running"], false);
    assert!(answer["message"].as_str().unwrap().contains("no coordinator is running"), "{answer}");
    let id = answer["command"].clone();
    let (_, pending) = get(&srv.base, &format!("/api/studies/api/commands/{id}"), None);
    assert_eq!((pending["kind"].as_str(), pending["done_at"].is_null()), (Some("enqueue"), true), "{pending}");
    assert_eq!(get(&srv.base, "/api/studies/api", None).1["pending_commands"], 1);

    // The next run of the study (one more trial of budget) picks it up and runs it first.
    let text = std::fs::read_to_string(s.path()).unwrap().replace("trials = 12", "trials = 13");
    std::fs::write(s.path(), text).unwrap();
    assert!(s.run().status.success());
    let (_, done) = get(&srv.base, &format!("/api/studies/api/commands/{id}"), None);
    assert_eq!(done["result"], "queued as trial 12", "{done}");
    let t = trial(&srv, "api", 12);
    assert_eq!((t["state"].as_str(), t["params"].clone()), (Some("complete"), json!({"x0": 1, "x1": 2.5})), "{t}");
    assert_eq!(get(&srv.base, "/api/studies/api", None).1["pending_commands"], 0);
}

#[test]
fn control_needs_json_from_the_page_origin_and_the_token_beyond_loopback() {
    let s = finished_study();
    let srv = serve(&s, &[]);
    let url = format!("{}/api/studies/api/pause", srv.base);
    let form = ureq::post(&url).set("Content-Type", "application/x-www-form-urlencoded").send_string("a=b");
    assert_eq!(form.unwrap_err().into_response().unwrap().status(), 415, "a cross-site form cannot control");
    let foreign =
        ureq::post(&url).set("Content-Type", "application/json").set("Origin", "http://evil.example").send_string("{}");
    assert_eq!(foreign.unwrap_err().into_response().unwrap().status(), 403);
    let rebound =
        ureq::post(&url).set("Content-Type", "application/json").set("Host", "evil.example").send_string("{}");
    assert_eq!(rebound.unwrap_err().into_response().unwrap().status(), 403, "DNS rebinding is refused");
    let own = ureq::post(&url).set("Content-Type", "application/json").set("Origin", &srv.base).send_string("{}");
    assert_eq!(own.map(|r| r.status()).ok(), Some(202));
    assert_eq!(get(&srv.base, "/api/studies/api/pause", None).0, 405, "GET never controls");
    drop(srv);

    // Beyond loopback: every API call, control included, needs the token; the page's files do not.
    let srv = start(s.command(&["serve", "0.0.0.0:0", "--token", "s3cret"]));
    let base = srv.base.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(post(&base, "/api/studies/api/pause", "{}", None).0, 401);
    assert_eq!(post(&base, "/api/studies/api/pause", "{}", Some("wrong")).0, 401);
    assert_eq!(post(&base, "/api/studies/api/enqueue", r#"{"params":{"x0":1,"x1":1}}"#, None).0, 401);
    assert_eq!(post(&base, "/api/studies/api/trials/0/stop", "{}", None).0, 401);
    assert_eq!(get(&base, "/api/studies/api/commands/1", None).0, 401);
    let (status, body) = post(&base, "/api/studies/api/pause", "{}", Some("s3cret"));
    assert_eq!(status, 202, "{body}");
    assert_eq!(post(&base, "/api/studies/api/resume?token=s3cret", "{}", None).0, 202);
    assert_eq!(ureq::get(&format!("{base}/")).call().map(|r| r.status()).ok(), Some(200));
    assert_eq!(ureq::get(&format!("{base}/static/app.js")).call().map(|r| r.status()).ok(), Some(200));
}

/// A sampler whose proposals after the first wait for a go-ahead, so a test can act while one
/// is in flight on the sampler's thread.
struct HeldSampler {
    in_flight: std::sync::Mutex<std::sync::mpsc::Sender<u64>>,
    go: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl sweep::sampler::Sampler for HeldSampler {
    fn propose(
        &self,
        space: &sweep::space::Space,
        history: &sweep::trial::History,
        rng: &mut rand::rngs::StdRng,
    ) -> sweep::sampler::Proposal {
        if !history.trials.is_empty() {
            let _ = self.in_flight.lock().unwrap().send(history.next_number());
            let _ = self.go.lock().unwrap().recv();
        }
        sweep::sampler::Proposal { params: space.sample(rng), state: None }
    }

    fn runs_long(&self) -> bool {
        true
    }
}

/// The number a proposal in flight will take is not free: a configuration enqueued meanwhile
/// takes the next one, and both trials are recorded (it used to take the same number, and the
/// proposal's insert then failed the study).
#[test]
fn a_config_enqueued_while_a_proposal_is_in_flight_gets_its_own_number() {
    use sweep::coordinator::{run, RunOptions};
    use sweep::store::{CommandWriter, Request, Store};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sweep.db");
    let text = "name = \"held\"\nmetric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 3\n\
                [params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[trial]\ncommand = [\"true\"]\n";
    let config = sweep::study::parse(text, dir.path()).unwrap();
    let (in_flight_tx, in_flight) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let sampler = HeldSampler { in_flight: in_flight_tx.into(), go: go_rx.into() };
    let coordinator = {
        let db = db.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut store = Store::open(&db).await.unwrap();
                let mut executor = sweep::executor::InProcessExecutor::new(|p| {
                    sweep::trial::Metrics::from([("loss".to_string(), p["x"].as_f64().unwrap())])
                });
                let options = RunOptions {
                    progress: false,
                    shutdown: tokio_util::sync::CancellationToken::new(),
                    db: db.clone(),
                    sampler: Some(std::sync::Arc::new(sampler)),
                };
                let summary = run(&config, &mut store, &mut executor, options).await;
                let trials = store.trials(1, &["loss"]).await.unwrap();
                (summary.map(|s| s.finished), trials)
            })
        })
    };
    assert_eq!(in_flight.recv_timeout(Duration::from_secs(30)).unwrap(), 1, "trial 1 is being proposed");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer = rt.block_on(async {
        let writer = CommandWriter::open_lazy(&db);
        let params = json!({ "x": 0.5 }).as_object().unwrap().clone();
        let id = writer.submit(1, &Request::Enqueue { params }).await.unwrap();
        let mut store = Store::open_read_only(&db).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Trial 0 and the enqueued one; trial 1 is still being proposed.
        while store.trials(1, &["loss"]).await.unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "the enqueued trial was never recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        id
    });
    assert!(answer > 0);
    // Trial 1's proposal lands after the enqueued trial was recorded, then the rest run freely.
    drop(in_flight);
    go.send(()).unwrap();
    drop(go);
    let (finished, trials) = coordinator.join().unwrap();
    assert_eq!(finished.expect("the study completes"), 3);
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, [0, 1, 2], "distinct numbers, none lost");
    assert!(trials.iter().any(|t| t.params["x"] == 0.5), "the enqueued configuration ran");
}
