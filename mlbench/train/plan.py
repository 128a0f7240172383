"""Training plans: the options, the model presets, the analytic FLOP count, the memory rule, the batch
rule and the weak-scaling points. No torch here (the reporter imports it too).

The model is a decoder-only transformer (Llama-like): token embedding tied to the output projection,
`layers` blocks of [RMSNorm, causal self-attention with rotary positions (one qkv matrix, one output
matrix), RMSNorm, SwiGLU MLP (gate and up matrices, down matrix)], a final RMSNorm.

FLOPs per token of one training step (forward + backward), the formula of PaLM (Chowdhery et al.
2022, appendix B) and of torch's FLOP counter:

    flops_per_token = 6 * N + 12 * layers * seq_len * hidden
    N = layers * (4 * hidden^2 + 3 * hidden * ffn) + vocab * hidden

N counts the parameters of the matrix multiplies: every weight but the norms' gains, the tied
embedding once (as the output projection; the lookup itself is no multiply). 6 = 2 FLOPs per
multiply-add, times 3 for the forward pass and the two products of the backward pass. The
attention term counts the full seq_len x seq_len score and value products (4 * s * hidden per layer
and token forward, x 3 with the backward); a causal kernel skips about half of them, so like every
published MFU this one credits the model with them. Norms, activations, rotary embedding, softmax,
the loss and the optimizer are not counted.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, replace
from enum import Enum
from functools import lru_cache
from importlib import resources
from typing import Optional

from ..exitcodes import UsageError
from ..options import ProbeOptions, option
from ..sizes import SizeError, format_bytes, parse_size

TORCHRUN_WORLD_VAR = "WORLD_SIZE"


class Parallel(str, Enum):
    """How one training job spreads over its GPUs."""

    NONE = "none"  # one GPU, no wrapper
    DDP = "ddp"  # a full replica per GPU, gradients all-reduced
    FSDP = "fsdp"  # parameters, gradients and optimizer state sharded (fully_shard)

    def __str__(self) -> str:
        return self.value


PARALLEL_CHOICES = ("auto", Parallel.DDP.value, Parallel.FSDP.value)
DTYPES = ("bf16", "fp32")


@dataclass(frozen=True)
class ModelShape:
    """The transformer's dimensions (see the module docstring)."""

    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    seq_len: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def layer_matmul_params(self) -> int:
        """Weights of the matrix multiplies of one block: qkv and output (4 h^2), gate, up and down (3 h f)."""
        return 4 * self.hidden * self.hidden + 3 * self.hidden * self.ffn

    @property
    def matmul_params(self) -> int:
        """N of the FLOP count: every block's matrices and the (tied) embedding once."""
        return self.layers * self.layer_matmul_params + self.vocab * self.hidden

    @property
    def params_count(self) -> int:
        """Every parameter: N plus the RMSNorm gains (two per block and the final one)."""
        return self.matmul_params + (2 * self.layers + 1) * self.hidden

    @property
    def attention_flops_per_token(self) -> int:
        return 12 * self.layers * self.seq_len * self.hidden

    @property
    def flops_per_token(self) -> int:
        """FLOPs of one token's forward and backward pass: 6 N + 12 layers seq_len hidden."""
        return 6 * self.matmul_params + self.attention_flops_per_token

    def describe(self) -> str:
        return (
            f"{self.layers} layers, hidden {self.hidden}, {self.heads} heads, ffn {self.ffn}, "
            f"vocab {self.vocab}, seq {self.seq_len}: {self.params_count / 1e9:.3g}B params"
        )


@dataclass(frozen=True)
class Preset:
    """A model and batch sized for a class of device. `layers` None: as many as fit one device (up to
    `max_layers`)."""

    name: str
    layers: Optional[int]
    hidden: int
    heads: int
    ffn: int
    vocab: int
    seq_len: int
    micro_batch: int
    lr: float
    max_layers: Optional[int] = None


PRESETS = {
    p.name: p
    for p in (
        # CPUs and CI: a step takes milliseconds
        Preset("tiny", layers=2, hidden=64, heads=4, ffn=176, vocab=256, seq_len=64, micro_batch=8, lr=3e-3),
        # Llama-3.2-1B-like widths (vocab 128256, tied embedding), full multi-head attention: 1.34B parameters
        Preset("1b", layers=16, hidden=2048, heads=32, ffn=8192, vocab=128256, seq_len=2048, micro_batch=4, lr=3e-4),
        # Llama-3-8B-like layers (hidden 4096, ffn 14336, 32 heads), as many of them as fit one device
        Preset(
            "8b",
            layers=None,
            hidden=4096,
            heads=32,
            ffn=14336,
            vocab=128256,
            seq_len=4096,
            micro_batch=1,
            lr=1.5e-4,
            max_layers=32,
        ),
    )
}
CPU_PRESET, ACCELERATOR_PRESET = "tiny", "1b"
FFN_MULTIPLE = 16  # an --hidden override scales the preset's ffn, rounded to this


