"""Sampling to a file (``reft sample``): k completions per question as JSON lines, resumable.

The output is written one question per line, a chunk of questions at a time and flushed;
rerunning the same command skips the questions already written (a torn last line from
a killed run is dropped), so nothing finished is redone or lost. A question's samples are
seeded by (seed, question id), so a resumed run, or one with N processes (each samples
its share of every chunk, the main process writes), writes what one uninterrupted
process would.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from reft.config import SampleConfig
from reft.data.records import Example
from reft.errors import UserError


def finished_ids(path: Path) -> set[str]:
    """Ids already in ``path``; a torn (unparsable) last line is cut off the file."""
    if not path.exists():
        return set()
    done: set[str] = set()
    good_bytes = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                if not raw.endswith(b"\n"):  # cut before its newline: the next write would join it
                    raise ValueError(raw)
                row = json.loads(raw)
                done.add(str(row["id"]))
            except (ValueError, KeyError, TypeError):  # JSONDecodeError is a ValueError
                rest = f.read()
                if rest.strip():
                    raise UserError(f"{path}: line {n}: not a sample record; refusing to append") from None
                break
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        os.truncate(path, good_bytes)
    return done


def check_writable(path: Path) -> None:
    """A one-line error now, before any slow work, when ``path`` could not be written later:
    a folder where the file goes or a file where a folder must be (``UserError``, exit
    status 2), a folder this process may not write to (``CannotWrite``, exit status 1, as
    ``runtime.io`` says when a write is refused). Creates nothing."""
    from reft.runtime.io import cannot_write

    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the folder that will hold it
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is a file, not a folder")
    target, mode = (path, os.W_OK) if path.exists() else (parent, os.W_OK | os.X_OK)
    if not os.access(target, mode):
        code = errno.EROFS if os.statvfs(parent).f_flag & os.ST_RDONLY else errno.EACCES
        raise cannot_write(path, OSError(code, os.strerror(code)))


def run_sample(cfg: SampleConfig, examples: list[Example] | None = None, model=None, tokenizer=None) -> Path:
    """Sample to ``cfg.out``; call it on every process of a multi-process run."""
    out = Path(cfg.out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; pass the JSON-lines file to write, "
                        f"e.g. {out / 'samples.jsonl'}")
    check_writable(out)  # before torch is imported and the data and model are loaded
    from tqdm.auto import tqdm

    from reft.rollout.sample import sample_records
    from reft.rollout.sampler import question_seed
    from reft.runtime.checkpoint import require
    from reft.runtime.dist import dist_state, setup_threads

    require(cfg, "model", *(() if examples is not None else ("data_file",)))
    if cfg.k < 1:
        raise UserError("--k must be at least 1")
    setup_threads()
    state = dist_state()
    if examples is None:
        from reft.data import load_examples

        examples = load_examples(cfg.data_file, data_format=cfg.data_format, columns=cfg.columns,
                                 task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                                 max_examples=cfg.max_examples)
    elif cfg.max_examples:
        examples = examples[: cfg.max_examples]
    if model is None:
        from reft.models.loading import ensure_pad_token, load_model, load_tokenizer, token_ids

        tokenizer = ensure_pad_token(load_tokenizer(cfg.model, **token_ids(cfg)))
        model = load_model(cfg.model, dtype=cfg.dtype, device=state.device)
    done = _finished_ids_on_main(out, state)
    todo = [e for e in examples if e.id not in done]
    world, rank = state.num_processes, state.process_index
    chunk = max(1, cfg.sampling.gen_batch_size // cfg.k) * world  # questions per write, all processes together
    with (out.open("a") if state.is_main_process else open(os.devnull, "w")) as f, \
            tqdm(total=len(examples), initial=len(examples) - len(todo), desc="sample",
                 dynamic_ncols=True, disable=not state.is_main_process) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            mine = part[rank::world]
            recs = sample_records(model, tokenizer, mine, cfg, cfg.k,
                                  seeds=[question_seed(cfg.seed, e.id) for e in mine]) if mine else []
            if world > 1:
                from accelerate.utils import gather_object

                # gathered in rank order: put them back in question order
                ranked = gather_object([(start + rank + world * i, r) for i, r in enumerate(recs)])
                recs = [r for _, r in sorted(ranked, key=lambda x: x[0])]
            if state.is_main_process:
                _append(f, out, recs)
            bar.update(len(part))
    state.wait_for_everyone()
    return out


def _append(f, out: Path, recs: list[dict]) -> None:
    """Write a chunk's records to the open samples file and sync them. A refused write (disk
    full) is a one-line error; a torn last line it leaves is cut off by the next run."""
    from reft.runtime.io import cannot_write

    try:
        f.write("".join(json.dumps(rec) + "\n" for rec in recs))
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        raise cannot_write(out, e) from None


def _finished_ids_on_main(out: Path, state) -> set[str]:
    """``finished_ids`` run by the main process only (it may cut the file), sent to all; its
    error too, so no process is left waiting for the others."""
    found: list = [None, None]
    if state.is_main_process:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            found[0] = finished_ids(out)
        except UserError as e:
            found[1] = str(e)
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(found)
    if found[1] is not None:
        raise UserError(found[1])
    return found[0]
