"""Large CSV requests (issue 11, point 12): decoding a CSV body costs a small multiple of the body, not
a Python object per cell, and a body whose decoded size cannot fit is refused with 413 before parsing."""

from __future__ import annotations

import http.client
import json
import threading
import time

import numpy as np
import pytest
from _servers import server

MB = 1024 * 1024


def _csv(serving_models, size: int) -> bytes:
    """The serving frame repeated to about ``size`` bytes of CSV (4 numeric and 2 text columns)."""
    df = serving_models["df"]
    one = df.to_csv(index=False).encode()
    header, _, rows = one.partition(b"\n")
    copies = size // len(rows)
    return header + b"\n" + rows * copies


def _post_csv(port: int, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": "text/csv"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def _server_rss(port: int) -> int:
    """Resident memory of the process listening on ``port`` (the server: one worker)."""
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return psutil.Process(conn.pid).memory_info().rss
    raise AssertionError("no process listens on the port")


def test_a_text_heavy_csv_that_cannot_fit_is_refused_before_parsing():
    from nbprod.errors import ServingError
    from nbprod.serving.codecs import Column, decode_csv

    # 3 MB: past CSV_MEMORY_FLOOR / CSV_MEMORY_FACTOR (2 MB), so the factor decides (24 MB was as telling, 8× the parse)
    rows = 3 * MB // 8
    body = b"a,b,c,d\n" + b"x,y,z,w\n" * rows  # 3 MB of one-letter text cells: ~64 bytes each decoded
    with pytest.raises(ServingError) as err:
        decode_csv(body, [Column(c, "string") for c in "abcd"])
    assert err.value.status == 413 and err.value.code == "csv_too_large"
    numbers = b"a,b,c,d\n" + b"1,2,3,4\n" * rows  # the same size in numbers: 8 bytes a value, decoded
    batch = decode_csv(numbers, [Column(c, "double") for c in "abcd"])
    assert batch.n == rows and batch.columns["a"].dtype == np.float64


def test_csv_columns_decode_as_before_with_exact_big_integers_and_named_errors():
    from nbprod.errors import ServingError
    from nbprod.serving.codecs import Column, coerce, decode_csv

    sig = [Column("x", "double"), Column("n", "long"), Column("city", "string")]
    body = b"x,n,city,unused\n1.5,3,paris,a\n,9007199254740993,,b\n"
    cols = coerce(decode_csv(body, sig), sig)
    assert np.isnan(cols["x"][1]) and cols["x"][0] == 1.5
    assert cols["n"].tolist() == [3, 9007199254740993]  # past 2**53: still exact
    assert cols["city"] == ["paris", None]
    with pytest.raises(ServingError, match="column 'x' expects double but got 'abc'"):
        coerce(decode_csv(b"x,n,city\n1,2,a\nabc,3,b\n", sig), sig)
    with pytest.raises(ServingError, match="csv row 1 has 2 values but there are 3 columns"):
        decode_csv(b"x,n,city\n1,2,a\n1,2\n", sig)


@pytest.mark.slow
def test_concurrent_large_csv_bodies_keep_the_server_memory_within_a_small_multiple_of_them(serving_models, env):
    pytest.importorskip("psutil")
    body = _csv(serving_models, 7 * MB)  # under the 8 MB body limit; ~170,000 rows
    with server(["--model-dir", serving_models["clf"], "--no-auth"], env) as port:
        assert _post_csv(port, body[:20_000].rsplit(b"\n", 1)[0] + b"\n")[0] == 200  # warm: model loaded
        before = _server_rss(port)
        peak = [before]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _server_rss(port))
                time.sleep(0.02)

        results: list = []
        watcher = threading.Thread(target=watch)
        watcher.start()
        senders = [threading.Thread(target=lambda: results.append(_post_csv(port, body))) for _ in range(4)]
        try:
            for t in senders:
                t.start()
            for t in senders:
                t.join(300)
        finally:
            done.set()
            watcher.join(10)
        assert [s for s, _ in results] == [200] * 4
        assert all(len(answer["predictions"]) == body.count(b"\n") - 1 for _, answer in results)
        grown = peak[0] - before
        # four requests in flight, 28 MB of bodies: ~5x that now (body, text, arrays, the model's matrices,
        # the answer); a Python list of strings per row made it 13x (368 MB) before
        assert grown < 4 * len(body) * 8, f"server RSS grew by {grown / MB:.0f} MB for 4 x {len(body) / MB:.1f} MB"
