//! `[pruner]` in a study file: what parses, and each mistake with its key path.

use crate::study::{parse, Problem, PrunerConfig, PrunerRule};
use std::path::Path;

fn study(pruner: &str) -> String {
    format!(
        "name = \"p\"\nmetric = \"loss\"\ndirection = \"minimize\"\n[budget]\ntrials = 3\n\
         [params.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[trial]\ncommand = [\"true\"]\n[pruner]\n{pruner}"
    )
}

fn config(pruner: &str) -> PrunerConfig {
    parse(&study(pruner), Path::new(".")).unwrap_or_else(|p| panic!("{p:?}")).pruner
}

fn problems(pruner: &str) -> Vec<(String, String)> {
    match parse(&study(pruner), Path::new(".")) {
        Ok(_) => panic!("expected an error for:\n{pruner}"),
        Err(p) => p.into_iter().map(|Problem { key, message, .. }| (key, message)).collect(),
    }
}

fn has(pruner: &str, key: &str, text: &str) {
    let ps = problems(pruner);
    assert!(ps.iter().any(|(k, m)| k == key && m.contains(text)), "want `{key}`: {text}; got {ps:?}");
}

#[test]
fn every_kind_parses_with_defaults() {
    assert_eq!(config("kind = \"none\"\n"), PrunerConfig::default());
    assert_eq!(
        config("kind = \"median\"\n").rule,
        PrunerRule::Percentile { percentile: 50.0, warmup_steps: 0, min_trials: 5, median: true }
    );
    assert_eq!(
        config("kind = \"percentile\"\npercentile = 25\nwarmup_steps = 3\nmin_trials = 2\n").rule,
        PrunerRule::Percentile { percentile: 25.0, warmup_steps: 3, min_trials: 2, median: false }
    );
    assert_eq!(config("kind = \"asha\"\n").rule, PrunerRule::Asha { min_resource: 1, max_resource: None, eta: 3 });
    let c = config(
        "kind = \"hyperband\"\nmin_resource = 2\nmax_resource = 54\neta = 3\npatience = 4\nlower = 0\nupper = 1e3\n",
    );
    assert_eq!(c.rule, PrunerRule::Hyperband { min_resource: 2, max_resource: 54, eta: 3 });
    assert_eq!((c.patience, c.lower, c.upper), (Some(4), Some(0.0), Some(1000.0)));
    // Bounds alone, with no rule, are a threshold pruner.
    assert_eq!(config("upper = 10\n").upper, Some(10.0));
    // Pause instead of stop, for the rung rules.
    assert!(config("kind = \"asha\"\nmode = \"pause\"\n").pause);
    assert!(!config("kind = \"hyperband\"\nmax_resource = 9\nmode = \"stop\"\n").pause);
    // The learning-curve veto, around any rule.
    assert_eq!(config("kind = \"median\"\nmin_promise = 0.05\n").min_promise, Some(0.05));
    assert_eq!(config("kind = \"asha\"\n").min_promise, None);
}

#[test]
fn mistakes_name_their_key() {
    has("kind = \"median\"\neta = 3\n", "pruner.eta", "not an option of kind = \"median\"");
    has("kind = \"asha\"\npercentile = 3\n", "pruner.percentile", "not an option of kind = \"asha\"");
    has("kind = \"median\"\npercentile = 30\n", "pruner.percentile", "not an option");
    has("kind = \"percentile\"\n", "pruner.percentile", "is required");
    has("kind = \"percentile\"\npercentile = 120\n", "pruner.percentile", "between 0 and 100");
    has("kind = \"median\"\nwarmup_steps = -1\n", "pruner.warmup_steps", "at least 0");
    has("kind = \"median\"\nmin_trials = 0\n", "pruner.min_trials", "at least 1");
    has("kind = \"asha\"\neta = 1\n", "pruner.eta", "at least 2");
    has("kind = \"asha\"\nmin_resource = 0\n", "pruner.min_resource", "at least 1");
    has(
        "kind = \"asha\"\nmin_resource = 9\nmax_resource = 9\n",
        "pruner.max_resource",
        "greater than min_resource (9)",
    );
    has("kind = \"hyperband\"\n", "pruner.max_resource", "is required");
    has("kind = \"hyperband\"\nmax_resource = 1000000000000\neta = 2\n", "pruner.max_resource", "too many brackets");
    has("patience = 3\n", "pruner.patience", "needs a rule");
    has("kind = \"median\"\nmode = \"pause\"\n", "pruner.mode", "not an option of kind = \"median\"");
    has("kind = \"asha\"\nmode = \"freeze\"\n", "pruner.mode", "must be \"stop\" or \"pause\"");
    has("kind = \"asha\"\npatience = 0\n", "pruner.patience", "at least 1");
    has("min_promise = 0.1\n", "pruner.min_promise", "needs a rule");
    has("kind = \"asha\"\nmin_promise = 1.0\n", "pruner.min_promise", "between 0 and 1");
    has("kind = \"asha\"\nmin_promise = 0\n", "pruner.min_promise", "got 0");
    has("kind = \"asha\"\nlower = 2\nupper = 1\n", "pruner.lower", "less than upper");
    has("kind = \"asha\"\nlower = nan\n", "pruner.lower", "finite");
    has("kind = \"sometimes\"\n", "pruner.kind", "unknown variant");
    has("kind = \"asha\"\nrungs = 3\n", "pruner.rungs", "unknown field");
}
