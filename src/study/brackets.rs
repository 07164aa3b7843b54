//! Hyperband's bracket sizes: how many trials each bracket takes per cycle. Validation needs
//! them to refuse a config whose cycle is too large, and the Hyperband pruner to schedule
//! trials; they live here, below both, so config never reaches up into the pruners.

/// Beyond this many trials per cycle the config is refused (validate says why).
pub const MAX_TOTAL_BUDGET: u64 = 1_000_000;

/// The largest `s` with `min_resource * eta^s <= max_resource`.
fn s_max(min_resource: i64, max_resource: i64, eta: u32) -> u32 {
    let mut s = 0;
    let mut r = min_resource.max(1) as i128;
    while r * eta as i128 <= max_resource as i128 {
        r *= eta as i128;
        s += 1;
    }
    s
}

/// Trials per cycle for each bracket, bracket 0 (most halvings) first.
pub fn bracket_budgets(min_resource: i64, max_resource: i64, eta: u32) -> Vec<u64> {
    let s_max = s_max(min_resource, max_resource, eta);
    (0..=s_max)
        .map(|b| {
            let s = s_max - b;
            let n = (s_max as f64 + 1.0) * (eta as f64).powi(s as i32) / (s as f64 + 1.0);
            // Round off float noise before the ceiling (e.g. 27.000000000000004).
            (n - 1e-9).ceil().min(u64::MAX as f64 / 2.0) as u64
        })
        .collect()
}

/// The trials of one cycle over all brackets.
pub fn total_budget(min_resource: i64, max_resource: i64, eta: u32) -> u64 {
    bracket_budgets(min_resource, max_resource, eta).iter().fold(0u64, |a, b| a.saturating_add(*b))
}
