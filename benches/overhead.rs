//! Coordinator overhead: 1000 trials of an in-process no-op objective through the full
//! ask / record / tell path with the SQLite store and durable (fsynced) commits.
//!
//! Run: `cargo bench --bench overhead` (prints ms per trial, median of several runs).
//! Under `cargo test --all-targets` it runs once on a few trials, as a smoke test.
//! For comparison, Optuna 5.0 with its SQLite storage and random search measured 8.6 ms per
//! trial on this kind of machine. One trial at a time costs one durable commit, so the same run
//! also measures this disk's flush (a 4 KiB write and fdatasync, as SQLite's WAL does per
//! commit): that is the floor no durable store goes below, and it varies between machines and
//! hours far more than the rest.

use std::path::Path;
use std::time::Instant;
use sweep::coordinator::{run, RunOptions};
use sweep::executor::InProcessExecutor;
use sweep::trial::Metrics;
use tokio_util::sync::CancellationToken;

fn study_text(trials: u32) -> String {
    format!(
        r#"name = "overhead"
metric = "loss"
direction = "minimize"
[budget]
trials = {trials}
[params.lr]
type = "float"
low = 1e-5
high = 1e-1
log = true
[params.layers]
type = "int"
low = 1
high = 8
[params.opt]
choices = ["adam", "sgd"]
[trial]
command = ["true"]
"#
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (trials, runs) = if full { (1000u32, 7usize) } else { (20, 1) };
    // parallel = 1 is Optuna's sequential optimize(); parallel = 8 shows group commit, where
    // one transaction records the results and the starts of all trials of a turn.
    if full {
        let (q1, median, q3) = flush_ms(300);
        println!(
            "disk flush (4 KiB pwrite + fdatasync, the floor of one durable commit): median {median:.3} ms \
             [q1 {q1:.3}, q3 {q3:.3}]"
        );
    }
    for parallel in [1, 8] {
        let (wall, cpu) = measure(trials, runs, parallel);
        if !full {
            println!("overhead smoke run: {trials} trials recorded (parallel {parallel})");
            continue;
        }
        println!(
            "overhead: {trials} trials, parallel {parallel}, random sampler, SQLite WAL synchronous=FULL: \
             median {:.3} ms/trial (min {:.3}, max {:.3}, {runs} runs); CPU median {:.3} ms/trial; \
             Optuna 5.0 SQLite baseline 8.6 ms/trial -> {:.1}x faster",
            wall[runs / 2],
            wall[0],
            wall[runs - 1],
            cpu[runs / 2],
            8.6 / wall[runs / 2]
        );
    }
}

/// Quartiles of the time of one 4 KiB overwrite plus fdatasync in a fresh file beside the
/// benchmark's databases.
fn flush_ms(samples: usize) -> (f64, f64, f64) {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("flush.probe")).unwrap();
    let page = [7u8; 4096];
    let mut ms: Vec<f64> = (0..samples)
        .map(|i| {
            let start = Instant::now();
            file.write_at(&page, (i % 16) as u64 * 4096).unwrap();
            file.sync_data().unwrap();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[samples / 4], ms[samples / 2], ms[3 * samples / 4])
}

/// Sorted wall and CPU milliseconds per trial over `runs` fresh databases.
fn measure(trials: u32, runs: usize, parallel: u32) -> (Vec<f64>, Vec<f64>) {
    let text = study_text(trials).replace("[params.lr]", &format!("parallel = {parallel}\n[params.lr]"));
    let config = sweep::study::parse(&text, Path::new(".")).expect("valid study");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bench.db");
        let cpu_before = cpu_seconds();
        let ms = rt.block_on(async {
            let mut store = sweep::store::Store::open(&db).await.unwrap();
            let mut executor = InProcessExecutor::new(|p| {
                let lr = p["lr"].as_f64().unwrap_or(0.0);
                Metrics::from([("loss".to_string(), lr)])
            });
            let options =
                RunOptions { progress: false, shutdown: CancellationToken::new(), db: db.clone(), sampler: None };
            let start = Instant::now();
            let summary = run(&config, &mut store, &mut executor, options).await.unwrap();
            let elapsed = start.elapsed();
            assert_eq!(summary.finished, trials as usize);
            // Nothing lost: every trial is in the file, complete.
            let stored = store.trials(summary.study.id, &["loss"]).await.unwrap();
            assert_eq!(stored.iter().filter(|t| t.value.is_some()).count(), trials as usize);
            elapsed.as_secs_f64() * 1000.0 / trials as f64
        });
        wall.push(ms);
        cpu.push((cpu_seconds() - cpu_before) * 1000.0 / trials as f64);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (wall, cpu)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
