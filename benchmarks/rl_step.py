"""RL step throughput: TRL's GRPOTrainer against ``reft ppo --estimator grpo`` (and GAE).

Both sides: the same warm tiny model (loaded from the same directory), the same
synthetic questions, Q questions x K samples per step, the same completion limit,
temperature 1 with no top-k/top-p, KL to the frozen reference with beta 0.05 (so
both run a reference forward), one update epoch, one optimizer step per batch
(reft: ppo_epochs=1, mini_batch = whole batch; TRL: num_iterations=1,
gradient_accumulation_steps=1), fp32, no gradient checkpointing, no eval, no saving.

A step is timed from the start of sampling to the end of the optimizer step. TRL:
``on_step_begin`` to ``on_step_end``. reft: the sum of the phase timings its PPO loop
writes to the run's ``metrics.jsonl`` (``time/sample_s``, ``time/score_s``,
``time/forward_s``, ``time/advantages_s``, ``time/update_s``; docs/metrics.md), logged
every step; a step's CPU time is the process's CPU time between two consecutive rows of
that file (a thread notes it when a row appears). So setup, logging and the final save are
outside on both sides. The first step of each run (lazy initialisation) is dropped; the
sides alternate.

Each reft side runs in a fresh process (``--child``); "before" sides import reft from a
git worktree of ``--ref`` (the tree before issue 21: a second policy forward over the whole
padded rollout for the old log-probs), the others from this tree, with
``--sampler-logprobs`` where named (the old log-probs and values kept by the sampler).

    .venv/bin/python benchmarks/rl_step.py            # Q=8, K=4, 128 tokens, warm tiny model
    .venv/bin/python benchmarks/rl_step.py --model init25m --max-len 256   # a 26M model
    .venv/bin/python benchmarks/rl_step.py --quick
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

from reft.config import SamplingConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

TRL = "TRL GRPOTrainer"
DEFAULT_REF = "5d04bf6"
BETA = 0.05
LR = 2e-5
ROLLOUT = "rollout: sample + score + no-grad forwards"
SAMPLING = "  sampling (generate)"
SCORING = "  scoring (answer rewards)"
OLD_FWD = "  old log-probs/values forward"
ADVANTAGES = "  rewards + advantages"
UPDATE = "update: forward + backward + AdamW"
PHASES = (ROLLOUT, SAMPLING, SCORING, OLD_FWD, ADVANTAGES, UPDATE)
REFT_PHASES = {  # metrics.jsonl key -> phase
    "time/sample_s": SAMPLING, "time/score_s": SCORING, "time/forward_s": OLD_FWD,
    "time/advantages_s": ADVANTAGES, "time/update_s": UPDATE,
}


class Clock:
    """Per-step wall times, optional per-phase times, and completion tokens per step."""

    FIELDS = ("steps", "cpu", "phases", "tokens", "seq_tokens")

    def __init__(self) -> None:
        self.t0 = self.c0 = 0.0
        self.steps: list[float] = []
        self.cpu: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.tokens: list[int] = []
        self.seq_tokens: list[int] = []
        self._phase: dict[str, float] = {}

    def begin(self) -> None:
        self.t0, self.c0 = common.clocks()
        self._phase = {}

    def add(self, phase: str, seconds: float) -> None:
        self._phase[phase] = self._phase.get(phase, 0.0) + seconds

    def end(self, tokens: int, seq_tokens: int = 0) -> None:
        """``tokens``: completion tokens sampled; ``seq_tokens``: real prompt + completion tokens."""
        wall, cpu = common.clocks()
        self.steps.append(wall - self.t0)
        self.cpu.append(cpu - self.c0)
        self.phases.append(self._phase)
        self.tokens.append(tokens)
        self.seq_tokens.append(seq_tokens)

    def drop_first(self) -> Clock:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[1:])
        return self

    def extend(self, other: Clock) -> None:
        for name in self.FIELDS:
            getattr(self, name).extend(getattr(other, name))


def _timing(clock: Clock, phase: str, fn):
    def wrapped(*a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        clock.add(phase, time.perf_counter() - t0)
        return out

    return wrapped


class RowWatcher:
    """Notes this process's (wall, CPU) clocks whenever a row is appended to ``path``: the
    CPU time of a logged step is the difference between two rows' notes."""

    def __init__(self, path: Path, poll_s: float = 0.002):
        self.path, self.poll_s = path, poll_s
        self.notes: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rows(self) -> int:
        try:
            return self.path.read_bytes().count(b"\n")
        except OSError:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            new = self._rows() - len(self.notes)
            if new > 0:
                self.notes.extend([common.clocks()] * new)

    def __enter__(self) -> RowWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def clock_from_metrics(rows: list[dict], notes: list[tuple[float, float]], batch: int) -> Clock:
    """A ``Clock`` of the logged PPO steps: wall time and phases from each row's ``time/*``
    keys, CPU time from the watcher's notes (the first step has none: it is dropped),
    completion tokens from ``response/length`` (a mean over the step's ``batch`` responses)."""
    clock = Clock()
    for i, row in enumerate(rows):
        if not any(key in row for key in REFT_PHASES):  # not a step's row (an eval, say)
            continue
        phases = {name: row.get(key, 0.0) for key, name in REFT_PHASES.items()}
        phases[ROLLOUT] = sum(v for k, v in phases.items() if k != UPDATE)
        clock.steps.append(sum(row.get(key, 0.0) for key in REFT_PHASES))
        clock.cpu.append(notes[i][1] - notes[i - 1][1] if 0 < i < len(notes) else float("nan"))
        clock.phases.append(phases)
        clock.tokens.append(round(row.get("response/length", 0.0) * batch))
        clock.seq_tokens.append(0)
    return clock


