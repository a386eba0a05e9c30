"""The docs say what the code does: error codes, the manifest example, the cut listing, links between docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgecut._cli import main
from edgecut._exit import ExitCode
from models import partition
from protocol import ErrorCode

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_MD = ROOT / "docs" / "protocol.md"


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


@pytest.mark.parametrize("doc", sorted(p.relative_to(ROOT) for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")]))
def test_relative_links_point_at_files_that_exist(doc: Path) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)", text)
    missing = [target for target in targets if not ((ROOT / doc).parent / target).exists()]
    assert missing == []
