"""The synthetic decoder-only transformer and its learnable synthetic task, written with torch.

Model (shape in `plan.ModelShape`): token embedding, `layers` pre-norm blocks of causal self-attention
(`scaled_dot_product_attention`, rotary positions) and a SwiGLU MLP, a final RMSNorm, and the output
projection tied to the embedding. No biases. Weights start normal (std 0.02; the residual output
matrices scaled by 1/sqrt(2 layers)).

Task (`PermutationTask`): every sequence walks a fixed random permutation of an alphabet of
`min(vocab, 1024)` tokens from a random start: token t+1 = perm[token t]. The next token is a
deterministic function of the current one, so a model that learns the permutation drives the loss
towards 0 from ln(vocab): a falling loss shows the step trains. Everything is generated on the
device from a seeded generator: nothing is read or downloaded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .plan import ModelShape

ALPHABET_MAX = 1024
INIT_STD = 0.02
ROPE_BASE = 10000.0
TASK_SEED = 1234


def rope_tables(seq_len: int, head_dim: int, device) -> tuple:
    """cos and sin of the rotary angles, shape (seq_len, head_dim), fp32."""
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) by the position angles (rotate-half convention)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        h, f = shape.hidden, shape.ffn
        self.heads = shape.heads
        self.attn_norm = nn.RMSNorm(h)
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.out = nn.Linear(h, h, bias=False)
        self.mlp_norm = nn.RMSNorm(h)
        self.gate_up = nn.Linear(h, 2 * f, bias=False)
        self.down = nn.Linear(f, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(b, s, 3, self.heads, h // self.heads).transpose(1, 3)
        q, k, v = qkv.unbind(2)  # each (b, heads, s, head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(y.transpose(1, 2).reshape(b, s, h))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Transformer(nn.Module):
    """The decoder-only model; `forward(tokens)` returns logits (batch, seq, vocab)."""

    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.hidden)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.layers))
        self.norm = nn.RMSNorm(shape.hidden)
        cos, sin = rope_tables(shape.seq_len, shape.head_dim, self.embed.weight.device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        residual_std = INIT_STD / math.sqrt(2 * max(1, self.shape.layers))
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # norm gains stay 1
            nn.init.normal_(p, std=residual_std if name.endswith(("out.weight", "down.weight")) else INIT_STD)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        s = tokens.shape[1]
        cos, sin = self.cos[:s], self.sin[:s]
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.norm(x), self.embed.weight)  # tied output projection


def loss_of(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a batch of sequences (batch, seq_len + 1), in fp32."""
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())


class PermutationTask:
    """Sequences that walk a fixed random permutation of the alphabet (see the module docstring).

    `walks[t, a]` is perm applied t times to a: built once (seq_len + 1 gathers), so a batch is one
    random draw and one gather on the device.
    """

    def __init__(self, vocab: int, seq_len: int, device, data_seed: int = 0):
        self.alphabet = min(vocab, ALPHABET_MAX)
        task = torch.Generator(device=device)
        task.manual_seed(TASK_SEED)  # the same permutation on every rank: one task
        perm = torch.randperm(self.alphabet, generator=task, device=device)
        walks = torch.empty(seq_len + 1, self.alphabet, dtype=torch.long, device=device)
        walks[0] = torch.arange(self.alphabet, device=device)
        for t in range(seq_len):
            walks[t + 1] = perm[walks[t]]
        self.walks = walks
        self.perm = perm
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(data_seed)  # each rank its own sequences

    def batch(self, sequences: int) -> torch.Tensor:
        """(sequences, seq_len + 1) token ids."""
        starts = torch.randint(0, self.alphabet, (sequences,), generator=self.generator, device=self.device)
        return self.walks[:, starts].t().contiguous()