def run_reft(model_dir: Path, examples, *, q: int, k: int, max_len: int, steps: int,
             estimator: str = "grpo", overrides: dict | None = None) -> Clock:
    """``train_ppo`` for ``steps`` RL steps, logging every step; the step and phase times
    are read back from the run's ``metrics.jsonl``."""
    import reft.training.ppo as ppo
    from reft.config import PPOConfig

    common.hold_threads(ppo)
    with tempfile.TemporaryDirectory() as out:
        cfg = PPOConfig(model=str(model_dir), out=out, estimator=estimator, rollout_batch_size=q,
                        samples_per_question=k, mini_batch_size=q * k, ppo_epochs=1,
                        kl_coef=BETA, lr=LR, max_steps=steps, save_every=10**9, log_every=1,
                        eval_every=0, dtype="float32", report_to="none",
                        sampling=SamplingConfig(gen_batch_size=q * k, max_new_tokens=max_len,
                                                temperature=1.0),
                        **{"mixed_precision": "no", **(overrides or {})})
        metrics = Path(out) / "metrics.jsonl"
        with RowWatcher(metrics) as watcher:
            ppo.train_ppo(cfg, train=examples, test=[])
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    common.setup()  # train_ppo sets its own thread count; restore the benchmark's
    return clock_from_metrics(rows, watcher.notes, q * k).drop_first()


def reft_child(spec: dict) -> None:
    """``--child``: one ``run_reft`` in this process (reft imported from ``PYTHONPATH``);
    prints the clock as one JSON line."""
    common.setup(spec.pop("threads"))
    examples = common.questions(spec.pop("n_examples"), split="train")
    clock = run_reft(Path(spec.pop("model_dir")), examples, **spec)
    print(json.dumps({name: getattr(clock, name) for name in Clock.FIELDS}))


def run_reft_process(src: Path, model_dir: Path, n_examples: int, **kw) -> Clock:
    """``run_reft`` in a fresh process importing reft from ``src``."""
    import torch

    threads = torch.get_num_threads()  # the benchmark's (common.setup)
    spec = dict(model_dir=str(model_dir), n_examples=n_examples, threads=threads, **kw)
    env = {**os.environ, "PYTHONPATH": f"{src}:{ROOT}", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    clock = Clock()
    for name, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        setattr(clock, name, value)
    return clock


def worktree(ref: str) -> Path:
    """The ``src`` folder of a git worktree of ``ref`` (made once, in the temp folder)."""
    path = Path(tempfile.gettempdir()) / f"reft-ref-{ref}"
    if not (path / "src").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
                       check=True, capture_output=True)
    return path / "src"


def run_trl(model_dir: Path, examples, *, q: int, k: int, max_len: int, steps: int) -> Clock:
    """TRL ``GRPOTrainer.train`` for ``steps`` steps, the reward being reft's ``score``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from reft.rewards import score

    clock = Clock()
    counted: list[int] = []

    def reward(completions, answer, completion_ids, **_):
        counted.append(sum(len(c) for c in completion_ids))
        return score(completions, answer)

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            counted.clear()
            clock.begin()

        def on_step_end(self, *_a, **_k):
            clock.end(sum(counted))

    _, tok = common.load(model_dir)
    ds = Dataset.from_dict({"prompt": common.prompts_of(examples),
                            "answer": [e.answer for e in examples]})
    saved = GRPOTrainer._generate_single_turn
    GRPOTrainer._generate_single_turn = _timing(clock, SAMPLING, saved)
    try:
        with tempfile.TemporaryDirectory() as out:
            args = GRPOConfig(
                output_dir=out, per_device_train_batch_size=q * k, num_generations=k,
                gradient_accumulation_steps=1, num_iterations=1, max_completion_length=max_len,
                temperature=1.0, top_k=0, top_p=1.0, beta=BETA, learning_rate=LR, max_steps=steps,
                bf16=False, gradient_checkpointing=False, use_cpu=True, save_strategy="no",
                report_to="none", logging_steps=10**9, disable_tqdm=True, seed=0,
                lr_scheduler_type="constant", max_grad_norm=1.0, dataloader_num_workers=0,
                model_init_kwargs={"dtype": "float32"},
            )
            trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=args,
                                  train_dataset=ds, processing_class=tok, callbacks=[StepTimer()])
            trainer.train()
    finally:
        GRPOTrainer._generate_single_turn = saved
    common.setup()
    return clock.drop_first()


def have_trl() -> bool:
    """Whether TRL can be imported; without it only reft's sides run (``pip install trl``)."""
    import importlib.util

    return importlib.util.find_spec("trl") is not None


