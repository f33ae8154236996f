import os
import subprocess
import sys


def test_cli_turns_prefect_telemetry_off_unless_asked():
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    code = "import os, living_review.cli; print(os.environ['DO_NOT_TRACK'], os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "false"]
    env["DO_NOT_TRACK"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "0"


def test_help_lists_every_contract_command():
    out = subprocess.run([sys.executable, "-m", "living_review.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("nightly", "status", "rank", "simulate", "validate-meta", "import-outcomes", "pool", "ui", "reviewer"):
        assert name in out
