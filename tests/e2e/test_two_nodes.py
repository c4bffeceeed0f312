"""Two Ray nodes on this machine: the recipe's trainer placed across both, G2 set only in the run's config.

A Ray head and a second raylet are started here (``ray start --block``, their own temp dir and ports, token auth
off so a ``~/.ray/auth_token`` of someone else's cluster does not matter). The second raylet starts with an
environment that holds none of the project's variables (no ``GROUND_R1_*``, no ``VERL_*``): a node whose operator
knew nothing of the run. ``examples/run_tiny_cpu.sh`` then trains 2 steps of SRPO with ``ground_r1.branch_factor=2``
against that cluster, ``trainer.nnodes=2`` with one (fake) GPU per node, so veRL puts one actor rank and one rollout
replica on each node, and two agent-loop workers, which veRL places round-robin over the nodes. The CPU platform's
own variables reach every worker by Ray's runtime_env (``ray_kwargs.ray_init.runtime_env.env_vars``), which is what
a multi-node CPU run needs; the project's settings need nothing beyond the config.

Teardown stops the two ``ray start --block`` processes this test started (their services die with them) instead of
``ray stop``, which would stop every Ray process on the machine, other runs' included. About 6-10 minutes on 2 cores.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "run_tiny_cpu.sh"
RAY = shutil.which("ray") or str(Path(os.sys.executable).parent / "ray")
#: The CPU platform (verl_ext/cpu): a veRL matter, needed by every worker of a CPU run; runtime_env carries it.
CPU_PLATFORM_ENV = {"VERL_USE_EXTERNAL_MODULES": "verl_ext.cpu.plugin", "VERL_PLATFORM": "cpu"}
#: The line each branching agent-loop worker prints once (verl_ext.tools.branching._announce_branching).
BRANCH_LINE = re.compile(r"\[branching\] G2=(\d+) \(ground_r1\.branch_factor\) pid=(\d+) node=(\w+) plugin=([\w ]+)")
SYNC_LINE = re.compile(r"\[hf-rollout\] replica (\d+): loaded weights v(\d+) global_steps=(\d+)")
NODE_ID = re.compile(r"\bnode_([0-9a-f]{20,})\b")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2700)]


def _free_ports(count: int) -> list[int]:
    """Distinct ports free right now (held open together so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _scrubbed_env() -> dict[str, str]:
    """This process's environment without the project's variables, veRL's, or another Ray cluster's address."""
    drop = ("GROUND_R1_", "VERL_", "RAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["RAY_AUTH_MODE"] = "disabled"
    return env


def _node_ports(ports: list[int]) -> list[str]:
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    )
    return [f"{name}={port}" for name, port in zip(names, ports, strict=True)]


def _cluster_nodes(address: str, env: dict[str, str]) -> set[str]:
    out = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True, text=True, timeout=120)
    return set(NODE_ID.findall(out.stdout))


def _wait_for_nodes(address: str, env: dict[str, str], count: int, procs: list[subprocess.Popen]) -> set[str]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"ray start exited with {proc.returncode}: {proc.args}"
        nodes = _cluster_nodes(address, env)
        if len(nodes) == count:
            return nodes
        time.sleep(3)
    raise AssertionError(f"the Ray cluster at {address} did not reach {count} nodes in 300 s")


