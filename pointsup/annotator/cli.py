"""Argument parsing for ``pointsup annotate`` (the labelling tool lands with its issue)."""

from __future__ import annotations

import argparse


def add_annotate_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``annotate`` subcommand group on the top-level parser (none yet)."""
