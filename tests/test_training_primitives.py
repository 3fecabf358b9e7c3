"""Batch sampling (including memmaps) and checkpoint save/load."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
import torch

from scratchlm.nn import TransformerLM, cross_entropy
from scratchlm.optim import AdamW
from scratchlm.training import get_batch, load_checkpoint, read_checkpoint, save_checkpoint

MODEL = dict(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4)


@pytest.fixture()
def memmap_tokens(tmp_path) -> np.ndarray:
    path = tmp_path / "tokens.npy"
    np.save(path, np.arange(500, dtype=np.uint16))
    return np.load(path, mmap_mode="r")


def test_get_batch_reads_windows_from_a_memmap(memmap_tokens):
    inputs, targets = get_batch(memmap_tokens, 8, 32, "cpu", generator=np.random.default_rng(0))
    assert inputs.shape == targets.shape == (8, 32)
    assert inputs.dtype == targets.dtype == torch.int64
    # The data is arange, so each window is consecutive and the targets are shifted by one.
    assert torch.equal(inputs, inputs[:, :1] + torch.arange(32))
    assert torch.equal(targets, inputs + 1)
    assert int(targets.max()) <= 499


def test_get_batch_covers_every_start_uniformly():
    inputs, _ = get_batch(np.arange(20), 4000, 4, "cpu", generator=np.random.default_rng(1))
    counts = np.bincount(inputs[:, 0].numpy(), minlength=16)
    assert len(counts) == 16  # starts 0..15: the last window ends on the last token
    assert counts.min() > 180 and counts.max() < 320  # ~250 each


def test_get_batch_is_deterministic_with_a_generator(memmap_tokens):
    first = get_batch(memmap_tokens, 4, 8, "cpu", generator=np.random.default_rng(7))
    second = get_batch(memmap_tokens, 4, 8, "cpu", generator=np.random.default_rng(7))
    other = get_batch(memmap_tokens, 4, 8, "cpu", generator=np.random.default_rng(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])
    np.random.seed(3)
    global_a = get_batch(memmap_tokens, 4, 8, "cpu")[0]
    np.random.seed(3)
    assert torch.equal(global_a, get_batch(memmap_tokens, 4, 8, "cpu")[0])


def test_get_batch_rejects_too_short_or_multidimensional_data():
    with pytest.raises(ValueError, match="too short"):
        get_batch(np.arange(8), 2, 8, "cpu")
    with pytest.raises(ValueError, match="1-D"):
        get_batch(np.zeros((4, 10), dtype=np.int64), 2, 3, "cpu")


def train_steps(model: TransformerLM, optimizer: AdamW, steps: int, seed: int) -> None:
    data = np.random.default_rng(seed).integers(0, MODEL["vocab_size"], 400)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        inputs, targets = get_batch(data, 4, MODEL["context_length"], "cpu", generator=rng)
        optimizer.zero_grad()
        cross_entropy(model(inputs), targets).backward()
        optimizer.step()


def fresh(seed: int) -> tuple[TransformerLM, AdamW]:
    torch.manual_seed(seed)
    model = TransformerLM(**MODEL)
    return model, AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)


@pytest.mark.parametrize("as_file_object", [False, True])
def test_checkpoint_round_trip_gives_an_identical_next_step(tmp_path, as_file_object):
    model, optimizer = fresh(0)
    train_steps(model, optimizer, 3, seed=1)
    target = io.BytesIO() if as_file_object else tmp_path / "ckpt" / "step3.pt"
    save_checkpoint(model, optimizer, 3, target, extra={"tokens": 192, "note": "warm"})
    if as_file_object:
        target.seek(0)
    restored, restored_optimizer = fresh(99)
    assert load_checkpoint(target, restored, restored_optimizer) == 3
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)

    train_steps(model, optimizer, 1, seed=2)
    train_steps(restored, restored_optimizer, 1, seed=2)
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)
    if not as_file_object:
        assert read_checkpoint(target)["extra"] == {"tokens": 192, "note": "warm"}
        assert [p.name for p in target.parent.iterdir()] == ["step3.pt"]  # no temporary left behind


def test_load_checkpoint_without_optimizer(tmp_path):
    model, optimizer = fresh(0)
    save_checkpoint(model, optimizer, 5, tmp_path / "c.pt")
    restored, _ = fresh(1)
    assert load_checkpoint(tmp_path / "c.pt", restored) == 5
    assert torch.equal(restored.lm_head.weight, model.lm_head.weight)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    model, optimizer = fresh(0)
    path = tmp_path / "c.pt"
    save_checkpoint(model, optimizer, 1, path)
    with pytest.raises(Exception):
        save_checkpoint(model, optimizer, 2, path, extra={"unpicklable": lambda: None})
    assert read_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_or_foreign_files_raise_a_clear_error(tmp_path):
    model, optimizer = fresh(0)
    good = tmp_path / "good.pt"
    save_checkpoint(model, optimizer, 1, good)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    unsafe = tmp_path / "unsafe.pt"  # arbitrary objects are refused by the weights-only loader
    torch.save({"model": {}, "optimizer": None, "iteration": 0, "extra": {"x": Fraction(1, 3)}}, unsafe)
    for path in (garbage, truncated, foreign, unsafe):
        with pytest.raises(ValueError, match=path.name) as error:
            read_checkpoint(path)
        assert "weights_only" not in str(error.value)  # torch's advice to load unsafely was once passed on
    with pytest.raises(ValueError, match=r"unsafe.pt: corrupt, or not a scratchlm checkpoint \(it holds a "
                                         r"fractions.Fraction object"):
        read_checkpoint(unsafe)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pt")

    other = TransformerLM(**{**MODEL, "d_model": 64})
    with pytest.raises(ValueError, match="good.pt.*does not match the model"):
        load_checkpoint(good, other)


def test_disk_full_during_a_checkpoint_write_names_the_file(tmp_path, monkeypatch):
    """torch's own message for a full disk was "unexpected pos 704 vs 598"."""
    from scratchlm import fileio
    from scratchlm.fileio import OutputError

    model = torch.nn.Linear(64, 64)
    target = tmp_path / "step_0000010.pt"
    save_checkpoint(model, None, 5, target)
    before = target.read_bytes()
    real_open = open
    # Every write to /dev/full fails with ENOSPC, as a full disk does.
    monkeypatch.setattr(fileio, "open", lambda path, mode, **kw: real_open("/dev/full", mode, **kw), raising=False)
    with pytest.raises(OutputError,
                       match=r"step_0000010.pt: disk full while writing .*previous file, if any, is unchanged"):
        save_checkpoint(model, None, 10, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_0000010.pt"]
