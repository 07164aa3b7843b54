//! The web API at scale: a study of 10,000 trials with 20 reports each, generated into SQLite
//! through the store's bulk import (multi-row inserts), served in-process
//! over real HTTP. Times what the page asks for first: the first page of the trial table and
//! the history plot's data, plus the other endpoints for reference. A second study of as many
//! trials, `scale-mo`, has two objectives (`loss` and a `size` that grows with `layers`): its
//! Pareto card's data (`/front`, with the hypervolume after each trial) is timed too.
//!
//! Run: `cargo bench --bench web_scale` (10,000 trials; median of 15 requests each).
//! `SWEEP_WEB_SCALE_100K=1` adds a 100,000-trial study.
//! `SWEEP_WEB_SCALE_KEEP=DIR` keeps the databases, for timing the page in a real browser:
//! `node tests/e2e/e2e.mjs --scale DIR/web-scale-10000.db target/release/sweep`.
//! Under `cargo test --benches` it runs once on 200 trials, as a smoke test.

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sweep::server::Server;
use sweep::store::{Imported, NewStudy, Reader, Store};
use sweep::trial::{Finish, NewTrial};
use sweep::trial::{Metrics, TrialState};

const REPORTS: i64 = 20;

const STUDY: &str = r#"name = "scale"
metric = "loss"
direction = "minimize"
[budget]
trials = 1
[params.x0]
type = "float"
low = -5.0
high = 10.0
[params.x1]
type = "float"
low = 0.0
high = 15.0
[params.lr]
type = "float"
low = 1e-5
high = 1e-1
log = true
[params.layers]
type = "int"
low = 2
high = 8
[params.opt]
choices = ["adamw", "sgd", "lion"]
[trial]
command = ["true"]
"#;

/// The same study with a second objective, `size`, to minimize against `loss`.
fn study_text(objectives: bool) -> String {
    if !objectives {
        return STUDY.to_string();
    }
    let tables = "[[objectives]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
                  [[objectives]]\nmetric = \"size\"\ndirection = \"minimize\"\n";
    let text = STUDY
        .replace("name = \"scale\"", "name = \"scale-mo\"")
        .replace("metric = \"loss\"\ndirection = \"minimize\"\n", "");
    format!("{text}{tables}")
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let mut sizes = if full { vec![10_000] } else { vec![200] };
    if full && std::env::var_os("SWEEP_WEB_SCALE_100K").is_some() {
        sizes.push(100_000);
    }
    let runs = if full { 15 } else { 1 };
    let keep = std::env::var_os("SWEEP_WEB_SCALE_KEEP").map(PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for n in sizes {
        let tmp = tempfile::tempdir().unwrap();
        let dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join(format!("web-scale-{n}.db"));
        for f in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{f}", db.display()));
        }
        let start = Instant::now();
        rt.block_on(generate(&db, n, false));
        let generated = start.elapsed();
        rt.block_on(generate(&db, n, true));
        let base = rt.block_on(async {
            let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None, Reader::open(&db).await.unwrap())
                .await
                .unwrap();
            let base = format!("http://{}", server.local_addr());
            tokio::spawn(server.run());
            base
        });
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) + wal_size(&db);
        if !full {
            time(&format!("{base}/api/studies/scale/trials?limit=50"), runs);
            time(&format!("{base}/api/studies/scale/history?format=columns"), runs);
            time(&format!("{base}/api/studies/scale-mo/front"), runs);
            println!("web_scale smoke run: {n} trials generated and served");
            continue;
        }
        println!(
            "web_scale: {n} trials x {REPORTS} reports generated in {:.1} s ({:.0} MB); server times over HTTP, \
             {runs} requests each after one warm-up:",
            generated.as_secs_f64(),
            size as f64 / 1e6
        );
        let fields = "number,state,value,params,last_step,reason,started_at,finished_at,attempt";
        let cases = [
            (
                "trial table, first page (newest first)",
                format!("/trials?sort=number&order=desc&limit=50&fields={fields}"),
            ),
            ("trial table, first page by value", "/trials?sort=value&order=asc&limit=50".to_string()),
            ("trial table, filtered by state and param", "/trials?state=complete&param.x0.min=0&limit=50".to_string()),
            ("history (columns, as the page asks)", "/history?format=columns".to_string()),
            ("history (points)", "/history".to_string()),
            ("study summary", String::new()),
            ("curves (40 trials x 200 points)", "/curves?trials=40&points=200".to_string()),
            ("parallel/slice points (max 2000)", "/points?max=2000".to_string()),
            ("importance", "/importance".to_string()),
            ("Pareto front + hypervolume history (scale-mo)", "-mo/front".to_string()),
        ];
        for (what, path) in cases {
            let url = format!("{base}/api/studies/scale{path}");
            let (times, bytes) = time(&url, runs);
            println!(
                "  {what:<42} median {:>7.2} ms  (min {:.2}, max {:.2})  {:>9} bytes",
                times[runs / 2],
                times[0],
                times[runs - 1],
                bytes
            );
        }
    }
}

