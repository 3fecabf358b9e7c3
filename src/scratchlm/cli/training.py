"""``scratchlm train`` and ``scratchlm generate``: a run of config.yaml, and samples from it."""

from __future__ import annotations

import argparse
import json
import logging

from scratchlm.cli.common import add_results_argument, add_run_arguments, run_dir_of

log = logging.getLogger(__name__)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="name of the run under `runs:` in the config file")
    parser.add_argument("--config", default="config.yaml", help="pipeline config with `corpora:`, `training:`, `runs:`")
    parser.add_argument("--settings", action="append", default=[], metavar="FILE",
                        help="YAML file of run settings merged on top of the run (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="override one setting, e.g. --set optimizer.lr=3e-4 --set model.num_layers=2")
    parser.add_argument("--run-dir", default=None, help="run folder; RESULTS/runs/RUN when not given")
    add_results_argument(parser, "results folder with the encoded splits and tokenizers (and runs/)")
    parser.add_argument("--fresh", action="store_true",
                        help="start the run over; its existing files are moved to RUN_DIR/replaced/TIME/, not deleted")


def run_train(args: argparse.Namespace) -> int:
    from scratchlm.training.config import load_yaml, parse_assignment, resolve_run
    from scratchlm.training.loop import TrainingDiverged, TrainingInterrupted, corpus_data, train

    project = load_yaml(args.config)
    overrides = [load_yaml(path) for path in args.settings] + [parse_assignment(a) for a in args.assignments]
    settings = resolve_run(project, args.run, overrides)
    try:
        summary = train(settings, corpus_data(project, settings.corpus, args.results), run_dir_of(args),
                        run_name=args.run, fresh=args.fresh)
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        return 128 + stop.signum
    except TrainingDiverged as error:
        log.error("%s", error)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, what="to sample from")
    parser.add_argument("--prompt", nargs="+", default=[""],
                        help="one or more prompts (decoded as a batch); '' starts from the document separator")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens to generate per prompt")
    parser.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass in (0, 1]; 1 = off")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ...")
    parser.add_argument("--special-token", nargs="+", dest="special_tokens", default=None,
                        help="special tokens of the run's tokenizer (default: those model.json records)")
    parser.add_argument("--valid", default=None, help="encoded split (.npy) whose perplexity to report too")
    parser.add_argument("--output", default=None, help="markdown file to write (default: print the samples)")


def run_generate(args: argparse.Namespace) -> None:
    from scratchlm.generation import write_samples

    text = write_samples(run_dir_of(args), args.output, valid=args.valid, prompts=args.prompt,
                         settings=[{"temperature": args.temperature, "top_p": args.top_p}],
                         max_new_tokens=args.max_new_tokens, seed=args.seed, device=args.device,
                         special_tokens=args.special_tokens)
    if args.output is None:
        print(text)
