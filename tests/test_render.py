"""Tests of drawing pipelines: flowbatch.outputs.graph, outputs.dot, outputs.mermaid and the
`flowbatch graph` command.

Golden files: tests/golden/render/NAME.flow -> NAME.dot, NAME.mmd, NAME.json
(`pytest --update-goldens` rewrites them; review the diff)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner
from engine_helpers import engine_unavailable

from flowbatch.cli import app
from flowbatch.cli import graph as graph_cli
from flowbatch.lang.compile import Plan, compile_pipeline
from flowbatch.lang.load import load
from flowbatch.lang.model import (
    DEFAULT_QUEUE,
    ComputeEnv,
    Dependency,
    DepKind,
    JobSpec,
    Pipeline,
    Queue,
    local_compute,
)
from flowbatch.outputs.dot import to_dot
from flowbatch.outputs.graph import RenderError, StateView, dot_to_image, edges, to_json
from flowbatch.outputs.mermaid import to_mermaid
from flowbatch.run.state import JobEvent, JobState

GOLDEN = Path(__file__).parent / "golden" / "render"


# -- plans built by hand ------------------------------------------------------------------


def make_plan(*jobs: JobSpec, queues: Mapping[str, Queue] | None = None) -> Plan:
    computes = {
        "local": local_compute(8, 16384),
        "cluster": ComputeEnv(name="cluster", type="slurm", vcpus=512, memory=1 << 20),
    }
    return compile_pipeline(
        Pipeline(
            path="/somewhere/else/studio.flow",
            params={},
            computes=computes,
            queues=queues or {"default": DEFAULT_QUEUE},
            jobs={job.name: job for job in jobs},
        )
    )


RENDER_QUEUE = Queue(name="render", priority=10, compute=("local", "cluster"))


def studio_jobs() -> list[JobSpec]:
    """The language reference's realistic pipeline: every edge kind once."""
    return [
        JobSpec(
            name="frames",
            command="blender -b scene.blend -f {{ array.index }}",
            vcpus=2,
            memory=2048,
            array_size=24,
            queue="render",
            definition="render_frame",
        ),
        JobSpec(name="encode", command="ffmpeg -i out/%04d.png", after=(Dependency(job="frames"),)),
        JobSpec(
            name="thumbs",
            command="convert x y",
            memory=256,
            array_size=24,
            queue="render",
            after=(Dependency(job="frames", kind=DepKind.N_TO_N),),
        ),
        JobSpec(
            name="poster",
            command=("cp", "out/0000.png", "out/poster.png"),
            after=(Dependency(job="frames", kind=DepKind.ELEMENT, index=7),),
        ),
        JobSpec(name="migrate", command="./migrate.sh", array_size=5, sequential=True),
    ]


def studio(order: list[int] | None = None) -> Plan:
    jobs = studio_jobs()
    if order is not None:
        jobs = [jobs[i] for i in order]
    return make_plan(*jobs, queues={"default": DEFAULT_QUEUE, "render": RENDER_QUEUE})


def dot_edge(dot: str, tail: str, head: str) -> str:
    """The attribute list of the one DOT edge tail -> head."""
    found = re.findall(rf'^  "{tail}" -> "{head}" \[(.*)\];$', dot, flags=re.M)
    assert len(found) == 1, f"expected one edge {tail} -> {head}, found {found}"
    return str(found[0])


def dot_node(dot: str, name: str) -> str:
    found = re.findall(rf'^ +"{name}" \[(.*)\];$', dot, flags=re.M)
    assert len(found) == 1, f"expected one node {name}, found {found}"
    return str(found[0])


# -- DOT -----------------------------------------------------------------------------------


def test_every_edge_kind_is_drawn_distinctly() -> None:
    dot = to_dot(studio())
    whole = dot_edge(dot, "frames", "encode")
    element = dot_edge(dot, "frames", "poster")
    n_to_n = dot_edge(dot, "frames", "thumbs")
    sequential = dot_edge(dot, "migrate", "migrate")
    assert "style=solid" in whole and "label" not in whole
    assert "style=dotted" in element and 'label=" [7] "' in element
    assert "style=bold" in n_to_n and ":invis:" in n_to_n and 'label=" 1:1 "' in n_to_n
    assert "style=dashed" in sequential and "i-1 → i" in sequential
    styles = {re.search(r"style=(\w+)", a).group(1) for a in (whole, element, n_to_n, sequential)}  # type: ignore[union-attr]
    assert len(styles) == 4


