//! Runs each trial as a child process on this machine.
//!
//! Every worker gets its own process group, so a stop reaches whatever it started, and is
//! killed by the kernel if the coordinator dies (PR_SET_PDEATHSIG), so no worker outlives a
//! `kill -9` of the coordinator.

use super::lines::{next_line, Tail};
use super::{Executor, Exit, Launch, Outcome, WorkerEvent};
use crate::protocol::{parse_line, Decision, Reply, WorkerLine};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

#[derive(Default)]
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn launch(&mut self, launch: Launch, events: &mpsc::UnboundedSender<WorkerEvent>) {
        let events = events.clone();
        tokio::spawn(async move {
            let trial = launch.trial;
            let outcome = match spawn(&launch) {
                Ok(child) => supervise(child, &launch, &events).await,
                Err(e) => Outcome {
                    exit: Exit::SpawnFailed(format!("cannot start `{}`: {e}", launch.argv.join(" "))),
                    ..Outcome::default()
                },
            };
            let _ = events.send(WorkerEvent::Done { trial, outcome });
        });
    }
}

fn spawn(launch: &Launch) -> std::io::Result<Child> {
    // The program itself may be a placeholder of a parameter that is inactive for this trial.
    let Some((program, args)) = launch.argv.split_first() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the command is empty for these params"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&launch.workdir)
        .envs(&launch.env)
        .env("CUDA_VISIBLE_DEVICES", launch.device.as_deref().unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The coordinator may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Feeds the worker its params and decisions, reads its reports, enforces timeout and stop.
async fn supervise(mut child: Child, launch: &Launch, events: &mpsc::UnboundedSender<WorkerEvent>) -> Outcome {
    let pgid = child.id().unwrap_or(0) as libc::pid_t;
    let exited = Arc::new(AtomicBool::new(false));
    let stdin = stdin_writer(child.stdin.take().expect("piped stdin"));
    let hello = serde_json::to_string(&launch.hello).expect("hello serializes");
    let _ = stdin.send(hello);
    let stderr_tail = tokio::spawn(collect_tail(child.stderr.take().expect("piped stderr")));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));

    let deadline = launch.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut forced: Option<Exit> = None;
    let mut final_metrics = None;
    let mut status = None;
    let mut stdout_open = true;
    while stdout_open || status.is_none() {
        tokio::select! {
            line = next_line(&mut stdout), if stdout_open => match line {
                Ok(Some(line)) => match parse_line(&line) {
                    WorkerLine::Report { step, metrics, checkpoint } => {
                        let (reply, decision) = oneshot::channel();
                        let event = WorkerEvent::Report { trial: launch.trial, step, metrics, checkpoint, reply };
                        let decision = match events.send(event) {
                            Ok(()) => decision.await.unwrap_or(Decision::Continue),
                            Err(_) => Decision::Continue,
                        };
                        let _ = stdin.send(serde_json::to_string(&Reply { decision }).expect("reply serializes"));
                    }
                    WorkerLine::Final(m) => final_metrics = Some(m),
                    WorkerLine::Log => {}
                },
                Ok(None) | Err(_) => stdout_open = false,
            },
            s = child.wait(), if status.is_none() => {
                exited.store(true, Ordering::SeqCst);
                status = Some(s);
                // Whatever the worker left behind (a grandchild holding stdout) goes too.
                signal_group(pgid, libc::SIGKILL);
            },
            _ = sleep_until(deadline), if forced.is_none() && status.is_none() => {
                forced = Some(Exit::TimedOut(launch.timeout.unwrap_or_default()));
                tokio::spawn(terminate(pgid, Duration::ZERO, launch.grace, exited.clone()));
            },
            _ = launch.cancel.cancelled(), if forced.is_none() && status.is_none() => {
                forced = Some(Exit::Stopped);
                let _ = stdin.send(serde_json::to_string(&Reply { decision: Decision::Stop }).expect("reply serializes"));
                tokio::spawn(terminate(pgid, launch.grace, launch.grace, exited.clone()));
            },
        }
    }
    drop(stdin);
    let exit = match (forced, status) {
        (Some(f), _) => f,
        (None, Some(Ok(s))) => exit_of(s),
        (None, Some(Err(e))) => Exit::SpawnFailed(format!("lost track of the worker: {e}")),
        (None, None) => unreachable!("loop ends only once the worker exited"),
    };
    Outcome { exit, final_metrics, stderr_tail: stderr_tail.await.unwrap_or_default() }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Exit::Success,
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Code(-1),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// After `first`, SIGTERM the worker's group; after `grace` more, SIGKILL it.
async fn terminate(pgid: libc::pid_t, first: Duration, grace: Duration, exited: Arc<AtomicBool>) {
    tokio::time::sleep(first).await;
    if exited.load(Ordering::SeqCst) {
        return;
    }
    signal_group(pgid, libc::SIGTERM);
    tokio::time::sleep(grace).await;
    if !exited.load(Ordering::SeqCst) {
        signal_group(pgid, libc::SIGKILL);
    }
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 0 {
        // SAFETY: plain syscall; a group that is already gone just returns ESRCH.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Writes lines to the worker's stdin in order; a worker that never reads or closed stdin
/// costs nothing but the queued lines.
fn stdin_writer(mut stdin: tokio::process::ChildStdin) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    tx
}

async fn collect_tail(stderr: tokio::process::ChildStderr) -> String {
    let mut reader = BufReader::new(stderr);
    let mut tail = Tail::new();
    while let Ok(Some(line)) = next_line(&mut reader).await {
        tail.push(line);
    }
    tail.text()
}
