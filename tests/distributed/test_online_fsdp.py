"""Online self-training's sampling with sharded parameters: two CPU processes (gloo) with
FSDP2-sharded weights, a short last batch (2 + 1 questions) and rows that end at random
steps. Every forward pass all-gathers weights, so without lock-step the process that
finishes first leaves the other waiting for ever; with it both finish."""

from __future__ import annotations

import pytest

from tests.distributed.multiproc import launch

SCRIPT = '''
import sys
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from reft.config import SampleConfig, SamplingConfig
from reft.data.records import Example
from reft.rollout.sample import sample_records
from reft.training.selftrain import local_questions
from tests.tiny import tiny_model_and_tokenizer

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
model, tok = tiny_model_and_tokenizer()
# eos about once in five steps: the processes' rows end at different steps
head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
with torch.no_grad():
    head.weight.copy_(model.lm_head.weight)
    head.bias.zero_()
    head.bias[tok.eos_token_id] = 5.0
model.lm_head = head
for layer in model.model.layers:
    fully_shard(layer)
fully_shard(model)


def all_done(local):  # as reft.training.ppo.all_done_fn
    t = torch.tensor(float(local))
    dist.all_reduce(t)
    return t.item() == world


examples = [Example(str(i), f"What is {i} + {i}?", str(2 * i), "x") for i in range(3)]
idx, own = local_questions([0, 1, 2], rank, world, 2, fill=True)
records = sample_records(model, tok, [examples[j] for j in idx], SampleConfig(sampling=SamplingConfig(
                         max_new_tokens=40, gen_batch_size=1)), 2, seeds=[100 + j for j in idx], all_done=all_done)[:own]
# one file per rank: the two processes' stdout interleave byte by byte
with open(f"sampled-{rank}.txt", "w") as f:
    f.write(repr([r["id"] for r in records]))
dist.barrier()
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_sharded_sampling_in_lock_step_finishes(tmp_path):
    script = tmp_path / "fsdp_sample.py"
    script.write_text(SCRIPT)
    done = launch(script, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "sampled-0.txt").read_text() == "['0', '1']"
    assert (tmp_path / "sampled-1.txt").read_text() == "['2']"
