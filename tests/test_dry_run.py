"""``reft pipeline CONFIG --dry-run``: every shipped config plans offline, writes nothing, and
the memory estimate adds up by hand for a small model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from reft.config import EvalConfig, PPOConfig, SamplingConfig, SFTConfig
from reft.pipeline.estimate import Target, estimate, model_dims

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# The config.json files of the models the shipped configs name (their architecture keys;
# CodeLlama-7b-hf's as published, Galactica's as in its OPT port), seeded into a
# temporary hub cache so that the dry run reads them offline.
HUB_CONFIGS = {
    "codellama/CodeLlama-7b-hf": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 11008, "max_position_embeddings": 16384, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 1000000,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
        "vocab_size": 32016},
    "facebook/galactica-6.7b": {
        "architectures": ["OPTForCausalLM"], "model_type": "opt", "activation_function": "gelu",
        "attention_dropout": 0.1, "bos_token_id": 0, "do_layer_norm_before": True, "dropout": 0.1,
        "eos_token_id": 2, "ffn_dim": 16384, "hidden_size": 4096, "init_std": 0.02,
        "layerdrop": 0.0, "max_position_embeddings": 2048, "num_attention_heads": 32,
        "num_hidden_layers": 32, "pad_token_id": 1, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": 50000, "word_embed_proj_dim": 4096},
    "facebook/galactica-125m": {
        "architectures": ["OPTForCausalLM"], "model_type": "opt", "activation_function": "gelu",
        "attention_dropout": 0.1, "bos_token_id": 0, "do_layer_norm_before": True, "dropout": 0.1,
        "eos_token_id": 2, "ffn_dim": 3072, "hidden_size": 768, "init_std": 0.02,
        "layerdrop": 0.0, "max_position_embeddings": 2048, "num_attention_heads": 12,
        "num_hidden_layers": 12, "pad_token_id": 1, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": 50000, "word_embed_proj_dim": 768},
}
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def seed_hub(hf_home: Path) -> Path:
    """A hub cache holding the configs above, as ``huggingface_hub`` lays one out."""
    for repo, config in HUB_CONFIGS.items():
        d = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
        (d / "snapshots" / SNAPSHOT).mkdir(parents=True)
        (d / "snapshots" / SNAPSHOT / "config.json").write_text(json.dumps(config))
        (d / "refs").mkdir()
        (d / "refs" / "main").write_text(SNAPSHOT)
    return hf_home


def dry_run(python: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    hf_home = tmp_path / "hf"
    if not hf_home.exists():
        seed_hub(hf_home)
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([python, "-m", "reft", "pipeline", *args, "--dry-run"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def snapshot(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_dry_runs_offline_and_writes_nothing(path, tmp_path, python):
    out = tmp_path / "out"
    before = snapshot(tmp_path) if tmp_path.exists() else set()
    r = dry_run(python, tmp_path, str(path), "--out", str(out), "--engine", "zero2",
                "--processes", "8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert not out.exists()
    assert all(p.startswith("hf") for p in snapshot(tmp_path) - before)  # the seeded cache only
    cfg = yaml.safe_load(path.read_text())
    text = r.stdout
    assert "nothing is written" in text and "zero2, 8 process(es)" in text
    for stage in ["warmup", *cfg.get("methods", ["sft", "reft"])]:
        assert f". {stage} (" in text and f"| {stage} |" in text and f"| {stage}/eval |" in text
    assert "RL steps" in text and "optimizer steps" in text
    assert f"train {cfg['data']['train_file']}:" in text


def test_ci_config_counts_steps_from_the_known_row_counts(tmp_path, python):
    # svamp_nl has 3076 rows; the CI config keeps 64: batch 16 -> 4 steps, 1 epoch
    r = dry_run(python, tmp_path, str(ROOT / "configs/ci_svamp_tiny.yaml"), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "train reft:svamp_nl: 64 examples" in r.stdout  # svamp_nl's 3076 rows, capped
    assert "test reft:svamp_test: 32 examples" in r.stdout
    warmup = next(line for line in r.stdout.splitlines() if ". warmup (" in line)
    assert warmup.endswith("; 4 optimizer steps"), warmup
    reft_line = next(line for line in r.stdout.splitlines() if ". reft (" in line)
    assert "2 RL steps, 4 optimizer steps" in reft_line  # max_steps 2, ppo_epochs 2, one mini-batch


def test_a_local_file_is_counted(tmp_path, python):
    from reft.data.synthetic import generate, write_reft_json

    train = write_reft_json(generate(12, seed=0, split="train"), tmp_path / "train.json")
    cfg = {"model": {"init": "tiny"}, "data": {"train_file": str(train), "test_file": str(train)},
           "warmup": {"batch_size": 4}, "methods": ["sft"]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    r = dry_run(python, tmp_path, "p.yaml", "--device", "cpu")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"train {train}: 12 examples (local file)" in r.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("args", "words"), [
    ([], "unknown top-level key"),
    (["--engine", "zero2", "--processes", "0"], "--processes"),
])
def test_bad_config_or_flags_exit_2_with_one_line(tmp_path, python, args, words):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": "x/y", "data": {"train_file": "a.json", "test_file": "b.json"},
                                   **({"colour": 1} if not args else {})}))
    r = dry_run(python, tmp_path, str(bad), *args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr


def test_missing_model_config_offline_is_one_line(tmp_path, python):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": "nobody/no-such-model", "methods": ["sft"],
                                   "data": {"train_file": "reft:svamp_nl", "test_file": "reft:svamp_test"}}))
    r = dry_run(python, tmp_path, str(cfg))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "nobody/no-such-model" in r.stderr and "offline" in r.stderr


# ------------------------------------------------------------- the estimate by hand

SMALL = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 192,
         "tie_word_embeddings": False}


def test_parameter_count_by_hand():
    d = model_dims(SMALL)
    # embeddings 1000*64 = 64000; per layer q,k,v,o 4*64*64 = 16384, MLP 3*64*192 = 36864,
    # two RMSNorms 128 -> 53376, x 2 layers = 106752; final norm 64; LM head 64000
    assert d.n_params == 64000 + 106752 + 64 + 64000 == 234816
    # LoRA: (in + out) of q, k, v, o = 4 * 128, gate, up, down = 3 * 256 -> 1280 per layer
    assert d.lora_params(8) == 8 * 1280 * 2 == 20480


def test_sft_estimate_by_hand_fp32():
    cfg = SFTConfig(batch_size=2, max_length=32, mixed_precision="no", dtype="float32")
    e = estimate(SMALL, cfg, Target(device="cpu"))
    p = 234816
    assert (e.weights, e.gradients, e.optimizer, e.reference) == (4 * p, 4 * p, 8 * p, 0)
    # 64 tokens. A layer saves 6 x 64 residual-width floats, q, k, v, attention output
    # (4 x 64) and 4 x 192 for the gated MLP: 1408 floats = 5632 B; 2 layers + the final
    # norm's 2 x 64 floats (512 B) -> 11776 B a token
    assert e.activations == 64 * 11776 == 753664
    assert e.logits == 64 * 1000 * 12 == 768000  # fp32 logits, their copy, the log-softmax
    # no accumulation: gradients are made as the backward frees activations, so the peak is
    # weights + optimizer + the larger of (activations + logits) and the step's gradients
    assert e.phase == "update"
    assert e.total == 4 * p + 8 * p + 753664 + 768000 == 4339456


def test_ppo_estimate_by_hand_bf16_gpu():
    cfg = PPOConfig(rollout_batch_size=4, mini_batch_size=4, micro_batch_tokens=256,
                    sampling=SamplingConfig(max_new_tokens=32, gen_batch_size=4))
    e = estimate(SMALL, cfg, Target(device="cuda", prompt_tokens=32))
    p, head = 234816, 64000
    # fp32 masters + a bf16 autocast copy of every weight but the input embeddings
    assert e.weights == 4 * p + 2 * (p - head)
    assert e.reference == 2 * p  # the frozen warm-up in bf16 (dtype auto on a GPU)
    # sampling 4 rows of 32 + 32 positions: KV 4*64*2 layers*2*64*2 B = 131072; per step
    # 4 rows x 1000 x (2 + 4 + 4) B = 40000; prefill 4*32*(4*64 + 3*192)*2 B = 212992
    assert e.kv_cache == 131072 + 40000 + 212992
    # update: 256 tokens / 64 = 4 rows a micro-batch = the whole mini-batch; logits at the
    # 32 response positions, fp32 kept for the backward + 2 x bf16 gradients: 8 B each,
    # + one row's three fp32 working copies (12 B)
    assert e.logits == 4 * 32 * 1000 * 8 + 32 * 1000 * 12
    # bf16 layer: 4 x 64 fp32 residual floats (1024 B) + (5 casts x 64 + 256 + 768) x 2 B
    # = 2688 B -> 3712 B; 2 layers + final norm 2 x 64 x 4 B -> 7936 B a token, 256 tokens
    assert e.activations == 256 * 7936
    assert e.optimizer == 8 * p and e.gradients == 4 * p
    update = e.logits + e.activations
    step = 4 * p + 4 * p  # gradients + AdamW's foreach temporary on a GPU
    assert e.total == e.weights + e.optimizer + e.reference + max(update, step, e.kv_cache)


def test_engines_shard_as_documented():
    cfg = SFTConfig(batch_size=1, max_length=16)
    d = model_dims(HUB_CONFIGS["codellama/CodeLlama-7b-hf"])
    assert d.n_params == 6738546688
    single = estimate(d, cfg, Target())
    ddp = estimate(d, cfg, Target("ddp", 8))
    z2, z3 = estimate(d, cfg, Target("zero2", 8)), estimate(d, cfg, Target("zero3", 8))
    assert (ddp.weights, ddp.optimizer) == (single.weights, single.optimizer)
    assert z2.weights == 2 * d.n_params and z2.optimizer == 12 * d.n_params // 8
    assert z2.gradients == 2 * d.n_params // 8 and z3.weights == 2 * d.n_params // 8
    lora = estimate(d, PPOConfig(lora_r=16), Target())
    assert lora.reference == 0 and lora.optimizer == 8 * d.lora_params(16)
    assert estimate(d, EvalConfig(), Target()).weights == 2 * d.n_params


def test_step_counts_are_the_training_loops():
    from reft.pipeline.plan import _steps
    from reft.training.loop import total_steps

    for n, batch, epochs, cap in [(3076, 48, 2, 0), (64, 16, 1, 0), (7473, 32, 300, 0), (100, 7, 3, 5)]:
        assert _steps(n, batch, epochs, cap) == total_steps(n, batch, epochs, cap)


def test_dry_run_flags_without_dry_run_are_refused(capsys):
    from reft.cli import main

    assert main(["pipeline", "configs/ci_svamp_tiny.yaml", "--engine", "zero2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--dry-run" in err
