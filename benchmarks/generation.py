"""Rollout generation: reft's sampler against plain ``model.generate`` on the same prompts.

Both sides get the same model, prompts, batch size, length limit and sampling rule
(temperature 1, no top-k/top-p, as ReFT samples), alternate in one process, and are
credited only with useful tokens: each completion up to and including its EOS. The
greedy row checks that both produce the very same tokens. The ablation table turns reft's
optimisations off one at a time.

    .venv/bin/python benchmarks/generation.py            # full run
    .venv/bin/python benchmarks/generation.py --quick    # smoke run
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402


def hf_generate(model, tok, prompts: list[str], *, max_new_tokens: int, batch_size: int,
                greedy: bool) -> list[list[int]]:
    """``model.generate`` batch by batch (left padding), cut after the first EOS."""
    eos, out = tok.eos_token_id, []
    sampling = {"do_sample": False} if greedy else {"do_sample": True, "temperature": 1.0,
                                                    "top_k": 0, "top_p": 1.0}
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            enc = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True,
                      padding_side="left")
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                 eos_token_id=eos, **sampling)
            for row in ids[:, enc["input_ids"].size(1) :].tolist():
                out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def reft_generate(model, tok, prompts: list[str], *, max_new_tokens: int, batch_size: int,
                  greedy: bool) -> list[list[int]]:
    from reft.rollout.sampler import generate

    return generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                    greedy=greedy, temperature=1.0).completion_ids


def run(model_dir: Path, n_prompts: int, max_new_tokens: int, batch_size: int, greedy: bool,
        repeats: int) -> tuple[list[object], bool | None]:
    model, tok = common.load(model_dir)
    model.eval()
    prompts = common.prompts_of(common.questions(n_prompts, split="test"))
    kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, greedy=greedy)
    res = common.interleave({
        "hf": lambda: hf_generate(model, tok, prompts, **kw),
        "reft": lambda: reft_generate(model, tok, prompts, **kw),
    }, repeats=repeats)
    rates = {k: [sum(map(len, out)) / t for t, _, out in v] for k, v in res.items()}
    cpu = {k: common.median([sum(map(len, out)) / c for _, c, out in v]) for k, v in res.items()}
    lengths = {k: common.median([sum(map(len, out)) / len(out) for _, _, out in v])
               for k, v in res.items()}
    same = res["hf"][0][2] == res["reft"][0][2] if greedy else None
    hf, ours = common.median(rates["hf"]), common.median(rates["reft"])
    row = [model_dir.name, "greedy" if greedy else "T=1", f"{n_prompts}x{batch_size}", max_new_tokens,
           f"{lengths['reft']:.0f} / {lengths['hf']:.0f}", hf, ours, ours / hf,
           cpu["reft"] / cpu["hf"], {None: "-", True: "yes", False: "NO"}[same]]
    return row, same


def _multinomial(logits, temperature, greedy, keys=None):
    if greedy or temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1).squeeze(-1)


ABLATIONS = {
    # name: sampler attributes replaced (each row turns one optimisation off)
    "reft sampler (all on)": {},
    "- in-place KV buffer (DynamicCache cat)": {"_new_cache": lambda capacity: DynamicCache()},
    "- lazy row dropping (drop at every EOS)": {"COMPACT_FRACTION": 0.0},
    "- row dropping (keep all rows to the end)": {"COMPACT_FRACTION": 2.0},
    "- exponential race (torch.multinomial)": {"_next_token": _multinomial},
    "- last-position prefill logits": {"_prefill_kwargs": lambda model: {}},
}


def ablation(model_dir: Path, n_prompts: int, max_new_tokens: int, batch_size: int,
             repeats: int) -> list[list[object]]:
    """reft's sampler with one optimisation at a time turned off, against HF generate."""
    import reft.rollout.sampler as sampler

    model, tok = common.load(model_dir)
    model.eval()
    prompts = common.prompts_of(common.questions(n_prompts, split="test"))
    kw = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, greedy=False)

    def variant(patch):
        def run():
            saved = {k: getattr(sampler, k) for k in patch}
            for k, v in patch.items():
                setattr(sampler, k, v)
            try:
                return reft_generate(model, tok, prompts, **kw)
            finally:
                for k, v in saved.items():
                    setattr(sampler, k, v)

        return run

    sides = {"HF model.generate": lambda: hf_generate(model, tok, prompts, **kw)}
    sides |= {name: variant(patch) for name, patch in ABLATIONS.items()}
    res = common.interleave(sides, repeats=repeats)
    rate = {k: common.median([sum(map(len, o)) / t for t, _, o in v]) for k, v in res.items()}
    cpu = {k: common.median([sum(map(len, o)) / c for _, c, o in v]) for k, v in res.items()}
    full = "reft sampler (all on)"
    return [[k, rate[k], rate[k] / rate["HF model.generate"], cpu[k] / cpu["HF model.generate"],
             rate[k] / rate[full]] for k in sides]


def main() -> int:
    args = common.parser(__doc__).parse_args()
    common.setup(args.threads)
    n, batch, new = (16, 16, 32) if args.quick else (64, 64, 128)
    repeats = 1 if args.quick else args.repeats
    rows = []
    for model_dir, greedy in ((common.warm_dir(), False), (common.warm_dir(), True),
                              (common.init_dir(), False)):
        rows.append(run(model_dir, n, new, batch, greedy, repeats)[0])
    header = ["model", "sampling", "prompts x batch", "max new", "mean len reft / hf",
              "HF generate tok/s", "reft tok/s", "reft / HF", "reft / HF (CPU time)", "same tokens"]
    body = common.table(header, rows)
    abl = ablation(common.warm_dir(), n, new, batch, repeats)
    body += ("\n\nAblation (model `tiny-warm`, T=1, same prompts): each row turns one optimisation "
             "off.\n\n" + common.table(["sampler", "tok/s", "vs HF", "vs HF (CPU time)",
                                          "vs all on"], abl))
    common.report("Generation: reft sampler vs model.generate", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
