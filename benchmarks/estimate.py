"""``reft pipeline --dry-run``'s memory estimate against measured peaks, SFT and PPO on CPU.

Each run is a fresh Python process (``--child``), as in ``benchmarks/memory.py``: it imports
torch/transformers/peft/accelerate/reft, takes its resident set size (RSS) as the baseline,
runs two steps of reft's own ``train_sft`` / ``train_ppo`` and reports its peak
RSS, glibc's mmap threshold fixed (``memory.MMAP_THRESHOLD``: freed tensors leave RSS), read
every millisecond by a thread (``RssSampler``). The measured MiB is peak minus baseline; the estimate is ``reft.pipeline.estimate`` for the same
settings with ``device="cpu"`` (fp32 everywhere, no autocast) and the longest prompt of the
questions the run samples from. The estimate leaves out the tokenizer, the data and
Python's own objects (tens of MiB here; on a GPU the CUDA context instead).

Models: ``reft model init`` Llamas. Those marked 32k have their vocabulary widened to
32000 entries (Llama's size; the tokenizer trained on the synthetic task has ~800, so
the extra rows are never sampled but their logits are computed), which makes the logit
terms count as they do for real models. SFT: batch 8, ``--max-length`` 96, which every
synthetic example exceeds, so every row is exactly 96 tokens. PPO: 8 questions a step,
mini-batch 8, 64 new tokens (randomly initialised models rarely stop early: every
response is 64 tokens, as the estimate assumes).

    .venv/bin/python benchmarks/estimate.py --quick    # two models, SFT and PPO: ~3 minutes
    .venv/bin/python benchmarks/estimate.py            # + a 58M model, checkpointing, LoRA, micro-batches
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.memory import MMAP_THRESHOLD, peak_mib  # noqa: E402

MODELS = {  # name: (vocab (0 = the tokenizer's), hidden, layers, heads)
    "32k-h256-l4": (32000, 256, 4, 4),
    "h512-l8": (0, 512, 8, 8),
    "32k-h512-l8": (32000, 512, 8, 8),
}
SFT = dict(batch_size=8, max_length=96)
PPO = dict(rollout_batch_size=8, mini_batch_size=8)
NEW_TOKENS = 64
RUNS = [  # (model, stage, label, overrides)
    ("32k-h256-l4", "sft", "full", {}),
    ("32k-h256-l4", "ppo", "full", {}),
    ("h512-l8", "sft", "full", {}),
    ("h512-l8", "ppo", "full", {}),
    ("32k-h256-l4", "sft", "grad ckpt", {"gradient_checkpointing": True}),
    ("32k-h512-l8", "sft", "full", {}),
    ("32k-h512-l8", "ppo", "full", {}),
    ("32k-h512-l8", "ppo", "micro 256 tok", {"micro_batch_tokens": 256}),
    ("32k-h512-l8", "ppo", "LoRA r8", {"lora_r": 8}),
    ("32k-h256-l4", "sft", "bf16 autocast", {"mixed_precision": "bf16"}),
    ("32k-h256-l4", "ppo", "bf16 autocast", {"mixed_precision": "bf16"}),
]
SAMPLE_S = 0.001
QUICK = 4
"""--quick runs the first RUNS only."""


def stage_config(stage: str, model: str, out: str, overrides: dict):
    from reft.config import PPOConfig, SamplingConfig, SFTConfig

    kw = {**dict(model=model, out=out, mixed_precision="no", log_every=1000, save_every=1000,
                 report_to="none"), **overrides}
    if stage == "sft":
        return SFTConfig(epochs=1, **SFT, **kw)
    return PPOConfig(max_steps=2, **PPO, **kw,
                     sampling=SamplingConfig(max_new_tokens=NEW_TOKENS, gen_batch_size=8))


def rss_mib() -> float:
    """The resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """Reads the RSS every ``SAMPLE_S``: ``getrusage``'s peak (the kernel's high-water mark,
    what ``memory.py`` reads) missed a 230 MiB peak of the forward's logits here (1001 against
    1228 MiB sampled), being updated only at some of the unmaps that lower the RSS."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.running = rss_mib(), True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mib())
            time.sleep(SAMPLE_S)


def child(spec: dict) -> None:
    """One training run in this process; prints one JSON line."""
    import accelerate  # noqa: F401  (everything a run imports, in the baseline)
    import peft  # noqa: F401
    import torch
    from transformers import LlamaForCausalLM  # noqa: F401

    from reft.training import ppo, sft

    torch.set_num_threads(spec["threads"])
    examples = common.questions(spec["n"], split="train")
    base, sampler = rss_mib(), RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        cfg = stage_config(spec["stage"], spec["model"], out, spec["overrides"])
        if spec["stage"] == "sft":
            sft.train_sft(cfg, examples)
        else:
            ppo.train_ppo(cfg, examples)
    sampler.running = False
    peak = max(sampler.peak, peak_mib())
    print(json.dumps({"base": base, "peak": peak, "wall_s": time.perf_counter() - t0}))


def model_dir(name: str) -> Path:
    """The model ``name`` (cached): ``reft model init``, its vocabulary widened when asked."""
    from reft.models.tiny import init_model

    vocab, hidden, layers, heads = MODELS[name]
    out = common.CACHE / f"estimate-{name}"
    if (out / "config.json").exists():
        return out
    if not vocab:
        return init_model(out, hidden_size=hidden, layers=layers, heads=heads)
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from reft.models.tiny import build_config

    with tempfile.TemporaryDirectory() as tmp:
        small = init_model(Path(tmp) / "m", hidden_size=hidden, layers=layers, heads=heads)
        tok = AutoTokenizer.from_pretrained(small)
    config = build_config(vocab_size=vocab, hidden_size=hidden, layers=layers, heads=heads,
                          max_positions=512, pad_id=tok.pad_token_id, bos_id=tok.bos_token_id,
                          eos_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def longest(mdir: Path, n: int) -> tuple[int, int]:
    """(longest prompt, shortest prompt + CoT) in tokens among the first ``n`` questions."""
    from transformers import AutoTokenizer

    from reft.training.nll import sft_pairs

    tok = AutoTokenizer.from_pretrained(mdir)
    prompts, targets = sft_pairs(common.questions(n, split="train"), "nl", "Question:\n{question}\nAnswer reasoning:\n")
    p = [len(x) for x in tok(prompts)["input_ids"]]
    t = [len(x) for x in tok(targets, add_special_tokens=False)["input_ids"]]
    return max(p), min(a + b + 1 for a, b in zip(p, t, strict=True))


def estimated(mdir: Path, stage: str, overrides: dict, prompt: int) -> tuple[float, str]:
    from transformers import AutoConfig

    from reft.pipeline.estimate import Target, estimate

    est = estimate(AutoConfig.from_pretrained(mdir), stage_config(stage, str(mdir), "x", overrides),
                   Target(device="cpu", prompt_tokens=prompt))
    return est.total / 2**20, est.phase


def saved_check(mdir: Path, mixed: str) -> str:
    """The bytes autograd saves in one forward of 8 x 96 tokens (the cast weight copies
    left out) against ``activation_bytes`` + the logits the forward leaves: the per-layer
    constants (``LAYER_STREAM``, ``AUTOCAST_CASTS``) checked directly."""
    import contextlib

    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from reft.pipeline.estimate import activation_bytes, model_dims

    model = LlamaForCausalLM.from_pretrained(mdir)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, model.config.vocab_size, (8, 96))
    c = 2 if mixed == "bf16" else 4
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if c == 2 else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    weights = sum(p.numel() * 2 for n, p in model.named_parameters() if "embed" not in n) if c == 2 else 0
    got = (sum(saved.values()) - weights) / 2**20
    want = activation_bytes(model_dims(AutoConfig.from_pretrained(mdir)), 8 * 96, c, 4, False) / 2**20
    return f"saved for backward, {mixed}: {got:.1f} MiB; activation_bytes: {want:.1f} MiB"


def measure(spec: dict, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import argparse

    p = common.parser(__doc__)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(json.loads(a.child))
    common.setup(a.threads)
    rows = []
    for name, stage, label, overrides in RUNS[:QUICK] if a.quick else RUNS:
        mdir = model_dir(name)
        n = 2 * (SFT["batch_size"] if stage == "sft" else PPO["rollout_batch_size"])
        prompt, shortest = longest(mdir, n)
        if stage == "sft" and shortest < SFT["max_length"]:
            print(f"note: an example of {shortest} tokens is shorter than --max-length")
        est, phase = estimated(mdir, stage, overrides, prompt)
        got = measure(dict(stage=stage, model=str(mdir), overrides=overrides, n=n,
                           threads=a.threads), a.threads)
        train = got["peak"] - got["base"]
        rows.append([name, stage.upper(), label, f"{est:.0f}", phase, f"{train:.0f}",
                     f"{est / train:.2f}", f"{got['wall_s']:.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    for mixed in ("no", "bf16"):
        print(saved_check(model_dir("h512-l8"), mixed))
    print(f"{common.machine()}; CPU, fp32 unless marked bf16, {a.threads} thread(s); SFT: 2 steps of "
          f"{SFT['batch_size']} x {SFT['max_length']} tokens; PPO: 2 steps of "
          f"{PPO['rollout_batch_size']} questions, {NEW_TOKENS} new tokens")
    print(common.table(["model", "stage", "run", "estimate MiB", "peak phase", "measured MiB",
                        "estimate / measured", "wall s"], rows))


if __name__ == "__main__":
    main()
