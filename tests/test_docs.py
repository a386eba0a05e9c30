"""The docs say what the code does: error codes, the manifest example, the cut listing, links, commands shown."""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgecut._cli import build_parser, main
from edgecut._cli_service import argv_with_serve
from edgecut._exit import ExitCode
from models import partition
from protocol import ErrorCode

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
DOCS = sorted(path.relative_to(ROOT) for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")])


def test_every_error_code_is_in_the_spec_table() -> None:
    table = PROTOCOL_MD.read_text(encoding="utf-8").split("## 5. Error codes", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert sorted(listed) == sorted(code.value for code in ErrorCode)


def test_the_readme_lists_every_exit_code_and_help_does_too(capsys: pytest.CaptureFixture[str]) -> None:
    table = (ROOT / "README.md").read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    assert [int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)] == list(ExitCode)
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out.split("exit codes:\n", 1)[1]
    assert [int(line.split()[0]) for line in shown.splitlines() if line.strip()] == list(ExitCode)


def test_the_manifest_example_is_what_the_partitioner_writes() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8").split("## 8. Split manifests", 1)[1]
    example = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    model_id, model = partition.load_model(example["model_id"])
    assert example == partition.split(model, example["cut_id"], model_id=model_id).manifest.to_json()


def test_the_segments_example_is_what_the_partitioner_writes() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8").split("### 8.1 Segments directories", 1)[1]
    example = json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])
    model_id, model = partition.load_model(example["model_id"])
    inner = [cut["id"] for cut in example["cuts"][1:-1]]
    assert example == partition.split_segments(model, inner, model_id=model_id).manifest.to_json()


def test_the_cut_listing_table_names_every_key_models_cuts_json_prints(capsys: pytest.CaptureFixture[str]) -> None:
    table = PROTOCOL_MD.read_text(encoding="utf-8").split("### 8.3 Cut listings", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.MULTILINE)
    assert main(["models", "cuts", "tiny", "--json"]) == ExitCode.OK
    cuts = json.loads(capsys.readouterr().out)
    assert all(list(cut) == listed for cut in cuts)


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_point_at_files_that_exist(doc: Path) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", text)
    missing = [target for target in targets if not ((ROOT / doc).parent / target).exists()]
    assert missing == []


def _code_block_lines(doc: Path) -> list[str]:
    """The lines of ``doc``'s fenced code blocks, a backslash-continued command as one line."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in re.sub(r"\\\n\s*", " ", block).splitlines()]


_PLACEHOLDERS = re.compile(r"[<\[{]|\.\.\.|…")  # MODEL <file>, [--optional], {a,b}: a synopsis, not a command


def test_every_edgecut_command_the_docs_show_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """Each ``edgecut ...`` line of a code block is a command the CLI takes: its subcommand and flags exist."""
    commands = [
        (str(doc), _shell_command(line.removeprefix("$ ")))
        for doc in DOCS
        for line in _code_block_lines(doc)
        if line.removeprefix("$ ").startswith("edgecut ") and not _PLACEHOLDERS.search(line)
    ]
    assert len(commands) >= 40  # the docs show dozens: a pattern that found none would pass for nothing
    parser = build_parser()
    refused = []
    for doc, command in commands:
        try:
            parser.parse_args(argv_with_serve(command[1:]))
        except SystemExit as exc:
            if exc.code:
                refused.append((doc, shlex.join(command), capsys.readouterr().err.strip().splitlines()[-1]))
    assert refused == []


def _shell_command(line: str) -> list[str]:
    """The words of ``line``'s first command: up to a pipe, a redirection, ``&&`` or ``&`` (comments dropped)."""
    words = shlex.split(line, comments=True)
    ends = [index for index, word in enumerate(words) if word in {"|", "||", "&&", "&", ";", ">", ">>", "2>&1"}]
    return words[: ends[0]] if ends else words


def test_every_flag_the_docs_give_a_bench_is_in_its_help() -> None:
    """``python bench/X.py --flag`` anywhere in the docs or the benches' own docstrings: X exists and takes --flag."""
    sources = [*DOCS, *sorted(p.relative_to(ROOT) for p in ROOT.glob("bench/*.py"))]
    flags: dict[str, set[str]] = {}
    for source in sources:
        text = re.sub(r"\\\n\s*", " ", (ROOT / source).read_text(encoding="utf-8"))
        for script, rest in re.findall(r"python (bench/[a-z_]+\.py)([^\n`]*)", text):
            flags.setdefault(script, set()).update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest))
    assert len(flags) >= 10
    unknown = []
    for script, named in sorted(flags.items()):
        assert (ROOT / script).is_file(), script
        shown = subprocess.run(  # noqa: S603 - our own bench, --help only
            [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
        ).stdout
        unknown += [(script, flag) for flag in sorted(named) if not re.search(re.escape(flag) + r"\b", shown)]
    assert unknown == []


def _options_without_help(parser: argparse.ArgumentParser, command: str) -> list[str]:
    """Every option and argument of ``parser`` and its subcommands that ``--help`` shows without saying what it is."""
    missing = []
    for action in parser._actions:  # argparse keeps no public list
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                missing += _options_without_help(subparser, f"{command} {name}")
        elif action.help is None:
            missing.append(f"{command} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_cli_option_says_what_it_is() -> None:
    assert _options_without_help(build_parser(), "edgecut") == []


def test_every_bench_option_says_what_it_is() -> None:
    """Read off the benches' source: each ``add_argument`` has a ``help`` (``argparse.SUPPRESS`` for internal ones)."""
    missing = []
    for script in sorted(ROOT.glob("bench/*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            calls_add_argument = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
            if calls_add_argument and not any(keyword.arg == "help" for keyword in node.keywords):
                missing.append(f"{script.name}:{node.lineno}")
    assert missing == []
