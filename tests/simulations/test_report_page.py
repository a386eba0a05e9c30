"""The report a run writes: its answer first, every picture, the scenario, right labels and stable colours."""

from __future__ import annotations

import csv
import html
import itertools
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import simulations
from edgecut._cli import main
from edgecut._exit import ExitCode
from simulations import (
    CapacityPoint,
    CapacityResult,
    SearchInterrupted,
    Summary,
    find_hubs,
    load_profiles,
    write_capacity,
)
from simulations._answer import capacity_answer, run_answer
from simulations._plot_style import POLICY_COLOURS, TimeAxis, cut_colours, log_axis, policy_colour
from simulations._plots_time import interval_s, load
from simulations._report import RequestRecord, reasons, write_header, write_record
from simulations._report_page import _summary_table, write_report
from simulations._run import run_scenario
from simulations._scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[2]
PROFILES_FILE = ROOT / "docs" / "profiles" / "resnet18.json"  # fixed figures: no ONNX Runtime needed
PICTURES = ("load.png", "latency.png", "breakdown.png", "cdf.png", "queue.png")


def _scenario_data() -> dict[str, object]:
    link = {"rate": "20mbit", "delay": "20ms"}
    return {
        "name": "drop <b>",
        "description": "Does auto follow the drop?",
        "seed": 3,
        "duration_s": 12,
        "policies": ["edge", "cloud", "auto"],
        "hub": {"replicas": 2, "workers": 1},
        "groups": [
            {"name": "cams", "count": 2, "device": "rpi3", "link": link, "rate_hz": 2.0},
            {"name": "far", "count": 1, "device": "rpi3", "link": {"rate": "2mbit", "delay": "40ms"}, "rate_hz": 1.0},
        ],
        "faults": [
            {"at_s": 3, "kind": "bandwidth", "group": "cams", "rate": "2mbit", "for_s": 4},
            {"at_s": 8, "kind": "hub-down", "replica": 0, "for_s": 2},
        ],
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run_scenario(parse_scenario(_scenario_data()), out, profiles_file=PROFILES_FILE)
    return out


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_report_opens_with_the_answer_and_shows_every_part(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    body = page.split("<body>", 1)[1]
    assert body.startswith('<h1 id="answer">auto: p95 ')  # the first line answers
    answer = _text(body.split("</h1>", 1)[0])
    assert re.search(r"auto: p95 [\d.,]+ ms, \d+\.\d\dx the best fixed policy \((edge|cloud), ", answer), answer
    assert "drop &lt;b&gt;: Does auto follow the drop? 3 agents, 12 simulated s per run, seed 3, fleet mode." in page
    assert page.count('<img alt="') == len(PICTURES)
    assert json.loads((run_dir / "run.json").read_text())["interrupted"] is False
    for picture in PICTURES:
        assert f"({picture})</figcaption>" in page  # a caption in words, then the file
        assert (run_dir / picture).read_bytes().startswith(b"\x89PNG")
    text = _text(page)
    for heading in ("Over time", "Where the time went", "Fallbacks and errors by reason", "The scenario"):
        assert heading in text
    for fact in ("2 hub replicas of 1 worker", "cams", "far", "20mbit, 20 ms", "2mbit both ways", "hub-down"):
        assert fact in text
    assert "0.0" not in page.split("mean bytes up", 1)[1].split("</tr>", 2)[1]  # edge's row: whole bytes


def test_an_emulated_runs_report_says_so_and_counts_wall_clock_time(run_dir: Path, tmp_path: Path) -> None:
    for name in ("requests.csv", "profiles.json", "run.json"):
        shutil.copy(run_dir / name, tmp_path / name)
    run = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps(run | {"mode": "emulate"}))
    write_report(tmp_path, parse_scenario(_scenario_data()))
    page = (tmp_path / "report.html").read_text()
    assert "12 s of wall-clock time per run, seed 3, emulate mode." in page
    assert "fleet mode" not in page
    assert "simulated" not in page
    assert TimeAxis.of(parse_scenario(_scenario_data()), "emulate").label == "s from the start (wall clock)"


def test_every_policy_and_every_cut_has_one_colour_in_every_run() -> None:
    assert [policy_colour(p) for p in ("edge", "cloud", "auto")] == [
        POLICY_COLOURS[p] for p in ("edge", "cloud", "auto")
    ]
    assert len(set(POLICY_COLOURS.values())) == len(POLICY_COLOURS)
    assert policy_colour("pool") == policy_colour("pool")
    profiles = load_profiles(PROFILES_FILE)
    every = cut_colours(profiles, {"output", "pool", "input", "layer4.0.add"})
    assert list(every) == ["input", "layer4.0.add", "pool", "output"]  # from the input's end to the output's
    assert len(set(every.values())) == len(every)
    alone = cut_colours(profiles, {"output"})  # a run of edge-only: the same colour
    assert alone["output"] == every["output"]


def _log_labels(
    low: float, high: float, size_in: float, panels: int, which: Literal["x", "y"] = "y"
) -> list[tuple[str, float, float]]:
    """The labels a log axis of ``low``-``high`` shows in the first of ``panels``: text, start and end in pixels."""
    figure = Figure(figsize=(10, size_in) if which == "y" else (size_in, 4), layout="constrained")
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
    for axis in axes:
        axis.plot([low, high], [low, high])
        axis.set_title("a panel")
        log_axis(axis, which)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    first = axes[0]
    start, end = first.get_ylim() if which == "y" else first.get_xlim()
    ticks = first.get_yticklabels(which="both") if which == "y" else first.get_xticklabels(which="both")
    at = 1 if which == "y" else 0
    shown = [t for t in ticks if t.get_text() and start <= t.get_position()[at] <= end]
    labels = []
    for tick in shown:
        box = tick.get_window_extent(canvas.get_renderer())
        labels.append((tick.get_text(), *((box.y0, box.y1) if which == "y" else (box.x0, box.x1))))
    return sorted(labels, key=lambda label: label[1])


@pytest.mark.parametrize(
    ("low", "high", "size_in", "panels", "which"),
    [
        (90, 6000, 2.2, 1, "y"),
        (1, 60000, 2.2, 1, "y"),
        (0.5, 6000, 2.2, 1, "y"),
        (3, 60000, 11, 5, "y"),
        (100, 6000, 11, 5, "y"),
        (100, 6000, 7, 1, "x"),
        (1, 60000, 7, 1, "x"),
    ],
)
def test_log_axes_read_in_plain_numbers_and_no_two_labels_overlap(
    low: float, high: float, size_in: float, panels: int, which: Literal["x", "y"]
) -> None:
    labels = _log_labels(low, high, size_in, panels, which)
    assert len(labels) >= 2
    assert all(re.fullmatch(r"[\d,.]+", text) for text, _, _ in labels)  # 1,000, not 10^3
    assert all(before[2] <= after[1] for before, after in itertools.pairwise(labels))


def test_log_axes_label_1_2_and_5_where_they_fit() -> None:
    assert [text for text, _, _ in _log_labels(90, 6000, 2.2, 1)] == ["100", "200", "500", "1,000", "2,000", "5,000"]
    assert [text for text, _, _ in _log_labels(1, 60000, 2.2, 1)] == ["1", "10", "100", "1,000", "10,000", "100,000"]


def test_every_fault_is_shaded_on_a_time_axis() -> None:
    scenario = parse_scenario(_scenario_data())
    figure = Figure()
    axis = figure.subplots()
    TimeAxis.of(scenario, "fleet").draw(axis)
    spans = [patch.get_x() for patch in axis.patches]  # type: ignore[attr-defined]
    assert spans == [3, 8]
    assert axis.get_xlim() == (0, 12)
    assert axis.get_legend_handles_labels()[1] == ["fault: bandwidth", "fault: hub-down"]


def _summary(run: str, p95_ms: float, mean_ms: float, **counts: int) -> Summary:
    figures = {"fallbacks": 0, "errors": 0, "lost": 0} | counts
    return Summary(
        run=run,
        group="all",
        count=100,
        mean_ms=mean_ms,
        p50_ms=mean_ms,
        p95_ms=p95_ms,
        p99_ms=p95_ms,
        throughput_hz=1.0,
        bytes_up_mean=0.0,
        cut_switches=0,
        cuts={},
        **figures,
    )


def test_the_answer_compares_auto_with_the_best_fixed_policy_or_ranks_the_policies() -> None:
    edge, cloud = _summary("edge", 400.0, 200.0), _summary("cloud", 5000.0, 1500.0, fallbacks=70)
    auto = _summary("auto", 248.0, 150.0, lost=2)
    assert run_answer([edge, cloud, auto]) == (
        "auto: p95 248 ms, 0.62x the best fixed policy (edge, 400 ms); mean 150 ms, 0.75x edge's 200 ms;"
        " fallbacks: cloud 70; lost: auto 2"
    )
    assert run_answer([cloud, edge]) == "p95 from best to worst: edge 400 ms, cloud 5,000 ms; fallbacks: cloud 70"
    assert (
        run_answer([_summary("scenario", 62.5, 40.0)])
        == "scenario: p95 62.5 ms, p50 40.0 ms over 100 requests answered"
    )
    assert run_answer([]) == "no request finished"


def test_the_capacity_answer_names_each_policys_replicas() -> None:
    def point(policy: str, replicas: int, p95_ms: float, remote: int = 10) -> CapacityPoint:
        return CapacityPoint(policy, replicas, p95_ms, p95_ms, 0, remote)

    results = [
        CapacityResult("auto", 3, (point("auto", 2, 90.0), point("auto", 3, 55.0))),
        CapacityResult("cloud", None, (point("cloud", 4, 80.0),)),
        CapacityResult("edge", None, (point("edge", 1, 120.0, remote=0),)),
    ]
    assert capacity_answer(results, 60.0, 1000) == (
        "p95 within 60 ms for 1,000 agents: auto 3 hub replicas; cloud more than 4 replicas;"
        " edge sends nothing to a hub (no replica count changes it)"
    )


def test_the_capacity_page_answers_and_rings_the_answer(tmp_path: Path) -> None:
    scenario = parse_scenario(_scenario_data())
    results = [
        CapacityResult(
            "cloud", 2, (CapacityPoint("cloud", 1, 90.0, 50.0, 3, 20), CapacityPoint("cloud", 2, 40.0, 30.0, 0, 20))
        )
    ]
    write_capacity(tmp_path, scenario, results, 60.0)
    page = (tmp_path / "capacity.html").read_text()
    assert '<h1 id="answer">p95 within 60 ms for 3 agents: cloud 2 hub replicas</h1>' in page
    assert page.count('<img alt="') == 1
    assert (tmp_path / "capacity.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "capacity.json").read_text())[0]["replicas"] == 2


def test_fallbacks_errors_and_lost_requests_count_by_reason() -> None:
    def record(run: str, *, fallback: str = "", error: str = "") -> RequestRecord:
        return RequestRecord(
            run=run,
            group="g",
            agent="a",
            policy=run,
            start_s=0.0,
            cut="input",
            total_ms=1.0,
            fallback=fallback,
            error=error,
        )

    rows = [
        record("cloud", fallback="hub overloaded: queue of 64 full"),
        record("cloud", fallback="hub overloaded: queue of 65 full"),
        record("cloud", error="lost: neither an answer nor a fallback 12.1 s after it began"),
        record("auto", error="TransportError: the broker went away"),
        record("auto"),
    ]
    found = [(r.run, r.kind, r.reason, r.count, r.example) for r in reasons(rows)]
    assert found == [
        ("cloud", "fallback", "hub overloaded", 2, "hub overloaded: queue of 64 full"),
        ("cloud", "lost", "lost", 1, "lost: neither an answer nor a fallback 12.1 s after it began"),
        ("auto", "error", "TransportError", 1, "TransportError: the broker went away"),
    ]


def test_the_summary_table_writes_bytes_as_whole_numbers() -> None:
    row = _summary("edge", 400.0, 200.0)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", _summary_table([row]))
    assert cells[8] == "0"
    assert not math.isnan(row.p95_ms)


_BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--virtual-time-budget=5000",
    "--window-size=1150,1400",
)
_PROBE = (  # writes each picture's decoded width into the page once it has loaded
    "<script>addEventListener('load',()=>{document.body.dataset.widths="
    "[...document.images].map(i=>i.complete?i.naturalWidth:0).join(' ')})</script>"
)


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        reason = "no chromium on PATH (apt-get install chromium) to render the pages in"
        if os.environ.get("EDGECUT_REQUIRE_BROWSER") == "1":  # CI installs it: the page is checked there
            pytest.fail(reason)
        pytest.skip(reason)
    return browser


def _in_browser(browser: str, page: Path, tmp_path: Path) -> tuple[str, list[int]]:
    """The page's DOM once loaded in the browser, and each picture's decoded width (0: not decoded)."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run(  # noqa: S603 - the browser found on PATH, on a local file
        [browser, *_BROWSER_FLAGS, "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    widths = re.search(r'data-widths="([^"]*)"', dom)
    assert widths is not None, dom[:500]
    return dom, [int(width) for width in widths.group(1).split()]


@pytest.mark.slow
def test_the_report_loads_in_a_browser_with_every_picture_decoded(run_dir: Path, tmp_path: Path) -> None:
    browser = _browser()
    dom, widths = _in_browser(browser, run_dir / "report.html", tmp_path)
    assert len(widths) == len(PICTURES)
    assert all(width > 0 for width in widths)
    assert '<h1 id="answer">auto: p95' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(  # noqa: S603
        [browser, *_BROWSER_FLAGS, f"--screenshot={shot}", (run_dir / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image  # noqa: PLC0415 - matplotlib's own dependency

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None
    assert len(colours) > 50  # text and pictures, not a blank page


@pytest.mark.slow
def test_the_capacity_page_loads_in_a_browser_with_its_curve(tmp_path: Path) -> None:
    browser = _browser()
    points = (CapacityPoint("cloud", 1, 90.0, 50.0, 3, 20), CapacityPoint("cloud", 2, 40.0, 30.0, 0, 20))
    write_capacity(tmp_path, parse_scenario(_scenario_data()), [CapacityResult("cloud", 2, points)], 60.0)
    dom, widths = _in_browser(browser, tmp_path / "capacity.html", tmp_path)
    assert len(widths) == 1
    assert widths[0] > 0
    assert '<h1 id="answer">p95 within 60 ms for 3 agents: cloud 2 hub replicas</h1>' in dom


def test_the_load_pictures_intervals_are_round_and_hold_enough_requests() -> None:
    assert interval_s(60, 480) == 2.0  # 8 requests/s: 10 in 1.25 s
    assert interval_s(60, 100_000) == 1.0  # at most 60 intervals
    assert interval_s(6, 57) == 2.0
    assert interval_s(120, 0) == 600.0  # nothing answered: the longest


def test_an_interrupted_capacity_search_keeps_what_it_found_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = parse_scenario(_scenario_data() | {"policies": ["edge", "cloud"], "faults": []})
    profiles = load_profiles(PROFILES_FILE)

    def stop_at_cloud(point: CapacityPoint) -> None:
        if point.policy == "cloud":
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted) as stopped:
        find_hubs(scenario, profiles, 60.0, progress=stop_at_cloud)
    edge, cloud = stopped.value.results
    assert (edge.complete, edge.replicas, len(edge.points)) == (True, None, 1)
    assert (cloud.complete, [p.replicas for p in cloud.points]) == (False, [1])
    answer = capacity_answer(stopped.value.results, 60.0, scenario.agents)
    assert answer.startswith("p95 within 60 ms for 3 agents: edge sends nothing to a hub")
    assert "; cloud not found, interrupted (1: " in answer

    def interrupted(*_: object, **__: object) -> list[CapacityResult]:
        raise stopped.value

    monkeypatch.setattr(simulations, "find_hubs", interrupted)
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text('name = "s"\npolicies = ["cloud"]\n[[groups]]\nname = "g"\nlink = { rate = "10mbit" }\n')
    out = tmp_path / "out"
    argv = ["sim", "run", str(scenario_file), "--find-hubs", "--p95-ms", "60", "--profiles", str(PROFILES_FILE)]
    assert main([*argv, "--out", str(out)]) == ExitCode.INTERRUPTED
    assert f"interrupted: what was found so far is in {out}" in capsys.readouterr().err
    assert [r["complete"] for r in json.loads((out / "capacity.json").read_text())] == [True, False]
    assert "cloud not found, interrupted" in (out / "capacity.html").read_text()


def test_the_load_counts_answers_when_they_came_and_latencies_when_requests_were_made() -> None:
    def record(start_s: float, total_ms: float, run: str = "cloud") -> RequestRecord:
        return RequestRecord(run=run, group="g", agent="a", policy=run, start_s=start_s, cut="input", total_ms=total_ms)

    rows = [record(0.1, 50.0), record(0.5, 100.0), record(0.9, 2500.0), record(2.2, 30.0), record(0.2, 1.0, "edge")]
    series = load(rows, "cloud", 1.0, 3.0)
    assert series.per_s == [2.0, 0.0, 2.0]  # the slow one answered at 3.4 s: counted in the last interval
    assert series.p50_ms[0] == 100.0
    assert series.p95_ms[0] == 2500.0
    assert math.isnan(series.p50_ms[1])  # nothing made then: a gap, not a zero
    assert series.p95_ms[2] == 30.0


def test_a_run_whose_every_request_failed_still_gets_its_report(run_dir: Path, tmp_path: Path) -> None:
    for name in ("profiles.json", "run.json"):
        shutil.copy(run_dir / name, tmp_path / name)
    with (tmp_path / "requests.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        write_header(writer)
        for start_s in range(5):
            failed = RequestRecord(
                run="cloud", group="cams", agent="cams-0", policy="cloud", start_s=start_s, cut="", total_ms=math.nan,
                error="TransportError: the broker went away",
            )  # fmt: skip
            write_record(writer, failed)
    write_report(tmp_path, parse_scenario(_scenario_data()))
    page = (tmp_path / "report.html").read_text()
    assert '<h1 id="answer">cloud: no request answered; errors: cloud 5</h1>' in page
    assert page.count('<img alt="') == len(PICTURES)
