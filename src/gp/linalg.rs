//! Dense Cholesky helpers: a jittered factorization and the inverse from the factor.

use nalgebra::{Cholesky, DMatrix, Dyn};

/// Cholesky factor of `k + noise I`, adding growing jitter when the matrix is not
/// numerically positive definite.
pub(crate) fn cholesky_with_jitter(k: &DMatrix<f64>, noise: f64) -> Option<Cholesky<f64, Dyn>> {
    let scale = k.diagonal().max().max(1e-12);
    let mut jitter = 0.0;
    for _ in 0..8 {
        let mut m = k.clone();
        for i in 0..m.nrows() {
            m[(i, i)] += noise + jitter;
        }
        if let Some(c) = Cholesky::new(m) {
            return Some(c);
        }
        jitter = if jitter == 0.0 { 1e-9 * scale } else { jitter * 10.0 };
    }
    None
}

/// Offset of row `i` in a packed lower triangle (row-major, row `i` holding columns `0..=i`).
#[inline]
pub(crate) fn packed_row(i: usize) -> usize {
    i * (i + 1) / 2
}

/// `M = L^-1` of the factor, packed (see [`packed_row`]), in about n^3/6 flops: row `i` is
/// `(e_i - sum_{k<i} L_ik m_k) / L_ii`, with `m_k` supported on `0..=k`.
pub(crate) fn packed_factor_inverse(chol: &Cholesky<f64, Dyn>) -> Vec<f64> {
    let l = chol.l_dirty();
    let n = l.nrows();
    let mut m = vec![0.0; packed_row(n)];
    for i in 0..n {
        let (done, row) = m.split_at_mut(packed_row(i));
        let row = &mut row[..=i];
        for k in 0..i {
            let c = l[(i, k)];
            let mk = &done[packed_row(k)..packed_row(k) + k + 1];
            row[..=k].iter_mut().zip(mk).for_each(|(r, v)| *r -= c * v);
        }
        row[i] = 1.0;
        let inv_d = 1.0 / l[(i, i)];
        row.iter_mut().for_each(|r| *r *= inv_d);
    }
    m
}

/// Lower triangle (packed, see [`packed_row`]) of the inverse of the factored matrix:
/// `M^T M` with `M = L^-1`, by rank-one updates touching only the triangles, about n^3/3
/// flops in all against n^3 for a solve with the identity.
pub(crate) fn packed_inverse(chol: &Cholesky<f64, Dyn>) -> Vec<f64> {
    let n = chol.l_dirty().nrows();
    let m = packed_factor_inverse(chol);
    // (M^T M)_ab = sum_i M_ia M_ib over rows i >= a >= b.
    let mut inv = vec![0.0; packed_row(n)];
    for i in 0..n {
        let mi = &m[packed_row(i)..packed_row(i) + i + 1];
        for a in 0..=i {
            let c = mi[a];
            let dst = &mut inv[packed_row(a)..packed_row(a) + a + 1];
            dst.iter_mut().zip(&mi[..=a]).for_each(|(r, v)| *r += c * v);
        }
    }
    inv
}

/// Dot product with four accumulators, so the sum pipelines (and vectorizes) instead of
/// waiting on one running total.
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0; 4];
    let chunks = n / 4;
    for c in 0..chunks {
        for k in 0..4 {
            acc[k] += a[4 * c + k] * b[4 * c + k];
        }
    }
    let tail: f64 = (4 * chunks..n).map(|i| a[i] * b[i]).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_inverse_matches_nalgebra() {
        let n = 7;
        let a = DMatrix::from_fn(n, n, |i, j| (-((i as f64 - j as f64).powi(2)) / 4.0).exp());
        let chol = cholesky_with_jitter(&a, 0.1).unwrap();
        let full = chol.inverse();
        let packed = packed_inverse(&chol);
        for i in 0..n {
            for j in 0..=i {
                assert!((packed[i * (i + 1) / 2 + j] - full[(i, j)]).abs() < 1e-10);
            }
        }
        let m = packed_factor_inverse(&chol);
        let l = chol.l();
        for i in 0..n {
            for j in 0..=i {
                let lm: f64 = (j..=i).map(|k| l[(i, k)] * m[packed_row(k) + j]).sum();
                assert!((lm - f64::from(u8::from(i == j))).abs() < 1e-10, "(L M)[{i},{j}] = {lm}");
            }
        }
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0, 1, 3, 4, 7, 33] {
            let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 3.0).collect();
            let b: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-12);
        }
    }
}