# --- memory: does a model fit one device --------------------------------------------------------

USABLE_FRACTION = 0.85  # of a device's memory (the rest: runtime, kernels' workspaces, fragmentation)
HOST_USABLE_FRACTION = 0.8  # of the host's available memory, shared by the ranks of a CPU node
STATE_BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments
# activations kept for the backward pass, bytes per token and block: (x hidden, x ffn); see activation_bytes
ACTIVATION_BYTES = {"bf16": (22, 8), "fp32": (32, 16)}
LOGIT_BYTES_PER_TOKEN_AND_VOCAB = 12  # bf16 logits, their fp32 log-softmax and its gradient


@dataclass(frozen=True)
class MemoryEstimate:
    state_bytes: int  # weights, gradients, optimizer state (sharded with FSDP), bf16 copies of weights
    activation_bytes: int  # one micro-batch's activations

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes


def estimate_memory(shape: ModelShape, micro_batch: int, dtype: str, shards: int = 1) -> MemoryEstimate:
    """Bytes one device needs: training state and the activations of one micro-batch.

    State: 16 B per parameter (fp32 weights, gradients, AdamW moments), divided over `shards` devices
    with FSDP, plus the bf16 copies of the weights under bf16 autocast (2 B per parameter; FSDP: of one
    gathered block, twice for the prefetch). Activations per token: (22 hidden + 8 ffn) bytes per block
    under bf16 autocast ((32 hidden + 16 ffn) in fp32) for the saved inputs of norms, matmuls, attention
    and SwiGLU, plus 12 bytes per vocabulary entry for the logits and the loss. Flash-style attention
    keeps no seq_len^2 scores. An estimate for refusing what cannot fit, not an allocator model.
    """
    params = shape.params_count
    state = math.ceil(params * STATE_BYTES_PER_PARAM / max(1, shards))
    if dtype == "bf16":
        copies = params if shards <= 1 else 2 * (shape.layer_matmul_params + shape.vocab * shape.hidden)
        state += 2 * copies
    per_hidden, per_ffn = ACTIVATION_BYTES[dtype]
    per_token = (
        shape.layers * (per_hidden * shape.hidden + per_ffn * shape.ffn)
        + LOGIT_BYTES_PER_TOKEN_AND_VOCAB * shape.vocab
        + 10 * shape.hidden
    )
    return MemoryEstimate(state, micro_batch * shape.seq_len * per_token)


def fit_problem(
    shape: ModelShape, micro_batch: int, dtype: str, usable_bytes: int, shards: int = 1, where: str = "one device"
) -> Optional[str]:
    """Why the model does not fit in `usable_bytes`, with the largest micro-batch that would; None when it fits."""
    need = estimate_memory(shape, micro_batch, dtype, shards)
    if need.total_bytes <= usable_bytes:
        return None
    per_sequence = need.activation_bytes // max(1, micro_batch)
    room = usable_bytes - need.state_bytes
    hint = (
        f"--micro-batch {room // per_sequence} fits"
        if room >= per_sequence
        else "use fewer --layers, a smaller --hidden or FSDP across more devices"
    )
    return (
        f"the model does not fit {where}: about {format_bytes(need.total_bytes)} needed "
        f"({format_bytes(need.state_bytes)} weights, gradients and optimizer state, "
        f"{format_bytes(need.activation_bytes)} activations for micro-batch {micro_batch}), "
        f"{format_bytes(usable_bytes)} usable; {hint}"
    )


