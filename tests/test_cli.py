"""The ``scratchlm`` console script: help, explicit subcommands, no prefix matching, and every
command shown in the README and in config.yaml's comments."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scratchlm.cli import build_parser, command_parsers, main
from scratchlm.layout import Layout
from scratchlm.settings import load_project_file, override_layers, resolve_run

COMMANDS = dict(command_parsers())


def test_console_script_help():
    script = Path(sys.executable).parent / "scratchlm"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command.split()[0] in result.stdout


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
    parser = COMMANDS[command]
    undocumented = [a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not undocumented, f"options without a help string: {undocumented}"
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: scratchlm {command}")


def test_options_are_never_matched_by_prefix(capsys):
    """`generate --run demo` once became `--run-dir demo` and failed with a misleading message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--run", "demo"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --run" in capsys.readouterr().err


def test_bad_option_values_are_one_line(capsys, tmp_path):
    assert main(["download", "file:///nowhere", str(tmp_path / "x"), "--retries", "0"]) == 1
    assert "scratchlm download: error: --retries: Input should be greater than or equal to 1, got 0\n" == \
        capsys.readouterr().err


# ------------------------------------------------------------------------------ documented commands


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """The fenced code blocks of ``markdown``: (language, text)."""
    blocks, language, lines = [], None, []
    for line in markdown.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(lines)))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def documented_commands(project_root: Path) -> list[str]:
    """Every `scratchlm ...` command line in the README's code blocks and in config.yaml's comments."""
    readme = (project_root / "README.md").read_text()
    blocks = "\n".join(text for _, text in code_blocks(readme))
    inline = re.findall(r"`(scratchlm [^`]+)`", readme)
    comments = [line.split("#", 1)[1] for line in (project_root / "config.yaml").read_text().splitlines()
                if "#" in line]
    lines = [*blocks.splitlines(), *inline, *comments]
    names = {command.split()[0] for command in COMMANDS}
    commands = [re.sub(r"\s+#.*$", "", line.strip()) for line in lines
                if line.strip().startswith("scratchlm ") and line.split()[1] in names]  # not prose
    return sorted(set(commands))


def test_every_documented_command_parses_and_resolves(project_root):
    """The README's and config.yaml's commands use real options; the runs they train resolve."""
    commands = documented_commands(project_root)
    assert len(commands) >= 15
    parser = build_parser()
    project = load_project_file(project_root / "config.yaml")
    for command in commands:
        words = shlex.split(command.replace("[", " ").replace("]", " "))[1:]  # [--optional flags] too
        if " ".join(words) in COMMANDS or any(re.fullmatch(r"[A-Z_|.]+|\{.*\}", word) for word in words):
            continue  # a command's name, or a synopsis (`scratchlm train RUN ...`), not a command line
        try:
            args = parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"documented command does not parse: {command}")
        if args.command == "train" and not args.settings:
            resolve_run(project, args.run, override_layers(assignments=args.assignments))


WALKTHROUGH_START = "# The pipeline's stages by hand"


def test_readme_walkthrough_runs(project_root, tmp_path, monkeypatch):
    """The README's by-hand walkthrough runs as written (downloads aside: no network here)."""
    readme = (project_root / "README.md").read_text()
    block = next(text for _, text in code_blocks(readme) if WALKTHROUGH_START in text)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text((project_root / "config.yaml").read_text())
    ran = 0
    for line in block.splitlines():
        command = re.sub(r"\s+#.*$", "", line.strip())
        if not command.startswith("scratchlm ") or command.startswith("scratchlm download "):
            continue
        words = [part for word in shlex.split(command)[1:]  # the shell's globbing of shard*.parquet
                 for part in (sorted(map(str, Path().glob(word))) if "*" in word else [word])]
        assert main(words) == 0, command
        ran += 1
    assert ran >= 10
    assert Path(Layout().run_file("demo", "model.pt")).is_file() and Path(Layout().run_file("demo-again", "model.pt"))


def test_tokenizer_stage_commands_equal_one_process_training(tmp_path, fixtures_dir, capsys):
    """plan-shards -> pretokenize (each shard) -> train-bpe, by hand, train what train_bpe trains on the file."""
    import pyarrow.parquet as pq

    from scratchlm.tokenizer.bpe import train_bpe
    from scratchlm.tokenizer.serialization import load_pickle

    corpus, plan, results = fixtures_dir / "tinystories_sample.txt", tmp_path / "plan.json", tmp_path / "results"
    special = ["--special-tokens", "<|endoftext|>"]
    assert main(["plan-shards", str(corpus), str(plan), "--shard-mb", "0.001", *special]) == 0
    shards = int(capsys.readouterr().out.split()[0])
    assert shards >= 2  # 3.8 KB in 1 KiB shards
    for shard in range(shards):
        assert main(["pretokenize", str(plan), str(shard), str(tmp_path / f"{shard}.parquet")]) == 0
        distinct = int(capsys.readouterr().out.split()[0])  # was always 0
        assert distinct == pq.ParquetFile(tmp_path / f"{shard}.parquet").metadata.num_rows > 0
    parts = [str(tmp_path / f"{shard}.parquet") for shard in range(shards)]
    assert main(["train-bpe", *parts, "--name", "en", "--vocab-size", "300", "--results", str(results), *special]) == 0
    layout = Layout(str(results))
    vocab, merges = train_bpe(corpus, 300, ["<|endoftext|>"])
    assert load_pickle(layout.vocab_pkl("en")) == vocab and load_pickle(layout.merges_pkl("en")) == merges
    assert all(Path(path).is_file() for path in (layout.vocab_json("en"), layout.hf_tokenizer("en"),
                                                 layout.tokenizer_summary("en")))
