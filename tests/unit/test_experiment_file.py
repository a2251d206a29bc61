"""Experiment files (issue 20): read and checked whole before any host; every mistake one
line with file and line; metrics read from a measure command's output."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from labctl.experiments import registry
from labctl.experiments.base import make_options, option_infos
from labctl.experiments.file_metrics import combine, read_metric
from labctl.experiments.file_run import experiment_class
from labctl.experiments.file_spec import ExperimentFileError, load_experiment_file
from labctl.paths import EXPERIMENT_FILES
from tests.support import run_labctl

GOOD = """\
name: echo-rate
hosts:
  server: servers[0]
  client: clients
params:
  size: [64, 1500]
  mode: fast
repeat: 2
processes:
  server:
    start: sleep 30
    ready: {log: "ready"}
  client:
    measure: echo rate {{ size }} {{ mode }} {{ hosts.server.address }}
metrics:
  rate:
    from: client
    regex: 'rate ([0-9]+)'
    unit: pkt/s
validity:
  - if: rate > 0
    reason: nothing measured
plot: {x: size, y: rate, series: mode}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_file_gives_an_experiment_like_the_built_in_ones(tmp_path: Path) -> None:
    spec = load_experiment_file(write(tmp_path, GOOD))
    assert spec.swept == ("size",)
    assert [(r.name, r.pattern, r.index) for r in spec.roles] == [
        ("server", "servers", 0),
        ("client", "clients", None),
    ]
    cls = experiment_class(spec)
    assert cls.name() == "echo-rate" and cls.spec.kinds[0].config == ("size",)
    assert cls.spec.identity == ("size", "mode") and cls.spec.plot is not None
    infos = {i.name: i for i in option_infos(cls.Options)}
    assert infos["size"].many and infos["size"].kind is int and infos["mode"].kind is str
    options = make_options(cls.Options, {"size": "128,256", "repeat": "5"})
    assert (options.size, options.repeat, options.mode) == ((128, 256), 5, "fast")
    with pytest.raises(ValueError, match="unknown option 'sizes'"):
        make_options(cls.Options, {"sizes": "1"})


def test_the_shipped_examples_load_and_are_registered() -> None:
    files = sorted(EXPERIMENT_FILES.glob("*.yml"))
    assert files
    for path in files:
        spec = load_experiment_file(path)
        assert registry()[spec.name].file.path == str(path)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("old", "new", "line", "error"),
    [
        ("repeat: 2", "repaet: 2", 8, "unknown key 'repaet'"),
        ("{{ mode }}", "{{ mdoe }}", 14, "undefined variable 'mdoe'"),
        ("from: client", "from: server", 17, "rate reads nothing: `from: server`"),
        ("'rate ([0-9]+)'", "'rate [0-9]+'", 18, "needs a group around the number"),
        ("  - if: rate > 0", "  - if: rat > 0", 21, "undefined variable 'rat'"),
        ("x: size", "x: sizes", 23, "plot.x: 'sizes' is not a parameter"),
        ("client: clients", "client: clients[x]", 4, "hosts: client: a host pattern"),
        ('{log: "ready"}', '{log: "(ready"}', 12, "not a regular expression"),
        ("    regex: 'rate ([0-9]+)'", "    json: 'a..b'", 18, "metrics.rate.json: a path like"),
        ("  client:\n    measure", "  clients:\n    measure", 13, "no role 'clients' in hosts"),
        ("    regex: 'rate ([0-9]+)'", "    counter: {netstat: X}", 18, "counter: one of"),
        ("    regex: 'rate ([0-9]+)'", "    counter: {tc: {dev: eth0}}", 18, "give dev, field"),
        ("    unit: pkt/s", "    unit: pkt/s\n    combine: median", 20, "combine: one of sum"),
    ],
)
def test_a_mistake_is_one_line_with_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, error: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ExperimentFileError) as caught:
        load_experiment_file(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}: ") and error in text, text
    assert "\n" not in text


def test_a_broken_file_fails_before_any_host_is_touched(tmp_path: Path) -> None:
    """An inventory whose hosts nobody could reach: the file's error comes first, at once."""
    inventory = tmp_path / "lab.yml"
    inventory.write_text(
        "all:\n  children:\n    servers: {hosts: {s1: {ansible_host: 192.0.2.1}}}\n"
        "    clients: {hosts: {c1: {ansible_host: 192.0.2.2}}}\n"
    )
    path = write(tmp_path, GOOD.replace("{{ mode }}", "{{ mdoe }}"))
    started = time.monotonic()
    proc = run_labctl("experiment.run", str(path), "-i", str(inventory), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"labctl: {path}:14: processes.client.measure: undefined variable 'mdoe' "
        "(defined: mode, size; and duration, hosts, labctl_workloads, seq, trial)"
    )
    assert time.monotonic() - started < 10  # no connection was tried (192.0.2.x: TEST-NET)


