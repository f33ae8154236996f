"""The real deployment path: prefect.yaml deployed to a Prefect API, run by a process worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _prefect(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_deploy_all_and_process_worker_completes_nightly(prefect_harness, lr_home):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PWD": str(REPO),
           "LIVING_REVIEW_HOME": str(lr_home), "LIVING_REVIEW_TASK_RETRIES": "0"}
    _prefect(["work-pool", "create", "living-review", "--type", "process"], env)
    deployed = _prefect(["--no-prompt", "deploy", "--all"], env)
    assert "nightly-update" in deployed.stdout + deployed.stderr

    with get_client(sync_client=True) as client:
        # prefect.yaml's `concurrency_limit: 1` becomes the deployment's global concurrency limit
        # (DeploymentResponse.concurrency_limit is always None in Prefect 3).
        spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
        declared = {d["name"]: d.get("concurrency_limit") for d in spec["deployments"]}
        assert declared == {"nightly-update": 1, "refresh-pooled-effects": 1}
        for name in declared:  # each deployment's flow has the deployment's name
            limit = client.read_deployment_by_name(f"{name}/{name}").global_concurrency_limit
            assert limit is not None and limit.limit == declared[name] == 1 and limit.active, name
        deployment = client.read_deployment_by_name("nightly-update/nightly-update")
        schedule = deployment.schedules[0].schedule
        assert schedule.cron == "0 2 * * *" and schedule.timezone == "Europe/London"
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"source": "snapshot"})

    _prefect(["worker", "start", "--pool", "living-review", "--run-once"], env, timeout=300)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state.is_completed(), f"flow run ended {state.type}: {state.message}"

    status = subprocess.run([str(Path(sys.executable).with_name("living-review")), "status", "--json"],
                            env=env, capture_output=True, text=True, check=True)
    report = json.loads(status.stdout)
    assert report["records"] > 0 and report["last_run"]["status"] == "completed"
