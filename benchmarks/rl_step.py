"""RL step throughput: TRL's GRPOTrainer against ``reft ppo --estimator grpo`` (and GAE).

Both sides: the same warm tiny model (loaded from the same directory), the same
synthetic questions, Q questions x K samples per step, the same completion limit,
temperature 1 with no top-k/top-p, KL to the frozen reference with beta 0.05 (so
both run a reference forward), one update epoch, one optimizer step per batch
(reft: ppo_epochs=1, mini_batch = whole batch; TRL: num_iterations=1,
gradient_accumulation_steps=1), fp32, no gradient checkpointing, no eval, no saving.

A step is timed from the start of sampling to the end of the optimizer step (TRL:
``on_step_begin`` to ``on_step_end``; reft: entry of ``make_experience`` to the end of
``rollout_stats``), so setup, logging and the final save are outside on both sides.
The first step of each run (lazy initialisation) is dropped; the sides alternate.

    .venv/bin/python benchmarks/rl_step.py            # Q=8, K=4, 128 tokens
    .venv/bin/python benchmarks/rl_step.py --quick
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from reft.config import SamplingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

BETA = 0.05
LR = 2e-5
ROLLOUT = "rollout: sample + score + no-grad forwards"
SAMPLING = "  sampling (generate)"
SCORING = "  scoring (answer rewards)"
OLD_FWD = "  old log-probs/values forward"
UPDATE = "update: forward + backward + AdamW"
PHASES = (ROLLOUT, SAMPLING, SCORING, OLD_FWD, UPDATE)


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


def run_reft(model_dir: Path, examples, *, q: int, k: int, max_len: int, steps: int,
             estimator: str = "grpo") -> Clock:
    """``train_ppo`` for ``steps`` RL steps; hooks time each step and its phases."""
    import reft.eval.runner as runner
    import reft.rollout.sampler as sampler
    import reft.training.ppo as ppo
    from reft.config import PPOConfig

    clock = Clock()
    saved = (ppo.make_experience, ppo.ppo_update, ppo.rollout_stats, sampler.generate,
             runner.judge_texts, ppo.ActorCritic.forward)
    make_experience, ppo_update, rollout_stats, generate, judge_texts, ac_forward = saved

    def timed_ac_forward(self, r):
        if torch.is_grad_enabled():  # the update's forward, timed as part of ppo_update
            return ac_forward(self, r)
        return _timing(clock, OLD_FWD, ac_forward)(self, r)

    def timed_experience(*a, **kw):
        clock.begin()
        return _timing(clock, ROLLOUT, make_experience)(*a, **kw)

    def timed_stats(r, acc):
        out = rollout_stats(r, acc)
        clock.end(int(r.response_mask.sum()), int(r.attention_mask.sum()))
        return out

    common.hold_threads(ppo)
    ppo.make_experience, ppo.rollout_stats = timed_experience, timed_stats
    ppo.ppo_update = _timing(clock, UPDATE, ppo_update)
    sampler.generate = _timing(clock, SAMPLING, generate)
    runner.judge_texts = _timing(clock, SCORING, judge_texts)
    ppo.ActorCritic.forward = timed_ac_forward
    try:
        with tempfile.TemporaryDirectory() as out:
            cfg = PPOConfig(model=str(model_dir), out=out, estimator=estimator, rollout_batch_size=q,
                            samples_per_question=k, mini_batch_size=q * k, ppo_epochs=1,
                            kl_coef=BETA, lr=LR, max_steps=steps, save_every=10**9,
                            log_every=10**9, eval_every=0, dtype="float32", mixed_precision="no", sampling=SamplingConfig(gen_batch_size=q * k, max_new_tokens=max_len, temperature=1.0))
            ppo.train_ppo(cfg, train=examples, test=[])
    finally:
        (ppo.make_experience, ppo.ppo_update, ppo.rollout_stats, sampler.generate,
         runner.judge_texts, ppo.ActorCritic.forward) = saved
    common.setup()  # train_ppo sets its own thread count; restore the benchmark's
    return clock.drop_first()


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


def compare(model_dir: Path, *, q: int, k: int, max_len: int, steps: int, repeats: int,
            gae: bool = True) -> dict[str, Clock]:
    """Alternate TRL / reft grpo / reft gae runs; return each side's pooled clock."""
    examples = common.questions(max(64, q * (steps + 1)), split="train")
    sides = {
        "TRL GRPOTrainer": lambda: run_trl(model_dir, examples, q=q, k=k, max_len=max_len, steps=steps),
        "reft ppo --estimator grpo": lambda: run_reft(model_dir, examples, q=q, k=k, max_len=max_len,
                                                      steps=steps),
    }
    if gae:
        sides["reft ppo (gae, value head)"] = lambda: run_reft(
            model_dir, examples, q=q, k=k, max_len=max_len, steps=steps, estimator="gae")
    pooled = {name: Clock() for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            pooled[name].extend(fn())
    return pooled


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--questions", type=int, default=8, help="questions per step")
    p.add_argument("--samples", type=int, default=4, help="samples per question")
    p.add_argument("--max-len", type=int, default=128, help="max completion tokens")
    p.add_argument("--steps", type=int, default=4, help="steps per run (the first is dropped)")
    p.add_argument("--model", choices=("warm", "init"), default="warm")
    args = p.parse_args()
    common.setup(args.threads)
    if args.quick:
        args.questions, args.samples, args.max_len, args.steps, args.repeats = 2, 2, 16, 2, 1
    model_dir = common.warm_dir() if args.model == "warm" else common.init_dir()
    q, k = args.questions, args.samples
    pooled = compare(model_dir, q=q, k=k, max_len=args.max_len, steps=args.steps,
                     repeats=args.repeats)
    trl = pooled["TRL GRPOTrainer"]
    trl_rate, trl_cpu = q * k / common.median(trl.steps), q * k / common.median(trl.cpu)
    rows, phases = [], []
    for name, c in pooled.items():
        t = common.median(c.steps)
        rows.append([name, len(c.steps), t, common.spread(c.steps), common.median(c.cpu),
                     common.median(c.tokens) / (q * k), q * k / t, common.median(c.tokens) / t,
                     q * k / t / trl_rate, q * k / common.median(c.cpu) / trl_cpu])
        for ph in [ph for ph in PHASES if any(ph in d for d in c.phases)]:
            phases.append([name, ph, common.median([d.get(ph, 0.0) for d in c.phases])])
    header = ["side", "steps timed", "s/step (median)", "range", "CPU s/step", "mean completion len",
              "completions/s", "completion tok/s", "vs TRL", "vs TRL (CPU time)"]
    setting = (f"model `{model_dir.name}`, {q} questions x {k} samples = {q * k} completions/step, "
               f"max completion {args.max_len} tokens, 1 update epoch, beta {BETA}, fp32, "
               f"{args.repeats} alternating runs x {args.steps - 1} timed steps per side")
    common.report("RL step: TRL GRPOTrainer vs reft ppo",
                  setting + "\n\n" + common.table(header, rows) + "\n\nMedian seconds per phase:\n\n"
                  + common.table(["side", "phase", "s"], phases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
