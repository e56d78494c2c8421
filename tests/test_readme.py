"""Every ``pointsup`` command in the README's code blocks works as written.

Each command must parse with the CLI's own parser. The configs that training commands name must
load with the overrides they give. The quick ones run for real on a small generated dataset in a
folder laid out as the README assumes: ``simulate`` (both forms), ``recipe``, ``configs``, then the
``train`` command that reads the recipe, loaded with its overrides. Training and the
labelling server run end to end in their own tests and in ``make demo``. Placeholders written in
capitals (``CONFIG``) stand for a shipped config.
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import pytest

from pointsup.cli import build_parser, main
from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.engine.config import load_config
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
#: what a placeholder config in the README stands for
PLACEHOLDER_CONFIG = "synthetic_lite0_points"
#: commands that read a config and overrides: (subcommand, index of the config among the positionals)
CONFIG_COMMANDS = {"train", "selftrain"}


def readme_commands() -> list[str]:
    """The ``pointsup ...`` lines of the README's fenced code blocks (continuations joined,
    comments dropped), in order; also a command quoted in a code comment (``# shell: pointsup ...``)."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    commands = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            quoted = re.search(r"#\s*shell:\s*(pointsup .*)", line)
            if line.startswith("pointsup "):
                commands.append(" ".join(shlex.split(line, comments=True)))
            elif quoted:
                commands.append(" ".join(shlex.split(quoted.group(1), comments=True)))
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_the_workflows_commands() -> None:
    subcommands = {shlex.split(c)[1] for c in COMMANDS}
    assert {"simulate", "train", "recipe", "annotate", "selftrain", "pseudo-label", "predict"} <= subcommands


@pytest.mark.parametrize("command", COMMANDS)
def test_command_parses(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == shlex.split(command)[1]


def config_and_overrides(command: str) -> tuple[str, list[str]]:
    """The config a train/selftrain command names (placeholders replaced) and its overrides."""
    words = shlex.split(command)[2:]
    positionals, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("--"):
            skip = word in {"--output", "--num-gpus"}
        else:
            positionals.append(word)
    config, overrides = positionals[0], [w for w in positionals[1:] if "=" in w]
    return (PLACEHOLDER_CONFIG if config.isupper() else config), overrides


@pytest.mark.parametrize("command", [c for c in COMMANDS if shlex.split(c)[1] in CONFIG_COMMANDS and "my_recipe" not in c])
def test_training_commands_configs_load_with_their_overrides(command: str, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.chdir(REPO_ROOT)  # configs/... paths are relative to the repository
    config, overrides = config_and_overrides(command)
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.config"):
        load_config(config, overrides)
    assert not caplog.records, "the command uses old config keys"


def test_the_quick_commands_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """simulate (both forms), recipe, and the train command on its recipe (resolved by `configs`)."""
    data = generate_synthetic_dataset(
        tmp_path / "generated", num_images=6, image_size=128, val_fraction=0.34, show_progress=False
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "images").symlink_to(data.image_dir)
    for name in ("instances_train2017.json", "in.json", "data/train.json"):
        (tmp_path / name).write_bytes(data.train_json.read_bytes())
    (tmp_path / "data" / "val.json").write_bytes(data.val_json.read_bytes())
    monkeypatch.chdir(tmp_path)
    quick = [c for c in COMMANDS if shlex.split(c)[1] in {"simulate", "recipe"}]
    assert len(quick) >= 3
    for command in quick:
        assert main(shlex.split(command)[1:]) == 0, command
        capsys.readouterr()
    assert Path("instances_train2017_n10_v1_without_masks.json").is_file() and Path("my_recipe.yaml").is_file()
    train_on_recipe = next(c for c in COMMANDS if "my_recipe.yaml" in c and shlex.split(c)[1] == "train")
    config, overrides = config_and_overrides(train_on_recipe)
    resolved = load_config(config, overrides)
    assert resolved.data.val_json == "data/val.json" and Path(str(resolved.data.train_json)).samefile("data/train.json")


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings: lower case, punctuation dropped, spaces to '-'."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_from_the_readme_and_docs_lead_somewhere() -> None:
    """Every relative link of the README and docs/ names an existing file, and every #anchor a heading."""
    documents = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = []
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an external link
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, broken