def layers_that_fit(preset: Preset, shape: ModelShape, micro_batch: int, dtype: str, usable_bytes: int) -> int:
    """The most blocks (at most `preset.max_layers`) whose model fits `usable_bytes` on one device; 0 when none."""
    most = preset.max_layers or 1
    best = 0
    for layers in range(1, most + 1):
        trial = ModelShape(layers, shape.hidden, shape.heads, shape.ffn, shape.vocab, shape.seq_len)
        if estimate_memory(trial, micro_batch, dtype).total_bytes > usable_bytes:
            break
        best = layers
    return best


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOptions(ProbeOptions):
    preset: Optional[str] = option(
        "--preset",
        metavar="NAME",
        help="tiny (CPUs, CI), 1b (~1B parameters) or 8b (8B-class layers, as many as fit one device) "
        "[default: 1b on accelerators, tiny on the CPU].",
    )
    layers: Optional[str] = option("--layers", metavar="N", help="Override the preset's number of blocks.")
    hidden: Optional[str] = option(
        "--hidden", metavar="N", help="Override the model width (the MLP width scales with it)."
    )
    heads: Optional[str] = option("--heads", metavar="N", help="Override the number of attention heads.")
    seq_len: Optional[str] = option("--seq-len", metavar="N", help="Override the sequence length (e.g. 2048 or 4K).")
    micro_batch: Optional[str] = option(
        "--micro-batch", metavar="N", help="Override the sequences per device and forward pass."
    )
    global_batch: Optional[str] = option(
        "--global-batch",
        metavar="N",
        help="Sequences per optimizer step across all devices (a multiple of devices x micro-batch: the rest "
        "is gradient accumulation) [default: devices x micro-batch].",
    )
    steps: Optional[int] = option(
        "--steps", type=("min", 1), help="Timed optimizer steps per scaling point [default: 30; 8 with --quick]."
    )
    warmup: Optional[int] = option(
        "--warmup", type=int, help="Untimed steps before timing each point [default: 5; 2 with --quick]."
    )
    duration_s: Optional[float] = option(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="Time each scaling point for about this long instead of a step count.",
    )
    parallel: str = option(
        "--parallel",
        default="auto",
        show_default=True,
        help="ddp (a replica per device), fsdp (fully_shard) or auto (ddp within a node, fsdp across nodes).",
    )
    scaling: bool = option(
        "--scaling/--no-scaling",
        default=True,
        show_default=True,
        help="Weak scaling: 1 device, then groups of 2, 4, ... (per node count across nodes) up to all, "
        "with the scaling efficiency; --no-scaling times all devices together only.",
    )
    dtype: str = option(
        "--dtype",
        default="bf16",
        show_default=True,
        help="bf16 (autocast mixed precision; fp32 where the device has no bf16) or fp32.",
    )
    compile: bool = option("--compile", default=False, flag=True, help="torch.compile the model (recorded).")
    timeout_s: float = option(
        "--timeout",
        default=300.0,
        type=float,
        show_default=True,
        help="Seconds without progress after which every surviving rank gives up (exit 3).",
    )
    nproc_per_node: Optional[int] = option(
        "--nproc-per-node",
        type=("min", 1),
        forward=False,
        help="Outside torchrun: re-launch through torchrun with N ranks on this node [default: every local GPU].",
    )


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainPlan:
    model: str  # the preset's name, or "custom" when its shape was overridden
    preset: Preset
    shape: ModelShape  # layers 0: a preset sized to the device, resolved when the device is known
    micro_batch: int
    grad_accum: int
    steps: Optional[int]  # None: from duration_s
    warmup: int
    duration_s: Optional[float]
    parallel: str  # auto, ddp or fsdp (as asked)
    scaling: bool
    dtype: str
    compile: bool
    world_size: int
    quick: bool

    @property
    def sized_to_device(self) -> bool:
        return self.shape.layers == 0

    def with_layers(self, layers: int) -> "TrainPlan":
        s = self.shape
        return replace(self, shape=ModelShape(layers, s.hidden, s.heads, s.ffn, s.vocab, s.seq_len))

    @property
    def tokens_per_device_step(self) -> int:
        """Tokens one device processes per optimizer step (micro-batch x accumulation x sequence length)."""
        return self.micro_batch * self.grad_accum * self.shape.seq_len

    def global_batch_tokens(self, devices: int) -> int:
        return devices * self.tokens_per_device_step

    def describe(self) -> str:
        layers = "layers to fit" if self.sized_to_device else f"{self.shape.layers} layers"
        timing = f"~{self.duration_s:g}s" if self.duration_s else f"{self.steps} steps"
        accum = f" x {self.grad_accum} accumulated" if self.grad_accum > 1 else ""
        return (
            f"model {self.model} ({layers}, hidden {self.shape.hidden}, {self.shape.heads} heads, "
            f"seq {self.shape.seq_len}), micro-batch {self.micro_batch}{accum}, {self.dtype}, "
            f"{self.warmup} warm-up + {timing} per point" + (", compiled" if self.compile else "")
        )


