"""Latency of the HTTP API as a user meets it: ``plcert serve`` in a subprocess, on loopback.

Run ``python -m bench.api_bench [--posts 50] [--gets 200]``. The server runs with its embedded
defaults (SQLite job store, ``filesystem://`` broker, one worker) in a fresh temporary
``PLCERT_DATA_DIR``, on a free loopback port, in its own process group; every other ``PLCERT_*``
variable is removed from its environment so that no configured database or broker is touched.
The bench waits for ``/readyz`` (database, broker and a live worker), then times ``--posts``
sequential ``POST /v1/certifications`` of a small JSON job (an 8-wide tanh MLP on 8 points,
budget "fast") and ``--gets`` sequential ``GET /v1/certifications/{id}``, and stops the server
(SIGTERM to the group, SIGKILL after a grace period) and removes the folder. The worker runs the
submitted jobs meanwhile, as it would in service, so the latencies include its CPU competition.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.targets import Scoreboard, finish, format_table

READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0


def small_job(seed: int = 0) -> dict[str, object]:
    """A small JSON submission: NTK tanh MLP 4 -> 8 -> 1, 8 points, budget 'fast'."""
    import random

    rng = random.Random(seed)
    X = [[rng.gauss(0.0, 1.0) for _ in range(4)] for _ in range(8)]
    y = [rng.gauss(0.0, 1.0) for _ in range(8)]
    return {
        "model_spec": {
            "type": "mlp",
            "input_dim": 4,
            "widths": [8],
            "output_dim": 1,
            "activation": "tanh",
            "parameterization": "ntk",
            "seed": 0,
        },
        "data": {"X": X, "y": y},
        "options": {"budget": "fast"},
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the ceil(q/100 * n)-th smallest value (q in (0, 100])."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def start_server(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLCERT_")}
    env["PLCERT_DATA_DIR"] = str(data_dir)
    env.setdefault("OMP_NUM_THREADS", "1")
    plcert = Path(sys.executable).with_name("plcert")
    fallback = [sys.executable, "-c", "from service.cli import main; main()"]
    cmd = [str(plcert)] if plcert.exists() else fallback
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_server(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM the server's process group, SIGKILL it after STOP_GRACE_S; say which it took."""
    if proc.poll() is not None:
        return f"had exited ({proc.returncode})"
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
        how = "SIGTERM"
    except subprocess.TimeoutExpired:
        how = "SIGKILL"
    with contextlib.suppress(ProcessLookupError):  # stragglers: the worker and its children
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)
    return how


def wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes]) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"plcert serve exited with {proc.returncode} before /readyz")
        try:
            if client.get("/readyz").status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"/readyz not 200 within {READY_TIMEOUT_S:g} s")


def measure(posts: int, gets: int) -> tuple[float, list[float], list[float], str]:
    """Start the server, time the requests, stop it; the server log tail on failure."""
    data_dir = Path(tempfile.mkdtemp(prefix="plcert-api-bench-"))
    log_path = data_dir.parent / f"{data_dir.name}.log"
    port = free_port()
    proc = start_server(data_dir, port, log_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
            ready_s = wait_ready(client, proc)
            post_ms: list[float] = []
            job_id = ""
            for i in range(posts):
                body = small_job(seed=i)
                t = time.perf_counter()
                r = client.post("/v1/certifications", json=body)
                post_ms.append(1000 * (time.perf_counter() - t))
                if r.status_code != 202:
                    raise RuntimeError(f"POST answered {r.status_code}: {r.text[:200]}")
                job_id = job_id or str(r.json()["id"])
            get_ms: list[float] = []
            for _ in range(gets):
                t = time.perf_counter()
                r = client.get(f"/v1/certifications/{job_id}")
                get_ms.append(1000 * (time.perf_counter() - t))
                if r.status_code != 200:
                    raise RuntimeError(f"GET answered {r.status_code}: {r.text[:200]}")
            status = str(r.json().get("status"))
    except Exception:
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        print(f"server log tail:\n{tail}", file=sys.stderr)
        raise
    finally:
        how = stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
        log_path.unlink(missing_ok=True)
    return ready_s, post_ms, get_ms, f"first job {status}; server stopped by {how}"


def main(argv: list[str] | None = None) -> None:
    """Print p50 / p95 / max latency of POST and GET, and the start-to-ready time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--gets", type=int, default=200)
    args = parser.parse_args(argv)
    posts, gets = max(1, min(args.posts, 1000)), max(1, min(args.gets, 5000))
    board = Scoreboard()
    print("plcert serve on 127.0.0.1 (SQLite, filesystem broker, 1 worker)", flush=True)
    ready_s, post_ms, get_ms, note = measure(posts, gets)
    rows: list[list[str]] = []
    check = board.check(("serve start to /readyz", ready_s))
    rows.append(["serve start to /readyz", "1", "", "", f"{ready_s:.2f} s", check.target_text])
    rows[-1].append(check.ok_text)
    for name, values in (
        ("POST /v1/certifications", post_ms),
        ("GET /v1/certifications/{id}", get_ms),
    ):
        p95 = percentile(values, 95)
        check = board.check((f"{name} p95", p95))
        rows.append(
            [
                name,
                str(len(values)),
                f"{percentile(values, 50):.1f}",
                f"{p95:.1f}",
                f"{max(values):.1f}",
                check.target_text,
                check.ok_text,
            ]
        )
    header = ["request", "count", "p50 ms", "p95 ms", "max ms", "target", "ok"]
    print(format_table(header, rows), flush=True)
    print(note, flush=True)
    finish(board, "api_bench")


if __name__ == "__main__":
    main()
