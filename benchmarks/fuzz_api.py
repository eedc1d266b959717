"""Fuzz every route of a loopback server from its own OpenAPI schema with Schemathesis; count 5xx and hangs.

    .venv/bin/python benchmarks/fuzz_api.py [--max-examples 40] [--seed 1] [--max-seconds 600]

Starts ``brushwork serve`` on a free loopback port with a fresh home, the tests' tiny random model
and ``--max-queue 10``, then runs ``schemathesis run <url>/openapi.json`` with the
``not_a_server_error`` check, a 30 s timeout per request and a fixed seed, bounded by
``--max-seconds``. Schemathesis prints every failure it finds (a response ≥ 500, or a request
that timed out) with a curl line to reproduce it; this script prints its summary and exits with
its status. Needs ``pip install schemathesis`` (not a dependency of brushwork).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-examples", type=int, default=40, help="examples per operation")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.is_file():
        print("error: schemathesis is not installed here (pip install schemathesis)", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("serve_load", HERE / "serve_load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        model, label = load.prepare_home(home, "tiny")
        proc, url = load.start_server(home, model, max_queue=10)
        try:
            cmd = [str(exe), "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
                   "--request-timeout", "30", "--max-examples", str(args.max_examples), "--seed", str(args.seed),
                   "--workers", "1", "--no-color"]
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_seconds,
                                     env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
                out, code = run.stdout + run.stderr, run.returncode
            except subprocess.TimeoutExpired as exc:
                out, code = (exc.stdout or b"").decode() + "\n(stopped at --max-seconds)", 124
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log = (home / "server.log").read_text(errors="replace")
    print(f"model: {label}; server {url}, --max-queue 10")
    print("\n".join(out.strip().splitlines()[-40:]))
    print(f"server log: {log.count('Traceback')} tracebacks")
    return code


if __name__ == "__main__":
    sys.exit(main())
