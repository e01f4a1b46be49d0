"""``opensim-biopose plugins``: what is registered, by which plugin, version and origin."""
from __future__ import annotations

import argparse

from opensim_biopose.plugins import KINDS, get_registry

NAME = "plugins"
HELP = "list registered detectors, keypoint sources, body models, mesh backends and marker sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    for kind in KINDS:
        print(f"{kind.replace('_', ' ')}:")
        table = registry.entries[kind]
        if not table:
            print("  (none)")
        for name, reg in sorted(table.items()):
            print(f"  {name:<20} plugin {reg.plugin} {reg.version} ({reg.origin})")
    for name, reason in sorted(registry.failures.items()):
        print(f"failed plugin: {name}: {reason}")
    return 0
