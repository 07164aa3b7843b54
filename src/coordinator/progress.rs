//! The terminal progress bar: trials done of the budget, running, best so far, elapsed.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

pub struct Progress {
    bar: ProgressBar,
    visible: bool,
}

impl Progress {
    /// A bar on stderr when `visible` (hidden in tests and pipes).
    pub fn new(budget: u32, visible: bool) -> Progress {
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(budget as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} trials  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(500));
        Progress { bar, visible }
    }

    pub fn update(&self, done: usize, running: usize, best: Option<f64>) {
        self.bar.set_position(done as u64);
        let best = best.map_or("-".to_string(), |b| format!("{b:.6}"));
        self.bar.set_message(format!("running {running}  best {best}"));
    }

    /// Prints a line above the bar, or on stderr when there is no bar.
    pub fn println(&self, line: impl AsRef<str>) {
        if self.visible {
            self.bar.println(line);
        } else {
            eprintln!("{}", line.as_ref());
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