def test_array_nodes_are_stacked_and_labelled_with_their_size() -> None:
    dot = to_dot(studio())
    frames = dot_node(dot, "frames")
    assert "shape=box3d" in frames and "frames [24]" in frames
    assert ": render_frame" in frames and "2 vCPU · 2 GiB" in frames
    assert "sequential" in dot_node(dot, "migrate")
    encode = dot_node(dot, "encode")
    assert "box3d" not in encode and "ffmpeg -i out/%04d.png" in encode
    assert "1 vCPU · 1 GiB" in encode


def test_legend_explains_only_the_edge_kinds_present() -> None:
    everything = to_dot(studio())
    for words in ("waits for all of it", "waits for one child", "child i waits for child i-1"):
        assert words in everything
    only_whole = to_dot(
        make_plan(
            JobSpec(name="a", command="true"),
            JobSpec(name="b", command="true", after=(Dependency(job="a"),)),
        )
    )
    assert "waits for all of it" in only_whole
    assert "n_to_n(job)" not in only_whole and "one child" not in only_whole
    assert "waits for" not in to_dot(studio(), legend=False)


def test_output_is_the_same_bytes_whatever_the_source_order() -> None:
    plans = [studio(), studio([4, 3, 2, 1, 0]), studio([2, 0, 4, 1, 3])]
    for render in (to_dot, to_mermaid):
        outputs = {render(plan, group_by_queue=True) for plan in plans}
        assert len(outputs) == 1
    assert len({to_json(plan) for plan in plans}) == 1
    names = re.findall(r'^  "([\w-]+)" \[label', to_dot(plans[1]), flags=re.M)
    assert names == sorted(names) and len(names) == 5


def test_no_absolute_paths_in_the_output() -> None:
    plan = studio()
    for text in (to_dot(plan), to_mermaid(plan), to_json(plan)):
        assert "somewhere" not in text and "studio.flow" in text


def test_group_by_queue_makes_a_titled_cluster_per_queue() -> None:
    dot = to_dot(studio(), group_by_queue=True)
    clusters = re.findall(r'subgraph "cluster_(\w+)" \{\n    graph \[label=<([^>]*)>', dot)
    assert [name for name, _ in clusters] == ["default", "render"]
    assert dict(clusters)["render"] == "queue render · priority 10 · local, cluster"
    render_block = dot.split('subgraph "cluster_render"')[1].split("\n  }")[0]
    assert '"frames" [' in render_block and '"thumbs" [' in render_block
    assert '"encode" [' not in render_block


def test_odd_names_and_commands_are_quoted_safely() -> None:
    plan = make_plan(
        JobSpec(name="end", command='echo "<b>&</b>" | tee a\\b'),
        JobSpec(name="a-b", command="true", after=(Dependency(job="end"),)),
    )
    dot = to_dot(plan)
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in dot and "<b>&</b>" not in dot
    assert '"end" -> "a-b"' in dot
    mermaid = to_mermaid(plan)
    assert "#lt;b#gt;#amp;#lt;/b#gt;" in mermaid and "#quot;" in mermaid
    check_mermaid(mermaid)


# -- run states --------------------------------------------------------------------------

_S = JobState
RUN = {
    "frames": StateView(_S.PENDING, {_S.SUCCEEDED: 20, _S.RUNNING: 3, _S.FAILED: 1}),
    "encode": StateView(_S.PENDING),
    "poster": StateView(_S.SUCCEEDED),
    "migrate": StateView(_S.FAILED, {_S.SUCCEEDED: 2, _S.FAILED: 1, _S.PENDING: 2}),
}


def test_states_colour_nodes_and_arrays_show_counts() -> None:
    dot = to_dot(studio(), states=RUN, run="20240101-000000-abcd")
    frames = dot_node(dot, "frames")
    assert "20 ✓ 3 running 1 ✗" in frames
    # A pending array parent with running children is drawn as running.
    assert 'fillcolor="#6fa8dc"' in frames
    assert 'fillcolor="#b6d7a8"' in dot_node(dot, "poster") and "succeeded" in dot
    assert "penwidth=3" in dot_node(dot, "migrate")
    assert "dashed" in dot_node(dot, "encode")
    assert "not in this run" in dot_node(dot, "thumbs")
    assert "run 20240101-000000-abcd" in dot
    fills = {re.search(r'fillcolor="([^"]+)"', dot_node(dot, n)).group(1) for n in RUN}  # type: ignore[union-attr]
    assert len(fills) == 4


def test_mermaid_states_become_classes() -> None:
    mermaid = to_mermaid(studio(), states=RUN)
    check_mermaid(mermaid)
    ids = dict(re.findall(r'^  (n\d+)\[?[\[(]"<b>([\w-]+)', mermaid, flags=re.M))
    by_name = {name: node for node, name in ids.items()}
    classes = dict(re.findall(r"^  class ([\w,]+) (\w+)$", mermaid, flags=re.M))
    assert classes[by_name["poster"]] == "succeeded"
    assert classes[by_name["migrate"]] == "failed"
    assert classes[by_name["frames"]] == "running"
    assert "classDef runnable" not in mermaid  # only the states shown
    assert "20 ✓ 3 running 1 ✗" in mermaid


