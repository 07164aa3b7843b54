//! A BERT-style post-LN transformer encoder in candle, with a tied masked-LM head and a
//! classification head. candle's own fused layer norm and softmax have no backward (DESIGN.md),
//! so the element-wise parts go through our fused kernels with backward passes (`fused.rs`),
//! and weights and dropout masks come from our own seeded RNG (candle's CPU seeding does not
//! work).

use super::hparams::Shape;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::{SmallRng, StdRng};
use rand::{RngCore, SeedableRng};
use rand_distr::{Distribution, Normal};

const LN_EPS: f32 = 1e-12;
/// BERT's initialiser: normal with this standard deviation for every weight matrix.
const INIT_STD: f64 = 0.02;

/// Dropout that draws its masks from a seeded RNG; inactive at evaluation.
/// (A small fast generator: masks take millions of draws per step.)
pub struct Dropout {
    p: f64,
    rng: Option<SmallRng>,
    /// Seeds drawn so far: with the seed, the generator's whole state (checkpoints keep it).
    draws: u64,
}

impl Dropout {
    pub fn train(p: f64, seed: u64) -> Dropout {
        Dropout { p, rng: (p > 0.0).then(|| SmallRng::seed_from_u64(seed ^ 0x0D80_F0A7)), draws: 0 }
    }

    pub fn eval() -> Dropout {
        Dropout { p: 0.0, rng: None, draws: 0 }
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// How many masks' seeds were drawn: `skip` this many on a fresh `train` to be where this
    /// one is.
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// Moves the generator on by `draws` seeds (a few nanoseconds each).
    pub fn skip(&mut self, draws: u64) {
        if let Some(rng) = self.rng.as_mut() {
            for _ in 0..draws {
                rng.next_u64();
            }
            self.draws += draws;
        }
    }

    /// For a kernel that draws its own masks: the drop probability and a seed for this call's
    /// masks, or None when nothing is dropped.
    fn seed_for_kernel(&mut self) -> Option<(f32, u64)> {
        let p = self.p as f32;
        let rng = self.rng.as_mut()?;
        self.draws += 1;
        Some((p, rng.next_u64()))
    }

    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let Some((p, seed)) = self.seed_for_kernel() else { return Ok(x.clone()) };
        let mut mask = vec![0f32; x.elem_count()];
        super::fused::par_rows(&mut mask, MASK_BLOCK, |first, blocks| {
            for (i, block) in blocks.chunks_mut(MASK_BLOCK).enumerate() {
                dropout_mask(p, seed ^ ((first + i) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), block);
            }
        });
        x * Tensor::from_vec(mask, x.shape(), x.device())?
    }
}

/// Values per independently seeded block of a dropout mask: blocks are drawn on candle's
/// threads, and the mask is the same whatever their number.
const MASK_BLOCK: usize = 4096;

/// Dropout multipliers (0, or 1 / keep) from a generator seeded with `seed`, four decisions per
/// 64-bit draw (16 bits each: the keep rate is exact to 1 / 65,536).
pub(super) fn dropout_mask(p: f32, seed: u64, out: &mut [f32]) {
    let keep = 1.0 - p;
    let threshold = (keep as f64 * 65_536.0).round() as u64;
    let mut rng = SmallRng::seed_from_u64(seed);
    for chunk in out.chunks_mut(4) {
        let bits = rng.next_u64();
        for (i, m) in chunk.iter_mut().enumerate() {
            *m = if (bits >> (16 * i)) & 0xFFFF < threshold { 1.0 / keep } else { 0.0 };
        }
    }
}

/// Layer norm with learned gain and bias.
struct Norm {
    gamma: Tensor,
    beta: Tensor,
}

impl Norm {
    fn new(size: usize, vb: VarBuilder) -> Result<Norm> {
        let gamma = vb.get_with_hints(size, "gamma", Init::Const(1.0))?;
        let beta = vb.get_with_hints(size, "beta", Init::Const(0.0))?;
        Ok(Norm { gamma, beta })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::fused::layer_norm(x, &self.gamma, &self.beta, LN_EPS)
    }
}

