"""Reports: accounting arithmetic against real models, profile/training/index from synthetic results."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from scratchlm.nn import accounting as flops
from scratchlm.nn.model import ModelConfig, TransformerLM
from scratchlm import cli
from scratchlm.reports import accounting, index, profile, training_report
from scratchlm.layout import Layout
from scratchlm.settings import AccountingSettings

SMALL = ModelConfig(vocab_size=97, context_length=24, d_model=48, num_layers=3, num_heads=4, d_ff=80)
VARIANTS = {
    "default": SMALL,
    "tied, no norm": ModelConfig(**{**SMALL.to_dict(), "tie_embeddings": True, "norm": "none"}),
    "silu ffn, post-norm": ModelConfig(**{**SMALL.to_dict(), "ffn": "silu", "norm": "post", "d_ff": None}),
    "relu2, qk-norm, soft-cap": ModelConfig(**{**SMALL.to_dict(), "ffn": "relu2", "qk_norm": True, "d_ff": None,
                                               "logit_softcap": 30.0, "zero_init_out": True}),
}


@pytest.mark.parametrize("name", [*accounting.GPT2_CONFIGS, *VARIANTS])
def test_parameter_count_matches_meta_model(name):
    cfg = accounting.GPT2_CONFIGS.get(name) or VARIANTS[name]
    model = TransformerLM.from_config(cfg, device="meta")
    # parameters() yields a tied Parameter once, like the accounting.
    assert flops.parameter_counts(cfg)["total"] == sum(p.numel() for p in model.parameters())


def test_gpt2_xl_figures():
    xl = accounting.model_accounting(accounting.GPT2_CONFIGS["GPT-2 XL"], budget_bytes=80 * 10**9)
    assert xl["parameters"]["total"] == 2_127_057_600
    assert xl["parameters_fp32_bytes"] == 4 * 2_127_057_600
    mem = xl["adamw_memory"]
    assert mem["b_fixed_bytes"] == 16 * 2_127_057_600
    budget = mem["budget_bytes"]
    assert mem["a_bytes_per_sequence"] * mem["max_batch_size"] + mem["b_fixed_bytes"] <= budget
    assert mem["a_bytes_per_sequence"] * (mem["max_batch_size"] + 1) + mem["b_fixed_bytes"] > budget


def test_activation_memory_scales_with_context():
    cfg = accounting.GPT2_CONFIGS["GPT-2 small"]
    short, long = (flops.activation_floats(cfg, seq_len=t) for t in (512, 1024))
    for name, floats in short.items():
        quadratic = name.startswith(("Q·Kᵀ", "softmax"))  # the (heads, T, T) attention matrices
        assert long[name] == (4 if quadratic else 2) * floats, name
    memory = flops.adamw_memory(cfg)
    assert memory.total_bytes(3) == 3 * memory.per_sequence_bytes + 16 * flops.parameter_counts(cfg)["total"]


def _counted_flops(cfg: ModelConfig, batch_size: int) -> dict[str, int]:
    """FlopCounterMode's FLOPs of a real forward pass, grouped like flops.COMPONENTS."""
    model = TransformerLM.from_config(cfg)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(batch_size, cfg.context_length, dtype=torch.long))
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    layers = [f"TransformerLM.layers.{i}" for i in range(cfg.num_layers)]
    projections = sum(counts[f"{layer}.attn.{proj}"] for layer in layers
                      for proj in ("q_proj", "k_proj", "v_proj", "output_proj"))
    attention = sum(counts[f"{layer}.attn"] for layer in layers)
    return {
        "attention projections": projections,
        "attention scores + weighted sum": attention - projections,
        "feed-forward": sum(counts[f"{layer}.ffn"] for layer in layers),
        "LM head": counts["TransformerLM.lm_head"],
        "total": counter.get_total_flops(),
    }


@pytest.mark.parametrize("name", ["default", "silu ffn, post-norm"])
def test_forward_flops_match_flop_counter(name):
    cfg = VARIANTS[name]
    counted = _counted_flops(cfg, batch_size=2)
    computed = flops.flops_by_component(flops.forward_matmuls(cfg, batch_size=2))
    assert computed == {k: v for k, v in counted.items() if k != "total"}
    assert flops.forward_flops(cfg, batch_size=2) == counted["total"]