def _stop(proc: subprocess.Popen) -> None:
    """Stop one ``ray start --block`` this test started: SIGTERM shuts its services down; its process group is
    killed if anything is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session it was started in: its own services only
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Start the two raylets, run 2 SRPO steps with G2 = 2 across them, stop them; what the run left."""
    temp_dir = tempfile.mkdtemp(prefix="gr1-2n-", dir="/tmp")  # short: Ray's socket paths live under it
    out = tmp_path_factory.mktemp("two_nodes")
    gcs_port, *ports = _free_ports(14)
    address = f"127.0.0.1:{gcs_port}"
    common = ["--block", "--num-cpus=16", "--num-gpus=1", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    common += ["--min-worker-port=0", "--max-worker-port=0"]  # workers on random ports, clear of other clusters
    head_env = {**_scrubbed_env(), **CPU_PLATFORM_ENV}
    node_env = _scrubbed_env()
    procs: list[subprocess.Popen] = []
    try:
        head_args = [
            "--head",
            f"--port={gcs_port}",
            "--include-dashboard=false",
            f"--ray-client-server-port={ports[12]}",
        ]
        with open(out / "head.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [RAY, "start", *head_args, *common, *_node_ports(ports[:6])],
                    env=head_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        (head_node,) = _wait_for_nodes(address, node_env, 1, procs)
        with open(out / "node2.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [RAY, "start", f"--address={address}", *common, *_node_ports(ports[6:12])],
                    env=node_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        nodes = _wait_for_nodes(address, node_env, 2, procs)
        overrides = [
            "ground_r1.branch_factor=2",
            "trainer.nnodes=2",
            "trainer.n_gpus_per_node=1",
            "actor_rollout_ref.rollout.agent.num_workers=2",
            f"+ray_kwargs.ray_init.address={address}",
            # the cluster's resources are the raylets' own: the script's logical CPUs/GPU are for a local cluster
            "ray_kwargs.ray_init.num_cpus=null",
            "~ray_kwargs.ray_init.num_gpus",
            *(f"+ray_kwargs.ray_init.runtime_env.env_vars.{k}={v}" for k, v in CPU_PLATFORM_ENV.items()),
            # veRL's file logger takes its path from the environment of the task runner, a Ray actor: on a running
            # cluster only runtime_env reaches it (the script's export reaches the driver alone)
            f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={out / 'srpo' / 'metrics.jsonl'}",
        ]
        env = {**_scrubbed_env(), "OUT_DIR": str(out), "ESTIMATORS": "srpo"}
        start = time.monotonic()
        proc = subprocess.run(["bash", str(SCRIPT), *overrides], env=env, capture_output=True, text=True, timeout=2400)
        wall_s = time.monotonic() - start
        print(f"two-node run (assets + 2 SRPO steps): {wall_s:.0f} s")
        assert proc.returncode == 0, (
            f"run_tiny_cpu.sh on two nodes failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
        return {"out": out, "head": head_node, "node2": (nodes - {head_node}).pop(), "wall_s": wall_s}
    finally:
        for p in reversed(procs):
            _stop(p)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_agent_loop_workers_on_both_nodes_branch_with_the_plugin_loaded(two_node_run: dict) -> None:
    """Each node's agent-loop worker branched with G2 = 2 from the run's config (the second node's raylet never
    saw a project variable), with the project's plugin loaded in that worker."""
    log = (two_node_run["out"] / "srpo" / "train.log").read_text(errors="replace")
    lines = BRANCH_LINE.findall(log)
    assert lines, "no agent-loop worker announced branching"
    assert {g2 for g2, *_ in lines} == {"2"}
    assert {plugin for *_, plugin in lines} == {"loaded"}
    assert {node for _, _, node, _ in lines} == {two_node_run["head"], two_node_run["node2"]}


def test_the_run_trains_both_steps_with_siblings_on_one_rollout_replica_per_node(two_node_run: dict) -> None:
    """Both steps logged with followers (branch/follower_share > 0) and no failed rollouts; the two rollout
    replicas (one per node's GPU) received the actor's weights at start and after each step."""
    from verl_ext.testing.report import read_steps

    steps = read_steps(two_node_run["out"] / "srpo" / "metrics.jsonl")
    assert sorted(steps) == [1, 2]
    for step, metrics in steps.items():
        assert metrics["branch/follower_share"] > 0, f"step {step}: no trajectory continued a shared first turn"
        assert metrics.get("training/rollout_failure/evicted_samples", 0) == 0
        assert "actor/pg_loss" in metrics
    log = (two_node_run["out"] / "srpo" / "train.log").read_text(errors="replace")
    syncs = {(int(r), int(g)) for r, _, g in SYNC_LINE.findall(log)}
    assert syncs == {(r, g) for r in (0, 1) for g in (0, 1, 2)}