def test_a_roles_hosts_values_combine_into_one() -> None:
    assert [combine(how, [3.0, 1.0, 2.0], "m") for how in ("sum", "mean", "max", "min")] == [
        6.0, 2.0, 3.0, 1.0,
    ]  # fmt: skip
    assert combine("first", [3.0, 1.0], "m") == 3.0
    with pytest.raises(ValueError, match="m: no host gave a value"):
        combine("sum", [], "m")


def test_metrics_are_read_from_json_or_a_regex_scaled(tmp_path: Path) -> None:
    spec = load_experiment_file(EXPERIMENT_FILES / "iperf3-qdisc.yml")
    reads = {m.name: m for m in spec.metrics}
    out = '{"end": {"sum_received": {"bits_per_second": 9.5e9}, "sum_sent": {"retransmits": 3}}}'
    assert read_metric(reads["throughput_mbps"], out) == pytest.approx(9500.0)
    assert read_metric(reads["retransmits"], out) == 3.0
    with pytest.raises(ValueError, match="no end.sum_sent.retransmits in the output of client"):
        read_metric(reads["retransmits"], '{"end": {}}')
    with pytest.raises(ValueError, match="is not JSON"):
        read_metric(reads["retransmits"], "iperf3: error - unable to connect")
    regex = load_experiment_file(write(tmp_path, GOOD)).metrics[0]
    assert read_metric(regex, "warming up\nrate 1234 pkt/s\n") == 1234.0
    with pytest.raises(ValueError, match="matched nothing"):
        read_metric(regex, "no numbers here")


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ('kind: "{{ qdisc }}"', 'kind: "{{ qdsic }}"', ":20: task 'the root qdisc under test': "
         "undefined variable 'qdsic' (for c1)"),
        ("      qdisc:\n", "      qdsic:\n", ":21: task 'the root qdisc under test': "
         "unknown module 'qdsic'"),
    ],
)  # fmt: skip
def test_setup_tasks_are_checked_as_a_playbook_before_any_host(
    tmp_path: Path, old: str, new: str, error: str
) -> None:
    inventory = tmp_path / "lab.yml"
    inventory.write_text(
        "all:\n  children:\n    servers: {hosts: {s1: {ansible_host: 192.0.2.1}}}\n"
        "    clients: {hosts: {c1: {ansible_host: 192.0.2.2}}}\n"
    )
    text = (EXPERIMENT_FILES / "iperf3-qdisc.yml").read_text()
    assert old in text
    path = tmp_path / "mine.yml"
    path.write_text(text.replace(old, new))
    proc = run_labctl("experiment.run", str(path), "-i", str(inventory), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"labctl: {path}{error}"), proc.stderr
    assert "unreachable" not in proc.stderr


def test_the_readiness_poll_reads_the_process_actions_pidfile(tmp_path: Path) -> None:
    """Run by sh here, as a host runs it: ready once the log shows the line, 3 at once when
    the process is gone, 2 when the time is up."""
    import subprocess

    from labctl.experiments.file_run import ready_script
    from labctl.experiments.file_spec import Process

    out, pidfile = str(tmp_path / "srv"), str(tmp_path / "srv.pid")
    Path(out + ".err").write_text("starting\n")
    Path(out + ".out").write_text("")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:

        def poll(pid: int, timeout: float = 0.3) -> int:
            Path(pidfile).write_text(f'{{"pid": {pid}, "start": 123}}')
            process = Process("server", ("x",), None, "listening on", timeout)
            script = ready_script(process, None, pidfile, out).text
            return subprocess.run(["sh", "-c", script], timeout=30).returncode

        assert poll(sleeper.pid) == 2  # alive, not ready in time
        Path(out + ".err").write_text("starting\nlistening on 5000\n")
        assert poll(sleeper.pid) == 0
        Path(out + ".err").write_text("starting\n")
        sleeper.kill()
        sleeper.wait()
        assert poll(sleeper.pid) == 3  # gone: no waiting the whole timeout
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
