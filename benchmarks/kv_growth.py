"""Peak memory (and, on a GPU, time) of the sampler's KV cache: sized at prefill for the
longest completion against grown as completions get longer (``kv_cache.KV_GROW_BY``), and
the cost of ``return_logprobs`` / ``return_hidden``.

Each variant runs in a fresh process (``--child``). On CPU the process fixes glibc's mmap
threshold (freed tensors then leave the resident set, see benchmarks/memory.py), resets
its peak RSS (``/proc/self/clear_refs``) after a warm-up and reports peak RSS minus the
RSS before sampling; on CUDA, ``max_memory_allocated`` minus what was allocated before.
"KV MiB full" is the cache sized at prefill: prompts x (prompt width + max new tokens) x
2 x layers x kv heads x head dim x bytes.

Model: the tests' tiny Llama (hidden 32, 2 layers, vocab 300) by default, or a random Llama
of ``--hidden/--layers/--vocab``. ``--eos-bias`` adds a bias to the EOS logit so that
completions end at realistic lengths (a random model rarely samples EOS).

    .venv/bin/python benchmarks/kv_growth.py                      # tiny, 32 prompts x 256 new
    .venv/bin/python benchmarks/kv_growth.py --eos-bias 4 --hidden 1024 --layers 16 --vocab 32000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MMAP_THRESHOLD = 64 * 1024
VARIANTS = {  # name: (KV_GROW_BY, return_logprobs, return_hidden, MiB allocated first)
    "preallocated (default)": (None, False, False, 0),
    "grown by 32": (32, False, False, 0),
    "grown by 64": (64, False, False, 0),
    "grown by 128": (128, False, False, 0),
    "preallocated + logprobs": (None, True, False, 0),
    "preallocated + logprobs + hidden": (None, True, True, 0),
    # nothing changed but where tensors land: do the samples depend on allocation addresses?
    "preallocated, 1 MiB allocated first": (None, False, False, 1),
}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _model(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny import tiny_model_and_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.hidden is None:
        model, tok = tiny_model_and_tokenizer()
        eos, pad = tok.eos_token_id, tok.pad_token_id
    else:
        torch.manual_seed(0)
        eos, pad = 2, 0
        cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                          num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
                          num_key_value_heads=max(1, args.hidden // 256), max_position_embeddings=4096,
                          pad_token_id=pad, bos_token_id=1, eos_token_id=eos)
        with torch.device(device):  # a random init on the GPU takes seconds, not minutes
            model = LlamaForCausalLM(cfg)
    if args.eos_bias:
        head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
        with torch.no_grad():
            head.weight.copy_(model.lm_head.weight)
            head.bias.zero_()
            head.bias[eos] = args.eos_bias
        model.lm_head = head
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return model.to(device=device, dtype=dtype).eval(), eos, pad, device


def child(args) -> None:
    import torch

    from reft.rollout import kv_cache
    from reft.rollout.sampler import _row_keys, decode_batch, question_seed

    torch.set_num_threads(args.threads)
    grow, lp, hidden, spacer_mib = VARIANTS[args.child]
    kv_cache.KV_GROW_BY = grow
    model, eos, pad, device = _model(args)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, min(300, model.config.vocab_size), (int(n),), generator=g).tolist()
               for n in torch.randint(args.prompt_len // 2, args.prompt_len + 1, (args.prompts,), generator=g)]
    keys = _row_keys([question_seed(0, i) for i in range(args.prompts)], 1)
    kw = dict(max_new_tokens=args.new, eos_id=eos, pad_id=pad, row_keys=keys,
              return_logprobs=lp, return_hidden=hidden)
    decode_batch(model, prompts[:2], **{**kw, "max_new_tokens": 4, "row_keys": keys[:2]})  # warm-up: lazy inits
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    spacer = torch.empty(spacer_mib * 2**20, dtype=torch.uint8, device=device)  # noqa: F841
    t0 = time.perf_counter()
    out = decode_batch(model, prompts, **kw)
    if device == "cuda":
        torch.cuda.synchronize()
        peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    else:
        peak, reserved = _rss_kib("VmHWM") * 1024, None
    seconds = time.perf_counter() - t0
    c = model.config
    per_pos = 2 * c.num_hidden_layers * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    width = max(map(len, prompts))
    lengths = [len(r) for r in out.ids]
    print(json.dumps({
        "peak_mib": (peak - base) / 2**20, "reserved_mib": None if reserved is None else reserved / 2**20,
        "seconds": seconds, "tokens": sum(lengths), "mean_len": sum(lengths) / len(lengths),
        "truncated": sum(n == args.new for n in lengths) / len(lengths),
        "kv_full_mib": args.prompts * (width + args.new) * per_pos * next(model.parameters()).element_size() / 2**20,
        "ids": out.ids}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=40)
    p.add_argument("--eos-bias", type=float, default=0.0)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=300)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--variants", default=None, help="comma-separated indices into the variants (default all)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "TQDM_DISABLE": "1"}
    rows, ids = [], {}
    names = list(VARIANTS)
    if args.variants:
        names = [names[int(i)] for i in args.variants.split(",")]
    for name in names:
        for _ in range(args.repeats):
            res = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", name], env=env,
                                 capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"{name}: {res.stderr}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            ids.setdefault(name, r.pop("ids"))
            rows.append((name, r))
    same = {n: ids[n] == ids[names[0]] for n in ids}
    print("| variant | peak MiB | reserved MiB | s | tok/s | mean len | truncated | KV MiB full | same ids as first |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        res = "-" if r["reserved_mib"] is None else f"{r['reserved_mib']:.1f}"
        print(f"| {name} | {r['peak_mib']:.2f} | {res} | {r['seconds']:.2f} | {r['tokens'] / r['seconds']:.0f} "
              f"| {r['mean_len']:.0f} | {r['truncated']:.2f} | {r['kv_full_mib']:.2f} | {same[name]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