def compare(model_dir: Path, *, q: int, k: int, max_len: int, steps: int, repeats: int,
            ref: str, gae: bool = True) -> dict[str, Clock]:
    """Alternate TRL and reft's sides (before ``ref`` / now / now with the sampler's
    log-probs, for grpo and gae); return each side's pooled clock."""
    n = max(64, q * (steps + 1))
    examples = common.questions(n, split="train")
    sides = {}
    if have_trl():
        sides[TRL] = lambda: run_trl(model_dir, examples, q=q, k=k, max_len=max_len, steps=steps)
    now, before = ROOT / "src", worktree(ref)
    kw = dict(q=q, k=k, max_len=max_len, steps=steps)
    for est in ("grpo", "gae") if gae else ("grpo",):
        name = "reft ppo --estimator grpo" if est == "grpo" else "reft ppo (gae, value head)"
        sides[f"{name}, before ({ref})"] = (
            lambda est=est: run_reft_process(before, model_dir, n, estimator=est, **kw))
        sides[f"{name}, now"] = (
            lambda est=est: run_reft_process(now, model_dir, n, estimator=est, **kw))
        sides[f"{name}, now, --sampler-logprobs"] = (
            lambda est=est: run_reft_process(now, model_dir, n, estimator=est,
                                             overrides={"sampler_logprobs": True}, **kw))
    if gae:  # this CPU's AMX units: bf16 autocast (the weights stay fp32 masters)
        sides["reft ppo (gae, value head), now, --sampler-logprobs, bf16 autocast"] = (
            lambda: run_reft_process(now, model_dir, n, estimator="gae", **kw,
                                     overrides={"sampler_logprobs": True, "mixed_precision": "bf16"}))
    pooled = {name: Clock() for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            pooled[name].extend(fn())
    return pooled


def model_25m() -> Path:
    """An untrained ``reft model init`` Llama of 26M parameters (hidden 512, 8 layers)."""
    from reft.models.tiny import init_model

    out = common.CACHE / "init-h512-l8"
    if not (out / "config.json").exists():
        init_model(out, hidden_size=512, layers=8, heads=8, vocab_size=4096)
    return out


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--questions", type=int, default=8, help="questions per step")
    p.add_argument("--samples", type=int, default=4, help="samples per question")
    p.add_argument("--max-len", type=int, default=128, help="max completion tokens")
    p.add_argument("--steps", type=int, default=4, help="steps per run (the first is dropped)")
    p.add_argument("--model", choices=("warm", "init", "init25m"), default="warm",
                   help="warm: the tiny model after SFT; init: untrained tiny; init25m: untrained 26M")
    p.add_argument("--ref", default=DEFAULT_REF, help=f"git ref of the 'before' sides (default {DEFAULT_REF})")
    p.add_argument("--child", help="(internal)")
    args = p.parse_args()
    if args.child:
        reft_child(json.loads(args.child))
        return 0
    common.setup(args.threads)
    if args.quick:
        args.questions, args.samples, args.max_len, args.steps, args.repeats = 2, 2, 16, 2, 1
    model_dir = {"warm": common.warm_dir, "init": common.init_dir, "init25m": model_25m}[args.model]()
    q, k = args.questions, args.samples
    pooled = compare(model_dir, q=q, k=k, max_len=args.max_len, steps=args.steps,
                     repeats=args.repeats, ref=args.ref)
    trl = pooled.get(TRL)
    trl_rate = q * k / common.median(trl.steps) if trl else None
    trl_cpu = q * k / common.median(trl.cpu) if trl else None
    rows, phases = [], []
    for name, c in pooled.items():
        t = common.median(c.steps)
        rows.append([name, len(c.steps), t, common.spread(c.steps), common.median(c.cpu),
                     common.median(c.tokens) / (q * k), q * k / t, common.median(c.tokens) / t,
                     q * k / t / trl_rate if trl else "-",
                     q * k / common.median(c.cpu) / trl_cpu if trl else "-"])
        for ph in [ph for ph in PHASES if any(ph in d for d in c.phases)]:
            phases.append([name, ph, common.median([d.get(ph, 0.0) for d in c.phases])])
    header = ["side", "steps timed", "s/step (median)", "range", "CPU s/step", "mean completion len",
              "completions/s", "completion tok/s", "vs TRL", "vs TRL (CPU time)"]
    n_params = sum(p.numel() for p in common.load(model_dir)[0].parameters())
    setting = (f"model `{model_dir.name}` ({n_params / 1e6:.1f}M parameters), {q} questions x {k} samples = {q * k} completions/step, "
               f"max completion {args.max_len} tokens, 1 update epoch, beta {BETA}, fp32, "
               f"{args.repeats} alternating runs x {args.steps - 1} timed steps per side")
    if not trl:
        setting += "; TRL is not installed (`pip install trl`): reft's sides only"
    common.report("RL step: TRL GRPOTrainer vs reft ppo",
                  setting + "\n\n" + common.table(header, rows) + "\n\nMedian seconds per phase:\n\n"
                  + common.table(["side", "phase", "s"], phases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
