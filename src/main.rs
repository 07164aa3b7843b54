//! The `sweep` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use sweep::coordinator::{self, CoordinatorError, RunEnd, RunOptions};
use sweep::executor::{Executor, LocalExecutor, SlurmExecutor};
use sweep::export::{self, Format};
use sweep::lock::LockError;
use sweep::server::Server;
use sweep::store::{Reader, Store, StoreError, StudyRecord};
use sweep::study::{self, ExecutorConfig, StudyFileError};
use sweep::trial::{History, Trial, TrialState};
use sweep::worker::finetune::{self, FinetuneArgs};
use sweep::worker::pretrain::{self, PretrainArgs};
use sweep::worker::testfn::{self, TestFnArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "sweep",
    version,
    about = "Hyperparameter optimization for training runs",
    after_help = "Exit codes: 0 done (or a study timeout reached: run again to continue), 1 runtime error, \
                  2 bad input (a study file, a database that is not sweep's or is in use by another \
                  coordinator, an unknown study), 130 interrupted (Ctrl-C or SIGTERM: run again to resume)."
)]
struct Cli {
    /// The SQLite database holding the studies.
    #[arg(long, global = true, env = sweep::protocol::env::DB, default_value = "sweep.db")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a study (or resume it) until its budget of finished trials is spent.
    Run {
        /// The study file (TOML).
        study: PathBuf,
        /// Do not draw the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Also serve the web API while the study runs (default address 127.0.0.1:8080).
        #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_ADDR)]
        serve: Option<SocketAddr>,
        /// Token every web request must carry (required beyond loopback).
        #[arg(long, env = "SWEEP_TOKEN")]
        token: Option<String>,
    },
    /// Serve the web API over a database (also one a sweep is writing).
    Serve {
        #[arg(default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Token every request must carry (required beyond loopback).
        #[arg(long, env = "SWEEP_TOKEN")]
        token: Option<String>,
    },
    /// List the studies in the database.
    Status,
    /// Print a study's trials.
    Trials { name: String },
    /// Print a study's best trial.
    Best {
        name: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write all trials with params, final metrics and intermediate reports.
    Export {
        name: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// File to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// A metric's mean and spread per value of one param, one line per value of others (an
    /// ablation's table; the page's comparison view shows the same).
    Compare {
        name: String,
        /// The param whose values are compared (the page's x axis).
        #[arg(long)]
        x: String,
        /// Params whose values make separate lines (comma-separated).
        #[arg(long, value_delimiter = ',')]
        group: Vec<String>,
        /// A final metric to compare instead of the objective (e.g. test_acc).
        #[arg(long)]
        metric: Option<String>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a database to a new file, safe while a coordinator writes to it; the copy holds
    /// every trial finished before the copy began, in one file.
    Backup {
        /// The database to copy (e.g. sweep.db).
        src: PathBuf,
        /// The new file to write; it must not exist.
        dest: PathBuf,
    },
    /// Run a built-in worker (the coordinator starts these).
    #[command(subcommand)]
    Worker(Worker),
    /// Run one trial inside a Slurm job (the coordinator submits this; not for direct use).
    #[command(hide = true)]
    Job {
        /// The job spec the coordinator wrote (job.json in the trial's folder).
        spec: PathBuf,
    },
}

#[derive(Subcommand)]
enum Worker {
    /// Evaluate a standard test function at params x0, x1, ...
    Testfn(TestFnArgs),
    /// Pretrain a transformer encoder with masked-LM loss; reports val_loss and val_ppl.
    Pretrain(PretrainArgs),
    /// Fine-tune an encoder for classification; reports val_loss and val_acc.
    Finetune(FinetuneArgs),
}

const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Exit code for bad input: a study file, an incompatible resume, a database that is not
/// sweep's or that another coordinator holds, an unknown study.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SWEEP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker(Worker::Testfn(args)) => {
            testfn::run(&args).map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::from)
        }
        Command::Worker(Worker::Pretrain(args)) => {
            pretrain::run(&args).map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::from)
        }
        Command::Worker(Worker::Finetune(args)) => {
            finetune::run(&args).map(|()| ExitCode::SUCCESS).map_err(anyhow::Error::from)
        }
        Command::Job { spec } => runtime().and_then(|rt| {
            let code = rt.block_on(sweep::executor::slurm::relay::run(&spec))?;
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }),
        command => runtime().and_then(|rt| rt.block_on(dispatch(command, &cli.db))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(if is_bad_input(&e) { EXIT_BAD_INPUT } else { 1 })
        }
    }
}

