"""The committed stubs are what `make proto` makes from the committed .proto."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[3] / "scheduler" / "drivers" / "service"
GENERATED = ["loadcap_pb2.py", "loadcap_pb2.pyi", "loadcap_pb2_grpc.py"]


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    proto = SERVICE / "proto"
    # the same command as the Makefile's `proto` target
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(proto / "greensched" / "v1" / "loadcap.proto"),
        ],
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "greensched" / "v1" / name).read_text()
        if name.endswith("_grpc.py"):  # the Makefile's sed: a relative import
            fresh = re.sub(r"(?m)^from greensched\.v1 import", "from . import", fresh)
        committed = (SERVICE / "pb" / "greensched" / "v1" / name).read_text()
        assert committed == fresh, f"pb/greensched/v1/{name} is stale: run `make proto`"