/// `x [n, input] -> [n, output]`: a matrix product and a fused bias add.
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::fused::linear(x, &self.weight, &self.bias)
    }
}

fn linear(input: usize, output: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints((output, input), "weight", Init::Const(0.0))?;
    let bias = vb.get_with_hints(output, "bias", Init::Const(0.0))?;
    Ok(Linear { weight, bias })
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: Norm,
}

impl Layer {
    fn new(s: &Shape, vb: VarBuilder) -> Result<Layer> {
        Ok(Layer {
            qkv: linear(s.hidden, 3 * s.hidden, vb.pp("qkv"))?,
            attn_out: linear(s.hidden, s.hidden, vb.pp("attn_out"))?,
            attn_norm: Norm::new(s.hidden, vb.pp("attn_norm"))?,
            ff_in: linear(s.hidden, s.ffn, vb.pp("ff_in"))?,
            ff_out: linear(s.ffn, s.hidden, vb.pp("ff_out"))?,
            ff_norm: Norm::new(s.hidden, vb.pp("ff_norm"))?,
        })
    }

    /// `x` is `[batch * len, hidden]`; `mask` is an additive `[batch, 1, 1, len]` or none.
    fn forward(
        &self,
        x: &Tensor,
        dims: (usize, usize, usize),
        mask: Option<&Tensor>,
        drop: &mut Dropout,
    ) -> Result<Tensor> {
        let (b, l, heads) = dims;
        let h = x.dim(1)?;
        let d = h / heads;
        let qkv = self.qkv.forward(x)?;
        let context = if x.device().is_cpu() {
            let mask = mask.map(|m| m.flatten_all()?.to_vec1::<f32>()).transpose()?.map(std::sync::Arc::new);
            let attention =
                super::attention::Attention { batch: b, len: l, heads, mask, dropout: drop.seed_for_kernel() };
            attention.forward(&qkv)?
        } else {
            let qkv = qkv.reshape((b, l, 3, heads, d))?.permute((2, 0, 3, 1, 4))?;
            let q = (qkv.get(0)?.contiguous()? * (1.0 / (d as f64).sqrt()))?;
            let (k, v) = (qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(mask) = mask {
                scores = scores.broadcast_add(mask)?;
            }
            let probs = drop.apply(&super::fused::softmax_last_dim(&scores)?)?;
            probs.matmul(&v)?.transpose(1, 2)?.reshape((b * l, h))?
        };
        let attended = drop.apply(&self.attn_out.forward(&context)?)?;
        let x = self.attn_norm.forward(&(x + attended)?)?;
        let ff = self.ff_out.forward(&super::fused::gelu(&self.ff_in.forward(&x)?)?)?;
        self.ff_norm.forward(&(x + drop.apply(&ff)?)?)
    }
}

/// Token and position embeddings, then the layers. Its variables live under `encoder.`.
pub struct Encoder {
    tokens: Tensor,
    positions: Tensor,
    norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
}

impl Encoder {
    pub fn new(s: &Shape, vb: VarBuilder) -> Result<Encoder> {
        let vb = vb.pp("encoder");
        let tokens = vb.get_with_hints((s.vocab_size, s.hidden), "tokens", Init::Const(0.0))?;
        let positions = vb.get_with_hints((s.max_len, s.hidden), "positions", Init::Const(0.0))?;
        let norm = Norm::new(s.hidden, vb.pp("norm"))?;
        let layers = (0..s.layers).map(|i| Layer::new(s, vb.pp(format!("layer{i}")))).collect::<Result<_>>()?;
        Ok(Encoder { tokens, positions, norm, layers, heads: s.heads })
    }

