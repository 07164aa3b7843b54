//! Built-in workers, run as `sweep worker NAME`. They speak the protocol in `protocol.rs`
//! like any user script would.

mod adamw;
mod attention;
pub mod checkpoint;
pub mod common;
pub mod data;
pub mod finetune;
mod fused;
pub mod hparams;
pub mod model;
pub mod pretrain;
mod shared;
pub mod stop;
pub mod testfn;
#[cfg(test)]
mod tests;
pub mod tokenizer;
pub mod train;

use crate::protocol::{Decision, Hello, Reply};
use crate::space::Params;
use std::io::{BufRead, IsTerminal};

/// The worker's side of the protocol over stdin/stdout.
pub struct Channel {
    stdin: Option<std::io::StdinLock<'static>>,
    /// The trial's checkpoint folder and recorded resume step, from the hello line or the
    /// environment (None when run by hand).
    pub checkpoint_dir: Option<std::path::PathBuf>,
    pub resume_step: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no params: expected a JSON line on stdin or SWEEP_PARAMS in the environment")]
    NoParams,
    #[error("malformed params: {0}")]
    BadParams(String),
}

impl Channel {
    /// Reads the params: the coordinator's hello line on stdin, else `SWEEP_PARAMS`.
    pub fn open() -> Result<(Channel, Params), WorkerError> {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        let mut lock = (!interactive).then(|| stdin.lock());
        let mut first = String::new();
        if let Some(l) = lock.as_mut() {
            let _ = l.read_line(&mut first);
        }
        use crate::protocol::env;
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut checkpoint_dir = from_env(env::CHECKPOINT_DIR);
        let mut resume_step = from_env(env::RESUME_STEP).and_then(|s| s.parse::<i64>().ok());
        let params = if !first.trim().is_empty() {
            let hello =
                serde_json::from_str::<Hello>(&first).map_err(|e| WorkerError::BadParams(format!("stdin: {e}")))?;
            checkpoint_dir = hello.checkpoint_dir.or(checkpoint_dir);
            resume_step = hello.resume_step.or(resume_step);
            hello.params
        } else {
            let json = std::env::var(env::PARAMS).map_err(|_| WorkerError::NoParams)?;
            serde_json::from_str(&json).map_err(|e| WorkerError::BadParams(format!("SWEEP_PARAMS: {e}")))?
        };
        let reads_replies = lock.is_some() && !first.trim().is_empty();
        let channel = Channel {
            stdin: lock.filter(|_| reads_replies),
            checkpoint_dir: checkpoint_dir.map(Into::into),
            resume_step: resume_step.and_then(|s| usize::try_from(s).ok()),
        };
        Ok((channel, params))
    }

    /// Prints one report and waits for the coordinator's decision (continue when there is no
    /// coordinator on stdin).
    pub fn report(&mut self, line: &serde_json::Value) -> Decision {
        println!("{line}");
        let Some(stdin) = self.stdin.as_mut() else {
            return Decision::Continue;
        };
        let mut reply = String::new();
        match stdin.read_line(&mut reply) {
            Ok(0) | Err(_) => {
                self.stdin = None;
                Decision::Continue
            }
            Ok(_) => serde_json::from_str::<Reply>(&reply).map(|r| r.decision).unwrap_or(Decision::Continue),
        }
    }

    pub fn finish(&self, line: &serde_json::Value) {
        println!("{line}");
    }
}
