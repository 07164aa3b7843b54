//! Training throughput of the built-in candle workers, steady state, in tokens per second.
//!
//! The model is the reference: a BERT-style post-LN encoder, vocabulary 8000, hidden
//! 128, 2 layers, 4 heads, feed-forward 512, GELU, dropout 0.1, tied MLM decoder computed only on
//! the masked positions (15%), AdamW (about 1.46M parameters). MLM runs sequence 128 x batch 32;
//! the classification variant sequence 64 x batch 32 with 4 classes. Each configuration runs
//! in a child process per thread count (1 and 2), because candle's thread pools are sized once
//! per process.
//!
//! After the throughput table it times the MLM step's matrix products alone through candle's
//! matmul, the floor those kernels put under a step.
//!
//! PyTorch runs the same model and step in the same run (`benches/torch_reference.py`, in a child
//! per row, alternating with candle's), so each row's ratio compares like with like: set
//! `SWEEP_TORCH_PYTHON` to a Python with torch, or create `.venv-torch` with
//! `benches/torch-venv.sh`. Without one it prints candle's figures and says the ratio needs it.
//!
//! On a GPU: `SWEEP_BENCH_DEVICE=cuda:0 cargo bench --features cuda --bench training` (one row per
//! task, each step ending with a synchronize; `tests/gpu.sh` does this with its own toolkit).
//!
//! Run: `cargo bench --bench training`. Under `cargo test --benches` it runs two steps of each on
//! one thread, as a smoke test (without PyTorch).

use candle_core::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::process::Command;
use std::time::Instant;
use sweep::worker::finetune::ClsModel;
use sweep::worker::hparams::{Optim, Schedule, Shape, TokenizerKind};
use sweep::worker::model::Dropout;
use sweep::worker::pretrain::{self, MlmModel};
use sweep::worker::train::{smoothed_cross_entropy, Trainer};

const VOCAB: usize = 8000;
const BATCH: usize = 32;
/// The MLM task's sequence length.
const MLM_SEQ: usize = 128;

fn shape(max_len: usize) -> Shape {
    Shape { layers: 2, hidden: 128, heads: 4, ffn: 512, vocab_size: VOCAB, tokenizer: TokenizerKind::Bpe, max_len }
}

fn optim(seq_len: usize) -> Optim {
    Optim {
        lr: 1e-4,
        warmup: 0.0,
        schedule: Schedule::Constant,
        weight_decay: 0.01,
        grad_clip: 1.0,
        batch_size: BATCH,
        steps: 1_000_000,
        dropout: 0.1,
        seq_len,
    }
}

/// Milliseconds of one training step: forward (with data preparation), backward, optimizer.
#[derive(Clone, Copy)]
struct Split {
    forward: f64,
    backward: f64,
    update: f64,
}

impl Split {
    fn total(&self) -> f64 {
        self.forward + self.backward + self.update
    }
}

