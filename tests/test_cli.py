"""The ``scratchlm`` console script: top-level help, and every subcommand's --help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from scratchlm.cli import COMMANDS, build_command_parser, main


def test_console_script_help():
    script = Path(sys.executable).parent / "scratchlm"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


def test_no_command_shows_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 0
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version(capsys):
    from scratchlm import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help(command, capsys):
    parser, _ = build_command_parser(command)
    undocumented = [a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not undocumented, f"options without a help string: {undocumented}"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: scratchlm {command}")


def test_tokenizer_stage_commands_equal_one_process_training(tmp_path, fixtures_dir, capsys):
    """plan-shards -> pretokenize (each shard) -> train-bpe, by hand, train what train_bpe trains on the file."""
    from scratchlm.layout import Layout
    from scratchlm.tokenizer.serialization import load_pickle
    from scratchlm.tokenizer.bpe import train_bpe

    corpus, plan, results = fixtures_dir / "tinystories_sample.txt", tmp_path / "plan.json", tmp_path / "results"
    special = ["--special-tokens", "<|endoftext|>"]
    assert main(["plan-shards", str(corpus), str(plan), "--shard-mb", "0.001", *special]) == 0
    shards = int(capsys.readouterr().out.split()[0])
    assert shards >= 2  # 3.8 KB in 1 KiB shards
    for shard in range(shards):
        assert main(["pretokenize", str(plan), str(shard), str(tmp_path / f"{shard}.parquet")]) == 0
    parts = [str(tmp_path / f"{shard}.parquet") for shard in range(shards)]
    assert main(["train-bpe", *parts, "--name", "en", "--vocab-size", "300", "--results", str(results), *special]) == 0
    layout = Layout(str(results))
    vocab, merges = train_bpe(corpus, 300, ["<|endoftext|>"])
    assert load_pickle(layout.vocab_pkl("en")) == vocab and load_pickle(layout.merges_pkl("en")) == merges
    assert all(Path(path).is_file() for path in (layout.vocab_json("en"), layout.hf_tokenizer("en"),
                                                 layout.tokenizer_summary("en")))
