//! Pareto dominance and hypervolume over objective vectors, every objective minimized (a
//! maximized one is negated before it gets here). Pure functions of numbers: the study's front
//! (`front.rs`), the samplers and the pruners build on them.

/// Whether `a` is at least as good as `b` in every objective and better in one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        better |= x < y;
    }
    better
}

/// The points no other point dominates, as indices in input order. Equal points do not
/// dominate each other: duplicates are all on the front. Points with a non-finite value are
/// never on it.
pub fn nondominated(points: &[Vec<f64>]) -> Vec<usize> {
    let finite: Vec<usize> = (0..points.len()).filter(|&i| points[i].iter().all(|v| v.is_finite())).collect();
    finite.iter().copied().filter(|&i| !finite.iter().any(|&j| dominates(&points[j], &points[i]))).collect()
}

/// Non-dominated sorting: the first front, then the front of what is left, and so on (points
/// with a non-finite value form a last front of their own).
pub fn fronts(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let mut left: Vec<usize> = (0..points.len()).collect();
    let mut out = Vec::new();
    loop {
        let sub: Vec<Vec<f64>> = left.iter().map(|&i| points[i].clone()).collect();
        let front: Vec<usize> = nondominated(&sub).into_iter().map(|k| left[k]).collect();
        if front.is_empty() {
            break;
        }
        left.retain(|i| !front.contains(i));
        out.push(front);
    }
    if !left.is_empty() {
        out.push(left);
    }
    out
}

/// The volume of objective space dominated by `points` and bounded by `reference` (a point
/// worse than the front in every objective). Points not strictly better than the reference in
/// every objective add nothing. Exact, by slicing along the last objective down to a sweep in
/// two dimensions: O(n log n) for two objectives, O(n² log n) for three.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&[f64]> = points
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.len() == reference.len() && p.iter().zip(reference).all(|(x, r)| x.is_finite() && x < r))
        .collect();
    volume(&inside, reference)
}

fn volume(points: &[&[f64]], reference: &[f64]) -> f64 {
    let d = reference.len();
    if points.is_empty() || d == 0 {
        return 0.0;
    }
    if d == 1 {
        return points.iter().map(|p| reference[0] - p[0]).fold(0.0, f64::max);
    }
    if d == 2 {
        let mut sorted: Vec<(f64, f64)> = points.iter().map(|p| (p[0], p[1])).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let (mut area, mut floor) = (0.0, reference[1]);
        for (x, y) in sorted {
            if y < floor {
                area += (reference[0] - x) * (floor - y);
                floor = y;
            }
        }
        return area;
    }
    // Slices between successive values of the last objective: each is the (d-1)-volume of the
    // points at or below the slice's bottom, times its height.
    let last = d - 1;
    let mut sorted: Vec<&[f64]> = points.to_vec();
    sorted.sort_by(|a, b| a[last].total_cmp(&b[last]));
    let mut total = 0.0;
    for (k, p) in sorted.iter().enumerate() {
        let top = sorted.get(k + 1).map_or(reference[last], |q| q[last]);
        if top > p[last] {
            let below: Vec<&[f64]> = sorted[..=k].iter().map(|q| &q[..last]).collect();
            total += volume(&below, &reference[..last]) * (top - p[last]);
        }
    }
    total
}

/// `points` from most to least promising, for promoting several objectives at a rung (MO-ASHA,
/// Schmucker et al. 2021): front by front of non-dominated sorting, and within a front by
/// NSGA-II's crowding distance (each objective's extremes first, then the points in the
/// sparsest parts of the front), ties by index.
pub fn promotion_order(points: &[Vec<f64>]) -> Vec<usize> {
    let mut order = Vec::with_capacity(points.len());
    for front in fronts(points) {
        let crowding = crowding_distances(points, &front);
        let mut ranked: Vec<(usize, f64)> = front.into_iter().zip(crowding).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        order.extend(ranked.into_iter().map(|(i, _)| i));
    }
    order
}

