//! Fused CPU kernels, with their backward passes, for the element-wise parts of the encoder:
//! layer norm, GELU and softmax. candle composes these from 5-20 tensor ops each (allocating a
//! fresh buffer per op), which made them cost more than the matrix products; one pass over
//! the data each way is what PyTorch does too. Other devices use candle's composed ops.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

pub(super) fn slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { bail!("fused kernels take f32 tensors") };
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("fused kernels take contiguous tensors") };
    Ok(&values[start..end])
}

/// `fn NAME(args) -> R = BODY;` defines `NAME`, which runs `BODY` (an `#[inline(always)]` fn)
/// compiled for AVX2 where the CPU has it, picked at run time (8 lanes a register instead of
/// SSE2's 4), else as built. No FMA is enabled, so each lane does the same IEEE operations
/// and the results are bit-identical either way: only the speed depends on the CPU. A named
/// function, because a closure handed to a `#[target_feature]` function is not always
/// inlined into it (measured: the attention's softmax and three more kernels stayed SSE2).
macro_rules! wide_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(super) use wide_fn;

/// Runs `kernel(first_row, out_rows)` over disjoint chunks of whole rows of `out`, on as many
/// threads as candle uses (one for small tensors), and returns each chunk's result in order.
pub(super) fn par_rows<T: Send, R: Send>(
    out: &mut [T],
    width: usize,
    kernel: impl Fn(usize, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let threads = candle_core::utils::get_num_threads().max(1);
    let rows = out.len() / width.max(1);
    if threads == 1 || out.len() < 1 << 15 || rows < 2 {
        return vec![kernel(0, out)];
    }
    let per = rows.div_ceil(threads) * width;
    std::thread::scope(|scope| {
        let kernel = &kernel;
        let handles: Vec<_> = out
            .chunks_mut(per)
            .enumerate()
            .map(|(i, chunk)| scope.spawn(move || kernel(i * per / width, chunk)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("kernel thread")).collect()
    })
}

/// Layer norm over the last dimension, with a backward pass.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::layer_norm_slow(x, gamma, beta, eps);
    }
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, LayerNorm { eps })
}

/// The tanh approximation of GELU (as BERT's reference code), with a backward pass.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.gelu();
    }
    x.contiguous()?.apply_op1(Gelu)
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return candle_nn::ops::softmax(x, candle_core::D::Minus1);
    }
    x.contiguous()?.apply_op1(Softmax)
}

/// `x [n, h] + bias [h]` on every row. candle's broadcast add sums the bias gradient with a
/// strided reduction over the rows, a tenth of a training step; this sums row by row.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.broadcast_add(bias);
    }
    x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
}

/// `x [n, in] W^T + b` with `W [out, in]`, as one op with its own backward. On the CPU the bias
/// rows are written first and the product is accumulated onto them by one GEMM, so the output
/// is touched once (no zeroed buffer, no separate bias pass); the backward gives `dx = g W`,
/// `dW = g^T x` (already in W's layout, no transposed copy) and `db` as row sums, where
/// candle's matmul, transpose and bias nodes would each add a full-size gradient buffer.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.matmul(&weight.t()?)?.broadcast_add(bias);
    }
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, Linear)
}

struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let (&[n, input], &[output, w_input]) = (l1.dims(), l2.dims()) else {
            bail!("linear takes x [n, in] and W [out, in], got {:?} and {:?}", l1.dims(), l2.dims())
        };
        if w_input != input || b.len() != output {
            bail!("linear: x {:?}, W {:?} and b {:?} do not fit", l1.dims(), l2.dims(), l3.dims());
        }
        // The bias rows are the output's first touch, written on all threads (a serial fill or
        // memset of a fresh multi-megabyte buffer held two threads back).
        let mut out: Vec<f32> = Vec::with_capacity(n * output);
        par_rows(&mut out.spare_capacity_mut()[..n * output], output, |_, rows| {
            for row in rows.chunks_exact_mut(output) {
                row.iter_mut().zip(b).for_each(|(o, &v)| {
                    o.write(v);
                });
            }
        });
        // SAFETY: every one of the n * output values was written just above.
        unsafe { out.set_len(n * output) };
        let threads = candle_core::utils::get_num_threads();
        let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        // SAFETY: the three buffers hold n x output, n x input and output x input values, which
        // are the extents the strides below walk.
        unsafe {
            gemm::gemm(
                n,
                output,
                input,
                out.as_mut_ptr(),
                1,
                output as isize,
                true,
                x.as_ptr(),
                1,
                input as isize,
                // W^T: element (i, o) is W[o, i].
                w.as_ptr(),
                input as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((n, output))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.matmul(weight)?;
        let dw = grad.t()?.matmul(x)?;
        let db = grad.apply_op1_no_bwd(&RowSum { width: bias.elem_count() })?.reshape(bias.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// e^x, accurate to a few units in the last place, with no branches or library calls so that
/// loops over it vectorize: glibc's `expf` is a scalar call and was an eighth of a training
/// step (softmax, GELU's tanh, cross entropy). `x = k ln 2 + r` with `|r| <= ln 2 / 2`, `e^r`
/// by its Taylor series to degree 7 (truncation below 1e-8), and `2^k` built in the exponent.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that `k * LN2_HI` is exact (Cody and Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Beyond these e^x leaves the normal f32 range; clamping keeps 2^k a normal number.
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let k = t - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for inv_fact in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + inv_fact;
    }
    let k_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    p * f32::from_bits(((k_int + 127) << 23) as u32)
}

/// `f(v)` summed over `row` in 8 running lanes: a sum taken in order cannot vectorize.
#[inline(always)]
pub(super) fn sum_lanes(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        let chunk: &[f32; 8] = chunk.try_into().expect("chunks of 8");
        for lane in 0..8 {
            lanes[lane] += f(chunk[lane]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `a . b` in 8 running lanes, like `sum_lanes`.
#[inline(always)]
pub(super) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        let (ca, cb): (&[f32; 8], &[f32; 8]) =
            (ca.try_into().expect("chunks of 8"), cb.try_into().expect("chunks of 8"));
        for lane in 0..8 {
            lanes[lane] += ca[lane] * cb[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The largest value of `row`, in 8 running lanes like `sum_lanes`.
#[inline(always)]
pub(super) fn max_lanes(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (acc, &v) in lanes.iter_mut().zip(chunk) {
            *acc = acc.max(v);
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

/// Mean and reciprocal standard deviation of one row.
#[inline(always)]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = sum_lanes(row, |v| v) / n;
    let var = sum_lanes(row, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Layer norm of the rows of `x` into `y`.
#[inline(always)]
fn layer_norm_rows_body(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) {
    let h = gamma.len();
    for (row, y) in x.chunks_exact(h).zip(y.chunks_exact_mut(h)) {
        let (mean, rstd) = moments(row, eps);
        for i in 0..h {
            y[i] = (row[i] - mean) * rstd * gamma[i] + beta[i];
        }
    }
}

wide_fn!(fn layer_norm_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32]) = layer_norm_rows_body;);

/// The layer norm's input gradient for the rows of `dx_rows`, and these rows' share of
/// dgamma and dbeta.
#[inline(always)]
fn layer_norm_grad_rows_body(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    eps: f32,
    dx_rows: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let (mut xhat, mut dxhat) = (vec![0f32; h], vec![0f32; h]);
    let (mut dgamma, mut dbeta) = (vec![0f32; h], vec![0f32; h]);
    let rows = x.chunks_exact(h).zip(dy.chunks_exact(h));
    for ((row, g), dx) in rows.zip(dx_rows.chunks_exact_mut(h)) {
        let (mean, rstd) = moments(row, eps);
        let (mut mean_dxhat, mut mean_dxhat_xhat) = (0f32, 0f32);
        for i in 0..h {
            xhat[i] = (row[i] - mean) * rstd;
            dxhat[i] = g[i] * gamma[i];
            mean_dxhat += dxhat[i];
            mean_dxhat_xhat += dxhat[i] * xhat[i];
            dgamma[i] += g[i] * xhat[i];
            dbeta[i] += g[i];
        }
        mean_dxhat /= h as f32;
        mean_dxhat_xhat /= h as f32;
        for i in 0..h {
            dx[i] = rstd * (dxhat[i] - mean_dxhat - xhat[i] * mean_dxhat_xhat);
        }
    }
    (dgamma, dbeta)
}

wide_fn!(fn layer_norm_grad_rows(x: &[f32], gamma: &[f32], dy: &[f32], eps: f32, dx_rows: &mut [f32]) -> (Vec<f32>, Vec<f32>) = layer_norm_grad_rows_body;);

struct LayerNorm {
    eps: f32,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let h = gamma.len();
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, h, |first, chunk| layer_norm_rows(&x[first * h..], gamma, beta, self.eps, chunk));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.elem_count();
        let rows = x.elem_count() / h;
        let packed = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = packed.narrow(0, rows, 1)?.reshape(h)?;
        let dbeta = packed.narrow(0, rows + 1, 1)?.reshape(h)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// The layer norm's gradients in one pass, packed as `[rows + 2, h]`: dx, then dgamma, dbeta.
struct LayerNormGrad {
    eps: f32,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "fused-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, dy) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let h = gamma.len();
        let rows = x.len() / h;
        let mut out = vec![0f32; (rows + 2) * h];
        let (dx_all, sums) = out.split_at_mut(rows * h);
        // Each chunk of rows returns its partial dgamma and dbeta; they are summed after.
        let partials = par_rows(dx_all, h, |first, chunk| {
            layer_norm_grad_rows(&x[first * h..], gamma, &dy[first * h..], self.eps, chunk)
        });
        let (dgamma, dbeta) = sums.split_at_mut(h);
        for (pg, pb) in partials {
            dgamma.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
            dbeta.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, h))))
    }
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "fused-add-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, bias) = (slice(s1, l1)?, slice(s2, l2)?);
        let mut out = x.to_vec();
        par_rows(&mut out, bias.len(), |_, chunk| {
            for row in chunk.chunks_exact_mut(bias.len()) {
                row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let sums = grad.contiguous()?.apply_op1_no_bwd(&RowSum { width: bias.elem_count() })?;
        Ok((Some(grad.clone()), Some(sums.reshape(bias.shape())?)))
    }
}

/// Rows per band of a row sum.
const BAND_ROWS: usize = 256;

/// The sum of the rows of a `[n, width]` tensor.
struct RowSum {
    width: usize,
}

impl CustomOp1 for RowSum {
    fn name(&self) -> &'static str {
        "fused-row-sum"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(storage, layout)?;
        let width = self.width.max(1);
        // Bands of a fixed number of rows, summed on candle's threads and then added in order,
        // so the result does not depend on the thread count.
        let band = BAND_ROWS * width;
        let sum_band = |rows: &[f32]| {
            let mut sums = vec![0f32; width];
            for row in rows.chunks_exact(width) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sums
        };
        let threads = candle_core::utils::get_num_threads().max(1);
        let bands: Vec<Vec<f32>> = if threads == 1 || x.len() <= band {
            x.chunks(band).map(sum_band).collect()
        } else {
            let per_thread = x.len().div_ceil(band).div_ceil(threads) * band;
            std::thread::scope(|scope| {
                let handles: Vec<_> = x
                    .chunks(per_thread)
                    .map(|part| scope.spawn(move || part.chunks(band).map(sum_band).collect::<Vec<_>>()))
                    .collect();
                handles.into_iter().flat_map(|h| h.join().expect("row-sum thread")).collect()
            })
        };
        let mut total = vec![0f32; width];
        for sums in &bands {
            total.iter_mut().zip(sums).for_each(|(t, v)| *t += v);
        }
        Ok((CpuStorage::F32(total), Shape::from(width)))
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// tanh through one exp, which is several times faster than libm's tanhf.
#[inline(always)]
fn tanh(u: f32) -> f32 {
    let e = exp(2.0 * u.clamp(-15.0, 15.0));
    (e - 1.0) / (e + 1.0)
}

/// GELU (tanh form) of `x` into `y`.
#[inline(always)]
fn gelu_rows_body(x: &[f32], y: &mut [f32]) {
    for (y, &v) in y.iter_mut().zip(x) {
        *y = 0.5 * v * (1.0 + tanh(SQRT_2_OVER_PI * v * (1.0 + GELU_C * v * v)));
    }
}

wide_fn!(fn gelu_rows(x: &[f32], y: &mut [f32]) = gelu_rows_body;);

/// GELU's input gradient given the output's, `g`.
#[inline(always)]
fn gelu_grad_rows_body(x: &[f32], g: &[f32], dx: &mut [f32]) {
    for ((dx, &v), &g) in dx.iter_mut().zip(x).zip(g) {
        let t = tanh(SQRT_2_OVER_PI * v * (1.0 + GELU_C * v * v));
        let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v);
        *dx = g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
    }
}

wide_fn!(fn gelu_grad_rows(x: &[f32], g: &[f32], dx: &mut [f32]) = gelu_grad_rows_body;);

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(storage, layout)?;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, 1, |first, chunk| gelu_rows(&x[first..], chunk));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "fused-gelu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (slice(s1, l1)?, slice(s2, l2)?);
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, 1, |first, chunk| gelu_grad_rows(&x[first..], &g[first..], chunk));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(storage, layout)?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, n, |first, chunk| {
            for (row, y) in x[first * n..].chunks_exact(n).zip(chunk.chunks_exact_mut(n)) {
                let max = max_lanes(row);
                for (y, &v) in y.iter_mut().zip(row) {
                    *y = exp(v - max);
                }
                let scale = 1.0 / sum_lanes(y, |v| v);
                y.iter_mut().for_each(|y| *y *= scale);
            }
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?))
    }
}