    /// Hidden states `[batch * len, hidden]` for token ids `[batch, len]`; `pad` is `[batch, len]`
    /// with 1 for real tokens and 0 for padding (none: no padding).
    pub fn forward(&self, ids: &Tensor, pad: Option<&Tensor>, drop: &mut Dropout) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let h = self.tokens.dim(1)?;
        // Positions are added as a bias on each sequence's flattened [l * h] row.
        let tokens = self.tokens.embedding(&ids.flatten_all()?)?.reshape((b, l * h))?;
        let positions = self.positions.narrow(0, 0, l)?.flatten_all()?;
        let x = super::fused::add_bias(&tokens, &positions)?.reshape((b * l, h))?;
        let mut x = drop.apply(&self.norm.forward(&x)?)?;
        // Padding gets a large negative score so attention ignores it.
        let mask = match pad {
            Some(pad) => Some(((pad.reshape((b, 1, 1, l))? - 1.0)? * 1e4)?),
            None => None,
        };
        for layer in &self.layers {
            x = layer.forward(&x, (b, l, self.heads), mask.as_ref(), drop)?;
        }
        Ok(x)
    }

    pub fn token_embeddings(&self) -> &Tensor {
        &self.tokens
    }
}

/// BERT's MLM head: dense, GELU, layer norm, then the decoder tied to the token embeddings.
pub struct MlmHead {
    transform: Linear,
    norm: Norm,
    bias: Tensor,
}

impl MlmHead {
    pub fn new(s: &Shape, vb: VarBuilder) -> Result<MlmHead> {
        let vb = vb.pp("mlm");
        Ok(MlmHead {
            transform: linear(s.hidden, s.hidden, vb.pp("transform"))?,
            norm: Norm::new(s.hidden, vb.pp("norm"))?,
            bias: vb.get_with_hints(s.vocab_size, "bias", Init::Const(0.0))?,
        })
    }

    /// Vocabulary logits for the hidden states of the masked positions only.
    pub fn forward(&self, encoder: &Encoder, hidden: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(&super::fused::gelu(&self.transform.forward(hidden)?)?)?;
        super::fused::linear(&x, encoder.token_embeddings(), &self.bias)
    }
}

/// Mean of the real tokens' hidden states, then a linear layer to the classes.
pub struct Classifier {
    out: Linear,
}

impl Classifier {
    pub fn new(hidden: usize, classes: usize, vb: VarBuilder) -> Result<Classifier> {
        Ok(Classifier { out: linear(hidden, classes, vb.pp("classifier"))? })
    }

    pub fn forward(&self, hidden: &Tensor, pad: &Tensor, drop: &mut Dropout) -> Result<Tensor> {
        let (b, l) = pad.dims2()?;
        let h = hidden.dim(1)?;
        let mask = pad.reshape((b, l, 1))?;
        let summed = hidden.reshape((b, l, h))?.broadcast_mul(&mask)?.sum(1)?;
        let pooled = summed.broadcast_div(&mask.sum(1)?.clamp(1.0, f64::MAX)?)?;
        self.out.forward(&drop.apply(&pooled)?)
    }
}

/// Gives every variable its starting value from `seed`, in name order, so one seed always
/// makes the same model: normal(0, 0.02) for matrices and embeddings, ones for layer-norm
/// gains, zeros for biases.
pub fn initialise(vars: &VarMap, seed: u64) -> Result<()> {
    let data = vars.data().lock().expect("var map lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, INIT_STD as f32).expect("valid normal");
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let value = if name.ends_with("gamma") {
            Tensor::ones(&shape, DType::F32, var.device())?
        } else if var.rank() == 2 {
            let values: Vec<f32> = (0..shape.elem_count()).map(|_| normal.sample(&mut rng)).collect();
            Tensor::from_vec(values, &shape, var.device())?
        } else {
            Tensor::zeros(&shape, DType::F32, var.device())?
        };
        var.set(&value)?;
    }
    Ok(())
}

/// Whether decoupled weight decay applies: matrices and embeddings yes, gains and biases no.
pub fn decays(name: &str, rank: usize) -> bool {
    rank == 2 && !name.ends_with("gamma")
}

/// The device named by `--device`: `cpu`, or `cuda:N` when built with the `cuda` feature.
pub fn device(name: &str) -> std::result::Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        other => {
            let ordinal = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("unknown device `{other}`: expected cpu or cuda:N"))?;
            if cfg!(feature = "cuda") {
                Device::new_cuda(ordinal).map_err(|e| format!("cannot open cuda:{ordinal}: {e}"))
            } else {
                Err(format!("`{other}` needs a build with the `cuda` feature (cargo build --features cuda)"))
            }
        }
    }
}
