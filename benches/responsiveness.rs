//! Responsiveness while the GP proposes: a study with 1,000 finished trials (imported), the GP
//! sampler, `parallel = 8` fast workers that report every 10 ms and wait for each decision, and
//! the web server on the coordinator's own runtime, as `sweep run --serve` has it. Measures how
//! long each report waits for its decision and how long `GET /api/studies/NAME` takes while the
//! GP fits, with proposals on the sampler's thread ("after") and, for comparison, computed on
//! the coordinator's thread as before ("before"), alternating in one run.
//!
//! Run: `cargo bench --bench responsiveness` (1,000 trials of history, 24 new trials per mode,
//! two rounds). Under `cargo test --benches` it runs once on a small history, as a smoke test.

use rand::{rngs::StdRng, SeedableRng};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sweep::coordinator::{run, RunOptions};
use sweep::executor::{Executor, Launch, Outcome, WorkerEvent};
use sweep::protocol::Decision;
use sweep::sampler::{GpSampler, Proposal, Sampler};
use sweep::server::Server;
use sweep::space::Space;
use sweep::store::{Imported, NewStudy, Reader, Store};
use sweep::study::StudyConfig;
use sweep::trial::{Finish, History, Metrics, NewTrial, TrialState};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const NAME: &str = "latency";
const REPORTS: i64 = 20;
const REPORT_EVERY: Duration = Duration::from_millis(10);

