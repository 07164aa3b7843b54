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

/// An optimizer's steps taken and each variable's first and second moments, flattened, in the
/// order the variables were given: what a checkpoint keeps.
pub type State = (i32, Vec<(Vec<f32>, Vec<f32>)>);

impl FusedAdamW {
    /// Its `State` (a variable's moments are empty before its first update).
    pub fn state(&self) -> State {
        let moments = self.slots.iter().map(|s| {
            let m = s.moments.lock().expect("moments lock");
            (m.m.clone(), m.v.clone())
        });
        (self.step, moments.collect())
    }

    /// Puts back what `state` returned.
    pub fn set_state(&mut self, (step, moments): State) -> Result<()> {
        if moments.len() != self.slots.len() {
            bail!("AdamW state for {} variables, the model has {}", moments.len(), self.slots.len());
        }
        for (slot, (m, v)) in self.slots.iter().zip(moments) {
            let count = slot.var.elem_count();
            if (m.len() != count && !m.is_empty()) || m.len() != v.len() {
                bail!("AdamW state of {} values for a variable of {count}", m.len());
            }
            *slot.moments.lock().expect("moments lock") = Moments { m, v };
        }
        self.step = step;
        Ok(())
    }
}

/// AdamW from candle's tensor ops, for devices other than the CPU: candle_nn's update rule,
/// with its moments in reach of a checkpoint.
pub struct TensorAdamW {
    slots: Vec<TensorSlot>,
    step: i32,
}

struct TensorSlot {
    var: Var,
    weight_decay: f64,
    m: Tensor,
    v: Tensor,
}

impl TensorAdamW {
    /// `vars` with the weight decay each one takes.
    pub fn new(vars: Vec<(Var, f64)>) -> Result<TensorAdamW> {
        let slots = vars
            .into_iter()
            .map(|(var, weight_decay)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(TensorSlot { var, weight_decay, m: zeros.clone(), v: zeros })
            })
            .collect::<Result<_>>()?;
        Ok(TensorAdamW { slots, step: 0 })
    }

    /// One step at learning rate `lr`, each gradient multiplied by `scale` first (clipping).
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64, scale: f64) -> Result<()> {
        self.step += 1;
        let (beta1, beta2) = (BETA1 as f64, BETA2 as f64);
        let bias1 = 1.0 - beta1.powi(self.step);
        let bias2 = 1.0 - beta2.powi(self.step);
        for slot in &mut self.slots {
            let Some(grad) = grads.get(&slot.var) else { continue };
            let grad = if scale == 1.0 { grad.clone() } else { (grad * scale)? };
            slot.m = ((&slot.m * beta1)? + (&grad * (1.0 - beta1))?)?;
            slot.v = ((&slot.v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let adjusted = ((&slot.m / bias1)? / ((&slot.v / bias2)?.sqrt()? + EPS as f64)?)?;
            let decayed = (slot.var.as_tensor() * (1.0 - lr * slot.weight_decay))?;
            slot.var.set(&(decayed - (adjusted * lr)?)?)?;
        }
        Ok(())
    }

    /// Its `State`.
    pub fn state(&self) -> Result<State> {
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let moments = self.slots.iter().map(|s| Ok((flat(&s.m)?, flat(&s.v)?))).collect::<Result<_>>()?;
        Ok((self.step, moments))
    }

    /// Puts back what `state` (of either optimizer) returned.
    pub fn set_state(&mut self, (step, moments): State) -> Result<()> {
        if moments.len() != self.slots.len() {
            bail!("AdamW state for {} variables, the model has {}", moments.len(), self.slots.len());
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(moments) {
            let (shape, device) = (slot.var.shape().clone(), slot.var.device().clone());
            if !m.is_empty() {
                slot.m = Tensor::from_vec(m, &shape, &device)?;
                slot.v = Tensor::from_vec(v, &shape, &device)?;
            }
        }
        self.step = step;
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

    /// The optimizer of other devices, run on the CPU: same rule as the fused one, and a
    /// restored state goes on exactly as the state it was taken from.
    #[test]
    fn the_tensor_adamw_matches_the_fused_one_and_resumes_exactly() {
        let device = Device::Cpu;
        let start = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.0, -0.3]], &device).unwrap();
        let vars: Vec<Var> = (0..3).map(|_| Var::from_tensor(&start).unwrap()).collect();
        let mut fused = FusedAdamW::new(vec![(vars[0].clone(), 0.01)]);
        let mut tensor = TensorAdamW::new(vec![(vars[1].clone(), 0.01)]).unwrap();
        let loss = |v: &Var, step: i32| {
            let target = (step as f64 * 0.3).sin();
            (v.as_tensor() - target).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap()
        };
        let mut resumed = None;
        for step in 0..6 {
            fused.step(&loss(&vars[0], step), 0.05, 0.7).unwrap();
            tensor.step(&loss(&vars[1], step), 0.05, 0.7).unwrap();
            if step == 2 {
                // A second optimizer takes over from the tensor one's state and weights.
                vars[2].set(vars[1].as_tensor()).unwrap();
                let mut other = TensorAdamW::new(vec![(vars[2].clone(), 0.01)]).unwrap();
                other.set_state(tensor.state().unwrap()).unwrap();
                resumed = Some(other);
            } else if let Some(other) = resumed.as_mut() {
                other.step(&loss(&vars[2], step), 0.05, 0.7).unwrap();
            }
        }
        let values = |v: &Var| v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (x, y) in values(&vars[0]).iter().zip(&values(&vars[1])) {
            assert!((x - y).abs() < 1e-5, "fused {x} vs tensor {y}");
        }
        assert_eq!(values(&vars[1]), values(&vars[2]), "resumed from state, bit for bit");
        let (steps, moments) = fused.state();
        assert_eq!((steps, moments[0].0.len()), (6, 6));
    }

    #[test]
    fn sum_of_squares_reads_the_values() {
        let t = Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        assert_eq!(sum_of_squares(&t).unwrap(), 25.0);
    }
}
