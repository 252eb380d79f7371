"""The ``auditor-lite`` command line.

Sub-commands live next to the code they drive (``auditor_lite/<area>/cli.py``) and are imported only
when invoked, so ``auditor-lite --help`` stays instant and the runtime commands never import torch.
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of a click command or group.
COMMANDS = {
    "data": "auditor_lite.data.cli:data",
    "eval": "auditor_lite.eval.cli:eval_cmd",
    "baseline": "auditor_lite.baselines.cli:baseline",
    "bench": "auditor_lite.benchmark.cli:bench",
    "convert-mqauditor": "auditor_lite.eval.cli:convert_mqauditor",
    "audit": "auditor_lite.audit_cli:audit",
    "select": "auditor_lite.audit_cli:select",
    "demo": "auditor_lite.audit_cli:demo",
    "calibrate": "auditor_lite.calibration.recalibrate:calibrate",
    "export": "auditor_lite.export.cli:export",
    "train-grounding": "auditor_lite.training.grounding_cli:train_grounding",
    "train-scorer": "auditor_lite.training.grounding_cli:train_scorer_cmd",
    "diagnose": "auditor_lite.training.grounding_cli:diagnose",
    "ros": "auditor_lite.ros.cli:ros",
}


class LazyGroup(click.Group):
    """A click group that imports each sub-command's module on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module_name, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="auditor-lite")
def main():
    """auditor-lite: audit referring audio-visual segmentation masks on the edge."""


if __name__ == "__main__":  # pragma: no cover
    main()
