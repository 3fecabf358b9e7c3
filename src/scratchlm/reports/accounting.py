"""The resource accounting report: parameters, FLOPs and AdamW memory of GPT-2-sized models.

The arithmetic lives next to the model, in ``scratchlm.nn.accounting``; this module picks the
models, tabulates, plots and writes the report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from scratchlm.figures import pyplot, save_figure
from scratchlm.fileio import atomic_open, write_json
from scratchlm.nn.accounting import (
    ADAMW_FLOPS_PER_PARAMETER,
    BYTES_PER_FLOAT32,
    COMPONENTS,
    adamw_memory,
    adamw_step_flops,
    flops_by_component,
    forward_matmuls,
    parameter_counts,
    training_days,
)
from scratchlm.nn.model import ModelConfig
from scratchlm.reports import markdown_table, relative_link
from scratchlm.settings import AccountingSettings

GPT2_VOCAB_SIZE = 50_257


def _gpt2(num_layers: int, d_model: int, num_heads: int, context_length: int = 1024) -> ModelConfig:
    # CS336's GPT-2 shapes: d_ff = 4·d_model (6400 for XL), GPT-2 vocabulary, our SwiGLU blocks.
    return ModelConfig(vocab_size=GPT2_VOCAB_SIZE, context_length=context_length, d_model=d_model,
                       num_layers=num_layers, num_heads=num_heads, d_ff=4 * d_model)


GPT2_CONFIGS: dict[str, ModelConfig] = {
    "GPT-2 small": _gpt2(12, 768, 12),
    "GPT-2 medium": _gpt2(24, 1024, 16),
    "GPT-2 large": _gpt2(36, 1280, 20),
    "GPT-2 XL": _gpt2(48, 1600, 25),
    "GPT-2 XL, ctx 16384": _gpt2(48, 1600, 25, context_length=16_384),
}

def model_accounting(cfg: ModelConfig, *, budget_bytes: int) -> dict:
    """All the numbers of one configuration, as plain JSON-ready data."""
    matmuls = forward_matmuls(cfg)
    by_component = flops_by_component(matmuls)
    total = sum(by_component.values())
    params = parameter_counts(cfg)
    memory = adamw_memory(cfg)
    return {
        "config": cfg.to_dict(),
        "parameters": params,
        "parameters_fp32_bytes": params["total"] * BYTES_PER_FLOAT32,
        "forward_flops_per_sequence": total,
        "flops_by_component": by_component,
        "flop_shares": {name: flops / total for name, flops in by_component.items()},
        "matmuls": [dataclasses.asdict(mm) | {"flops": mm.flops} for mm in matmuls],
        "adamw_memory": {
            "parameters_bytes": memory.parameters_bytes,
            "gradients_bytes": memory.gradients_bytes,
            "optimizer_state_bytes": memory.optimizer_state_bytes,
            "activation_bytes_per_sequence": memory.activation_bytes_per_sequence,
            "a_bytes_per_sequence": memory.per_sequence_bytes,
            "b_fixed_bytes": memory.fixed_bytes,
            "budget_bytes": budget_bytes,
            "max_batch_size": memory.max_batch_size(budget_bytes),
        },
        "adamw_step_flops": {
            "per_sequence": 3 * total,  # forward + backward, times batch_size
            "fixed": ADAMW_FLOPS_PER_PARAMETER * params["total"],
        },
    }


def build_accounting(configs: dict[str, ModelConfig] | None = None, *, train_model: str = "GPT-2 XL",
                     settings: AccountingSettings = AccountingSettings()) -> dict:
    """The whole report as data: every configuration, plus the training-time estimate for ``train_model``."""
    configs = GPT2_CONFIGS if configs is None else configs
    steps, batch_size, mfu = settings.steps, settings.batch_size, settings.mfu
    peak_flops, budget_bytes = settings.peak_tflops * 1e12, int(settings.memory_gb * 1e9)
    if train_model not in configs:
        raise ValueError(f"training-time model {train_model!r} is not one of {', '.join(configs)}")
    cfg = configs[train_model]
    step = adamw_step_flops(cfg, batch_size=batch_size)
    return {
        "conventions": {
            "matmul_flops": "2*m*n*p for (m x n) @ (n x p); element-wise ops not counted",
            "backward_flops": "2 x forward",
            "bytes_per_value": BYTES_PER_FLOAT32,
            "adamw_update_flops_per_parameter": ADAMW_FLOPS_PER_PARAMETER,
        },
        "models": {name: model_accounting(c, budget_bytes=budget_bytes) for name, c in configs.items()},
        "training_time": {
            "model": train_model, "steps": steps, "batch_size": batch_size, "peak_flops": peak_flops,
            "mfu": mfu, "step_flops": step["total"], "total_flops": steps * step["total"],
            "days": training_days(cfg, steps=steps, batch_size=batch_size, peak_flops=peak_flops, mfu=mfu),
        },
    }


def _gb(num_bytes: float) -> str:
    return f"{num_bytes / 1e9:,.2f} GB"


def _sci(value: float) -> str:
    return f"{value:.3e}"


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _parameters_section(models: dict) -> list[str]:
    rows = [[name, m["config"]["num_layers"], m["config"]["d_model"], m["config"]["num_heads"], m["config"]["d_ff"],
             m["config"]["context_length"], f"{m['parameters']['total']:,}", _gb(m["parameters_fp32_bytes"])]
            for name, m in models.items()]
    header = ["model", "layers", "d_model", "heads", "d_ff", "context", "parameters", "float32"]
    return ["## Parameters and float32 memory", "", *markdown_table(header, rows), ""]


def _matmul_section(name: str, model: dict) -> list[str]:
    rows = [[mm["name"], mm["component"], f"({mm['m']}×{mm['n']})·({mm['n']}×{mm['p']})", f"{mm['count']:,}",
             _sci(mm["flops"])] for mm in model["matmuls"]]
    rows.append(["**total**", "", "", "", f"**{_sci(model['forward_flops_per_sequence'])}**"])
    return [f"## Matrix multiplies of one forward pass: {name}, one sequence", "",
            "Count = layers (projections, feed-forward) or layers × heads (attention), per sequence; "
            "every model's list is in accounting.json.", "",
            *markdown_table(["matmul", "component", "shape", "count", "FLOPs"], rows), ""]


def _shares_section(models: dict, plot_name: str | None) -> list[str]:
    rows = [[name, _sci(m["forward_flops_per_sequence"]), *(_pct(m["flop_shares"][c]) for c in COMPONENTS)]
            for name, m in models.items()]
    lines = ["## Share of forward FLOPs by component", "",
             *markdown_table(["model", "FLOPs / sequence", *COMPONENTS], rows), ""]
    if plot_name:
        lines += [f"![FLOPs share by component]({plot_name})", ""]
    return lines + _share_observations(models)


def _share_observations(models: dict) -> list[str]:
    """Sentences on how the shares move from the smallest to the widest model, and with a longer context."""
    names = list(models)
    first = names[0]
    widest = max(names, key=lambda n: models[n]["config"]["d_model"])  # first of the widest: default context
    longest = max(names, key=lambda n: models[n]["config"]["context_length"])

    def share(name: str, component: str) -> str:
        return _pct(models[name]["flop_shares"][component])

    scores, ffn, head = COMPONENTS[1:]
    lines = [f"From {first} to {widest} the feed-forward share goes from {share(first, ffn)} to "
             f"{share(widest, ffn)} and the LM head's from {share(first, head)} to {share(widest, head)}: "
             "layer matmuls grow with d_model², the LM head only with d_model."]
    if models[longest]["config"]["context_length"] > models[widest]["config"]["context_length"]:
        ratio = models[longest]["forward_flops_per_sequence"] / models[widest]["forward_flops_per_sequence"]
        lines.append(f"At context {models[longest]['config']['context_length']:,} ({longest}) one sequence costs "
                     f"{ratio:.1f}x the FLOPs and attention scores + weighted sum take {share(longest, scores)} "
                     f"(vs {share(widest, scores)}), since they grow with the context squared.")
    return [" ".join(lines), ""]


def _memory_section(models: dict, detail: str) -> list[str]:
    rows = []
    for name, m in models.items():
        mem = m["adamw_memory"]
        rows.append([name, _gb(mem["a_bytes_per_sequence"]), _gb(mem["b_fixed_bytes"]),
                     f"{_gb(mem['a_bytes_per_sequence'])} · batch_size + {_gb(mem['b_fixed_bytes'])}",
                     mem["max_batch_size"]])
    budget = f'{next(iter(models.values()))["adamw_memory"]["budget_bytes"] / 1e9:g} GB'
    mem = models[detail]["adamw_memory"]
    parts = [["parameters", _gb(mem["parameters_bytes"])], ["gradients", _gb(mem["gradients_bytes"])],
             ["optimizer state (AdamW m, v)", _gb(mem["optimizer_state_bytes"])]]
    parts += [[f"activations: {part} (per sequence)", _gb(size)]
              for part, size in mem["activation_bytes_per_sequence"].items()]
    return ["## AdamW training memory (float32)", "",
            "Parameters, gradients and the two AdamW moments are fixed (b = 16 bytes a parameter); the "
            "activations saved for backward grow with the batch (a per sequence, at the full context).", "",
            *markdown_table(["model", "a (per sequence)", "b (fixed)", "memory", f"largest batch in {budget}"],
                            rows), "",
            f"### {detail}: memory by component", "", *markdown_table(["component", "size"], parts), ""]


def _flops_section(report: dict) -> list[str]:
    rows = [[name, f"{_sci(m['adamw_step_flops']['per_sequence'])} · batch_size + "
                   f"{_sci(m['adamw_step_flops']['fixed'])}"] for name, m in report["models"].items()]
    t = report["training_time"]
    return ["## FLOPs of one AdamW training step", "",
            "Forward + backward (2x forward) per sequence, plus the AdamW update "
            f"({ADAMW_FLOPS_PER_PARAMETER} FLOPs a parameter, which is negligible).", "",
            *markdown_table(["model", "FLOPs per step"], rows), "",
            f"## Training time of {t['model']}", "",
            f"{t['steps']:,} steps at batch {t['batch_size']:,}: {_sci(t['step_flops'])} FLOPs a step, "
            f"{_sci(t['total_flops'])} in all. On one device of {t['peak_flops'] / 1e12:g} TFLOP/s at "
            f"{t['mfu']:.0%} MFU that is **{t['days']:,.0f} days** ({t['days'] / 365.25:.1f} years).", ""]


def render_markdown(report: dict, *, plot_name: str | None = None, detail: str = "GPT-2 XL") -> str:
    """The report as markdown; ``plot_name`` is the FLOPs-share plot's path relative to the markdown."""
    models = report["models"]
    detail = detail if detail in models else next(iter(models))
    conv = report["conventions"]
    lines = ["# Resource accounting", "",
             f"Computed by `scratchlm.reports.accounting` from each model configuration. Matmul FLOPs: "
             f"{conv['matmul_flops']}; backward = {conv['backward_flops']}; float32 values of "
             f"{conv['bytes_per_value']} bytes. GPT-2 shapes use our architecture (pre-norm RMSNorm, RoPE, "
             "SwiGLU with d_ff = 4·d_model, untied embeddings, vocabulary 50,257).", ""]
    lines += _parameters_section(models) + _matmul_section(detail, models[detail])
    lines += _shares_section(models, plot_name) + _memory_section(models, detail) + _flops_section(report)
    return "\n".join(lines)


def plot_flop_shares(report: dict, path: str | Path) -> None:
    """Stacked horizontal bars: each model's forward FLOPs split by component."""
    plt = pyplot()

    models = report["models"]
    names = list(models)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(names) + 1.8))
    left = [0.0] * len(names)
    for component in COMPONENTS:
        shares = [100 * models[n]["flop_shares"][component] for n in names]
        ax.barh(names, shares, left=left, label=component)
        left = [a + b for a, b in zip(left, shares)]
    ax.invert_yaxis()  # first model on top, like the table
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of forward-pass FLOPs (%)")
    ax.set_title("Where the FLOPs of one forward pass go")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(COMPONENTS), fontsize="small")
    save_figure(fig, path)


def write_accounting_report(markdown_path: str | Path, json_path: str | Path, plot_path: str | Path,
                            settings: AccountingSettings) -> dict:
    """Write accounting.md, accounting.json and the FLOPs-share plot (``settings``: the training-time estimate)."""
    report = build_accounting(settings=settings)
    plot_flop_shares(report, plot_path)
    with atomic_open(markdown_path, "w") as handle:
        handle.write(render_markdown(report, plot_name=relative_link(plot_path, markdown_path)))
    write_json(json_path, report)
    return report
