"""The HTTP layer alone: uvicorn's httptools protocol against nbprod's (serving/connections.py), same run.

nbprod's protocol sends each response in one write (uvicorn: headers, then body) and keeps its header
timeout with one sweep per server instead of a clock restart per response. Two measurements, each
interleaved round by round (the order alternates), on a bare ASGI answer so the HTTP layer is most of
the cost:

- **wrk**: the bench_serve floor (bare Starlette, fixed JSON answer, 2 workers) served by uvicorn's protocol
  and by nbprod's, ``wrk -t2 -c16``: requests/s and the servers' CPU-ms/request, and the ratio;
- **ping-pong**: one worker, one keep-alive connection, one request at a time from a Python client:
  the server process's CPU-µs/request (each answer wakes its client, as a waiting client is woken).

``--baseline-src`` adds nbprod's protocol from another ``src/`` (e.g. the code before a change).

    .venv/bin/python benchmarks/bench_wire.py [--runs 8] [--seconds 4] [--requests 20000]
        [--baseline-src /tmp/b0/src]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serve as serve  # noqa: E402

RUN = '''import sys, uvicorn
if __name__ == "__main__":
    http = "httptools"
    if sys.argv[3] == "nbprod":
        from nbprod.serving.connections import BoundedHttpToolsProtocol as http
    uvicorn.run(sys.argv[1], port=int(sys.argv[2]), workers=int(sys.argv[4]), http=http, loop="uvloop",
                log_level="warning", access_log=False, lifespan="off")
'''

BARE = '''
ANSWER = b'{"predictions":[0],"model_version":"1","prediction_ids":["00000000000000000000000000000000-0"],"ood":[[]]}'
HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": ANSWER})
'''

REQUEST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def start(work: Path, app: str, protocol: str, workers: int, src: str | None) -> tuple[int, subprocess.Popen]:
    port = serve.free_port()
    env = dict(os.environ, PYTHONPATH=src) if src else None
    proc = subprocess.Popen([sys.executable, "run.py", app, str(port), protocol, str(workers)], cwd=work, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port, proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {protocol} did not start") from None
            time.sleep(0.05)


def ping_pong(port: int, pid: int, n: int) -> float:
    """The server's CPU-µs per request over ``n`` keep-alive requests, one at a time."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(200):
            sock.sendall(REQUEST)
            sock.recv(65536)
        cpu0 = serve.tree_cpu(pid)
        for _ in range(n):
            sock.sendall(REQUEST)
            got = sock.recv(65536)
            while not got.endswith(b"}"):
                got += sock.recv(65536)
        return (serve.tree_cpu(pid) - cpu0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4.0, help="wrk duration per measurement")
    ap.add_argument("--requests", type=int, default=20000, help="ping-pong requests per measurement")
    ap.add_argument("--baseline-src", default=None, help="another nbprod src/: its protocol as 'nbprod before'")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nbprod-bench-wire-"))
    (work / "run.py").write_text(RUN)
    (work / "floor_app.py").write_text(serve.FLOOR_APP)
    (work / "bare.py").write_text(BARE)
    body = work / "body.json"
    body.write_text(json.dumps({"dataframe_records": [{"age": 30, "income": 1000.0, "city": "Paris"}]}))
    variants = [("uvicorn", "httptools", None), ("nbprod", "nbprod", None)]
    if args.baseline_src:
        variants.append(("nbprod before", "nbprod", str(Path(args.baseline_src).resolve())))
    servers: dict[tuple[str, str], tuple[int, subprocess.Popen]] = {}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for name, protocol, src in variants:
            servers[("wrk", name)] = start(work, "floor_app:app", protocol, 2, src)
            servers[("ping", name)] = start(work, "bare:app", protocol, 1, src)
        names = [v[0] for v in variants]
        for run in range(args.runs):
            for name in names if run % 2 == 0 else names[::-1]:
                port, proc = servers[("wrk", name)]
                cpu0 = serve.tree_cpu(proc.pid)
                r = serve.wrk(port, body, {}, args.seconds, work)
                cpu = (serve.tree_cpu(proc.pid) - cpu0) / max(r["requests"], 1) * 1000
                results.setdefault(("wrk", name), []).append((r["rps"], cpu))
                port, proc = servers[("ping", name)]
                results.setdefault(("ping", name), []).append((0.0, ping_pong(port, proc.pid, args.requests)))
            print(f"run {run + 1}: " + "; ".join(
                f"{n} {results[('wrk', n)][-1][0]:.0f} req/s {results[('wrk', n)][-1][1]:.4f} CPU-ms/req, "
                f"ping-pong {results[('ping', n)][-1][1]:.1f} CPU-us/req" for n in names) + f"; load {serve.load()}",
                flush=True)
    finally:
        for _port, proc in servers.values():
            serve.stop(proc)
    med = statistics.median
    base_wrk, base_ping = results[("wrk", "uvicorn")], results[("ping", "uvicorn")]
    print(f"\nmedian of {args.runs} rounds, wrk -t2 -c16 -d{args.seconds:g}s (2 workers) and {args.requests} "
          f"ping-pong requests (1 worker); load at the end {serve.load()}")
    print("| protocol | req/s (wrk) | ratio to uvicorn's (per round) | CPU-ms/request (wrk) | "
          "CPU-µs/request (ping-pong) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        w, p = results[("wrk", name)], results[("ping", name)]
        ratios = [a[0] / b[0] for a, b in zip(w, base_wrk, strict=True)]
        pr = [a[1] / b[1] for a, b in zip(p, base_ping, strict=True)]
        print(f"| {name} | {med(x[0] for x in w):,.0f} | {med(ratios):.3f}× | {med(x[1] for x in w):.4f} | "
              f"{med(x[1] for x in p):.1f} | {med(pr):.3f}× |")


if __name__ == "__main__":
    main()