/// The error and its causes on one line, each said once: many errors quote their cause in
/// their own message already.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Whether an error is the user's input to fix rather than something that went wrong.
fn is_bad_input(e: &anyhow::Error) -> bool {
    let store = |e: &StoreError| {
        matches!(
            e,
            StoreError::Missing(_)
                | StoreError::NotSweep(_)
                | StoreError::NotSqlite(_)
                | StoreError::OldSchema { .. }
                | StoreError::BackupExists(_)
        )
    };
    e.downcast_ref::<StudyFileError>().is_some()
        || e.downcast_ref::<UnknownStudy>().is_some()
        || e.downcast_ref::<sweep::compare::CompareError>().is_some()
        || matches!(e.downcast_ref::<LockError>(), Some(LockError::Busy { .. }))
        || e.downcast_ref::<StoreError>().is_some_and(store)
        || match e.downcast_ref::<CoordinatorError>() {
            Some(CoordinatorError::Incompatible { .. }) => true,
            Some(CoordinatorError::Store(s)) => store(s),
            None => false,
        }
}

/// A study name the database does not hold.
#[derive(Debug, thiserror::Error)]
#[error("no study named `{name}` in {db} (studies: {known})")]
struct UnknownStudy {
    name: String,
    db: String,
    known: String,
}

/// One thread: worker processes are tied to the thread that spawned them (PR_SET_PDEATHSIG),
/// and the coordinator is I/O bound.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

