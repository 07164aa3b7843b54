//! AdamW on the CPU as one in-place pass per variable. candle_nn's AdamW composes about a
//! dozen tensor ops per variable and step, each writing a fresh buffer, and global-norm
//! clipping two more (a squared copy and a scaled copy of every gradient); here the moments
//! live in plain vectors, the clipping scale is folded into the step, and the norm is read
//! straight from the gradients. Same update rule and defaults as candle_nn's (decoupled decay).

use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Storage, Tensor, Var};
use std::sync::Mutex;

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// One variable with its first and second moments.
struct Slot {
    var: Var,
    weight_decay: f32,
    moments: Mutex<Moments>,
}

#[derive(Default)]
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

pub struct FusedAdamW {
    slots: Vec<Slot>,
    step: i32,
}

impl FusedAdamW {
    /// `vars` with the weight decay each one takes.
    pub fn new(vars: Vec<(Var, f64)>) -> FusedAdamW {
        let slots = vars
            .into_iter()
            .map(|(var, decay)| Slot { var, weight_decay: decay as f32, moments: Mutex::default() })
            .collect();
        FusedAdamW { slots, step: 0 }
    }

    /// One step at learning rate `lr`, each gradient multiplied by `scale` first (clipping).
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64, scale: f64) -> Result<()> {
        self.step += 1;
        for slot in &self.slots {
            let Some(grad) = grads.get(&slot.var) else { continue };
            let update = Update {
                moments: &slot.moments,
                lr: lr as f32,
                decay: 1.0 - lr as f32 * slot.weight_decay,
                scale: scale as f32,
                bias1: 1.0 - BETA1.powi(self.step),
                bias2: 1.0 - BETA2.powi(self.step),
            };
            slot.var.as_tensor().inplace_op2(&grad.contiguous()?, &update)?;
        }
        Ok(())
    }
}

/// The sum of the squares of a CPU tensor's values, read in place.
pub fn sum_of_squares(t: &Tensor) -> Result<f64> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(values)) = &*storage else { bail!("sum_of_squares takes f32 CPU tensors") };
    let Some((start, end)) = layout.contiguous_offsets() else { bail!("sum_of_squares takes contiguous tensors") };
    Ok(values[start..end].iter().map(|&x| (x as f64) * (x as f64)).sum())
}

/// One AdamW step over a tensor's values; `[scale, decay, step, root_bias2]` as in `Update`.
#[inline(always)]
fn adamw_rows_body(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 4]) {
    let [scale, decay, step, root_bias2] = k;
    for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * scale;
        *m = BETA1 * *m + (1.0 - BETA1) * g;
        *v = BETA2 * *v + (1.0 - BETA2) * g * g;
        // m̂ / (sqrt(v̂) + eps), with the bias corrections folded into two scalars.
        *p = *p * decay - step * *m / (v.sqrt() / root_bias2 + EPS);
    }
}

super::fused::wide_fn!(fn adamw_rows(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 4]) = adamw_rows_body;);

struct Update<'a> {
    moments: &'a Mutex<Moments>,
    lr: f32,
    /// `1 - lr * weight_decay`: decoupled decay shrinks the weight before the Adam step.
    decay: f32,
    scale: f32,
    bias1: f32,
    bias2: f32,
}

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, param: &mut CpuStorage, pl: &Layout, grad: &CpuStorage, gl: &Layout) -> Result<()> {
        let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (param, grad) else { bail!("AdamW takes f32 tensors") };
        let (Some((ps, pe)), Some((gs, ge))) = (pl.contiguous_offsets(), gl.contiguous_offsets()) else {
            bail!("AdamW takes contiguous tensors")
        };
        let (param, grad) = (&mut param[ps..pe], &grad[gs..ge]);
        if param.len() != grad.len() {
            bail!("AdamW: {} values but {} gradients", param.len(), grad.len());
        }
        let mut moments = self.moments.lock().expect("moments lock");
        let Moments { m, v } = &mut *moments;
        if m.is_empty() {
            m.resize(param.len(), 0.0);
            v.resize(param.len(), 0.0);
        }
        let step = self.lr / self.bias1;
        let root_bias2 = self.bias2.sqrt();
        adamw_rows(param, grad, m, v, [self.scale, self.decay, step, root_bias2]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    #[test]
    fn matches_candles_adamw() {
        let device = Device::Cpu;
        let start = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.0, -0.3]], &device).unwrap();
        let (ours, theirs) = (Var::from_tensor(&start).unwrap(), Var::from_tensor(&start).unwrap());
        let mut fused = FusedAdamW::new(vec![(ours.clone(), 0.01)]);
        let params = ParamsAdamW { lr: 0.05, weight_decay: 0.01, ..ParamsAdamW::default() };
        let mut reference = AdamW::new(vec![theirs.clone()], params).unwrap();
        for step in 0..5 {
            let target = (step as f64 * 0.3).sin();
            let loss = |v: &Var| (v.as_tensor() - target).unwrap().sqr().unwrap().sum_all().unwrap();
            fused.step(&loss(&ours).backward().unwrap(), 0.05, 1.0).unwrap();
            reference.step(&loss(&theirs).backward().unwrap()).unwrap();
        }
        let (a, b) = (
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sum_of_squares_reads_the_values() {
        let t = Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        assert_eq!(sum_of_squares(&t).unwrap(), 25.0);
    }
}
