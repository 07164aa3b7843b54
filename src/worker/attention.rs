//! Multi-head self-attention on the CPU as one op each way. Composed from candle's ops it is a
//! permuted copy of q, k and v, a batched product per head, a scale, a mask add, a softmax, a
//! dropout mask, another batched product and a transposed copy back: each a full buffer, each
//! with a gradient buffer in the backward, and candle runs the per-head products one after
//! another. Here each (sequence, head) pair is one task on candle's threads: its scores,
//! softmax, dropout and context stay in a small scratch, q, k and v are read in place from the
//! joint projection `[batch * len, 3 * hidden]`, and the context is written in place into
//! `[batch * len, hidden]`. The backward recomputes the probabilities (as flash attention does)
//! instead of keeping them, and regenerates the dropout mask from its seed.

use super::fused::{dot_lanes, exp, max_lanes, slice, sum_lanes, wide_fn};
use super::model::dropout_mask;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use std::sync::Arc;

/// The shape and the per-call choices of one attention op.
#[derive(Clone)]
pub struct Attention {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    /// Additive `[batch, len]` key mask (0 for real tokens, a large negative for padding).
    pub mask: Option<Arc<Vec<f32>>>,
    /// Dropout on the probabilities: (drop probability, seed of this call's masks).
    pub dropout: Option<(f32, u64)>,
}

impl Attention {
    /// Context `[batch * len, hidden]` from the joint projection `qkv [batch * len, 3 * hidden]`.
    pub fn forward(self, qkv: &Tensor) -> Result<Tensor> {
        qkv.contiguous()?.apply_op1(self)
    }

    fn hidden(&self, qkv_width: usize) -> Result<usize> {
        if !qkv_width.is_multiple_of(3) || !(qkv_width / 3).is_multiple_of(self.heads) {
            bail!("attention: qkv width {qkv_width} is not 3 x heads ({}) x head size", self.heads);
        }
        Ok(qkv_width / 3)
    }

    /// The dropout multipliers of task `task` (0 or 1 / keep), row by row, into `out`.
    fn dropout_mask(&self, task: usize, out: &mut [f32]) {
        match self.dropout {
            Some((p, seed)) => dropout_mask(p, seed ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), out),
            None => out.fill(1.0),
        }
    }

    /// Softmax probabilities `[len, len]` of task (b, h) into `p`.
    fn probabilities(&self, qkv: &[f32], task: usize, hidden: usize, p: &mut [f32]) {
        let (l, d) = (self.len, hidden / self.heads);
        let (b, h) = (task / self.heads, task % self.heads);
        let base = b * l * 3 * hidden + h * d;
        let scale = 1.0 / (d as f32).sqrt();
        // S = scale * Q K^T: Q rows are 3 * hidden apart; K^T's (t, j) is K[j, t].
        let q = Strided { ptr: qkv[base..].as_ptr(), rs: 3 * hidden, cs: 1 };
        let kt = Strided { ptr: qkv[base + hidden..].as_ptr(), rs: 1, cs: 3 * hidden };
        product(p.as_mut_ptr(), l, 1, (l, l, d), q, kt, scale, false);
        let mask = self.mask.as_ref().map_or(&[][..], |mask| &mask[b * l..(b + 1) * l]);
        softmax_rows(p, l, mask);
    }

    /// Runs `work(task, scratch)` for every (sequence, head) on candle's threads, each thread
    /// with its own scratch of `scratch_len` values.
    fn for_each_task(&self, scratch_len: usize, work: impl Fn(usize, &mut [f32]) + Sync) {
        let tasks = self.batch * self.heads;
        let threads = candle_core::utils::get_num_threads().clamp(1, tasks.max(1));
        let per = tasks.div_ceil(threads);
        let run = |first: usize| {
            let mut scratch = vec![0f32; scratch_len];
            for task in first..(first + per).min(tasks) {
                work(task, &mut scratch);
            }
        };
        if threads == 1 {
            return run(0);
        }
        std::thread::scope(|scope| {
            for t in 1..threads {
                let run = &run;
                scope.spawn(move || run(t * per));
            }
            run(0);
        });
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = slice(storage, layout)?;
        let hidden = self.hidden(layout.dims()[layout.dims().len() - 1])?;
        let (l, d) = (self.len, hidden / self.heads);
        if qkv.len() != self.batch * l * 3 * hidden {
            bail!("attention: qkv {:?} is not [{} x {l}, {}]", layout.dims(), self.batch, 3 * hidden);
        }
        let mut out = vec![0f32; self.batch * l * hidden];
        let dst = SharedOut(out.as_mut_ptr());
        self.for_each_task(2 * l * l, |task, scratch| {
            let (p, keep) = scratch.split_at_mut(l * l);
            self.probabilities(qkv, task, hidden, p);
            self.dropout_mask(task, keep);
            p.iter_mut().zip(keep.iter()).for_each(|(p, k)| *p *= k);
            let (b, h) = (task / self.heads, task % self.heads);
            let v = Strided { ptr: qkv[b * l * 3 * hidden + 2 * hidden + h * d..].as_ptr(), rs: 3 * hidden, cs: 1 };
            let pd = Strided { ptr: p.as_ptr(), rs: l, cs: 1 };
            // SAFETY: task (b, h) alone writes rows b*l.. and columns h*d.. of the output.
            let at = unsafe { dst.at(b * l * hidden + h * d) };
            product(at, hidden, 1, (l, d, l), pd, v, 1.0, false);
        });
        Ok((CpuStorage::F32(out), Shape::from((self.batch * l, hidden))))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(qkv.apply_op2_no_bwd(&grad.contiguous()?, &AttentionGrad(self.clone()))?))
    }
}