/// The device the benchmark trains on: `SWEEP_BENCH_DEVICE` (cpu, or cuda:N with `--features cuda`).
fn bench_device_name() -> String {
    std::env::var("SWEEP_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into())
}

/// Times `forward`, then the backward pass and the optimizer update on its loss. A GPU runs
/// asynchronously, so each phase ends with a synchronize there.
fn timed(device: &Device, trainer: &mut Trainer, forward: impl FnOnce() -> candle_core::Tensor) -> Split {
    let now = || {
        device.synchronize().unwrap();
        Instant::now()
    };
    let start = now();
    let loss = forward();
    let forwarded = now();
    let grads = loss.backward().unwrap();
    let backwarded = now();
    trainer.update(grads).unwrap();
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    Split { forward: ms(start, forwarded), backward: ms(forwarded, backwarded), update: ms(backwarded, now()) }
}

/// The split of each measured step.
fn measure(task: &str, warmup: usize, steps: usize) -> Vec<Split> {
    let device = sweep::worker::model::device(&bench_device_name()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut drop = Dropout::train(0.1, 1);
    let mut times = Vec::new();
    match task {
        "mlm" => {
            let seq = MLM_SEQ;
            let model = MlmModel::new(&shape(seq), &device, 1).unwrap();
            let mut trainer = Trainer::new(&model.vars, &["encoder.", "mlm."], &optim(seq)).unwrap();
            for i in 0..warmup + steps {
                let windows: Vec<Vec<u32>> =
                    (0..BATCH).map(|_| (0..seq).map(|_| rng.random_range(5..VOCAB as u32)).collect()).collect();
                let refs: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
                let batch = pretrain::mask(&refs, 0.15, VOCAB, &mut rng);
                let split = timed(&device, &mut trainer, || model.loss(&batch, &mut drop).unwrap());
                if i >= warmup {
                    times.push(split);
                }
            }
        }
        "cls" => {
            let seq = 64;
            let model = ClsModel::new(&shape(seq), 4, &device, 1).unwrap();
            let mut trainer = Trainer::new(&model.vars, &["encoder.", "classifier."], &optim(seq)).unwrap();
            // Full-length passages (seq - 2 tokens plus [CLS] and [SEP]): no padding.
            let encoded: Vec<Vec<u32>> =
                (0..BATCH).map(|_| (0..seq - 2).map(|_| rng.random_range(5..VOCAB as u32)).collect()).collect();
            let labels: Vec<usize> = (0..BATCH).map(|i| i % 4).collect();
            let picked: Vec<usize> = (0..BATCH).collect();
            for i in 0..warmup + steps {
                let split = timed(&device, &mut trainer, || {
                    let batch = model.batch(&encoded, &labels, &picked, seq).unwrap();
                    smoothed_cross_entropy(&model.logits(&batch, &mut drop).unwrap(), &batch.labels, 0.0).unwrap()
                });
                if i >= warmup {
                    times.push(split);
                }
            }
        }
        other => panic!("unknown task {other}"),
    }
    times
}

/// One matrix product of a training step: `[m, k] x [k, n]`, `count` times per step, with the
/// right operand transposed as the model stores it (`x W^T`) or not.
struct Product {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    count: usize,
    transposed: bool,
}

/// The matrix products of one MLM step (forward, and the two products of each one's
/// backward), timed alone through candle's matmul: the floor candle's CPU kernels put under
/// a step, whatever the rest of the step costs. Prints one line per product and the total.
fn matmul_floor(max_reps: usize) {
    let s = shape(MLM_SEQ);
    let (seq, tokens, masked) = (MLM_SEQ, BATCH * MLM_SEQ, BATCH * MLM_SEQ * 15 / 100);
    let (hidden, per_head, layers) = (s.hidden, s.hidden / s.heads, s.layers);
    let per_sequence = layers * BATCH * s.heads;
    let products = [
        Product { name: "qkv", m: tokens, k: hidden, n: 3 * hidden, count: layers, transposed: true },
        Product { name: "scores", m: seq, k: per_head, n: seq, count: per_sequence, transposed: true },
        Product { name: "context", m: seq, k: seq, n: per_head, count: per_sequence, transposed: false },
        Product { name: "attn_out", m: tokens, k: hidden, n: hidden, count: layers, transposed: true },
        Product { name: "ff_in", m: tokens, k: hidden, n: s.ffn, count: layers, transposed: true },
        Product { name: "ff_out", m: tokens, k: s.ffn, n: hidden, count: layers, transposed: true },
        Product { name: "mlm transform", m: masked, k: hidden, n: hidden, count: 1, transposed: true },
        Product { name: "mlm decoder", m: masked, k: hidden, n: VOCAB, count: 1, transposed: true },
    ];
    let device = Device::Cpu;
    let random = |dims: (usize, usize)| candle_core::Tensor::randn(0f32, 1.0, dims, &device).unwrap();
    let mut total = 0.0;
    for p in products {
        let a = random((p.m, p.k));
        let b = if p.transposed { random((p.n, p.k)).t().unwrap() } else { random((p.k, p.n)) };
        let g = random((p.m, p.n));
        // Forward, then backward: dA = G B^T and dB = A^T G.
        let once = || {
            let start = Instant::now();
            a.matmul(&b).unwrap();
            g.matmul(&b.t().unwrap()).unwrap();
            a.t().unwrap().matmul(&g).unwrap();
            start.elapsed().as_secs_f64() * 1000.0
        };
        once();
        let reps = (200 / p.count).clamp(1, max_reps);
        let ms = median((0..reps).map(|_| once()).collect()) * p.count as f64;
        let gflops = 6.0 * (p.m * p.k * p.n * p.count) as f64 / (ms / 1000.0) / 1e9;
        println!("{} {ms} {gflops}", p.name);
        total += ms;
    }
    println!("total {total} 0");
}

fn child(task: &str, threads: usize, warmup: usize, steps: usize) -> Vec<Split> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", task, &warmup.to_string(), &steps.to_string()])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("CANDLE_NUM_THREADS", threads.to_string())
        .output()
        .expect("run the benchmark child");
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let numbers: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(|t| t.parse().unwrap()).collect();
    numbers.chunks(3).map(|c| Split { forward: c[0], backward: c[1], update: c[2] }).collect()
}

/// The Python that runs the PyTorch reference, if there is one with torch.
fn torch_python() -> Option<String> {
    let python = std::env::var("SWEEP_TORCH_PYTHON").ok().or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv-torch/bin/python");
        std::path::Path::new(venv).exists().then(|| venv.to_string())
    })?;
    let works = Command::new(&python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    works.then_some(python)
}

