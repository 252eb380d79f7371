"""``auditor-lite eval`` (score predictions) and ``auditor-lite convert-mqauditor``."""

from __future__ import annotations

from pathlib import Path

import click

TEST_SPLITS = ("test_s", "test_u")
TEST_MODES = ("image", "video")


def _pairs(bench, split: str | None, mode: str | None) -> list[tuple[str, str]]:
    """The (split, mode) pairs to evaluate: the requested ones, which must exist on disk."""
    present = [p for p in bench.available() if p[0] in TEST_SPLITS and p[1] in TEST_MODES]
    pairs = [p for p in present if split in (None, p[0]) and mode in (None, p[1])]
    if not pairs:
        wanted = f"{split or 'test_s|test_u'} / {mode or 'image|video'}"
        found = ", ".join(f"{s}/{m}" for s, m in present) or "none"
        raise click.ClickException(f"{bench.root}: no test JSON for {wanted} (found: {found})")
    return pairs


def read_uid_subset(path: Path, where: tuple[str, ...] = ()) -> set[str]:
    """Uids to keep: a plain list (one per line) or a CSV with a ``uid`` column.

    ``where`` entries ``COLUMN=VALUE`` keep only CSV rows that match all of them, e.g.
    ``needs_audio=1`` on the ``synth_cues.csv`` that ``data synth`` writes.
    """
    import csv

    text = Path(path).read_text().splitlines()
    if not text:
        raise click.BadParameter(f"{path} is empty", param_hint="--uids")
    if "uid" not in text[0].split(","):
        if where:
            raise click.BadParameter(f"{path}: --where needs a CSV with a header row",
                                     param_hint="--where")
        return {line.strip() for line in text if line.strip()}
    rows = list(csv.DictReader(text))
    for clause in where:
        column, sep, value = clause.partition("=")
        if not sep or column not in rows[0]:
            raise click.BadParameter(f"{clause!r}: expected COLUMN=VALUE with COLUMN one of "
                                     f"{', '.join(rows[0])}", param_hint="--where")
        rows = [r for r in rows if r[column] == value]
    return {r["uid"] for r in rows}


def evaluate_files(bench_dir: Path, pred_files: tuple[Path, ...], names: tuple[str, ...],
                   split: str | None, mode: str | None, echo=click.echo,
                   uids: set[str] | None = None) -> dict:
    """Score every predictions file on every requested (split, mode); returns the result groups.

    A file that covers no candidate of a (split, mode) is left out of that table (with a note);
    a file that covers none of the evaluated candidates at all is an error.
    """
    from auditor_lite.data.reader import Benchmark
    from auditor_lite.eval.predictions import index_predictions, method_name, read_prediction_lines
    from auditor_lite.eval.protocol import evaluate_method, ground_truth_table

    if names and len(names) != len(pred_files):
        raise click.BadParameter(f"{len(names)} --name given for {len(pred_files)} --pred files; "
                                 "give one per file or none", param_hint="--name")
    bench = Benchmark(bench_dir)
    pairs = _pairs(bench, split, mode)
    methods = []
    for index, path in enumerate(pred_files):
        lines = read_prediction_lines(path)
        methods.append((names[index] if names else method_name(lines, path), path, lines))
    seen = [m[0] for m in methods]
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise click.BadParameter(f"method name(s) {', '.join(repeated)} used twice; rows must "
                                 "differ (use --name)", param_hint="--name")
    groups, matched_anywhere = {}, {name: 0 for name in seen}
    for pair_split, pair_mode in pairs:
        records = bench.records(pair_split, pair_mode)
        if uids is not None:
            records = (r for r in records if r.uid in uids)
        gt = ground_truth_table(records, pair_split, pair_mode)
        if len(gt) == 0:
            echo(f"note: {pair_split}/{pair_mode} has no candidates; skipped")
            continue
        results = []
        for name, path, lines in methods:
            preds = index_predictions(lines, path, mode=pair_mode, split=pair_split)
            result = evaluate_method(name, gt, preds)
            matched = len(gt) - result.metrics["n_missing"]
            matched_anywhere[name] += matched
            if matched == 0:
                echo(f"note: {path} has no prediction for {pair_split}/{pair_mode}; "
                     f"row '{name}' left out of that table")
                continue
            if result.metrics["n_missing"]:
                echo(f"note: {name}: {result.metrics['n_missing']} of {len(gt)} candidates of "
                     f"{pair_split}/{pair_mode} have no prediction (scored IoU 0, class wrong)")
            results.append(result)
        if results:
            groups[(pair_split, pair_mode)] = results
    for name, path, lines in methods:
        if matched_anywhere[name] == 0:
            example = lines[0][1].key if lines else None
            raise click.ClickException(
                f"{path}: none of its {len(lines)} predictions matches a candidate of {bench_dir} "
                f"in {', '.join(f'{s}/{m}' for s, m in pairs)} (keys are (uid, frame, cand_id); "
                f"first key in the file: {example})")
    return groups


@click.command("eval")
@click.option("--bench", "bench_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Benchmark root in the MQ-RAVSBench layout.")
@click.option("--pred", "pred_files", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Predictions JSONL (docs/predictions.md); repeat for several methods.")
@click.option("--name", "names", multiple=True,
              help="Row name for each --pred, in order (default: the file's 'method' or its stem).")
@click.option("--mode", type=click.Choice(TEST_MODES), default=None,
              help="Evaluate one mode (default: every mode present).")
@click.option("--split", type=click.Choice(TEST_SPLITS), default=None,
              help="Evaluate one split (default: every test split present).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs/eval"), show_default=True,
              help="Directory for results.json, results.md and the PNG plots.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--uids", "uids_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Score only these uids: a list, or a CSV with a 'uid' column "
              "(e.g. train_test_meta_files/synth_cues.csv).")
@click.option("--where", multiple=True, help="With a CSV --uids: keep rows where COLUMN=VALUE "
              "(e.g. --where needs_audio=1).")
def eval_cmd(bench_dir: Path, pred_files: tuple[Path, ...], names: tuple[str, ...],
             mode: str | None, split: str | None, out_dir: Path, no_plots: bool,
             uids_file: Path | None, where: tuple[str, ...]):
    """Score predictions with the MQ-RAVSBench protocol and print the paper-shaped tables."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.eval.report import format_tables, write_report

    try:
        uids = read_uid_subset(uids_file, where) if uids_file else None
        groups = evaluate_files(bench_dir, pred_files, names, split, mode, uids=uids)
    except DataError as err:  # a malformed benchmark or predictions file, named in the message
        raise click.ClickException(str(err)) from None
    if not groups:
        raise click.ClickException("nothing to evaluate: no predictions matched any test table")
    click.echo(format_tables(groups))
    written = write_report(groups, out_dir, plots=not no_plots)
    click.echo(f"\nwrote {len(written)} files to {out_dir} (results.json, results.md"
               f"{', PNG plots' if not no_plots else ''})")


@click.command("convert-mqauditor")
@click.argument("path_in", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("path_out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--method", default="mq-auditor", show_default=True,
              help="Method name written on every line (the table row name).")
def convert_mqauditor(path_in: Path, path_out: Path, method: str):
    """Parse MQ-Auditor answers (JSONL of uid, frame, cand_id, text) into a predictions JSONL."""
    from auditor_lite.data.schema import DataError
    from auditor_lite.eval.mqauditor import convert_mqauditor_outputs

    try:
        report = convert_mqauditor_outputs(path_in, path_out, method=method)
    except DataError as err:
        raise click.ClickException(str(err)) from None
    click.echo(report.format())