/// NSGA-II's crowding distance of each point of `front` among the others: the sum over
/// objectives of the gap between its neighbours, relative to the front's range (infinite at
/// an extreme). Non-finite values count as no gap.
fn crowding_distances(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let mut distance = vec![0.0; front.len()];
    let objectives = front.first().map_or(0, |&i| points[i].len());
    let columns: Vec<Vec<f64>> = (0..objectives).map(|j| front.iter().map(|&i| points[i][j]).collect()).collect();
    for column in &columns {
        let mut by: Vec<usize> = (0..front.len()).collect();
        by.sort_by(|&a, &b| column[a].total_cmp(&column[b]).then(a.cmp(&b)));
        let value = |k: usize| column[by[k]];
        let range = value(by.len() - 1) - value(0);
        distance[by[0]] = f64::INFINITY;
        distance[by[by.len() - 1]] = f64::INFINITY;
        for k in 1..by.len().saturating_sub(1) {
            let gap = (value(k + 1) - value(k - 1)) / range;
            if gap.is_finite() {
                distance[by[k]] += gap;
            }
        }
    }
    distance
}

/// One box of the region a new point would improve: `lower` (may be -inf) to `upper`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
}

/// Disjoint boxes whose union is the part of the space below `reference` that no point of
/// `points` weakly dominates: where a new point adds hypervolume. Expected hypervolume
/// improvement sums over them. Built like `hypervolume`, by slicing along the last objective
/// (the slab below the lowest point is open to -inf): about n cells for two objectives, at most
/// n² for three. Points not strictly inside the reference are left out.
pub fn improvement_cells(points: &[Vec<f64>], reference: &[f64]) -> Vec<Cell> {
    let inside: Vec<&[f64]> = points
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.len() == reference.len() && p.iter().zip(reference).all(|(x, r)| x.is_finite() && x < r))
        .collect();
    let mut cells = Vec::new();
    slice_cells(&inside, reference, &mut Vec::new(), &mut Vec::new(), &mut cells);
    cells
}

/// Appends the cells of `points` in the first `reference.len()` objectives, each extended by
/// the slab bounds `lower` / `upper` already chosen for the objectives after them.
fn slice_cells(points: &[&[f64]], reference: &[f64], lower: &mut Vec<f64>, upper: &mut Vec<f64>, out: &mut Vec<Cell>) {
    let d = reference.len();
    let cell = |low: f64, high: f64, lower: &[f64], upper: &[f64]| Cell {
        lower: std::iter::once(low).chain(lower.iter().rev().copied()).collect(),
        upper: std::iter::once(high).chain(upper.iter().rev().copied()).collect(),
    };
    if d == 1 {
        let top = points.iter().map(|p| p[0]).fold(reference[0], f64::min);
        out.push(cell(f64::NEG_INFINITY, top, lower, upper));
        return;
    }
    let last = d - 1;
    let mut levels: Vec<f64> = points.iter().map(|p| p[last]).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    // Slab k runs from the k-th level (-inf for the first) to the next (the reference for the
    // last); the points at or below its bottom shape it.
    let bottoms = std::iter::once(f64::NEG_INFINITY).chain(levels.iter().copied());
    let tops = levels.iter().copied().chain(std::iter::once(reference[last]));
    for (bottom, top) in bottoms.zip(tops) {
        let below: Vec<&[f64]> = points.iter().filter(|p| p[last] <= bottom).map(|p| &p[..last]).collect();
        lower.push(bottom);
        upper.push(top);
        slice_cells(&below, &reference[..last], lower, upper, out);
        lower.pop();
        upper.pop();
    }
}