/// The gradient of `qkv` given the gradient of the context.
struct AttentionGrad(Attention);

impl CustomOp2 for AttentionGrad {
    fn name(&self) -> &'static str {
        "fused-attention-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = &self.0;
        let (qkv, grad) = (slice(s1, l1)?, slice(s2, l2)?);
        let hidden = a.hidden(l1.dims()[l1.dims().len() - 1])?;
        let (l, d) = (a.len, hidden / a.heads);
        if grad.len() * 3 != qkv.len() {
            bail!("attention grad: {:?} does not fit qkv {:?}", l2.dims(), l1.dims());
        }
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; qkv.len()];
        let dst = SharedOut(out.as_mut_ptr());
        a.for_each_task(4 * l * l, |task, scratch| {
            let (p, rest) = scratch.split_at_mut(l * l);
            let (keep, rest) = rest.split_at_mut(l * l);
            let (dp, dropped) = rest.split_at_mut(l * l);
            a.probabilities(qkv, task, hidden, p);
            a.dropout_mask(task, keep);
            let (b, h) = (task / a.heads, task % a.heads);
            let base = b * l * 3 * hidden + h * d;
            let q = Strided { ptr: qkv[base..].as_ptr(), rs: 3 * hidden, cs: 1 };
            let k = Strided { ptr: qkv[base + hidden..].as_ptr(), rs: 3 * hidden, cs: 1 };
            let vt = Strided { ptr: qkv[base + 2 * hidden..].as_ptr(), rs: 1, cs: 3 * hidden };
            let dout = Strided { ptr: grad[b * l * hidden + h * d..].as_ptr(), rs: hidden, cs: 1 };
            // SAFETY: task (b, h) alone writes rows b*l.. and columns h*d.. of each third of dqkv.
            let (dq, dk, dv) = unsafe {
                let at = dst.at(b * l * 3 * hidden + h * d);
                (at, at.add(hidden), at.add(2 * hidden))
            };
            // dV = (P * keep)^T dO, read transposed from a scratch holding P * keep.
            dropped.iter_mut().zip(p.iter().zip(keep.iter())).for_each(|(o, (p, k))| *o = p * k);
            let dropped_t = Strided { ptr: dropped.as_ptr(), rs: 1, cs: l };
            product(dv, 3 * hidden, 1, (l, d, l), dropped_t, dout, 1.0, false);
            // dP = (dO V^T) * keep, then dS = P * (dP - rowsum(dP * P)).
            product(dp.as_mut_ptr(), l, 1, (l, l, d), dout, vt, 1.0, false);
            softmax_grad_rows(dp, p, keep, l);
            let ds = Strided { ptr: dp.as_ptr(), rs: l, cs: 1 };
            let ds_t = Strided { ptr: dp.as_ptr(), rs: 1, cs: l };
            product(dq, 3 * hidden, 1, (l, d, l), ds, k, scale, false);
            product(dk, 3 * hidden, 1, (l, d, l), ds_t, q, scale, false);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Softmax of each `l`-long row of scores `p`, in place, after adding `mask` (empty: none).
#[inline(always)]
fn softmax_rows_body(p: &mut [f32], l: usize, mask: &[f32]) {
    for row in p.chunks_exact_mut(l) {
        row.iter_mut().zip(mask).for_each(|(s, m)| *s += m);
        let max = max_lanes(row);
        // Exponentials in one pass and the sum in lanes, so both loops vectorize.
        row.iter_mut().for_each(|s| *s = exp(*s - max));
        let inv = 1.0 / sum_lanes(row, |v| v);
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

wide_fn!(fn softmax_rows(p: &mut [f32], l: usize, mask: &[f32]) = softmax_rows_body;);

/// The scores' gradient from the probabilities' (`dp`, in place): `dP * keep`, then
/// `dS = P * (dP - rowsum(dP * P))`.
#[inline(always)]
fn softmax_grad_rows_body(dp: &mut [f32], p: &[f32], keep: &[f32], l: usize) {
    for ((dp, p), keep) in dp.chunks_exact_mut(l).zip(p.chunks_exact(l)).zip(keep.chunks_exact(l)) {
        dp.iter_mut().zip(keep).for_each(|(g, k)| *g *= k);
        let dot = dot_lanes(dp, p);
        dp.iter_mut().zip(p).for_each(|(g, p)| *g = p * (*g - dot));
    }
}

wide_fn!(fn softmax_grad_rows(dp: &mut [f32], p: &[f32], keep: &[f32], l: usize) = softmax_grad_rows_body;);

/// A matrix operand: element (i, j) at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Strided {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

/// The output pointer shared by the tasks, each of which writes its own disjoint block.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (see each use) and the scope joins them before the
// buffer is read.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` places in.
    ///
    /// # Safety
    /// `offset` is inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// `dst (m x n, rows dst_rs apart) = scale * lhs (m x k) rhs (k x n)`, one thread (the tasks
/// are the parallelism), added to dst's values when `accumulate`.
#[allow(clippy::too_many_arguments)]
fn product(
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    rhs: Strided,
    scale: f32,
    accumulate: bool,
) {
    // SAFETY: callers pass operands whose extents cover m x k, k x n and m x n at these strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.ptr,
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The composed attention the model used before, with the same dropout multipliers.
    fn composed(a: &Attention, qkv: &Tensor) -> Tensor {
        let (b, l, heads) = (a.batch, a.len, a.heads);
        let hidden = qkv.dim(1).unwrap() / 3;
        let d = hidden / heads;
        let qkv = qkv.reshape((b, l, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap();
        let q = (qkv.get(0).unwrap().contiguous().unwrap() * (1.0 / (d as f64).sqrt())).unwrap();
        let k = qkv.get(1).unwrap().contiguous().unwrap();
        let v = qkv.get(2).unwrap().contiguous().unwrap();
        let mut scores = q.matmul(&k.t().unwrap()).unwrap();
        if let Some(mask) = &a.mask {
            let mask = Tensor::from_vec(mask.to_vec(), (b, 1, 1, l), &Device::Cpu).unwrap();
            scores = scores.broadcast_add(&mask).unwrap();
        }
        let mut probs = candle_nn::ops::softmax(&scores, candle_core::D::Minus1).unwrap();
        if a.dropout.is_some() {
            let mut keep = vec![0f32; b * heads * l * l];
            for (task, chunk) in keep.chunks_exact_mut(l * l).enumerate() {
                a.dropout_mask(task, chunk);
            }
            probs = (probs * Tensor::from_vec(keep, (b, heads, l, l), &Device::Cpu).unwrap()).unwrap();
        }
        probs.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b * l, hidden)).unwrap()
    }

    #[test]
    fn matches_the_composed_ops_with_mask_and_dropout() {
        let dev = Device::Cpu;
        let (b, l, heads, hidden) = (3, 17, 4, 24);
        let qkv = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b * l, 3 * hidden), &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (b * l, hidden), &dev).unwrap();
        let mask: Vec<f32> = (0..b * l).map(|i| if i % l >= l - 2 * (i / l) { -1e4 } else { 0.0 }).collect();
        for dropout in [None, Some((0.25, 7))] {
            let a = Attention { batch: b, len: l, heads, mask: Some(Arc::new(mask.clone())), dropout };
            let run = |fused: bool| {
                let y = if fused { a.clone().forward(qkv.as_tensor()).unwrap() } else { composed(&a, qkv.as_tensor()) };
                let grads = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
                (y, grads.get(&qkv).unwrap().clone())
            };
            let ((y1, g1), (y2, g2)) = (run(true), run(false));
            let diff =
                |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff(&y1, &y2) < 1e-4, "value differs by {} (dropout {dropout:?})", diff(&y1, &y2));
            assert!(diff(&g1, &g2) < 1e-4, "gradient differs by {} (dropout {dropout:?})", diff(&g1, &g2));
        }
    }
}