fn study_text(trials: u64) -> String {
    format!(
        r#"name = "{NAME}"
metric = "loss"
direction = "minimize"
[budget]
trials = {trials}
parallel = 8
[sampler]
kind = "gp"
[params.x0]
type = "float"
low = -5.0
high = 10.0
[params.x1]
type = "float"
low = 0.0
high = 15.0
[trial]
command = ["true"]
"#
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (history, new, rounds) = if full { (1000u64, 24u64, 2) } else { (30, 3, 1) };
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(generate(&template, history));
    if full {
        println!(
            "responsiveness: GP study with {history} finished trials, {new} new trials per run, parallel 8, workers \
             reporting every {} ms and waiting for each decision, web server on the coordinator's runtime",
            REPORT_EVERY.as_millis()
        );
    }
    for round in 0..rounds {
        for (mode, inline) in
            [("after (proposals on the sampler's thread)", false), ("before (proposals inline)", true)]
        {
            let db = dir.path().join(format!("run-{round}-{inline}.db"));
            std::fs::copy(&template, &db).unwrap();
            let m = measure(&db, history + new, inline);
            if !full {
                println!(
                    "responsiveness smoke run ({mode}): {} reports answered, {} page requests",
                    m.reports.len(),
                    m.gets.len()
                );
                continue;
            }
            println!("  round {} {mode}: {:.1} s, {} proposals", round + 1, m.wall, new);
            println!(
                "    report -> decision: max {:.1} ms, p99 {:.1} ms, p50 {:.2} ms over {} reports",
                m.reports[m.reports.len() - 1],
                percentile(&m.reports, 0.99),
                percentile(&m.reports, 0.5),
                m.reports.len()
            );
            println!(
                "    GET /api/studies/{NAME}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} requests",
                percentile(&m.gets, 0.5),
                percentile(&m.gets, 0.99),
                m.gets[m.gets.len() - 1],
                m.gets.len()
            );
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

struct Measured {
    wall: f64,
    /// Sorted milliseconds from a report's send to its decision.
    reports: Vec<f64>,
    /// Sorted milliseconds per page request.
    gets: Vec<f64>,
}

/// The GP as the coordinator ran it before: proposals on the coordinator's own thread.
struct Inline(GpSampler);

impl Sampler for Inline {
    fn propose(&self, space: &Space, history: &History, rng: &mut StdRng) -> Proposal {
        self.0.propose(space, history, rng)
    }
}

fn measure(db: &Path, budget: u64, inline: bool) -> Measured {
    let config = config(budget);
    let gp = GpSampler::new(config.sampler.startup_trials as usize);
    let sampler: Arc<dyn Sampler> = if inline { Arc::new(Inline(gp)) } else { Arc::new(gp) };
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut executor = FastWorkers { latencies: latencies.clone() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let gets = rt.block_on(async {
        let reader = Reader::open(db).await.unwrap();
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None, reader).await.unwrap();
        let url = format!("http://{}/api/studies/{NAME}", server.local_addr());
        tokio::spawn(server.run());
        let client = std::thread::spawn({
            let done = done.clone();
            move || poll(&url, &done)
        });
        let mut store = Store::open(db).await.unwrap();
        let options = RunOptions {
            progress: false,
            shutdown: CancellationToken::new(),
            db: db.to_path_buf(),
            sampler: Some(sampler),
        };
        let summary = run(&config, &mut store, &mut executor, options).await.unwrap();
        assert_eq!(summary.finished as u64, budget);
        done.store(true, Ordering::SeqCst);
        store.close().await.unwrap();
        client.join().unwrap()
    });
    let mut reports = latencies.lock().unwrap().clone();
    reports.sort_by(f64::total_cmp);
    Measured { wall: start.elapsed().as_secs_f64(), reports, gets }
}

/// GETs the study summary every 25 ms until `done`; sorted milliseconds.
fn poll(url: &str, done: &AtomicBool) -> Vec<f64> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let mut times = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let start = Instant::now();
        let body = agent.get(url).call().unwrap_or_else(|e| panic!("{url}: {e}")).into_string().unwrap();
        assert!(body.starts_with('{'), "{body}");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(25));
    }
    times.sort_by(f64::total_cmp);
    times
}

/// Workers on threads of their own: each reports every 10 ms and waits for the decision, as a
/// training script that reads decisions does.
struct FastWorkers {
    latencies: Arc<Mutex<Vec<f64>>>,
}

impl Executor for FastWorkers {
    fn launch(&mut self, launch: Launch, events: &mpsc::UnboundedSender<WorkerEvent>) {
        let (events, latencies) = (events.clone(), self.latencies.clone());
        std::thread::spawn(move || {
            let p = &launch.hello.params;
            let end = sweep::testfns::branin(&[p["x0"].as_f64().unwrap(), p["x1"].as_f64().unwrap()]);
            let mut loss = end;
            for step in 1..=REPORTS {
                std::thread::sleep(REPORT_EVERY);
                loss = sweep::worker::testfn::curve(end, step as u32, REPORTS as u32);
                let (reply, decision) = oneshot::channel();
                let metrics = Metrics::from([("loss".to_string(), loss)]);
                let sent = Instant::now();
                let report =
                    WorkerEvent::Report { trial: launch.trial, step: Some(step), metrics, checkpoint: false, reply };
                if events.send(report).is_err() {
                    return;
                }
                let decision = decision.blocking_recv();
                latencies.lock().unwrap().push(sent.elapsed().as_secs_f64() * 1000.0);
                if decision != Ok(Decision::Continue) || launch.cancel.is_cancelled() {
                    break;
                }
            }
            let outcome =
                Outcome { final_metrics: Some(Metrics::from([("loss".to_string(), loss)])), ..Outcome::default() };
            let _ = events.send(WorkerEvent::Done { trial: launch.trial, outcome });
        });
    }
}

fn config(budget: u64) -> StudyConfig {
    sweep::study::parse(&study_text(budget), Path::new(".")).expect("valid study")
}

/// A database holding the study with `n` finished trials on Branin, as if a sweep had run them.
async fn generate(db: &Path, n: u64) {
    let config = config(n);
    let mut store = Store::open(db).await.unwrap();
    let study = store
        .create_study(
            &NewStudy {
                name: NAME,
                source: &config.source,
                fingerprint: &config.fingerprint(),
                space_hash: "bench",
                metric: "loss",
                direction: config.objective.direction,
                budget: n as u32,
            },
            &[],
        )
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let now = sweep::store::now_ms();
    let trials: Vec<Imported> = (0..n)
        .map(|number| {
            let params = config.space.sample(&mut rng);
            let value = sweep::testfns::branin(&[params["x0"].as_f64().unwrap(), params["x1"].as_f64().unwrap()]);
            let metrics = Metrics::from([("loss".to_string(), value)]);
            Imported {
                trial: NewTrial { state: TrialState::Complete, ..NewTrial::waiting(number, params) },
                state: TrialState::Complete,
                end: Finish {
                    value: Some(value),
                    metrics: Some(metrics),
                    last_step: Some(REPORTS),
                    ..Finish::default()
                },
                reports: Vec::new(),
                started_at: now,
                finished_at: now,
            }
        })
        .collect();
    store.import(study.id, &trials).await.unwrap();
    store.close().await.unwrap();
}