def test_json_lists_nodes_edges_and_queues() -> None:
    text = to_json(studio(), states=RUN)
    doc = json.loads(text)
    assert text == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    nodes = {node["name"]: node for node in doc["nodes"]}
    assert nodes["frames"]["kind"] == "array" and nodes["frames"]["size"] == 24
    assert nodes["encode"]["kind"] == "job" and nodes["encode"]["queue"] == "default"
    assert nodes["poster"]["command"] == ["cp", "out/0000.png", "out/poster.png"]
    assert nodes["frames"]["state"]["counts"]["RUNNING"] == 3
    kinds = {(e["from"], e["to"]): e["kind"] for e in doc["edges"]}
    assert kinds == {
        ("frames", "encode"): "whole",
        ("frames", "poster"): "element",
        ("frames", "thumbs"): "n_to_n",
        ("migrate", "migrate"): "sequential",
    }
    assert [e.get("index") for e in doc["edges"] if e["kind"] == "element"] == [7]
    assert [q["name"] for q in doc["queues"]] == ["default", "render"]


def test_a_dependency_written_twice_is_drawn_once() -> None:
    plan = make_plan(
        JobSpec(name="a", command="true", array_size=3),
        JobSpec(
            name="b",
            command="true",
            after=(Dependency(job="a"), Dependency(job="a", kind=DepKind.ELEMENT, index=2)),
        ),
    )
    assert [(e.kind.value, e.index) for e in edges(plan)] == [("whole", None), ("element", 2)]


# -- Mermaid syntax ------------------------------------------------------------------------

_MERMAID_LINE = [
    re.compile(r"^flowchart LR$"),
    re.compile(r"^ *%% .*$"),
    re.compile(r'^ *n\d+(\["[^"]*"\]|\[\["[^"]*"\]\]|\("[^"]*"\))$'),
    re.compile(r'^  subgraph q\d+\["[^"]*"\]$'),
    re.compile(r"^  end$"),
    re.compile(r'^  (n\d+) (-->|-\.->|==>)(\|"[^"]*"\|)? (n\d+)$'),
    re.compile(r"^  linkStyle [\d,]+ [\w:\- ]+$"),
    re.compile(r"^  classDef \w+ [\w#:,\- ]+$"),
    re.compile(r"^  class [\w,]+ \w+$"),
]


def check_mermaid(text: str) -> None:
    """Every line is one of the constructs we emit; nodes are defined before edges use
    them; subgraphs are closed."""
    defined: set[str] = set()
    depth = 0
    for line in text.splitlines():
        assert any(p.match(line) for p in _MERMAID_LINE), f"unexpected Mermaid line: {line!r}"
        if m := re.match(r"^ *(n\d+)[\[(]", line):
            defined.add(m.group(1))
        if m := _MERMAID_LINE[5].match(line):
            assert m.group(1) in defined and m.group(4) in defined
        depth += line.startswith("  subgraph ") - (line == "  end")
        assert depth in (0, 1)
    assert depth == 0


def test_mermaid_uses_a_distinct_arrow_per_kind() -> None:
    mermaid = to_mermaid(studio(), group_by_queue=True)
    check_mermaid(mermaid)
    arrows = re.findall(r"^  n\d+ (\S+?)(?:\|\"([^\"]*)\"\|)? n\d+$", mermaid, flags=re.M)
    assert sorted(arrows) == sorted(
        [("-->", ""), ("-.->", "[7]"), ("==>", "1:1"), ("-->", "i-1 → i")]
    )
    assert re.search(r"^  linkStyle \d+ stroke-dasharray", mermaid, flags=re.M)
    assert '[["<b>frames [24]</b> : render_frame' in mermaid


# -- images through Graphviz -----------------------------------------------------------------


def need_dot() -> None:
    if shutil.which("dot") is None:
        engine_unavailable("graphviz", "the `dot` program is not on PATH")


@pytest.mark.slow
def test_svg_and_png_come_from_real_dot() -> None:
    need_dot()
    dot = to_dot(studio(), group_by_queue=True, states=RUN)
    svg = dot_to_image(dot, "svg")
    assert b"<svg" in svg and b"frames [24]" in svg
    png = dot_to_image(dot, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_dot_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match="apt-get install graphviz"):
        dot_to_image("digraph {}", "svg")