def test_training_time_and_step_flops():
    xl = accounting.GPT2_CONFIGS["GPT-2 XL"]
    step = flops.adamw_step_flops(xl, batch_size=1024)
    assert step["total"] == 3 * step["forward"] + step["optimizer update"]
    assert step["forward"] == 1024 * flops.forward_flops(xl)
    days = flops.training_days(xl, steps=400_000, batch_size=1024, peak_flops=19.5e12, mfu=0.5)
    assert days == pytest.approx(400_000 * step["total"] / 9.75e12 / 86_400)
    assert 6_000 < days < 7_000  # ~4.5 TFLOPs per forward sequence: 18 years on one A100


def test_accounting_report_files(tmp_path):
    md, js, png = tmp_path / "reports" / "accounting.md", tmp_path / "reports" / "accounting.json", \
        tmp_path / "reports" / "accounting.png"
    report = accounting.write_accounting_report(md, js, png, AccountingSettings())
    data = json.loads(js.read_text())
    assert set(data["models"]) == set(accounting.GPT2_CONFIGS)
    for model in data["models"].values():
        assert sum(model["flop_shares"].values()) == pytest.approx(1.0)
    long_ctx = data["models"]["GPT-2 XL, ctx 16384"]["flop_shares"]
    assert long_ctx["attention scores + weighted sum"] > data["models"]["GPT-2 XL"]["flop_shares"][
        "attention scores + weighted sum"]
    text = md.read_text()
    assert "![FLOPs share by component](accounting.png)" in text
    assert f"{report['training_time']['days']:,.0f} days" in text
    assert png.read_bytes().startswith(b"\x89PNG")


# ----------------------------------------------------------------------------------- profile

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _write_stage(results, rule, job, *, bench=None, profile=None, mtime=None):
    """A benchmark row ``(s, max_rss, cpu_time)`` (strings, NA allowed) and/or a profile dict."""
    paths = []
    if bench is not None:
        path = results / "benchmarks" / rule / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        wall, rss, cpu = bench
        path.write_text(BENCH_HEADER + f"{wall}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t10\t{cpu}\n")
        paths.append(path)
    if profile is not None:
        path = results / "profiles" / rule / f"{job}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        wall, cpu, rss_mib = profile
        path.write_text(json.dumps({"stage": rule, "wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": rss_mib * 2**20,
                                    "peak_processes": 4, "extra": {}}))
        paths.append(path)
    for path in paths:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def stage_records(tmp_path):
    results = tmp_path / "results"
    # Worker pool: the profile saw more CPU and memory than Snakemake's sampler.
    _write_stage(results, "train_bpe", "demo", bench=("12.50", "300.5", "20.0"), profile=(11.0, 41.0, 900), mtime=200)
    # Too short for Snakemake to sample: NA cells, profile only for CPU/RSS.
    _write_stage(results, "demo_corpus", "demo_train", bench=("1.20", "NA", "NA"), profile=(0.8, 0.7, 60), mtime=100)
    _write_stage(results, "encode", "demo_valid", bench=("2.00", "150", "2.5"), mtime=300)  # no profile
    _write_stage(results, "encode", "demo_train", bench=("3.00", "NA", "NA"), profile=(2.5, 4.5, 170), mtime=310)
    _write_stage(results, "profile_report", "all", bench=("1.00", "100", "1.0"), mtime=400)  # stale, excluded
    return results


def test_profile_records_merge_both_sources(stage_records):
    records = profile.collect_stage_records(stage_records, exclude_rules=("profile_report",))
    assert [r.label for r in records] == ["demo_corpus [demo_train]", "train_bpe [demo]", "encode [demo_valid]",
                                          "encode [demo_train]"]
    corpus, bpe, encode, _ = records
    assert (bpe.wall_s, bpe.cpu_s, bpe.peak_rss_mb, bpe.processes) == (12.5, 41.0, 900, 4)
    assert (corpus.wall_s, corpus.cpu_s, corpus.peak_rss_mb) == (1.2, 0.7, 60)
    assert (encode.wall_s, encode.cpu_s, encode.peak_rss_mb, encode.processes) == (2.0, 2.5, 150, None)


def test_profile_report_files(stage_records, tmp_path):
    md, png = tmp_path / "out" / "profile.md", tmp_path / "out" / "profile.png"
    profile.write_profile_report(stage_records, md, png, exclude_rules=("profile_report",))
    text = md.read_text()
    assert "| train_bpe [demo] | 12.5 | 41.0 | 3.28 | 900 | 4 |" in text
    assert "| encode [demo_valid] | 2.0 | 2.5 | 1.25 | 150 | n/a |" in text
    assert "| encode [2 jobs] | 5.0 | 7.0 | 1.40 | 170 | 4 |" in text  # by stage: summed, max RSS
    assert "**18.7**" in text and "profile_report" not in text.split("|", 1)[1]
    assert "cannot include its own cost" in text
    assert "![wall time, CPU time and peak RSS of every stage](profile.png)" in text
    assert png.read_bytes().startswith(b"\x89PNG")


