"""``hydra/launcher=ray`` end to end, on a real Ray cluster: one head for the module (Ray starts
slowly), in a private network namespace with token authentication (tests/ray_cluster.py), and
``python run.py -m ... hydra/launcher=ray`` as a user types it, inside the same namespace. The head
gets none of the jobs' environment (MNIST_DIR, MLFLOW_TRACKING_URI, MNISTLAB_*): the jobs run only
if conf/hydra/launcher/ray.yaml hands it to them. Then the store is read back, and the workers' own
log files (in the head's --temp-dir) show which Ray worker ran which run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import ROOT, RUN_PY, cli_env, error_lines, mlflow_client
from ray_cluster import (
    NODE_ONLY,
    RayHead,
    check_can_run,
    finish,
    head_memory,
    host_addresses,
    in_netns,
    listening_ports,
    netns_of,
    ray_head,
    reachable,
    start_in_netns,
    watch,
)
from servers import stop_process_group
from test_search import study
from test_sweeps import sweep_runs

SMALL = ("data.limit=300", "trainer.epochs=1", "trainer.verbose=0", "tracking.log_model=false")
# Ray's prefix on the lines a worker prints, as the driver relays them: (<task> pid=<worker pid>[, ip=...])
RELAYED = re.compile(r"\((?P<task>\w+) pid=(?P<pid>\d+)(?:, ip=[^)]*)?\)\s?(?P<line>.*)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def head(tmp_path_factory, mnist_dir) -> RayHead:
    with ray_head(tmp_path_factory.mktemp("ray")) as running:
        yield running
    bound = sorted({address for _, address in running.listeners})
    print(
        f"\nRay head: started in {running.started_s} s; memory (MiB) {running.memory}; "
        f"{len(running.listeners)} listening sockets seen, bound to {bound}"
    )


def run_py(head: RayHead, store: str, *args: str) -> subprocess.CompletedProcess:
    """``python run.py -m <args>`` in the head's namespace, with its address and token (as a user
    exports RAY_ADDRESS, RAY_AUTH_MODE and RAY_AUTH_TOKEN); RAY_DEDUP_LOGS=0: Ray would otherwise
    fold the jobs' alike summary lines into one "[repeated 2x across cluster]"."""
    env = head.driver_env(cli_env(store, {"RAY_DEDUP_LOGS": "0"}))
    return in_netns(head, [sys.executable, str(RUN_PY), "-m", *args], env, cwd=ROOT)


def ran_in_workers(head: RayHead, proc: subprocess.CompletedProcess, run_ids: list[str]) -> dict[str, int]:
    """run id -> pid of the Ray worker that ran it: the run's summary ("MLflow run  <id> ...") is in
    that worker's own log file in the head's session (worker-<worker id>-<job id>-<pid>.out), and the
    driver relayed it to the terminal with Ray's prefix naming the same pid."""
    workers: dict[str, int] = {}
    for log in head.session_logs().glob("worker-*.out"):
        text = log.read_text(errors="replace")
        for run_id in run_ids:
            if f"MLflow run  {run_id}" in text:
                assert run_id not in workers, (run_id, "in two workers' logs")
                workers[run_id] = int(log.stem.rsplit("-", 1)[1])
    assert sorted(workers) == sorted(run_ids), sorted(p.name for p in head.session_logs().glob("worker-*.out"))
    relayed = {}
    for line in ANSI.sub("", proc.stdout).splitlines():
        match = RELAYED.search(line)
        if match and match["line"].startswith("MLflow run  "):
            relayed[match["line"].split()[2]] = (match["task"], int(match["pid"]))
    assert relayed == {run_id: ("_run_job", pid) for run_id, pid in workers.items()}, proc.stdout[-3000:]
    return workers


