//! The layout of encoded points: which columns belong to which dimension, and how
//! a relaxed point is snapped back to a valid one.

use rand::Rng;

/// One dimension of the search space, as seen by the GP.
///
/// Categoricals are one-hot encoded: `choices` columns, each with its own ARD
/// lengthscale, so the kernel can learn how much each choice matters.
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    /// One column, any value in `[0, 1]`.
    Continuous,
    /// One column restricted to `levels` (sorted, within `[0, 1]`).
    Discrete { levels: Vec<f64> },
    /// `choices` one-hot columns.
    Categorical { choices: usize },
}

impl Dim {
    /// Number of encoded columns.
    pub fn width(&self) -> usize {
        match self {
            Dim::Categorical { choices } => *choices,
            _ => 1,
        }
    }

    /// Number of distinct values, `None` for continuous.
    pub(crate) fn cardinality(&self) -> Option<usize> {
        match self {
            Dim::Continuous => None,
            Dim::Discrete { levels } => Some(levels.len()),
            Dim::Categorical { choices } => Some(*choices),
        }
    }

    /// Writes the `i`-th allowed value into `cols` (this dimension's columns).
    pub(crate) fn set_level(&self, cols: &mut [f64], i: usize) {
        match self {
            Dim::Continuous => {}
            Dim::Discrete { levels } => cols[0] = levels[i],
            Dim::Categorical { .. } => one_hot(cols, i),
        }
    }

    /// Maps a uniform number in `[0, 1)` to a valid value of this dimension.
    pub(crate) fn set_from_uniform(&self, cols: &mut [f64], u: f64) {
        match self.cardinality() {
            None => cols[0] = u,
            Some(k) => self.set_level(cols, ((u * k as f64) as usize).min(k - 1)),
        }
    }

    /// Rounds this dimension's columns to the nearest valid value.
    fn snap_cols(&self, cols: &mut [f64]) {
        match self {
            Dim::Continuous => cols[0] = cols[0].clamp(0.0, 1.0),
            Dim::Discrete { levels } => cols[0] = nearest_level(levels, cols[0]),
            Dim::Categorical { .. } => one_hot(cols, argmax(cols)),
        }
    }
}

/// Total number of encoded columns.
pub fn encoded_width(dims: &[Dim]) -> usize {
    dims.iter().map(Dim::width).sum()
}

/// Column range of each dimension, in order.
pub(crate) fn column_ranges(dims: &[Dim]) -> Vec<std::ops::Range<usize>> {
    let mut start = 0;
    dims.iter()
        .map(|d| {
            let r = start..start + d.width();
            start = r.end;
            r
        })
        .collect()
}

/// Returns the valid point nearest to `x`: continuous columns clamped to `[0, 1]`,
/// discrete columns rounded to their nearest level, categoricals one-hot at their largest column.
pub fn snap(dims: &[Dim], x: &[f64]) -> Vec<f64> {
    let mut out = x.to_vec();
    for (dim, r) in dims.iter().zip(column_ranges(dims)) {
        dim.snap_cols(&mut out[r]);
    }
    out
}

/// A uniformly random valid point.
pub(crate) fn random_point<R: Rng>(dims: &[Dim], rng: &mut R) -> Vec<f64> {
    let mut out = vec![0.0; encoded_width(dims)];
    for (dim, r) in dims.iter().zip(column_ranges(dims)) {
        dim.set_from_uniform(&mut out[r], rng.random::<f64>());
    }
    out
}

fn nearest_level(levels: &[f64], v: f64) -> f64 {
    levels.iter().copied().min_by(|a, b| (a - v).abs().total_cmp(&(b - v).abs())).unwrap_or(v.clamp(0.0, 1.0))
}

fn argmax(cols: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in cols.iter().enumerate() {
        if *v > cols[best] {
            best = i;
        }
    }
    best
}

fn one_hot(cols: &mut [f64], i: usize) {
    cols.iter_mut().for_each(|c| *c = 0.0);
    cols[i] = 1.0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_rounds_levels_and_one_hot() {
        let dims = [Dim::Continuous, Dim::Discrete { levels: vec![0.0, 0.5, 1.0] }, Dim::Categorical { choices: 3 }];
        assert_eq!(encoded_width(&dims), 5);
        let s = snap(&dims, &[1.3, 0.6, 0.2, 0.7, 0.1]);
        assert_eq!(s, vec![1.0, 0.5, 0.0, 1.0, 0.0]);
    }
}