/// Sorted milliseconds of `runs` GETs after one warm-up, and the answer's size.
fn time(url: &str, runs: usize) -> (Vec<f64>, usize) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    let get = || {
        let body = agent.get(url).call().unwrap_or_else(|e| panic!("{url}: {e}")).into_string().unwrap();
        assert!(body.starts_with('{'), "{url}: {body}");
        body.len()
    };
    let bytes = get();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            get();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times, bytes)
}

fn wal_size(db: &Path) -> u64 {
    std::fs::metadata(format!("{}-wal", db.display())).map(|m| m.len()).unwrap_or(0)
}

/// Writes the study through the store's bulk import: `n` finished trials (mostly complete, some
/// pruned early, a few failed), each with a learning curve of up to 20 reports, a minute apart.
async fn generate(db: &Path, n: u64, objectives: bool) {
    let text = study_text(objectives);
    let config = sweep::study::parse(&text, Path::new(".")).expect("valid study");
    let mut store = Store::open(db).await.unwrap();
    let study = store
        .create_study(
            &NewStudy {
                name: &config.name,
                source: &text,
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
    let mut rng = StdRng::seed_from_u64(7);
    let start = sweep::store::now_ms() - n as i64 * 60_000;
    let mut batch = Vec::new();
    for number in 0..n {
        let params = config.space.sample(&mut rng);
        let x = [params["x0"].as_f64().unwrap(), params["x1"].as_f64().unwrap()];
        let size = params["layers"].as_i64().unwrap() as f64 * 1e6 / (1.0 + x[1]);
        let end = sweep::testfns::branin(&x);
        let roll: f64 = rng.random();
        let (state, steps) = match roll {
            r if r < 0.02 => (TrialState::Failed, 3),
            r if r < 0.22 => (TrialState::Pruned, rng.random_range(2..REPORTS)),
            _ => (TrialState::Complete, REPORTS),
        };
        let reports: Vec<(i64, Metrics)> = (1..=steps)
            .map(|step| {
                let v = sweep::worker::testfn::curve(end, step as u32, REPORTS as u32);
                (step, Metrics::from([("loss".to_string(), v)]))
            })
            .collect();
        let value = (state != TrialState::Failed).then(|| reports.last().unwrap().1["loss"]);
        let started_at = start + number as i64 * 60_000;
        batch.push(Imported {
            trial: NewTrial { state, ..NewTrial::waiting(number, params) },
            state,
            end: Finish {
                value,
                metrics: value.map(|v| Metrics::from([("loss".to_string(), v), ("size".to_string(), size)])),
                last_step: Some(steps),
                reason: match state {
                    TrialState::Pruned => Some(format!("median: step {steps}: worse than the median")),
                    TrialState::Failed => Some("worker exited with code 1: out of memory".into()),
                    _ => None,
                },
                stderr_tail: (state == TrialState::Failed).then(|| "Traceback: out of memory".to_string()),
                paused: false,
            },
            reports,
            started_at,
            finished_at: started_at + 55_000,
        });
        if batch.len() == 10_000 || number + 1 == n {
            store.import(study.id, &batch).await.unwrap();
            batch.clear();
        }
    }
    store.set_study_state(study.id, sweep::store::StudyState::Complete).await.unwrap();
}