# the file replaces the plugin's own `ray` config of the same name; Hydra 1.3 then checks it against the
# plugin's schema and says so in a deprecation warning (README: Ray)
@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/ray' is validated against ConfigStore schema:UserWarning")
def test_the_launcher_config_connects_to_a_cluster_and_hands_the_jobs_their_environment(
    compose_cfg, monkeypatch, store
):
    """No cluster needed: conf/hydra/launcher/ray.yaml as the plugin gets it (Hydra resolves it in the
    driver, when it instantiates the launcher): the driver's values, strings only, as Ray requires."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e .[ray]")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MNISTLAB_ROOT", "/srv/mnistlab")
    monkeypatch.setenv("MNISTLAB_COMMAND", "run.py -m hydra/launcher=ray seed=1,2")
    monkeypatch.delenv("MNIST_DIR", raising=False)  # then the node's own $MNIST_DIR (Ray expands it there)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    launcher = instantiate(compose_cfg(["hydra/launcher=ray"]).hydra.launcher)
    assert type(launcher).__name__ == "RayLauncher"
    launcher.ray_cfg.init.setdefault("object_store_memory", 78643200)  # what the plugin does before ray.init
    init = OmegaConf.to_container(launcher.ray_cfg.init, resolve=True)
    assert init["address"] == "auto" and init["object_store_memory"] is None  # Ray refuses a value when connecting
    env_vars = init.pop("runtime_env").pop("env_vars")
    assert env_vars == {
        "MLFLOW_TRACKING_URI": store,
        "MNISTLAB_ROOT": "/srv/mnistlab",
        "MNIST_DIR": "$MNIST_DIR",
        "MNISTLAB_COMMAND": "run.py -m hydra/launcher=ray seed=1,2",
        "MNISTLAB_CODE_DIR": os.environ.get("MNISTLAB_CODE_DIR", ""),
        "MNISTLAB_ONE_LINE_ERRORS": os.environ.get("MNISTLAB_ONE_LINE_ERRORS", ""),
        "HYDRA_FULL_ERROR": os.environ.get("HYDRA_FULL_ERROR", ""),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    assert OmegaConf.to_container(launcher.ray_cfg.remote) == {"num_cpus": 1}

    monkeypatch.setenv("MNIST_DIR", "/data/mnist")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    init = OmegaConf.to_container(
        instantiate(compose_cfg(["hydra/launcher=ray"]).hydra.launcher).ray_cfg.init, resolve=True
    )
    assert init["address"] == "10.0.0.5:6379" and init["runtime_env"]["env_vars"]["MNIST_DIR"] == "/data/mnist"


def test_the_head_is_reachable_only_inside_its_namespace(head):
    """Its namespace has a loopback interface only; from this machine's namespace none of its
    listening ports answers, on any of this machine's addresses."""
    links = in_netns(head, ["ip", "-o", "link", "show"], env=cli_env()).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    inside = listening_ports(head.pid)
    assert head.port in inside and len(inside) >= 5  # GCS, raylet, object manager, agents, client server
    here = listening_ports(os.getpid())  # this namespace's own listeners (not Ray's)
    assert head.port not in here
    addresses = host_addresses()
    assert any(not a.startswith(("127.", "::1")) for a in addresses)  # the real interfaces are tried too
    answered = [
        (address, port) for port in sorted(set(inside) - set(here)) for address in addresses if reachable(address, port)
    ]
    assert answered == []
    assert netns_of(head.pid) != netns_of(os.getpid())


def test_a_driver_without_the_right_token_is_refused(head, tmp_path):
    """No token, or a wrong one: the GCS answers Unauthenticated and ray.init gives up."""
    # connected, it also runs a task whose runtime_env says $NODE_ONLY: Ray expands that from the
    # node's environment (what conf/hydra/launcher/ray.yaml relies on for MNIST_DIR)
    probe = (
        "import os, ray, sys\n"
        "try:\n    ray.init(log_to_driver=False, runtime_env={'env_vars': {'SEEN': '$NODE_ONLY'}})\n"
        "except ConnectionError as exc:\n    print('refused:', exc); sys.exit(3)\n"
        "print('connected:', ray.get(ray.remote(lambda: os.environ['SEEN']).remote()))\n"
    )
    home = tmp_path / "home"  # no ~/.ray/auth_token to fall back on
    home.mkdir()
    base = {
        **cli_env(),
        "HOME": str(home),
        "RAY_ADDRESS": head.address,
        "RAY_NUM_REDIS_GET_RETRIES": "3",
    }  # give up after 3 tries, not 20
    without = {k: v for k, v in base.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    wrong = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head.token[::-1]}
    right = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head.token}
    started = [start_in_netns(head, [sys.executable, "-c", probe], env) for env in (without, wrong, right)]
    *refused, accepted = [finish(proc, timeout=120) for proc in started]
    for proc in refused:
        assert proc.returncode == 3, (proc.stdout, proc.stderr[-2000:])
        assert "Authentication token is missing or incorrect" in proc.stderr
        assert f"refused: Failed to connect to Ray cluster at {head.address}" in proc.stdout
    # and the right one connects (what every sweep below relies on)
    assert accepted.returncode == 0 and f"connected: {NODE_ONLY}" in accepted.stdout, accepted.stderr[-2000:]