/// dx = y * (dy - sum(y * dy)) per row.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-softmax-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, dy) = (slice(s1, l1)?, slice(s2, l2)?);
        let n = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; y.len()];
        par_rows(&mut out, n, |first, chunk| {
            let rows = y[first * n..].chunks_exact(n).zip(dy[first * n..].chunks_exact(n));
            for ((y, dy), dx) in rows.zip(chunk.chunks_exact_mut(n)) {
                let dot = dot_lanes(y, dy);
                for i in 0..n {
                    dx[i] = y[i] * (dy[i] - dot);
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Mean cross entropy of `logits [n, classes]` against `targets [n]` (u32), with `smoothing`
/// of the target's mass spread uniformly over the classes. candle's log-softmax is seven ops,
/// each a full pass and a fresh buffer over the MLM head's `[masked, vocab]` logits, and its
/// backward as many again; this is one op each way that reads the logits row by row and
/// writes only the loss, then only the gradient.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    logits.contiguous()?.apply_op2(&targets.contiguous()?, CrossEntropy { smoothing: smoothing as f32 })
}

struct CrossEntropy {
    smoothing: f32,
}

/// The rows of `logits` and their targets, checked against the number of classes.
fn rows_and_targets<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<(&'a [f32], &'a [u32], usize)> {
    let logits = slice(s1, l1)?;
    let CpuStorage::U32(targets) = s2 else { bail!("cross entropy takes u32 targets") };
    let Some((start, end)) = l2.contiguous_offsets() else { bail!("cross entropy takes contiguous targets") };
    let targets = &targets[start..end];
    let classes = l1.shape().dims().last().copied().unwrap_or(0);
    if classes == 0 || logits.len() != targets.len() * classes {
        bail!("cross entropy: logits {:?} do not match {} targets", l1.shape(), targets.len());
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= classes) {
        bail!("cross entropy: target {t} is not one of the {classes} classes");
    }
    Ok((logits, targets, classes))
}

/// Log of the sum of the exponentials of one row.
#[inline(always)]
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = max_lanes(row);
    max + sum_lanes(row, |v| exp(v - max)).ln()
}

/// Each row's loss, `(1 - smoothing) * nll + smoothing * (lse - mean logit)`, into `losses`.
#[inline(always)]
fn cross_entropy_rows_body(logits: &[f32], targets: &[u32], classes: usize, smoothing: f32, losses: &mut [f32]) {
    for ((row, &t), loss) in logits.chunks_exact(classes).zip(targets).zip(losses) {
        let lse = log_sum_exp(row);
        let nll = lse - row[t as usize];
        let uniform = lse - sum_lanes(row, |v| v) / classes as f32;
        *loss = (1.0 - smoothing) * nll + smoothing * uniform;
    }
}

wide_fn!(fn cross_entropy_rows(logits: &[f32], targets: &[u32], classes: usize, smoothing: f32, losses: &mut [f32]) = cross_entropy_rows_body;);

/// The loss's gradient for the rows of `dx`; `[per_row, floor, smoothing]` as in `CrossEntropyGrad`.
#[inline(always)]
fn cross_entropy_grad_rows_body(logits: &[f32], targets: &[u32], classes: usize, k: [f32; 3], dx: &mut [f32]) {
    let [per_row, floor, smoothing] = k;
    for ((row, &t), dx) in logits.chunks_exact(classes).zip(targets).zip(dx.chunks_exact_mut(classes)) {
        let lse = log_sum_exp(row);
        for (d, &v) in dx.iter_mut().zip(row) {
            *d = per_row * (exp(v - lse) - floor);
        }
        dx[t as usize] -= per_row * (1.0 - smoothing);
    }
}

wide_fn!(fn cross_entropy_grad_rows(logits: &[f32], targets: &[u32], classes: usize, k: [f32; 3], dx: &mut [f32]) = cross_entropy_grad_rows_body;);

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, classes) = rows_and_targets(s1, l1, s2, l2)?;
        let mut losses = vec![0f32; targets.len()];
        cross_entropy_rows(logits, targets, classes, self.smoothing, &mut losses);
        let total: f64 = losses.iter().map(|&l| l as f64).sum();
        let mean = (total / targets.len().max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let backward = CrossEntropyGrad { smoothing: self.smoothing, scale: grad.to_scalar::<f32>()? };
        Ok((Some(logits.apply_op2_no_bwd(targets, &backward)?), None))
    }
}

