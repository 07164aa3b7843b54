"""PyTorch replica of `sweep worker pretrain` on the shipped Brown text: the same encoder
(post-LN, or pre-LN with --preln), windows, BERT masking, AdamW with weight decay on matrices,
clipping, warmup and cosine schedule and validation batches, to tell whether a perplexity plateau
is the model's and data's or a bug of ours.

Usage: python benches/mlm_reference.py --tok sweep-runs/cache/tokenizer-HASH.json [--steps 2000]
  [--lr 2e-3] [--hidden 64] [--layers 2] [--preln] [--threads 1]
The tokenizer is the one a pretraining trial trained and cached (vocab_size 8000 by default).
Prints the validation loss and perplexity every --eval_every steps.
"""
import argparse, gzip, math, os, time
import numpy as np, torch, torch.nn.functional as F
from torch import nn
from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=2000)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--hidden", type=int, default=64)
ap.add_argument("--layers", type=int, default=2)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--ffn", type=int, default=256)
ap.add_argument("--warmup", type=float, default=0.05)
ap.add_argument("--dropout", type=float, default=0.1)
ap.add_argument("--preln", action="store_true")
ap.add_argument("--tok", required=True, help="a tokenizer.json cached by a pretraining trial")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--eval_every", type=int, default=250)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--wd", type=float, default=0.01)
ap.add_argument("--betas2", type=float, default=0.999)
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(1)
tok = Tokenizer.from_file(a.tok); V = tok.get_vocab_size()
CLS, SEP, MASK = 2, 3, 4
def windows(path):
    lines = [l.rstrip("\n") for l in gzip.open(path, "rt")]
    stream = []
    for enc in tok.encode_batch(lines, add_special_tokens=False):
        stream.extend(enc.ids); stream.append(SEP)
    body = a.seq - 1; n = len(stream) // body
    arr = np.array(stream[: n * body]).reshape(n, body)
    return np.concatenate([np.full((n, 1), CLS), arr], 1)
B = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "worker", "brown") + "/"
train, valid = windows(B + "pretrain-train.txt.gz"), windows(B + "pretrain-valid.txt.gz")
print("vocab", V, "train windows", len(train), "valid", len(valid), flush=True)
rng = np.random.default_rng(1)
def mask(w, rng):
    w = torch.tensor(w)
    pick = torch.from_numpy(rng.random(w.shape) < 0.15); pick[:, 0] = False
    roll = torch.from_numpy(rng.random(w.shape))
    ids = w.clone()
    ids[pick & (roll < 0.8)] = MASK
    rnd = pick & (roll >= 0.8) & (roll < 0.9)
    ids[rnd] = torch.from_numpy(rng.integers(MASK + 1, V, w.shape))[rnd]
    return ids, pick.flatten(), w.flatten()[pick.flatten()]
erng = np.random.default_rng(0xE7A1)
evalb = [mask(valid[i:i + a.batch], erng) for i in range(0, min(64, len(valid)), a.batch)]
H = a.hidden
class Layer(nn.Module):
    def __init__(s):
        super().__init__()
        s.qkv = nn.Linear(H, 3 * H); s.attn_out = nn.Linear(H, H); s.n1 = nn.LayerNorm(H, eps=1e-12)
        s.ff_in = nn.Linear(H, a.ffn); s.ff_out = nn.Linear(a.ffn, H); s.n2 = nn.LayerNorm(H, eps=1e-12)
        s.drop = nn.Dropout(a.dropout)
    def attn(s, x, b, l):
        d = H // a.heads
        qkv = s.qkv(x).view(b, l, 3, a.heads, d).permute(2, 0, 3, 1, 4)
        p = s.drop(torch.softmax((qkv[0] / math.sqrt(d)) @ qkv[1].transpose(-1, -2), -1))
        return s.drop(s.attn_out((p @ qkv[2]).transpose(1, 2).reshape(b * l, H)))
    def ff(s, x): return s.drop(s.ff_out(F.gelu(s.ff_in(x), approximate="tanh")))
    def forward(s, x, b, l):
        if a.preln:
            x = x + s.attn(s.n1(x), b, l)
            return x + s.ff(s.n2(x))
        x = s.n1(x + s.attn(x, b, l))
        return s.n2(x + s.ff(x))
class Mlm(nn.Module):
    def __init__(s):
        super().__init__()
        s.tokens = nn.Embedding(V, H); s.pos = nn.Embedding(a.seq, H); s.norm = nn.LayerNorm(H, eps=1e-12)
        s.layers = nn.ModuleList(Layer() for _ in range(a.layers)); s.drop = nn.Dropout(a.dropout)
        s.final = nn.LayerNorm(H, eps=1e-12)
        s.transform = nn.Linear(H, H); s.hn = nn.LayerNorm(H, eps=1e-12); s.bias = nn.Parameter(torch.zeros(V))
        for n, p in s.named_parameters():
            if p.dim() == 2: nn.init.normal_(p, 0, 0.02)
            elif n.endswith("bias") or n == "bias": nn.init.zeros_(p)
    def loss(s, ids, pick, tgt):
        b, l = ids.shape
        x = s.drop(s.norm((s.tokens(ids) + s.pos.weight[:l]).reshape(b * l, H)))
        for layer in s.layers: x = layer(x, b, l)
        if a.preln: x = s.final(x)
        x = s.hn(F.gelu(s.transform(x[pick]), approximate="tanh"))
        return F.cross_entropy(x @ s.tokens.weight.t() + s.bias, tgt)
m = Mlm()
mat = [p for p in m.parameters() if p.dim() == 2]; oth = [p for p in m.parameters() if p.dim() != 2]
opt = torch.optim.AdamW([{"params": mat, "weight_decay": a.wd}, {"params": oth, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, a.betas2))
wu = math.ceil(a.warmup * a.steps)
def lr_at(step):
    if step <= wu: return a.lr * step / wu
    pr = (step - wu) / max(1, a.steps - wu); return a.lr * 0.5 * (1 + math.cos(math.pi * pr))
order = []; run = 0.0; seen = 0; t0 = time.time()
for step in range(1, a.steps + 1):
    if len(order) < a.batch: order.extend(rng.permutation(len(train)).tolist())
    idx, order = order[:a.batch], order[a.batch:]
    ids, pick, tgt = mask(train[idx], rng)
    for g in opt.param_groups: g["lr"] = lr_at(step)
    m.train(); loss = m.loss(ids, pick, tgt)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    run += loss.item(); seen += 1
    if step % a.eval_every == 0 or step == a.steps:
        m.eval()
        with torch.no_grad():
            tot = sum(m.loss(*e).item() * len(e[2]) for e in evalb); cnt = sum(len(e[2]) for e in evalb)
        vl = tot / cnt
        print(f"step {step} train {run/seen:.3f} val {vl:.3f} ppl {math.exp(vl):.1f} t {time.time()-t0:.0f}s", flush=True)
        run = 0.0; seen = 0
