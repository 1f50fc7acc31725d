"""Train an α-predictor: `python -m jobs.train_predictor --labels runs/demo-train/labels --out artifacts/alpha-v1`.

Reads one or more α-label datasets, measures the learned policy by nested cross-validation
(outer folds by example; the threshold, and with --select the feature set and model, chosen
on inner folds) against student, teacher, the best fixed α and the oracle, each with its
95 % interval, decides whether the learned policy or the best fixed α decodes (the learned
one only where it beats the fixed one on held-out rows), calibrates the entropy gate, and
writes a versioned artifact directory (model + metadata.json).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli import output_path, print_report_hint, run_main
from pipeline.errors import UserError
from pipeline.config.schema import settings_from
from pipeline.config.yaml_text import read_yaml
from predictor.artifact import Predictor, check_can_save
from predictor.features import FEATURE_SETS
from predictor.models import MODELS
from predictor.training import TrainSettings, format_metrics, read_labels, train_predictor


def train_settings(args) -> TrainSettings:
    raw = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"config file not found: {args.config}")
        raw = read_yaml(path, f"predictor config {args.config}") or {}
    for key in ("model", "folds", "inner_folds", "seed", "features", "n_tokens", "teacher_token_cost", "policy", "select"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    return settings_from(TrainSettings, raw, "predictor config")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.train_predictor", description=__doc__)
    parser.add_argument("--labels", action="append", required=True, help="label dataset (repeat to train on the union)")
    parser.add_argument("--out", required=True, type=output_path, help="new artifact directory")
    parser.add_argument("--config", help="YAML: model, params, folds, inner_folds, seed, features, teacher_token_cost, policy, "
                                             "select, select_features, select_models, n_tokens")
    parser.add_argument("--model", choices=list(MODELS))
    parser.add_argument("--features", choices=list(FEATURE_SETS),
                        help="stats: the student's first-token statistics; hidden: its hidden state; both; student: hidden state, "
                             "entropy and top-1 (default); two_model, two_model_stats: also the teacher's first-token statistics "
                             "(the teacher is then asked for every example)")
    parser.add_argument("--select", action="store_true", default=None,
                        help="compare feature sets (stats, hidden, both) × models (logistic, gradient boosting, MLP) by inner "
                             "cross-validation and keep the best; the artifact holds the whole table")
    parser.add_argument("--policy", choices=["auto", "learned", "fixed"],
                        help="auto (default): the learned policy only where it beats the best fixed α on held-out rows; "
                             "learned or fixed: force one")
    parser.add_argument("--teacher-token-cost", type=float, dest="teacher_token_cost",
                        help="accuracy one teacher token per example is worth giving up (default 0: teacher tokens are free)")
    parser.add_argument("--inner-folds", type=int, dest="inner_folds")
    parser.add_argument("--n-tokens", type=int, dest="n_tokens",
                        help="N whose labels to train on (labels of an N grid hold several); the artifact decodes with it. "
                             "Default: the labels' n_tokens")
    parser.add_argument("--folds", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--init-from", help="previous artifact: same features required, and labels it was not trained on "
                                            "(overlapping examples are refused); an MLP warm-starts from it")
    args = parser.parse_args(argv)
    settings = train_settings(args)
    check_can_save(args.out)  # before minutes of training, not after them
    init = Predictor.load(args.init_from) if args.init_from else None
    table = read_labels(args.labels, settings.n_tokens)
    predictor = train_predictor(table, settings, args.labels, init)
    predictor.save(args.out)
    print(format_metrics(predictor.meta))
    print(f"artifact: {args.out} ({predictor.meta['model_kind']}, {table.num_rows} examples)")
    label_runs = [str(Path(p).parent) if Path(p).name == "labels" else p for p in args.labels]
    print_report_hint(*label_runs, args.out)
    return 0


if __name__ == "__main__":
    run_main(main)
