"""Peak memory of one PPO step on a 32k-vocabulary model: reft as it was (a git ref) against
this tree (issue 21's memory goal: at most a third).

Model: ``reft model init`` with a 32,000-entry vocabulary (its BPE tokenizer is trained on
random words so that it reaches that size), hidden 256, 4 layers, 1024 positions. Work: one
RL step of 32 rollouts (32 questions x 1 sample) whose prompts are ~300 tokens, up to 256
new tokens (the untrained model seldom stops early), PPO mini-batch 16, 2 PPO epochs, the
shared value head (GAE), fp32, KL to the reference in the reward.

Each run is a fresh process (``--child``): it imports everything, records its resident set
size (RSS) as the baseline, runs the step through ``reft.training.ppo.train_ppo``
and reports its peak RSS (read every millisecond by a thread, ``benchmarks/estimate.py``'s
``RssSampler``, as well as ``getrusage``'s high-water mark), with glibc's mmap threshold
fixed (see benchmarks/memory.py, ``MMAP_THRESHOLD``) so that RSS follows live memory.
"step MiB" is peak minus baseline.
The old side runs the same child code with ``PYTHONPATH`` set to the ``src`` of a git
worktree of ``--ref``.

    .venv/bin/python benchmarks/ppo_memory.py                # --ref 5d04bf6 (before issue 21)
    .venv/bin/python benchmarks/ppo_memory.py --quick        # 8 rollouts, 64 new tokens
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.estimate import RssSampler, rss_mib  # noqa: E402
from benchmarks.memory import MMAP_THRESHOLD, peak_mib  # noqa: E402
from benchmarks.rl_step import worktree  # noqa: E402

DEFAULT_REF = "5d04bf6"
"""The tree before issue 21's work: one forward over the whole rollout, logits at every
position (and a ``/ temperature`` copy), no micro-batches."""
WORDS_IN_QUESTION = 115


def words(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(n)]


def model_dir() -> Path:
    from reft.models.tiny import init_model

    out = common.CACHE / "ppo-memory-v32000-h256"
    if not (out / "config.json").exists():
        vocab = words(60000)
        texts = [" ".join(vocab[i : i + 40]) for i in range(0, len(vocab), 40)] * 3
        init_model(out, texts=texts, vocab_size=32000, hidden_size=256, layers=4, heads=4,
                   max_positions=1024)
    return out


def child(spec: dict) -> None:
    """One PPO step in this process; prints one JSON line."""
    import accelerate  # noqa: F401  (everything a run imports, in the baseline)
    import torch
    from torch.utils import tensorboard  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    from reft.config import PPOConfig, SamplingConfig
    from reft.data.records import Example
    from reft.training import ppo

    torch.set_num_threads(spec["threads"])
    vocab = words(2000, seed=1)
    rng = random.Random(2)
    examples = [Example(id=str(i), question=" ".join(rng.choice(vocab) for _ in range(WORDS_IN_QUESTION)),
                        answer="7", cot="x") for i in range(spec["rollouts"])]
    base, sampler = rss_mib(), RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        ppo.train_ppo(PPOConfig(model=spec["model"], out=out, mixed_precision="no", log_every=1000,
                                rollout_batch_size=spec["rollouts"], mini_batch_size=spec["rollouts"] // 2,
                                max_steps=1, save_every=1000, **spec["overrides"],
                                sampling=SamplingConfig(max_new_tokens=spec["new_tokens"],
                                                        gen_batch_size=spec["rollouts"])), examples)
        lengths = [json.loads(line) for line in (Path(out) / "metrics.jsonl").open()]
    sampler.running = False
    print(json.dumps({"base": base, "peak": max(sampler.peak, peak_mib()), "wall_s": time.perf_counter() - t0,
                      "response_length": lengths[-1].get("response/length")}))


def prompt_tokens(mdir: Path) -> float:
    from reft.data.prompts import build_prompt
    from reft.models.loading import load_tokenizer

    tok = load_tokenizer(str(mdir))
    rng = random.Random(2)
    vocab = words(2000, seed=1)
    qs = [" ".join(rng.choice(vocab) for _ in range(WORDS_IN_QUESTION)) for _ in range(8)]
    return sum(len(tok(build_prompt(q, cot="nl"))["input_ids"]) for q in qs) / len(qs)


def run_child(spec: dict, src: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "PYTHONPATH": f"{src}:{ROOT}"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--child", help="(internal)")
    p.add_argument("--ref", default=DEFAULT_REF, help=f"the 'before' git ref (default {DEFAULT_REF})")
    a = p.parse_args()
    if a.child:
        return child(json.loads(a.child))
    mdir = model_dir()
    rollouts, new = (8, 64) if a.quick else (32, 256)
    sides = [  # (label, src, overrides)
        (f"before ({a.ref})", worktree(a.ref), {}),
        ("now, --micro-batch-tokens 0", ROOT / "src", {"micro_batch_tokens": 0}),
        ("now (default 8192)", ROOT / "src", {}),
        ("now, --micro-batch-tokens 2048", ROOT / "src", {"micro_batch_tokens": 2048}),
        ("now, --sampler-logprobs", ROOT / "src", {"sampler_logprobs": True}),
    ]
    rows, before = [], None
    for label, src, overrides in sides:
        spec = dict(model=str(mdir), rollouts=rollouts, new_tokens=new, overrides=overrides,
                    threads=a.threads)
        got = run_child(spec, src, a.threads)
        step = got["peak"] - got["base"]
        before = before or step
        rows.append([label, f"{got['peak']:.0f}", f"{step:.0f}", f"{step / before:.2f}",
                     f"{got['response_length']:.0f}", f"{got['wall_s']:.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(f"{common.machine()}; vocab 32000, hidden 256, 4 layers, fp32; {rollouts} rollouts, prompts "
          f"~{prompt_tokens(mdir):.0f} tokens, up to {new} new; mini-batch {rollouts // 2}, 2 PPO epochs")
    print(common.table(["run", "peak RSS MiB", "step MiB", "vs before", "mean response tokens",
                        "wall s"], rows))


if __name__ == "__main__":
    main()
