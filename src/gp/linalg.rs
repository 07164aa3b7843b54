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

/// Lower triangle (row-major, row `i` holding columns `0..=i`, row `i` at offset
/// `i(i+1)/2`) of the inverse of the factored matrix.
///
/// Computes `M = L^-1` row by row and then `M^T M` by rank-one updates, touching
/// only the triangles: about n^3/3 flops against n^3 for a solve with the identity.
pub(crate) fn packed_inverse(chol: &Cholesky<f64, Dyn>) -> Vec<f64> {
    let l = chol.l_dirty();
    let n = l.nrows();
    let off = |i: usize| i * (i + 1) / 2;
    // Row i of M: (e_i - sum_{k<i} L_ik m_k) / L_ii, with m_k supported on 0..=k.
    let mut m = vec![0.0; off(n)];
    for i in 0..n {
        let (done, row) = m.split_at_mut(off(i));
        let row = &mut row[..=i];
        for k in 0..i {
            let c = l[(i, k)];
            let mk = &done[off(k)..off(k) + k + 1];
            row[..=k].iter_mut().zip(mk).for_each(|(r, v)| *r -= c * v);
        }
        row[i] = 1.0;
        let inv_d = 1.0 / l[(i, i)];
        row.iter_mut().for_each(|r| *r *= inv_d);
    }
    // (M^T M)_ab = sum_i M_ia M_ib over rows i >= a >= b.
    let mut inv = vec![0.0; off(n)];
    for i in 0..n {
        let mi = &m[off(i)..off(i) + i + 1];
        for a in 0..=i {
            let c = mi[a];
            let dst = &mut inv[off(a)..off(a) + a + 1];
            dst.iter_mut().zip(&mi[..=a]).for_each(|(r, v)| *r += c * v);
        }
    }
    inv
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
    }
}
