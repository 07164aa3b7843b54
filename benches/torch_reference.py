"""PyTorch reference for `cargo bench --bench training`: the same model and step as sweep's
built-in workers, timed in the same run so the ratio compares like with like.

The model: a BERT-style post-LN encoder (vocabulary 8000, hidden 128, 2 layers, 4 heads, FFN
512, tanh GELU, dropout 0.1), eager fp32, AdamW (lr 1e-4, weight decay 0.01 on matrices) with
gradient clipping at 1.0. `mlm`: sequence 128 x batch 32, 15% of positions masked, the tied
decoder computed on the masked positions only. `cls`: sequence 64 x batch 32, mean pooling,
4 classes.

Usage: python benches/torch_reference.py TASK THREADS WARMUP STEPS [DEVICE=cpu]
Prints the milliseconds of each measured step on one line. On a GPU (DEVICE cuda:N) each step
ends with a synchronize, as the candle side does.
"""

import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, HIDDEN, LAYERS, HEADS, FFN, BATCH, DROPOUT = 8000, 128, 2, 4, 512, 32, 0.1


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.ff_in = nn.Linear(HIDDEN, FFN)
        self.ff_out = nn.Linear(FFN, HIDDEN)
        self.ff_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x, b, l):
        d = HIDDEN // HEADS
        qkv = self.qkv(x).view(b, l, 3, HEADS, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (1.0 / math.sqrt(d)), qkv[1], qkv[2]
        probs = self.drop(torch.softmax(q @ k.transpose(-1, -2), dim=-1))
        context = (probs @ v).transpose(1, 2).reshape(b * l, HIDDEN)
        x = self.attn_norm(x + self.drop(self.attn_out(context)))
        ff = self.ff_out(F.gelu(self.ff_in(x), approximate="tanh"))
        return self.ff_norm(x + self.drop(ff))


class Encoder(nn.Module):
    def __init__(self, max_len):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, HIDDEN)
        self.positions = nn.Embedding(max_len, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.drop = nn.Dropout(DROPOUT)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))

    def forward(self, ids):
        b, l = ids.shape
        x = self.tokens(ids) + self.positions.weight[:l]
        x = self.drop(self.norm(x.reshape(b * l, HIDDEN)))
        for layer in self.layers:
            x = layer(x, b, l)
        return x


class Mlm(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.encoder = Encoder(seq)
        self.transform = nn.Linear(HIDDEN, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(VOCAB))

    def loss(self, ids, masked, targets):
        hidden = self.encoder(ids)[masked]
        x = self.norm(F.gelu(self.transform(hidden), approximate="tanh"))
        logits = x @ self.encoder.tokens.weight.t() + self.bias
        return F.cross_entropy(logits, targets)


class Cls(nn.Module):
    def __init__(self, seq):
        super().__init__()
        self.encoder = Encoder(seq)
        self.drop = nn.Dropout(DROPOUT)
        self.out = nn.Linear(HIDDEN, 4)

    def loss(self, ids, labels):
        b, l = ids.shape
        pooled = self.encoder(ids).reshape(b, l, HIDDEN).mean(1)
        return F.cross_entropy(self.out(self.drop(pooled)), labels)


def optimizer(model):
    matrices = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() != 2]
    groups = [{"params": matrices, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-4)


def main():
    task, threads, warmup, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    device = torch.device(sys.argv[5] if len(sys.argv) > 5 else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    seq = 128 if task == "mlm" else 64
    model = (Mlm(seq) if task == "mlm" else Cls(seq)).to(device)
    model.train()
    opt = optimizer(model)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        ids = torch.randint(5, VOCAB, (BATCH, seq)).to(device)
        if task == "mlm":
            masked = (torch.rand(BATCH, seq).flatten() < 0.15).to(device)
            targets = ids.flatten()[masked]
            inputs = ids.flatten().clone()
            inputs[masked] = 4
            loss = model.loss(inputs.view(BATCH, seq), masked, targets)
        else:
            loss = model.loss(ids, (torch.arange(BATCH) % 4).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    print(" ".join(f"{t:.3f}" for t in times))


if __name__ == "__main__":
    main()