def test_profile_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmarks"):
        profile.write_profile_report(tmp_path, tmp_path / "p.md", tmp_path / "p.png")
    bad = tmp_path / "benchmarks" / "x" / "all.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a benchmark\n")
    with pytest.raises(ValueError, match="all.tsv"):
        profile.collect_stage_records(tmp_path)


# ------------------------------------------------------------------------- training and index

TINY = ModelConfig(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=2)
PNG = b"\x89PNG\r\n\x1a\n"  # the reports link images, they do not read them


def _write_run(runs_dir, name, *, device="cpu", precision="fp32", tokens_per_s=1000.0, samples=True):
    run = runs_dir / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"run": name, "model": TINY.to_dict(), "data": {"corpus": "demo"}}))
    metrics = [{"step": 10 * i, "tokens": 5120 * i, "train_loss": 4.0 - i / 10, "val_loss": 4.1 - i / 10}
               for i in range(1, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics))
    (run / "summary.json").write_text(json.dumps({
        "run": name, "corpus": "demo", "final_val_loss": 3.8, "best_val_loss": 3.75, "final_val_perplexity": 44.7,
        "unigram_entropy": 5.1, "steps": 30, "tokens": 15360, "wall_s": 15.4, "tokens_per_s": tokens_per_s,
        "device": "cpu" if device == "cpu" else "cuda", "device_name": device, "precision": precision,
        "parameters": 12345}))
    (run / "curves.png").write_bytes(PNG)
    if samples:
        (run / "samples.md").write_text("# samples\n")
    return run


def test_device_peaks():
    assert training_report.device_peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989.4e12
    assert training_report.device_peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert training_report.device_peak_flops("NVIDIA A10", "fp32") == 62.5e12  # not mistaken for an A100
    assert training_report.device_peak_flops("Tesla V100-SXM2-16GB", "bf16") is None
    assert training_report.device_peak_flops("cuda", "bf16") is None