/// A reference point for a set of points: in each objective the worst finite value, pushed
/// out by a tenth of the range (or by 1 where all values are equal), as BoTorch infers one.
pub fn reference_point(points: &[Vec<f64>]) -> Option<Vec<f64>> {
    let finite: Vec<&Vec<f64>> = points.iter().filter(|p| p.iter().all(|v| v.is_finite())).collect();
    let d = finite.first()?.len();
    Some(
        (0..d)
            .map(|j| {
                let (lo, hi) =
                    finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[j]), hi.max(p[j])));
                let range = hi - lo;
                hi + if range > 0.0 { 0.1 * range } else { 1.0 }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(raw: &[&[f64]]) -> Vec<Vec<f64>> {
        raw.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn dominance_needs_one_strict_improvement() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]), "equal points do not dominate");
        assert!(!dominates(&[1.0, 4.0], &[2.0, 3.0]), "a trade-off");
    }

    #[test]
    fn the_front_keeps_ties_and_duplicates_and_drops_nan() {
        let p = pts(&[&[1.0, 5.0], &[2.0, 2.0], &[2.0, 2.0], &[3.0, 3.0], &[5.0, 1.0], &[0.5, f64::NAN], &[4.0, 1.0]]);
        assert_eq!(nondominated(&p), vec![0, 1, 2, 6]);
        assert_eq!(fronts(&p), vec![vec![0, 1, 2, 6], vec![3, 4], vec![5]]);
    }

    #[test]
    fn three_objectives() {
        let p = pts(&[&[1.0, 1.0, 1.0], &[0.0, 2.0, 2.0], &[2.0, 2.0, 0.0], &[1.0, 1.0, 2.0]]);
        assert_eq!(nondominated(&p), vec![0, 1, 2]);
    }

    #[test]
    fn hypervolume_by_hand() {
        // Two objectives, reference (4, 4): the union of [1,4]x[3,4], [2,4]x[2,4], [3,4]x[1,4].
        let p = pts(&[&[1.0, 3.0], &[2.0, 2.0], &[3.0, 1.0]]);
        assert_eq!(hypervolume(&p, &[4.0, 4.0]), 3.0 + 2.0 + 1.0);
        // Dominated points, duplicates and points beyond the reference add nothing.
        let more =
            pts(&[&[1.0, 3.0], &[2.0, 2.0], &[2.0, 2.0], &[3.0, 3.0], &[3.0, 1.0], &[5.0, 0.0], &[f64::NAN, 0.0]]);
        assert_eq!(hypervolume(&more, &[4.0, 4.0]), 6.0);
        // Three objectives: one unit cube at the origin of a 2x2x2 box, plus a slab.
        assert_eq!(hypervolume(&pts(&[&[0.0, 0.0, 0.0]]), &[2.0, 2.0, 2.0]), 8.0);
        let p3 = pts(&[&[1.0, 1.0, 0.0], &[0.0, 0.0, 1.0]]);
        // [1,2]^2 x [0,2] = 2, plus [0,2]^2 x [1,2] = 4, minus their overlap [1,2]^2 x [1,2] = 1.
        assert_eq!(hypervolume(&p3, &[2.0, 2.0, 2.0]), 5.0);
        assert_eq!(hypervolume(&[], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn hypervolume_agrees_with_counting_cells() {
        // Integer points in a 6^3 box: the volume is the number of unit cells some point dominates.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % 6
        };
        for _ in 0..20 {
            let p: Vec<Vec<f64>> = (0..8).map(|_| (0..3).map(|_| next() as f64).collect()).collect();
            let mut cells = 0;
            for x in 0..6 {
                for y in 0..6 {
                    for z in 0..6 {
                        let c = [x as f64, y as f64, z as f64];
                        cells += usize::from(p.iter().any(|q| q.iter().zip(&c).all(|(a, b)| a <= b)));
                    }
                }
            }
            assert_eq!(hypervolume(&p, &[6.0, 6.0, 6.0]), cells as f64, "{p:?}");
        }
    }

    #[test]
    fn promotion_goes_front_by_front_extremes_and_sparse_parts_first() {
        // Front: 0 (1, 9), 1 (2, 5), 2 (2.5, 4.5), 3 (9, 1); behind it 4 (3, 6), then 5 (NaN).
        let p = pts(&[&[1.0, 9.0], &[2.0, 5.0], &[2.5, 4.5], &[9.0, 1.0], &[3.0, 6.0], &[f64::NAN, 0.0]]);
        // Extremes 0 and 3 first; of the interior, 2 has the wider gap between its neighbours
        // ((9 - 2) / 8 + (5 - 1) / 8 against (2.5 - 1) / 8 + (9 - 4.5) / 8).
        assert_eq!(promotion_order(&p), vec![0, 3, 2, 1, 4, 5]);
        assert_eq!(promotion_order(&[]), Vec::<usize>::new());
        // Duplicates keep their input order.
        assert_eq!(promotion_order(&pts(&[&[1.0, 1.0], &[1.0, 1.0]])), vec![0, 1]);
    }

    #[test]
    fn improvement_cells_by_hand() {
        // Two points, reference (4, 4): three slabs in y, below 1, from 1 to 3 and from 3 to 4,
        // open to the left up to x = 4, 3 and 1.
        let cells = improvement_cells(&pts(&[&[1.0, 3.0], &[3.0, 1.0]]), &[4.0, 4.0]);
        let inf = f64::NEG_INFINITY;
        let cell = |lower: [f64; 2], upper: [f64; 2]| Cell { lower: lower.to_vec(), upper: upper.to_vec() };
        assert_eq!(
            cells,
            vec![cell([inf, inf], [4.0, 1.0]), cell([inf, 1.0], [3.0, 3.0]), cell([inf, 3.0], [1.0, 4.0])]
        );
        // Nothing yet: the whole box below the reference; one objective: below the best.
        assert_eq!(improvement_cells(&[], &[1.0, 2.0]), vec![cell([inf, inf], [1.0, 2.0])]);
        assert_eq!(improvement_cells(&pts(&[&[3.0], &[2.0], &[5.0]]), &[4.0])[0].upper, vec![2.0]);
    }

    #[test]
    fn improvement_cells_fill_what_the_points_leave() {
        // Clipped to a box [0, r], the cells are disjoint, cover exactly the non-dominated part
        // (box volume minus hypervolume), and hold a random point iff no point dominates it.
        let mut seed = 11u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for d in 1..=4 {
            let r = vec![1.0; d];
            let p: Vec<Vec<f64>> = (0..7).map(|_| (0..d).map(|_| (10.0 * next()).round() / 10.0).collect()).collect();
            let cells = improvement_cells(&p, &r);
            let clipped = |c: &Cell| c.lower.iter().zip(&c.upper).map(|(l, u)| u - l.max(0.0)).product::<f64>();
            let total: f64 = cells.iter().map(clipped).sum();
            assert!((total - (1.0 - hypervolume(&p, &r))).abs() < 1e-12, "d {d}: {total} vs {p:?}");
            for _ in 0..300 {
                let y: Vec<f64> = (0..d).map(|_| next()).collect();
                let holders =
                    cells.iter().filter(|c| y.iter().zip(&c.lower).zip(&c.upper).all(|((v, l), u)| l <= v && v < u));
                let free = !p.iter().any(|q| q.iter().zip(&y).all(|(a, b)| a <= b));
                assert_eq!(holders.count(), usize::from(free), "d {d}: {y:?} in {p:?}");
            }
        }
    }

    #[test]
    fn the_reference_point_lies_beyond_the_worst() {
        let p = pts(&[&[0.0, 10.0], &[10.0, 10.0], &[f64::INFINITY, 0.0]]);
        assert_eq!(reference_point(&p), Some(vec![11.0, 11.0]));
        assert_eq!(reference_point(&[]), None);
    }
}