def _positive(text: Optional[str], flag: str) -> Optional[int]:
    if text is None:
        return None
    try:
        value = parse_size(str(text))
    except SizeError as exc:
        raise UsageError(f"bad {flag} {text!r}: {exc}") from None
    if value < 1:
        raise UsageError(f"{flag} must be at least 1, got {text!r}")
    return value


def parse_preset(name: Optional[str], device_type: str) -> Preset:
    if name is None:
        return PRESETS[CPU_PRESET if device_type == "cpu" else ACCELERATOR_PRESET]
    preset = PRESETS.get(name.strip().lower())
    if preset is None:
        raise UsageError(f"unknown --preset {name!r}: choose from {', '.join(PRESETS)}")
    return preset


def parse_parallel(text: str) -> str:
    value = (text or "").strip().lower()
    if value not in PARALLEL_CHOICES:
        raise UsageError(f"bad --parallel {text!r}: choose from {', '.join(PARALLEL_CHOICES)}")
    return value


def parse_dtype(text: str) -> str:
    value = {"bfloat16": "bf16", "float32": "fp32", "float": "fp32"}.get(
        (text or "").strip().lower(), (text or "").strip().lower()
    )
    if value not in DTYPES:
        raise UsageError(f"bad --dtype {text!r}: choose bf16 or fp32")
    return value