/// d loss / d logits = scale / n * (softmax - (1 - smoothing) * onehot - smoothing / classes).
struct CrossEntropyGrad {
    smoothing: f32,
    scale: f32,
}

impl CustomOp2 for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, classes) = rows_and_targets(s1, l1, s2, l2)?;
        let per_row = self.scale / targets.len().max(1) as f32;
        let floor = self.smoothing / classes as f32;
        let mut out = vec![0f32; logits.len()];
        let k = [per_row, floor, self.smoothing];
        par_rows(&mut out, classes, |first, chunk| {
            cross_entropy_grad_rows(&logits[first * classes..], &targets[first..], classes, k, chunk);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn close(a: &Tensor, b: &Tensor, what: &str) {
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 2e-3, "{what}: fused and composed differ by {diff}");
    }

    /// Each fused kernel gives candle's composed op's values and gradients; the tensors are big
    /// enough for the kernels to split their rows over threads.
    #[test]
    fn fused_kernels_match_the_composed_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (256, 160), &dev).unwrap()).unwrap();
        let gamma = Var::from_tensor(&Tensor::randn(1f32, 0.3, 160, &dev).unwrap()).unwrap();
        let beta = Var::from_tensor(&Tensor::randn(0f32, 0.3, 160, &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (256, 160), &dev).unwrap();
        type Op = fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>;
        let cases: [(&str, Op, Op); 4] = [
            ("bias", |x, g, _| add_bias(x, g), |x, g, _| x.broadcast_add(g)),
            (
                "layer norm",
                |x, g, b| layer_norm(x, g, b, 1e-5),
                |x, g, b| candle_nn::ops::layer_norm_slow(x, g, b, 1e-5),
            ),
            ("gelu", |x, g, _| gelu(&x.broadcast_mul(g)?), |x, g, _| x.broadcast_mul(g)?.gelu()),
            (
                "softmax",
                |x, g, _| softmax_last_dim(&x.broadcast_mul(g)?),
                |x, g, _| candle_nn::ops::softmax(&x.broadcast_mul(g)?, D::Minus1),
            ),
        ];
        for (name, fused, composed) in cases {
            let run = |f: Op| {
                let y = f(x.as_tensor(), gamma.as_tensor(), beta.as_tensor()).unwrap();
                let grads = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
                let grad = |v: &Var| grads.get(v).cloned().unwrap_or_else(|| v.zeros_like().unwrap());
                (y, grad(&x), grad(&gamma), grad(&beta))
            };
            let (a, b) = (run(fused), run(composed));
            close(&a.0, &b.0, &format!("{name} value"));
            close(&a.1, &b.1, &format!("{name} dx"));
            close(&a.2, &b.2, &format!("{name} dgamma"));
            close(&a.3, &b.3, &format!("{name} dbeta"));
        }
    }

    /// The fused linear gives candle's `x W^T + b`, values and all three gradients, on an
    /// uneven shape (edges of the GEMM's tiles) and on an offset weight (a narrowed matrix).
    #[test]
    fn fused_linear_matches_the_composed_product() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (301, 97), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (3 * 71, 97), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 71, &dev).unwrap()).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (301, 71), &dev).unwrap();
        let run = |fused: bool| {
            let middle = w.as_tensor().narrow(0, 71, 71).unwrap();
            let y = if fused {
                linear(x.as_tensor(), &middle, b.as_tensor()).unwrap()
            } else {
                x.as_tensor().matmul(&middle.t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap()
            };
            let grads = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let grad = |v: &Var| grads.get(v).cloned().unwrap();
            (y, grad(&x), grad(&w), grad(&b))
        };
        let (a, c) = (run(true), run(false));
        close(&a.0, &c.0, "linear value");
        close(&a.1, &c.1, "linear dx");
        close(&a.2, &c.2, "linear dW");
        close(&a.3, &c.3, "linear db");
    }

    /// candle's matmul (the `gemm` crate, with its AVX-512 kernels where the CPU has them) agrees
    /// with an f64 reference within f32 rounding on the encoder's product shapes.
    #[test]
    fn matmul_agrees_with_an_f64_reference() {
        let dev = Device::Cpu;
        for (m, k, n) in [(512, 128, 384), (96, 512, 128), (77, 128, 1000), (128, 32, 128)] {
            let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let got = a.matmul(&b.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
            let (a, b) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
            for i in (0..m).step_by(7) {
                for j in (0..n).step_by(5) {
                    let exact: f64 = (0..k).map(|t| a[i][t] as f64 * b[j][t] as f64).sum();
                    let bound: f64 = (0..k).map(|t| (a[i][t] as f64 * b[j][t] as f64).abs()).sum();
                    // Summation error of k f32 products: at most about k * 2^-24 of the magnitudes.
                    let tolerance = bound * k as f64 * f32::EPSILON as f64;
                    assert!((got[i][j] as f64 - exact).abs() <= tolerance, "[{m}x{k}x{n}] ({i}, {j})");
                }
            }
        }
    }

    /// The fused cross entropy gives the composed loss and gradient, with and without label
    /// smoothing, on logits wide enough for the gradient to split over threads.
    #[test]
    fn fused_cross_entropy_matches_the_composed_loss() {
        let dev = Device::Cpu;
        let logits = Var::from_tensor(&Tensor::randn(0f32, 3.0, (40, 1000), &dev).unwrap()).unwrap();
        let targets = Tensor::from_vec((0..40u32).map(|i| i * 24 % 1000).collect(), 40, &dev).unwrap();
        for smoothing in [0.0, 0.2] {
            let run = |f: fn(&Tensor, &Tensor, f64) -> Result<Tensor>| {
                let loss = (f(logits.as_tensor(), &targets, smoothing).unwrap() * 3.0).unwrap();
                let grad = loss.backward().unwrap().get(&logits).unwrap().clone();
                (loss, grad)
            };
            let (fused, composed) = (run(cross_entropy), run(crate::worker::train::composed_cross_entropy));
            close(&fused.0, &composed.0, &format!("cross entropy value, smoothing {smoothing}"));
            close(&fused.1, &composed.1, &format!("cross entropy grad, smoothing {smoothing}"));
        }
    }

    #[test]
    fn cross_entropy_refuses_a_target_outside_the_classes() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let targets = Tensor::new(&[0u32, 3], &dev).unwrap();
        let error = cross_entropy(&logits, &targets, 0.0).unwrap_err().to_string();
        assert!(error.contains("target 3 is not one of the 3 classes"), "{error}");
    }

    /// The element-wise helpers' results as bits; always inlined, so through `wide_fn!` it is
    /// compiled for AVX2 and called directly it is not.
    type Bits = (Vec<u32>, Vec<u32>, Vec<(u32, u32, u32, u32)>);

    #[inline(always)]
    fn helper_bits(xs: &[f32]) -> Bits {
        let gelu = xs.iter().map(|&v| (0.5 * v * (1.0 + tanh(SQRT_2_OVER_PI * v))).to_bits()).collect();
        let exps = xs.iter().map(|&v| exp(v).to_bits()).collect();
        let rows = xs
            .chunks(61)
            .map(|r| {
                let (mean, rstd) = moments(r, 1e-12);
                (mean.to_bits(), rstd.to_bits(), max_lanes(r).to_bits(), dot_lanes(r, r).to_bits())
            })
            .collect();
        (gelu, exps, rows)
    }

    #[test]
    fn wide_kernels_give_the_same_bits_as_narrow_ones() {
        let xs: Vec<f32> = (0..4099).map(|i| (i as f32 * 0.37).sin() * 9.0 + (i % 7) as f32 * 1e-3).collect();
        wide_fn!(fn helper_bits_wide(xs: &[f32]) -> Bits = helper_bits;);
        assert!(helper_bits(&xs) == helper_bits_wide(&xs));
    }

    #[test]
    fn exp_matches_std_over_the_f32_range() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (ours, std) = (exp(x), x.exp());
            assert!(((ours - std) / std).abs() < 3e-7, "x = {x}: {ours} vs {std}");
            x += 0.00731;
        }
        assert_eq!(exp(0.0), 1.0);
        // Outside the normal range it clamps, and NaN stays NaN (a diverged loss must show).
        assert!(exp(f32::NEG_INFINITY) < 2e-38 && exp(1000.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }
}
