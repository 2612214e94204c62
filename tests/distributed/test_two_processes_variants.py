"""2 processes (gloo on CPU) against 1 process with the same global batch, for what
test_two_processes.py leaves out (tier 3, issue 17).

SFT with gradient accumulation whose last global batch gives the processes different
numbers of micro-batches (it used to hang there), and PPO with grpo/rloo, a separate
critic, the KL term in the loss and several samples per question. PPO starts from a
warm-up that answers in the release's format, so rewards are a mix of 1, 0.1 and 0 and
the advantages are not all zero. The 2-process runs share one ``accelerate launch``.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.distributed.multiproc import launch_commands
from tests.fixtures import model_weights, read_metrics, weights_changed

N_DATA = 8  # PPO: 2 steps of 4 questions, no short batch
N_SFT = 7  # global batch 4 in micro-batches of 1: the last has 3, 2 for rank 0 and 1 for rank 1
PPO = ["ppo", "--max-steps", 2, "--ppo-epochs", 2, "--max-new-tokens", 20, "--lr", 1e-3,
       "--log-every", 1, "--save-every", 100, "--mixed-precision", "no"]
VARIANTS = {
    "grpo": ["--estimator", "grpo", "--samples-per-question", 2],
    "rloo": ["--estimator", "rloo", "--samples-per-question", 2],
    "separate": ["--critic", "separate"],
    "kl_loss": ["--kl-mode", "loss"],
    "samples": ["--samples-per-question", 2],
}


def _commands(model, warm, data, out, world: int) -> dict[str, list]:
    """Per-process batch sizes for ``world`` processes: the global batches are the same.

    A PPO mini-batch is the whole rollout (4 questions x samples): with several the
    processes would shuffle their own shares, not the global batch."""
    per = 4 // world
    cmds = {"sft_accum": ["sft", "--model", model, "--train-file", data, "--max-examples", N_SFT,
                          "--epochs", 2, "--lr", 3e-3, "--batch-size", 2 // world, "--grad-accum", 2,
                          "--log-every", 1, "--mixed-precision", "no", "--out", out / "sft_accum"]}
    for name, extra in VARIANTS.items():
        k = extra[extra.index("--samples-per-question") + 1] if "--samples-per-question" in extra else 1
        cmds[name] = [*PPO, *extra, "--model", warm, "--train-file", data, "--rollout-batch-size", per,
                      "--mini-batch-size", per * k, "--out", out / name]
    return cmds


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread, as each launched process has: on a busy machine with few cores
    more threads make these tiny runs many times slower, not faster."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")  # setup_threads keeps the setting
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, one_thread):
    """(1-process run root, 2-process run root, warm-up model)."""
    from reft.cli import main
    from reft.data.synthetic import generate, write_reft_json

    one, two, base = (tmp_path_factory.mktemp(name) for name in ("one", "two", "warm"))
    # the tiny model's tokenizer knows these questions; a one-word CoT is learnt in seconds
    examples = [dataclasses.replace(e, cot="So.") for e in generate(N_DATA, seed=0, split="train")]
    data = write_reft_json(examples, base / "short.json")
    warm = base / "warm"
    assert main([str(a) for a in ["sft", "--model", tiny_model_dir, "--train-file", data, "--epochs", 20,
                                  "--lr", 3e-2, "--batch-size", 4, "--log-every", 100,
                                  "--mixed-precision", "no", "--out", warm]]) == 0
    for argv in _commands(tiny_model_dir, warm / "final", data, one, world=1).values():
        assert main([str(a) for a in argv]) == 0, argv
    cmds = _commands(tiny_model_dir, warm / "final", data, two, world=2)
    proc = launch_commands(list(cmds.values()), cwd=two, timeout=300)  # a hang fails here
    assert proc.returncode == 0, proc.stderr[-4000:]
    return one, two, warm / "final"


def _assert_close(a: dict, b: dict, atol: float = 1e-5) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=atol), (k, (a[k] - b[k]).abs().max())


def _same_files(one, two) -> None:
    """Every safetensors file under ``final/`` (policy, value head, critic) agrees."""
    from safetensors.torch import load_file

    files = sorted(p.relative_to(one) for p in one.rglob("*.safetensors"))
    assert files == sorted(p.relative_to(two) for p in two.rglob("*.safetensors"))
    for f in files:
        _assert_close(load_file(str(one / f)), load_file(str(two / f)))


@pytest.mark.slow
def test_sft_grad_accum_with_an_uneven_last_batch_matches_one_process(runs, tiny_model_dir):
    """Rank 1 has one micro-batch of the last global batch to rank 0's two: it pads with a
    zero-loss pass, and gradients are all-reduced once per step."""
    one, two, _ = runs
    final = model_weights(two / "sft_accum" / "final")
    assert weights_changed(model_weights(tiny_model_dir), final)
    _same_files(one / "sft_accum" / "final", two / "sft_accum" / "final")
    rows1, rows2 = (read_metrics(d / "sft_accum") for d in (one, two))
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]
    for r1, r2 in zip(rows1, rows2, strict=True):
        for key in ("loss/nll", "optim/lr"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-5), key


@pytest.mark.slow
@pytest.mark.parametrize("run", list(VARIANTS))
def test_ppo_variant_two_processes_reach_the_weights_of_one(run, runs):
    one, two, warm = runs
    assert weights_changed(model_weights(warm), model_weights(two / run / "final"))
    _same_files(one / run / "final", two / run / "final")
    rows1, rows2 = (read_metrics(d / run) for d in (one, two))
    assert [r["step"] for r in rows2] == [1, 2]
    assert any(r["reward/mean"] > 0 for r in rows1)  # answers were scored, not all zero
    for r1, r2 in zip(rows1, rows2, strict=True):
        for key in ("reward/mean", "reward/accuracy", "response/length", "policy/kl"):
            assert r2[key] == pytest.approx(r1[key], rel=1e-3, abs=1e-6), key