/// Milliseconds of each measured PyTorch step of `task` on `threads` threads.
fn torch_child(python: &str, task: &str, threads: usize, warmup: usize, steps: usize) -> Vec<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_reference.py");
    let out = Command::new(python)
        .args([script, task, &threads.to_string(), &warmup.to_string(), &steps.to_string(), &bench_device_name()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .expect("run the PyTorch reference");
    assert!(out.status.success(), "PyTorch reference failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(|t| t.parse().unwrap()).collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (task, warmup, steps) = (&args[i + 1], args[i + 2].parse().unwrap(), args[i + 3].parse().unwrap());
        sweep::worker::common::keep_freed_memory();
        sweep::worker::common::quiet_idle_threads();
        if task == "matmul" {
            matmul_floor(steps);
            return;
        }
        let splits = measure(task, warmup, steps);
        let numbers: Vec<String> =
            splits.iter().flat_map(|s| [s.forward, s.backward, s.update]).map(|t| t.to_string()).collect();
        println!("{}", numbers.join(" "));
        return;
    }
    // `cargo bench` passes --bench; `cargo test` does not.
    let full = args.iter().any(|a| a == "--bench");
    let on_cpu = bench_device_name() == "cpu";
    let (warmup, steps, thread_counts) = match (full, on_cpu) {
        (true, true) => (3, 20, vec![1, 2]),
        (true, false) => (10, 50, vec![1]),
        (false, _) => (1, 1, vec![1]),
    };
    println!("device: {}", bench_device_name());
    let python = if full { torch_python() } else { None };
    if python.is_none() && full {
        println!("no PyTorch found (SWEEP_TORCH_PYTHON, or benches/torch-venv.sh): the ratios need it\n");
    }
    println!(
        "task  threads  ms/step median [min, max]  (forward / backward / update)   tokens/s   PyTorch tokens/s [min, max]   ratio"
    );
    let mut torch_mlm_step = None;
    for (task, seq) in [("mlm", MLM_SEQ), ("cls", 64)] {
        for &threads in &thread_counts {
            let splits = child(task, threads, warmup, steps);
            let mut totals: Vec<f64> = splits.iter().map(Split::total).collect();
            totals.sort_by(f64::total_cmp);
            let step = median(totals.clone());
            let part = |f: fn(&Split) -> f64| median(splits.iter().map(f).collect());
            let tokens_per_s = |ms: f64| (BATCH * seq) as f64 / (ms / 1000.0);
            let tokens = tokens_per_s(step);
            let torch = python.as_deref().map(|py| {
                let mut ms = torch_child(py, task, threads, warmup, steps);
                ms.sort_by(f64::total_cmp);
                let torch_step = median(ms.clone());
                if task == "mlm" && threads == 1 {
                    torch_mlm_step = Some(torch_step);
                }
                let spread = format!("[{:.0}, {:.0}]", tokens_per_s(ms[ms.len() - 1]), tokens_per_s(ms[0]));
                format!("{:>8.0} {spread:<18}   {:.2}", tokens_per_s(torch_step), torch_step / step)
            });
            println!(
                "{task:<5} {threads:>7}  {step:>8.1} [{:.1}, {:.1}]  ({:.1} / {:.1} / {:.1})   {tokens:>8.0}   {}",
                totals[0],
                totals[totals.len() - 1],
                part(|s| s.forward),
                part(|s| s.backward),
                part(|s| s.update),
                torch.unwrap_or_else(|| "(needs PyTorch)".into())
            );
        }
    }
    if on_cpu {
        print_matmul_floor(if full { 15 } else { 1 }, torch_mlm_step);
    }
}

/// Runs the matmul floor in a one-thread child (median of up to `max_reps` timings per
/// product) and prints it against PyTorch's whole step, when PyTorch ran.
fn print_matmul_floor(max_reps: usize, torch_step: Option<f64>) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", "matmul", "0", &max_reps.to_string()])
        .env("RAYON_NUM_THREADS", "1")
        .env("CANDLE_NUM_THREADS", "1")
        .output()
        .expect("run the matmul child");
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    println!("\nmlm step's matrix products alone, candle matmul, 1 thread (forward + both backward products):");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.rsplitn(3, ' ').collect();
        let (gflops, ms, name) = (fields[0], fields[1], fields[2]);
        let ms: f64 = ms.parse().unwrap();
        if name == "total" {
            let against =
                torch_step.map_or(String::new(), |t| format!(", {:.2} of PyTorch's whole step ({t:.0} ms)", t / ms));
            println!(
                "  total            {ms:>7.1} ms/step: caps mlm at {:.0} tokens/s{against}",
                (BATCH * MLM_SEQ) as f64 / (ms / 1000.0)
            );
        } else {
            println!("  {name:<15}  {ms:>7.1} ms/step  {:>5.1} GFLOP/s", gflops.parse::<f64>().unwrap());
        }
    }
}