def test_training_report(tmp_path):
    runs_dir = tmp_path / "results" / "runs"
    gpu_rate = 2e6
    _write_run(runs_dir, "big", device="NVIDIA A100-SXM4-80GB", precision="bf16", tokens_per_s=gpu_rate)
    _write_run(runs_dir, "cpu_run", samples=False)
    md = tmp_path / "results" / "reports" / "training.md"
    runs = training_report.write_training_report(training_report.find_runs(runs_dir), md, md.with_suffix(".png"))
    big = next(run for run in runs if run["name"] == "big")
    expected_mfu = gpu_rate * 3 * flops.forward_flops(TINY) / TINY.context_length / 312e12
    assert big["mfu"] == pytest.approx(expected_mfu)
    text = md.read_text()
    assert f"{100 * expected_mfu:.3g}%" in text and "n/a (peak unknown)" in text
    assert "| 3.8000 | 3.7500 |" in text
    assert "![learning curves of big](../runs/big/curves.png)" in text
    assert "[samples](../runs/big/samples.md)" in text and "../runs/cpu_run/samples.md" not in text
    assert "![validation loss of every run](training.png)" in text
    assert md.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_training_report_errors(tmp_path):
    run = _write_run(tmp_path, "broken")
    (run / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        training_report.read_run_summary(run)
    (run / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match="summary.json"):
        training_report.read_run_summary(run)


def _markdown_links(text):
    return re.findall(r"\]\(([^)]+)\)", text)


def test_index_links_resolve(tmp_path, stage_records):
    results = stage_records
    _write_run(results / "runs", "demo")
    (results / "runs" / "unfinished").mkdir()
    (results / "runs" / "unfinished" / "config.json").write_text("{}")  # a run that started
    layout = Layout(str(results))
    for path in (layout.vocab_json("demo"), layout.merges_txt("demo"), layout.tokenizer_summary("demo"),
                 layout.corpus_text("demo", "valid")):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_text("{}")
    reports = results / "reports"
    training_report.write_training_report([results / "runs" / "demo"], reports / "training.md",
                                          reports / "training.png")
    profile.write_profile_report(results, reports / "profile.md", reports / "profile.png")
    index.write_index(results, results / "index.md")
    text = (results / "index.md").read_text()
    links = _markdown_links(text)
    assert {"reports/training.md", "reports/profile.md", "runs/demo/", "runs/demo/samples.md",
            "runs/demo/curves.png", "corpora/demo/", "corpora/demo/tokenizer/vocab.json",
            "corpora/demo/valid.txt"} <= set(links)
    assert all((results / link).exists() for link in links)
    assert "Tokenizer: not built yet" in text and "not finished" in text
    # Every link of every report resolves too.
    for report in reports.glob("*.md"):
        assert all((report.parent / link).exists() for link in _markdown_links(report.read_text()))


def _index_rows(text):
    """The runs table of an index page: run name -> its cells."""
    rows = {}
    for line in text.splitlines():
        if match := re.match(r"\| \[([^\]]+)\]\(runs/", line):
            rows[match.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


def test_index_lists_what_is_a_run_and_how_far_it_got(tmp_path):
    """Once the index listed a finished run's Hugging Face export (hf/, with a config.json of its own)
    as a run of 0 steps, left out a run made by import-hf (model.json, no config.json), and showed
    0 steps for a run in progress whose metrics already held 360."""
    results = tmp_path / "results"
    finished = _write_run(results / "runs", "demo")
    (finished / "hf").mkdir()
    (finished / "hf" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    imported = results / "runs" / "imported"
    imported.mkdir()
    (imported / "model.json").write_text(json.dumps({"model": TINY.to_dict(), "corpus": None, "step": 0,
                                                     "imported_from": "/models/llama-tiny"}))
    training = results / "runs" / "sweep" / "lr=1e-2"  # nested, as an experiment's runs are
    training.mkdir(parents=True)
    (training / "config.json").write_text(json.dumps({"run": "sweep/lr=1e-2", "data": {"corpus": "demo"},
                                                      "training": {"total_steps": 1500}}))
    (training / "metrics.jsonl").write_text("".join(json.dumps({"step": step, "train_loss": 3.0}) + "\n"
                                                    for step in range(10, 370, 10)))
    (training / "checkpoints" / "final").mkdir(parents=True)
    (training / "checkpoints" / "final" / "config.json").write_text("{}")  # kept copies are no run
    rows = _index_rows(index.render_index(results, results / "index.md"))
    assert set(rows) == {"demo", "imported", "sweep/lr=1e-2"}
    assert rows["demo"][1:5] == ["demo", "3.8000", "30", "finished"] and "Hugging Face export" in rows["demo"][5]
    assert rows["imported"][3:5] == ["n/a", "imported from `/models/llama-tiny`"]
    assert rows["sweep/lr=1e-2"][1:5] == ["demo", "n/a", "360 of 1,500", "not finished"]


def test_report_cli(tmp_path, stage_records, capsys):
    out = tmp_path / "cli"
    assert cli.main(["report", "accounting", "--markdown", str(out / "a.md"), "--json", str(out / "a.json"),
                     "--plot", str(out / "a.png"), "--mfu", "0.25"]) == 0
    assert json.loads((out / "a.json").read_text())["training_time"]["mfu"] == 0.25
    assert cli.main(["report", "index", "--results", str(stage_records), "--markdown", str(out / "index.md")]) == 0
    assert "[Pipeline profile]" not in (out / "index.md").read_text()  # not built in this results folder
    assert cli.main(["report", "training", "--results", str(tmp_path / "none")]) == 1
    assert "no finished runs under" in capsys.readouterr().err


def test_tokenizer_throughput_is_timed_after_the_compiled_code_is_loaded(fixtures_dir, monkeypatch):
    """A process loads numba's code once (~0.3 s); charged to the first pass of a 1 MiB sample, it
    once made the report show 3 MB/s for a tokenizer that encodes at 50."""
    from scratchlm.reports import tokenizer_report
    from scratchlm.tokenizer import Tokenizer

    events: list[tuple] = []
    encode_utf8, clock = Tokenizer.encode_utf8, tokenizer_report.time.process_time
    monkeypatch.setattr(Tokenizer, "encode_utf8",
                        lambda self, data: events.append(("encode", self)) or encode_utf8(self, data))
    monkeypatch.setattr(tokenizer_report.time, "process_time", lambda: events.append(("clock",)) or clock())
    result = tokenizer_report.measure_throughput(fixtures_dir / "gpt2_vocab.json", fixtures_dir / "gpt2_merges.txt",
                                                 ["<|endoftext|>"], fixtures_dir / "tinystories_sample.txt", 0.05)
    first_clock = events.index(("clock",))
    assert events[0][0] == "encode" and first_clock > 0  # something was encoded before the timing began
    timed = events[first_clock + 1]
    assert timed[0] == "encode" and timed[1] is not events[0][1]  # by a fresh tokenizer (empty cache)
    assert result["bytes"] > 0 and result["first_pass_mb_s"] > 0 and result["warm_mb_s"] > 0