def model_shape(preset: Preset, o: TrainOptions) -> ModelShape:
    """The preset's shape with the overrides; layers 0 for a preset sized to the device at run time."""
    hidden = _positive(o.hidden, "--hidden") or preset.hidden
    heads = _positive(o.heads, "--heads") or preset.heads
    layers = _positive(o.layers, "--layers") or preset.layers or 0
    seq_len = _positive(o.seq_len, "--seq-len") or preset.seq_len
    ffn = preset.ffn
    if o.hidden is not None:
        ffn = max(FFN_MULTIPLE, round(preset.ffn * hidden / preset.hidden / FFN_MULTIPLE) * FFN_MULTIPLE)
    if hidden % heads:
        raise UsageError(f"--hidden {hidden} is not a multiple of --heads {heads}")
    if (hidden // heads) % 2:
        raise UsageError(f"head size {hidden // heads} (hidden / heads) must be even for rotary positions")
    return ModelShape(layers, hidden, heads, ffn, preset.vocab, seq_len)


def world_size_hint(options: TrainOptions, environ=None) -> Optional[int]:
    """Ranks this run will have, when known before starting: torchrun's WORLD_SIZE, or --nproc-per-node."""
    environ = os.environ if environ is None else environ
    if environ.get(TORCHRUN_WORLD_VAR, "").isdigit() and "LOCAL_RANK" in environ:
        return int(environ[TORCHRUN_WORLD_VAR])
    return options.nproc_per_node


def grad_accum_for(global_batch: Optional[int], micro_batch: int, world_size: int) -> int:
    """Micro-batches each device accumulates per step; the global batch must split evenly over the devices."""
    if global_batch is None:
        return 1
    per_step = micro_batch * world_size
    if global_batch % world_size:
        raise UsageError(f"--global-batch {global_batch} does not divide over {world_size} device(s)")
    if global_batch % per_step:
        raise UsageError(
            f"--global-batch {global_batch} is not a multiple of {world_size} device(s) x "
            f"micro-batch {micro_batch} = {per_step}"
        )
    return global_batch // per_step


def make_plan(device_type: str, options: TrainOptions, world_size: Optional[int] = None) -> TrainPlan:
    """Validate the options and build the plan; every bad input is a UsageError (exit 2)."""
    o = options
    preset = parse_preset(o.preset, device_type)
    shape = model_shape(preset, o)
    overridden = any(v is not None for v in (o.layers, o.hidden, o.heads, o.seq_len))
    micro_batch = _positive(o.micro_batch, "--micro-batch") or preset.micro_batch
    world = world_size or 1
    accum = grad_accum_for(_positive(o.global_batch, "--global-batch"), micro_batch, world)
    if o.warmup is not None and o.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {o.warmup}")
    if o.duration_s is not None and (not math.isfinite(o.duration_s) or o.duration_s <= 0):
        raise UsageError(f"--duration must be a positive number of seconds, got {o.duration_s}")
    if o.duration_s is not None and o.steps is not None:
        raise UsageError("give --steps or --duration, not both")
    if not o.timeout_s or o.timeout_s < 1 or not math.isfinite(o.timeout_s):
        raise UsageError(f"--timeout must be at least 1 second, got {o.timeout_s}")
    steps = None if o.duration_s is not None else (o.steps or (8 if o.quick else 30))
    warmup = o.warmup if o.warmup is not None else (2 if o.quick else 5)
    return TrainPlan(
        model="custom" if overridden else preset.name,
        preset=preset,
        shape=shape,
        micro_batch=micro_batch,
        grad_accum=accum,
        steps=steps,
        warmup=warmup,
        duration_s=o.duration_s,
        parallel=parse_parallel(o.parallel),
        scaling=o.scaling,
        dtype=parse_dtype(o.dtype),
        compile=o.compile,
        world_size=world,
        quick=o.quick,
    )


def check_host_fit(plan: TrainPlan, available_bytes: Optional[int], local_ranks: int) -> None:
    """On the CPU: every local rank's model must fit the host's available memory together (UsageError)."""
    if not available_bytes or plan.sized_to_device:
        return
    usable = int(available_bytes * HOST_USABLE_FRACTION) // max(1, local_ranks)
    problem = fit_problem(
        plan.shape, plan.micro_batch, plan.dtype, usable, where=f"this host's memory ({local_ranks} rank(s))"
    )
    if problem:
        raise UsageError(problem)


# --- weak scaling ---------------------------------------------------------------------------------


def _doubling(limit: int) -> list:
    out, k = [], 1
    while k <= limit:
        out.append(k)
        k *= 2
    return out


def scaling_sizes(world_size: int, ranks_per_node: Optional[int], nodes: int, enabled: bool = True) -> tuple:
    """Group sizes timed one after another: 1 device, then 2, 4, ... that divide the world (one node), or
    whole nodes 1, 2, 4, ... that divide the node count (a cluster), then all; only all without scaling.

    Every size divides the world, so at each point the ranks form world/size groups that all train at
    once: every device is busy and every group is measured.
    """
    if not enabled or world_size <= 1:
        return (world_size,)
    sizes = [1]
    if nodes > 1 and ranks_per_node:
        sizes += [ranks_per_node * n for n in _doubling(nodes) if nodes % n == 0]
    elif nodes <= 1:
        sizes += [k for k in _doubling(world_size) if world_size % k == 0]
    sizes.append(world_size)
    return tuple(sorted(set(sizes)))


def groups_of(size: int, world_size: int) -> list:
    """The rank groups of a point: consecutive ranks (torchrun numbers ranks node by node)."""
    return [list(range(start, start + size)) for start in range(0, world_size, size)]


def parallel_for(asked: str, size: int, nodes_spanned: int) -> Parallel:
    """One device: none; else as asked, `auto` being DDP within a node and FSDP across nodes."""
    if size <= 1:
        return Parallel.NONE
    if asked == "auto":
        return Parallel.FSDP if nodes_spanned > 1 else Parallel.DDP
    return Parallel(asked)


# --- figures --------------------------------------------------------------------------------------


def tokens_per_s(tokens_per_step: int, step_s: float) -> float:
    return tokens_per_step / step_s if step_s > 0 else math.nan


def tflops_per_device(shape: ModelShape, tokens_per_device_step: int, step_s: float) -> float:
    """Achieved model TFLOPS of one device: flops_per_token x its tokens per step / step time."""
    return shape.flops_per_token * tokens_per_device_step / step_s / 1e12 if step_s > 0 else math.nan


def fraction(value: Optional[float], of: Optional[float]) -> Optional[float]:
    """value / of, or None when either is unknown (MFU without a spec, utilisation without a MAMF)."""
    if value is None or not of or not math.isfinite(value):
        return None
    return value / of


# --- what a healthy part reaches: expected MFU per part and preset ---------------------------------


@dataclass(frozen=True)
class ExpectedMfu:
    value: float  # a fraction of the dense peak
    source: str


@lru_cache(maxsize=1)
def _mfu_rows() -> dict:
    text = resources.files("mlbench").joinpath("data/train_mfu.csv").read_text(encoding="utf-8")
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        rows[(row["key"], row["model"])] = ExpectedMfu(float(row["expected_mfu"]), row["source"])
    return rows


def expected_mfu(spec, model: str) -> Optional[ExpectedMfu]:
    """The MFU a healthy part normally reaches on a preset: the spec row's `train_<model>_expected_mfu`
    (a --specs file can set it), else mlbench/data/train_mfu.csv; None when neither knows."""
    if spec is None:
        return None
    explicit = spec.number(f"train_{model}_expected_mfu")
    if explicit:
        return ExpectedMfu(explicit, f"spec row {spec.key}: train_{model}_expected_mfu")
    return _mfu_rows().get((spec.key, model))
