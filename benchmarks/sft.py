"""SFT throughput: TRL's SFTTrainer against reft's ``train_sft`` on the same data and model.

Both sides: the same init model directory, the same synthetic (question, CoT) pairs as
prompt/completion, loss on completion tokens only, batch 16, max length 256, one epoch,
AdamW with linear warm-up/decay, fp32, no gradient checkpointing, no packing, no eval,
no saving inside the timed window.

A step starts when its batch is collated on reft's side, and at ``on_step_begin`` on TRL's
(its accelerate dataloader collates one batch ahead, so collation times would be one step
off), so each step's time covers one collation, forward, backward, clipping, the optimizer
and the per-step bookkeeping of each trainer. Tokens are the real (non-pad) tokens each
side feeds the model (both sides wrap their collator); the first ``SKIP`` steps are
dropped; the sides alternate.

    .venv/bin/python benchmarks/sft.py            # 512 examples = 32 steps per run
    .venv/bin/python benchmarks/sft.py --quick
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

BATCH, MAX_LEN, LR = 16, 256, 2e-3
SKIP = 2


class Batches:
    """When each step started, its batch's real tokens and its padded size."""

    def __init__(self, stamp_on_collate: bool = True) -> None:
        self.stamp_on_collate = stamp_on_collate
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.tokens: list[int] = []
        self.padded: list[int] = []

    def stamp(self) -> None:
        wall, cpu = common.clocks()
        self.times.append(wall)
        self.cpu.append(cpu)

    def wrap(self, collate):
        def timed(*a, **kw):
            if self.stamp_on_collate:
                self.stamp()
            out = collate(*a, **kw)
            self.tokens.append(int(out["attention_mask"].sum()))
            self.padded.append(out["attention_mask"].numel())
            return out

        return timed

    def rate(self) -> tuple[float, float, float, float]:
        """(tokens/s, tokens per CPU s, s/step, padding fraction) over steps SKIP .. last-1
        (the last step's end is not observed)."""
        t, c, n = self.times[SKIP:], self.cpu[SKIP:], self.tokens[SKIP:]
        seconds, tokens = t[-1] - t[0], sum(n[:-1])
        pad = 1 - sum(self.tokens) / sum(self.padded)
        return tokens / seconds, tokens / (c[-1] - c[0]), seconds / (len(t) - 1), pad


def run_reft(model_dir: Path, examples) -> Batches:
    import reft.training.nll as nll
    import reft.training.sft as sft
    from reft.config import SFTConfig

    seen, saved = Batches(), nll.collate  # the SFT loop batches through nll.collate
    nll.collate = seen.wrap(saved)
    common.hold_threads(sft)
    try:
        with tempfile.TemporaryDirectory() as out:
            cfg = SFTConfig(model=str(model_dir), out=out, epochs=1, batch_size=BATCH,
                            max_length=MAX_LEN, lr=LR, log_every=10**9, dtype="float32",
                            mixed_precision="no")
            sft.train_sft(cfg, examples)
    finally:
        nll.collate = saved
    common.setup()
    return seen


def run_trl(model_dir: Path, examples) -> Batches:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from reft.data.prompts import build_target

    _, tok = common.load(model_dir)
    ds = Dataset.from_dict({"prompt": common.prompts_of(examples),
                            "completion": [build_target(e, cot="nl") for e in examples]})
    seen = Batches(stamp_on_collate=False)

    class StepStart(TrainerCallback):
        def on_step_begin(self, *_a, **_k):
            seen.stamp()

    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
            num_train_epochs=1, max_length=MAX_LEN, learning_rate=LR, warmup_steps=0.1,
            lr_scheduler_type="linear", weight_decay=0.0, max_grad_norm=1.0, bf16=False,
            gradient_checkpointing=False, use_cpu=True, packing=False, padding_free=False,
            completion_only_loss=True, save_strategy="no", report_to="none", logging_steps=10**9,
            disable_tqdm=True, seed=0, dataloader_num_workers=0, model_init_kwargs={"dtype": "float32"},
        )
        trainer = SFTTrainer(model=str(model_dir), args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[StepStart()])
        trainer.data_collator = seen.wrap(trainer.data_collator)
        trainer.train()
    common.setup()
    return seen


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--examples", type=int, default=512, help="training examples per run")
    args = p.parse_args()
    common.setup(args.threads)
    n, repeats = (BATCH * 5, 1) if args.quick else (args.examples, args.repeats)
    model_dir = common.init_dir()
    examples = common.questions(n, split="train")
    res = common.interleave({"TRL SFTTrainer": lambda: run_trl(model_dir, examples),
                             "reft sft": lambda: run_reft(model_dir, examples)},
                            repeats=repeats, warmup=0)
    rates = {k: [b.rate() for _, _, b in v] for k, v in res.items()}
    trl = common.median([r[0] for r in rates["TRL SFTTrainer"]])
    trl_cpu = common.median([r[1] for r in rates["TRL SFTTrainer"]])
    rows = []
    for name, rs in rates.items():
        tps, cpu = [r[0] for r in rs], common.median([r[1] for r in rs])
        rows.append([name, common.median(tps), common.spread(tps), common.median([r[2] for r in rs]),
                     f"{100 * common.median([r[3] for r in rs]):.0f}%", common.median(tps) / trl,
                     cpu, cpu / trl_cpu])
    header = ["side", "tokens/s (median)", "range", "s/step", "padding", "vs TRL",
              "tokens per CPU-s", "vs TRL (CPU time)"]
    setting = (f"model `{model_dir.name}`, {n} examples, batch {BATCH}, max length {MAX_LEN}, "
               f"1 epoch, fp32, {repeats} alternating runs per side, first {SKIP} steps dropped")
    common.report("SFT: TRL SFTTrainer vs reft sft", setting + "\n\n" + common.table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