def test_a_sweep_runs_its_jobs_as_ray_tasks(head, store):
    with watch(head, "sweep peak"):
        proc = run_py(head, store, "hydra/launcher=ray", "model=mlp12", *SMALL, "seed=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent, children = sweep_runs(store)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "RayLauncher"
    assert [c.data.params["seed"] for c in children] == ["1", "2"]
    client = mlflow_client(store)
    root = Path(cli_env(store)["MNISTLAB_ROOT"])
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert 0 < child.data.metrics["test_accuracy"] <= 1 and child.data.metrics["epochs_run"] == 1
        # trainer.threads=auto: the task's num_cpus (1; Ray passes it as OMP_NUM_THREADS), not the node's 2 cores
        assert child.data.params["trainer.threads_used"] == "1"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")] == [0]
        # what only the launcher config's runtime_env gave the worker (the head has none of it):
        # MNISTLAB_ROOT (outputs in the test's folder), MNISTLAB_COMMAND (the command as typed)
        assert Path(child.data.tags["hydra.output_dir"]).is_relative_to(root / "outputs" / "multiruns")
        assert child.data.tags["command"] == parent.data.tags["command"]
        assert child.data.tags["command"].startswith("run.py -m hydra/launcher=ray model=mlp12")
        assert child.data.tags["hostname"] == socket.gethostname()
        # MNISTLAB_CODE_DIR: the checkout's commit (without it, root_dir, a folder outside git: "unknown")
        assert child.data.tags["git.commit"] == parent.data.tags["git.commit"] != "unknown (not a git checkout)"
    workers = ran_in_workers(head, proc, [c.info.run_id for c in children])
    assert all(netns_of(pid) in (None, head.netns) for pid in workers.values())  # gone, or still in the namespace
    assert (
        "sweep " in proc.stdout and "2 runs in 1 configuration, ranked by test accuracy" in proc.stdout
    )  # seeds 1, 2: one configuration
    # conf/hydra/launcher/ray.yaml shares the plugin config's name on purpose: Hydra's warning is not shown
    assert "validated against ConfigStore schema" not in proc.stderr


def test_a_hyperparameter_search_runs_its_trials_on_the_cluster(head, tmp_path):
    """Two trials at once (hydra.sweeper.n_jobs=2: a Ray launcher has no n_jobs for the sweeper to read)."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with watch(head, "search peak"):
        proc = run_py(
            head,
            store,
            "hparams_search=tiny_cnn_optuna",
            "hydra/launcher=ray",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2",
            *SMALL,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    parent, children = sweep_runs(store)
    assert parent.data.tags["sweep.launcher"] == "RayLauncher" and parent.data.tags["optuna.finished"] == "2"
    by_trial = {int(c.data.tags["optuna.trial"]): c for c in children}
    assert sorted(by_trial) == [0, 1]
    for number, child in by_trial.items():
        assert child.info.status == "FINISHED" and child.data.tags["optuna.state"] == "COMPLETE"
        assert trials[number].value == pytest.approx(child.data.metrics["val_accuracy"])
        assert (
            tmp_path / "outputs" / "hparams_search" / "tiny_cnn_optuna" / f"trial-{number:04d}" / "run.log"
        ).is_file()
    ran_in_workers(head, proc, [c.info.run_id for c in children])


def test_without_a_cluster_the_sweep_stops_in_one_line(tmp_path, store, mnist_dir):
    """No RAY_ADDRESS and no cluster: `auto` finds none, the sweep says so and records nothing.
    In namespaces of its own: `auto` also takes any gcs_server process it sees on the machine (the
    head above, or anyone's), and RAY_TMPDIR hides the machine's last `ray start` address file."""
    check_can_run()
    env = cli_env(store, {"RAY_TMPDIR": str(tmp_path / "no-ray")})
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [
            "unshare",
            "--net",
            "--pid",
            "--mount-proc",
            "--kill-child",
            sys.executable,
            str(RUN_PY),
            "-m",
            "hydra/launcher=ray",
            "model=mlp12",
            "seed=1,2",
            *SMALL,
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        stop_process_group(proc, grace=5)
        pytest.fail(f"the sweep did not stop within 120 s:\n{proc.communicate()[1][-3000:]}")
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done.returncode == 1, err[-3000:]
    assert error_lines(done)[-1].startswith("error: ConnectionError: Could not find any running Ray instance")
    client = mlflow_client(store)
    assert client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id]) == []


def test_the_head_stays_small(head):
    """Idle: GCS, raylet, agents, monitor, client server (~1 GB RSS, less shared out); each job adds a worker
    with TensorFlow loaded. Loose bounds: a regression guard, not a benchmark."""
    head.memory["idle at the end"] = head_memory(head)
    idle = head.memory["idle"]
    assert idle["processes"] >= 5 and idle["pss_mib"] < 1500, head.memory
    for label in ("sweep peak", "search peak"):  # two jobs at once
        if head.memory.get(label):
            assert head.memory[label]["pss_mib"] < 6000, head.memory
