//! `sweep worker testfn`: evaluates a standard test function at params `x0, x1, ...` and can
//! emit a synthetic learning curve, so the whole loop runs without any training code.

use super::Channel;
use crate::protocol::Decision;
use crate::testfns;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct TestFnArgs {
    /// branin, hartmann6, ackley5, rosenbrock4, levy10 (ackley/rosenbrock/levy take any
    /// dimension); with several objectives zdt1, zdt2 (zdt1:10 for 10 variables), dtlz2, c2dtlz2.
    #[arg(long = "fn")]
    pub function: String,
    /// Intermediate reports before the final value (a learning curve that ends at f(x)).
    #[arg(long, default_value_t = 0)]
    pub steps: u32,
    /// Pause between reports, to look like training.
    #[arg(long, default_value_t = 0)]
    pub sleep_ms: u64,
    /// The metric name to report.
    #[arg(long, default_value = "value")]
    pub metric: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TestFnError {
    #[error(
        "unknown test function `{0}` (known: branin, hartmann6, ackleyN, rosenbrockN, levyN, zdt1, zdt2, dtlz2, c2dtlz2, mixed)"
    )]
    UnknownFunction(String),
    #[error("{function} needs numeric params {expected}; got {got}")]
    MissingParam { function: String, expected: String, got: String },
    #[error(transparent)]
    Channel(#[from] super::WorkerError),
}

pub fn run(args: &TestFnArgs) -> Result<(), TestFnError> {
    if let Some(problem) = crate::mofns::by_name(&args.function) {
        return run_multi(args, &problem);
    }
    let f = testfns::by_name(&args.function).ok_or_else(|| TestFnError::UnknownFunction(args.function.clone()))?;
    let (mut channel, params) = Channel::open()?;
    let x = point(&params, f.dims, f.name)?;
    let value = (f.eval)(&x);
    for step in 1..=args.steps {
        std::thread::sleep(Duration::from_millis(args.sleep_ms));
        let line = json!({ "step": step, &args.metric: curve(value, step, args.steps) });
        if channel.report(&line) == Decision::Stop {
            eprintln!("stopped at step {step} by the coordinator's decision");
            return Ok(());
        }
    }
    channel.finish(&json!({ "final": { &args.metric: value } }));
    Ok(())
}

/// The params `x0 .. x{dims-1}` as a point.
fn point(params: &crate::space::Params, dims: usize, function: &str) -> Result<Vec<f64>, TestFnError> {
    let names: Vec<String> = (0..dims).map(|i| format!("x{i}")).collect();
    let x: Option<Vec<f64>> = names.iter().map(|n| params.get(n).and_then(serde_json::Value::as_f64)).collect();
    x.ok_or_else(|| TestFnError::MissingParam {
        function: function.to_string(),
        expected: names.join(", "),
        got: serde_json::Value::Object(params.clone()).to_string(),
    })
}

/// A multi-objective problem: reports `f1`, `f2` (, `f3`) and, when constrained, `c` (feasible
/// at `c <= 0`), each objective along its own learning curve.
fn run_multi(args: &TestFnArgs, problem: &crate::mofns::MoFn) -> Result<(), TestFnError> {
    let (mut channel, params) = Channel::open()?;
    let x = problem.point(&params).ok_or_else(|| TestFnError::MissingParam {
        function: problem.name.to_string(),
        expected: problem.space().params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        got: serde_json::Value::Object(params.clone()).to_string(),
    })?;
    let (values, constraint) = problem.at(&x);
    let line = |step: Option<u32>| {
        let mut m = serde_json::Map::new();
        for (i, v) in values.iter().enumerate() {
            m.insert(format!("f{}", i + 1), json!(step.map_or(*v, |s| curve(*v, s, args.steps))));
        }
        if let Some(c) = constraint {
            m.insert("c".into(), json!(c));
        }
        m
    };
    for step in 1..=args.steps {
        std::thread::sleep(Duration::from_millis(args.sleep_ms));
        let mut report = line(Some(step));
        report.insert("step".into(), json!(step));
        if channel.report(&serde_json::Value::Object(report)) == Decision::Stop {
            eprintln!("stopped at step {step} by the coordinator's decision");
            return Ok(());
        }
    }
    channel.finish(&json!({ "final": line(None) }));
    Ok(())
}

/// A decaying learning curve that starts well above `end` and reaches it at the last step.
pub fn curve(end: f64, step: u32, steps: u32) -> f64 {
    let t = step as f64 / steps.max(1) as f64;
    let decay = ((-3.0 * t).exp() - (-3.0f64).exp()) / (1.0 - (-3.0f64).exp());
    end + (1.0 + 0.5 * end.abs()) * decay
}

#[cfg(test)]
mod tests {
    #[test]
    fn curve_decreases_to_the_final_value() {
        let values: Vec<f64> = (1..=10).map(|s| super::curve(2.0, s, 10)).collect();
        assert!(values.windows(2).all(|w| w[1] < w[0]));
        assert!((values[9] - 2.0).abs() < 1e-12);
    }
}