async fn dispatch(command: Command, db: &Path) -> Result<ExitCode> {
    match command {
        Command::Run { study, no_progress, serve, token } => {
            let web = serve.map(|addr| (addr, token));
            run(&study, db, !no_progress && std::io::stderr().is_terminal(), web).await
        }
        Command::Serve { addr, token } => reading(db, serve(db, addr, token)).await,
        Command::Status => reading(db, status(db)).await,
        Command::Trials { name } => reading(db, trials(db, &name)).await,
        Command::Best { name, json } => reading(db, best(db, &name, json)).await,
        Command::Export { name, format, output } => reading(db, export(db, &name, format, output.as_deref())).await,
        Command::Compare { name, x, group, metric, json } => {
            reading(db, compare(db, &name, sweep::compare::Request { x, group, metric }, json)).await
        }
        Command::Backup { src, dest } => {
            Store::backup(&src, &dest).await?;
            println!("backed up {} to {}", src.display(), dest.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(_) | Command::Job { .. } => unreachable!("run without dispatch"),
    }
}

/// Reads a database with `read`, then folds its log back into the file if no coordinator holds
/// it, so a database last touched by a killed coordinator is one file again after a look.
async fn reading<T>(db: &Path, read: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let result = read.await;
    if db.exists() && sweep::lock::holder(db).is_none() {
        Store::checkpoint(db).await;
    }
    result
}

async fn run(path: &Path, db: &Path, progress: bool, web: Option<(SocketAddr, Option<String>)>) -> Result<ExitCode> {
    // Validate before touching the database.
    let config = study::load(path)?;
    let _lock = sweep::lock::lock_database(db)?;
    let mut store = Store::open(db).await?;
    // Whatever happens from here, the log is folded back and the database closed.
    let result = run_open(&config, &mut store, db, progress, web).await;
    let closed = store.close().await;
    let code = result?;
    closed?;
    Ok(code)
}

async fn run_open(
    config: &study::StudyConfig,
    store: &mut Store,
    db: &Path,
    progress: bool,
    web: Option<(SocketAddr, Option<String>)>,
) -> Result<ExitCode> {
    let served = web.is_some();
    if let Some((addr, token)) = web {
        let server = Server::bind(addr, token, Reader::open(db).await?).await?;
        eprintln!("serving http://{}/", server.local_addr());
        tokio::spawn(async move {
            if let Err(e) = server.run().await {
                eprintln!("web server stopped: {e}");
            }
        });
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    let options = RunOptions { progress, shutdown, db: db.to_path_buf(), sampler: None };
    let mut executor: Box<dyn Executor> = match &config.executor {
        ExecutorConfig::Local => Box::new(LocalExecutor),
        ExecutorConfig::Slurm(slurm) => {
            let dir = sweep::layout::study_dir(&sweep::layout::runs_dir(&config.trial.workdir), &config.name);
            let executor = SlurmExecutor::start(slurm, &dir).await?;
            eprintln!("submitting trials to Slurm; jobs report to {}", executor.url());
            Box::new(executor)
        }
    };
    let summary = coordinator::run(config, store, executor.as_mut(), options).await?;
    let verb = if summary.resumed { "resumed" } else { "ran" };
    println!("study `{}` ({verb}): {}/{} trials finished", config.name, summary.finished, summary.budget);
    match (&summary.pareto, &summary.best) {
        (Some((size, feasible)), _) => {
            let what = if *feasible { "Pareto set" } else { "none feasible; least violating" };
            println!("{what}: {size} trial(s); `sweep best {}` lists them", config.name);
        }
        (None, Some(t)) => println!(
            "best: trial {} {} = {} with {}",
            t.number,
            config.objective.metric,
            fmt_value(t.value),
            serde_json::Value::Object(t.params.clone())
        ),
        (None, None) => println!("best: none yet"),
    }
    if served {
        eprintln!("the page stops with this run; `sweep --db {} serve` keeps it up", db.display());
    }
    Ok(match summary.end {
        RunEnd::Complete => ExitCode::SUCCESS,
        RunEnd::TimedOut => {
            println!("study timeout reached; run the same command again to continue");
            ExitCode::SUCCESS
        }
        RunEnd::Interrupted => {
            println!("interrupted; run the same command again to resume");
            ExitCode::from(EXIT_INTERRUPTED)
        }
    })
}

/// First Ctrl-C or SIGTERM: stop gracefully. Second: leave at once (workers die with us, and
/// the next run records them as interrupted).
async fn forward_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    for round in 0.. {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        if round > 0 {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
        eprintln!("stopping: workers are told to stop (press Ctrl-C again to quit at once)");
        shutdown.cancel();
    }
}

/// Serves until Ctrl-C or SIGTERM, its usual end (exit 0).
async fn serve(db: &Path, addr: SocketAddr, token: Option<String>) -> Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let server = Server::bind(addr, token, Reader::open(db).await?).await?;
    println!("serving {} on http://{}/", db.display(), server.local_addr());
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    tokio::select! {
        served = server.run() => served?,
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_study(db: &Path, name: &str) -> Result<(Store, StudyRecord)> {
    let mut store = Store::open_read_only(db).await?;
    let study = store.find_study(name).await?;
    let study = match study {
        Some(s) => s,
        None => {
            let names: Vec<String> = store.studies().await?.into_iter().map(|s| s.name).collect();
            let known = if names.is_empty() { "none".into() } else { names.join(", ") };
            return Err(UnknownStudy { name: name.to_string(), db: db.display().to_string(), known }.into());
        }
    };
    Ok((store, study))
}

async fn history_of(store: &mut Store, study: &StudyRecord) -> Result<History> {
    let goals = study.fingerprint.goals();
    let trials = store.trials(study.id, &goals.objective_metrics()).await?;
    Ok(History::with_goals(goals, trials))
}

async fn status(db: &Path) -> Result<ExitCode> {
    let mut store = Store::open_read_only(db).await?;
    let studies = store.studies().await?;
    if studies.is_empty() {
        println!("no studies in {}", db.display());
    }
    println!(
        "{:<24} {:<9} {:>12} {:>8} {:>7} {:>16} {:>10}",
        "study", "state", "finished", "running", "failed", "best", "files"
    );
    for study in &studies {
        let h = history_of(&mut store, study).await?;
        let best = best_summary(&h);
        let finished = format!("{}/{}", h.counted(), study.budget);
        // What its trials' folders hold (models, checkpoints) under the runs folder.
        let files = study.runs_dir.as_ref().map_or("-".into(), |runs| {
            fmt_bytes(sweep::layout::disk_usage(&sweep::layout::study_dir(runs, &study.name)))
        });
        println!(
            "{:<24} {:<9} {:>12} {:>8} {:>7} {:>16} {:>10}",
            study.name,
            study.state.as_str(),
            finished,
            h.count(TrialState::Running),
            h.count(TrialState::Failed),
            best,
            files
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The best value; with constraints the best feasible one; with several objectives the size
/// of the Pareto set and its hypervolume (see `sweep best`).
fn best_summary(h: &History) -> String {
    let goals = &h.goals;
    if goals.is_plain() {
        return h.best().map(|t| fmt_value(t.value)).unwrap_or_else(|| "-".into());
    }
    let front = sweep::front::front(goals, &h.trials);
    match (front.trials.first(), front.feasible, goals.objectives.len()) {
        (None, _, _) => "-".into(),
        (Some(_), false, _) => "none feasible".into(),
        (Some(t), true, 1) => fmt_value(t.value),
        (Some(_), true, _) => format!("{} hv {:.4}", front.trials.len(), front.hypervolume),
    }
}

/// 1536 -> "1.5 KiB".
fn fmt_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < units.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", units[unit])
    }
}

async fn trials(db: &Path, name: &str) -> Result<ExitCode> {
    let (mut store, study) = open_study(db, name).await?;
    let h = history_of(&mut store, &study).await?;
    // A column per objective after the first, whose value is the trial's.
    let more: Vec<String> = h.goals.objectives.iter().skip(1).map(|o| o.metric.clone()).collect();
    let more_header: String = more.iter().map(|m| format!(" {m:>14}")).collect();
    println!(
        "{:>6} {:<11} {:>7} {:<12} {:>14}{more_header} {:>8}  {:<40} reason",
        "number", "state", "attempt", "re-runs", study.metric, "step", "params"
    );
    for t in &h.trials {
        // `3 @300`: takes trial 3's place, resumed from its checkpoint at step 300.
        let rerun = match (t.rerun_of, t.resumed_from) {
            (Some(of), Some(at)) => format!("{of} @{at}"),
            (Some(of), None) => of.to_string(),
            (None, _) => "-".into(),
        };
        let more_values: String = more
            .iter()
            .map(|m| format!(" {:>14}", fmt_value(t.metrics.as_ref().and_then(|x| x.get(m)).copied())))
            .collect();
        println!(
            "{:>6} {:<11} {:>7} {:<12} {:>14}{more_values} {:>8}  {:<40} {}",
            t.number,
            t.state.as_str(),
            t.attempt,
            rerun,
            fmt_value(t.value),
            t.last_step.map_or("-".into(), |s| s.to_string()),
            serde_json::Value::Object(t.params.clone()).to_string(),
            t.reason.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn best(db: &Path, name: &str, json: bool) -> Result<ExitCode> {
    let (mut store, study) = open_study(db, name).await?;
    let h = history_of(&mut store, &study).await?;
    if !h.goals.is_plain() {
        return best_set(name, &h, json);
    }
    let Some(t) = h.best() else {
        anyhow::bail!("study `{name}` has no completed trial yet");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&best_json(t))?);
    } else {
        println!("trial {}: {} = {}", t.number, study.metric, fmt_value(t.value));
        for (k, v) in &t.params {
            println!("  {k} = {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sweep best` of a study with several objectives or constraints: its Pareto set, one entry
/// per trial.
fn best_set(name: &str, h: &History, json: bool) -> Result<ExitCode> {
    let goals = &h.goals;
    let front = sweep::front::front(goals, &h.trials);
    if front.trials.is_empty() {
        anyhow::bail!("study `{name}` has no completed trial with every objective yet");
    }
    if json {
        let trials: Vec<serde_json::Value> = front.trials.iter().map(|t| best_json(t)).collect();
        let answer = serde_json::json!({
            "feasible": front.feasible,
            "hypervolume": front.hypervolume,
            "reference": front.reference,
            "trials": trials,
        });
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let constraints: Vec<String> = goals.constraints.iter().map(ToString::to_string).collect();
    if !front.feasible {
        println!("no trial meets the constraints ({}); the least violating:", constraints.join(", "));
    } else if goals.objectives.len() > 1 {
        let reference: Vec<String> = front.reference.iter().map(|v| format!("{v:.6}")).collect();
        println!(
            "Pareto set: {} trial(s); hypervolume {:.6} (reference {})",
            front.trials.len(),
            front.hypervolume,
            reference.join(", ")
        );
    }
    for t in &front.trials {
        let values: Vec<String> = goals
            .objectives
            .iter()
            .map(|o| {
                format!("{} = {}", o.metric, fmt_value(t.metrics.as_ref().and_then(|m| m.get(&o.metric)).copied()))
            })
            .collect();
        println!("trial {}: {}", t.number, values.join(", "));
        for (k, v) in &t.params {
            println!("  {k} = {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn compare(db: &Path, name: &str, request: sweep::compare::Request, json: bool) -> Result<ExitCode> {
    let (mut store, study) = open_study(db, name).await?;
    let h = history_of(&mut store, &study).await?;
    let outcomes: Vec<sweep::compare::Outcome> = h
        .completed()
        .map(|(t, value)| sweep::compare::Outcome {
            params: t.params.clone(),
            value,
            metrics: t.metrics.clone().unwrap_or_default(),
        })
        .collect();
    let comparison = sweep::compare::compare(&outcomes, &study.param_names(), &study.metric, &request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        print!("{}", comparison.table());
    }
    Ok(ExitCode::SUCCESS)
}

fn best_json(t: &Trial) -> serde_json::Value {
    serde_json::json!({ "number": t.number, "value": t.value, "params": t.params, "metrics": t.metrics })
}

async fn export(db: &Path, name: &str, format: Format, output: Option<&Path>) -> Result<ExitCode> {
    let (mut store, study) = open_study(db, name).await?;
    let goals = study.fingerprint.goals();
    let trials = store.trials(study.id, &goals.objective_metrics()).await?;
    let reports = store.reports(study.id).await?;
    match output {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
            );
            export::write(&mut file, format, &goals, &trials, &reports)?;
            file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => export::write(&mut std::io::stdout().lock(), format, &goals, &trials, &reports)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Six decimals, or a whole number as it is (a parameter count).
fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 && v.abs() >= 1e4 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.6}"),
    }
}