def test_dot_rejecting_its_input_is_a_render_error() -> None:
    need_dot()
    with pytest.raises(RenderError, match="failed"):
        dot_to_image("digraph { this is not dot", "svg")


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pipeline file whose loading yields the studio plan. The front half is faked
    here so that these tests check the command, not the parser."""
    path = tmp_path / "studio.flow"
    path.write_text("# loaded through a fake\n")
    seen: list[Mapping[str, str] | None] = []

    def fake_load(file: object, params: Mapping[str, str] | None = None) -> Plan:
        seen.append(params)
        return studio()

    monkeypatch.setattr(graph_cli, "load", fake_load)
    return path


def test_graph_prints_dot_by_default(flow_file: Path) -> None:
    result = CliRunner().invoke(app, ["graph", str(flow_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_dot(studio())


@pytest.mark.parametrize(
    ("suffix", "render"),
    [
        (".dot", lambda p: to_dot(p, group_by_queue=True)),
        (".mmd", lambda p: to_mermaid(p, group_by_queue=True)),
        (".json", to_json),
    ],
)
def test_graph_writes_the_format_of_the_extension(
    flow_file: Path, suffix: str, render: object
) -> None:
    out = flow_file.parent / f"g{suffix}"
    args = ["graph", str(flow_file), "--group-by-queue", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == render(studio())  # type: ignore[operator]


@pytest.mark.slow
def test_graph_writes_png_through_dot(flow_file: Path) -> None:
    need_dot()
    out = flow_file.parent / "g.png"
    result = CliRunner().invoke(app, ["graph", str(flow_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")


def test_unknown_extension_is_a_usage_error(flow_file: Path) -> None:
    result = CliRunner().invoke(app, ["graph", str(flow_file), "-o", "g.gif"])
    assert result.exit_code == 2
    assert "g.gif" in result.output and ".svg" in result.output


def test_bad_param_is_a_usage_error(flow_file: Path) -> None:
    result = CliRunner().invoke(app, ["graph", str(flow_file), "-p", "frames"])
    assert result.exit_code == 2 and "NAME=VALUE" in result.output


def test_graph_run_reads_states_from_the_store(flow_file: Path) -> None:
    from flowbatch.store.jobstore import Store

    plan = studio()
    state_dir = flow_file.parent / "state"
    ids = {name: f"id-{name}" for name in plan.jobs()}
    store = Store.open(state_dir)
    try:
        store.begin_run("20240101-000000-abcd", plan.pipeline, ids, created_at=1.0)
        for i, state in enumerate((JobState.SUBMITTED, JobState.RUNNABLE)):
            store.emit(event("poster", ids["poster"], None, state, time=2.0 + i))
        store.emit(event("frames", ids["frames"], None, JobState.SUBMITTED, time=2.0))
        store.emit(event("frames", ids["frames"] + ":3", 3, JobState.SUBMITTED, time=3.0))
        store.emit(event("frames", ids["frames"] + ":3", 3, JobState.RUNNABLE, time=4.0))
        store.flush()
        store.end_run("20240101-000000-abcd", "INTERRUPTED", ended_at=5.0)
    finally:
        store.close()
    args = ["graph", str(flow_file), "--run", "latest", "--state-dir", str(state_dir)]
    result = CliRunner().invoke(app, [*args, "-o", str(flow_file.parent / "g.json")])
    assert result.exit_code == 0, result.output
    doc = json.loads((flow_file.parent / "g.json").read_text())
    nodes = {node["name"]: node for node in doc["nodes"]}
    assert nodes["poster"]["state"]["status"] == "RUNNABLE"
    assert nodes["frames"]["state"]["counts"].get("RUNNABLE") == 1
    result = CliRunner().invoke(app, [*args[:-3], "nope", *args[-2:]])
    assert result.exit_code == 2 and "20240101-000000-abcd" in result.output


def event(name: str, job_id: str, index: int | None, state: JobState, time: float) -> JobEvent:
    return JobEvent(
        run_id="20240101-000000-abcd", job_id=job_id, name=name, index=index, state=state, time=time
    )


def test_graph_run_without_a_database_is_an_error(flow_file: Path) -> None:
    args = ["graph", str(flow_file), "--run", "x", "--state-dir", str(flow_file.parent / "no")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no job database" in result.output


# -- golden files --------------------------------------------------------------------------

CASES = sorted(p.stem for p in GOLDEN.glob("*.flow"))


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, golden: object) -> None:
    try:
        plan = load(GOLDEN / f"{name}.flow")
    except NotImplementedError:
        pytest.skip("flowbatch.lang.load.load is not written yet")
    golden(to_dot(plan), f"render/{name}.dot")  # type: ignore[operator]
    golden(to_mermaid(plan), f"render/{name}.mmd")  # type: ignore[operator]
    golden(to_json(plan), f"render/{name}.json")  # type: ignore[operator]
    check_mermaid(to_mermaid(plan))
