"""`tunepipe serve` under real traffic, as real subprocesses on 127.0.0.1 with a real tiny registered model: limits
(body, queue), the bearer token, /metrics, batching that keeps every caller's rows its own, SIGTERM under load,
and several worker processes behind one port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline_lib.config import load_config
from pipeline_lib.layout import new_run
from pipeline_lib.registry.fast_lookup import local_model
from pipeline_lib.runtime.predictor import OnnxPredictor
from pipeline_lib.serving.prediction_log import read_log, text_sha256
from pipeline_lib.steps import STEPS, run_step

from .conftest import cli_sets, overrides
from .servers import REPO, child, child_env, free_port, wait_healthy

pytestmark = pytest.mark.integration
NAME = "financial-sentiment"
MODEL = f"{NAME}@champion"
TOKEN = "s3cret-token-for-tests"
SENTENCES = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007.",
    "The company's shares fell sharply after the profit warning.",
    "The AGM will be held in May.",
    "Net sales decreased by 20 percent and the outlook was cut.",
]
LONG = " ".join(SENTENCES * 3)  # about 100 tokens: a slow enough batch to queue behind


@pytest.fixture(scope="module")
def registered(workspace: Path) -> Path:
    """One registered champion (one training step); its verified local ONNX folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        cfg = load_config(None, overrides("train.max_steps=1"))
        run = new_run(cfg.paths.artifacts)
        for name in STEPS:
            run_step(name, cfg, run)
        return local_model(cfg, MODEL).folder


@contextmanager
def server(cwd: Path, sets: list[str], name: str, **env: str) -> Iterator[tuple[str, object]]:
    """`tunepipe serve` with `--set` overrides `sets` (and extra environment); yields its URL and process."""
    port = free_port()
    log = cwd.parent / f"{cwd.name}-{name}.log"
    args = [sys.executable, "-m", "flows.cli", "serve", "--model", MODEL, "--port", str(port)]
    args += cli_sets(*sets)
    with child(args, log, child_env(PYTHONPATH=str(REPO), **env), cwd=cwd) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(f"{base}/health", proc, log, timeout=180)
        yield base, proc


def request(
    url: str, payload: dict | None = None, token: str | None = None, timeout: float = 60
) -> tuple[int, dict, dict]:
    """The status, JSON body and headers of GET `url` (POST `payload`), with a bearer token when given."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            body = response.read()
            kind = response.headers.get("content-type", "")
            return response.status, json.loads(body) if "json" in kind else {"text": body.decode()}, response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), err.headers


def metrics(base: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, parsed by prometheus-client's parser: {(name, sorted labels): value}."""
    status, body, _ = request(f"{base}/metrics", token=token)
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body["text"])
        for sample in family.samples
    }


def sample(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def huge_body(base: str, size: int, chunked: bool = False, token: str = TOKEN) -> tuple[int, float]:
    """POST a body of `size` bytes to /predict, streamed from a thread while the answer is read: the status and
    the seconds until it came. With `chunked`, no Content-Length (the server must count as it reads)."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n{length}\r\n\r\n"
    )
    start = time.perf_counter()
    sock.sendall(head.encode())

    def stream() -> None:
        chunk = b'{"texts": ["' + b"x" * (1 << 20)
        try:
            for _ in range(size >> 20):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        except OSError:  # the server answered and closed: what we want
            pass

    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    response = http.client.HTTPResponse(sock)
    response.begin()
    seconds = time.perf_counter() - start
    sock.close()
    sender.join(30)
    return response.status, seconds


def test_limits_token_and_metrics(registered: Path, in_workspace: Path):
    with server(in_workspace, [], "limits", TUNEPIPE_SERVE_TOKEN=TOKEN) as (base, _):
        payload = {"texts": SENTENCES[:2]}
        assert request(f"{base}/predict", payload)[0] == 401
        status, body, headers = request(f"{base}/predict", payload, token="wrong")
        assert status == 401 and headers["www-authenticate"] == "Bearer" and TOKEN not in json.dumps(body)
        assert request(f"{base}/version")[0] == 401
        assert request(f"{base}/metrics")[0] == 401
        assert request(f"{base}/health")[0] == 200  # open for probes
        assert request(f"{base}/version", token=TOKEN)[0] == 200

        # a 50 MB body gets 413 while other clients keep being answered
        answered: list[int] = []
        stop = threading.Event()

        def others() -> None:
            while not stop.is_set():
                answered.append(request(f"{base}/predict", {"texts": [SENTENCES[2]]}, token=TOKEN)[0])

        background = threading.Thread(target=others)
        background.start()
        try:
            status, seconds = huge_body(base, 50 << 20)
            assert status == 413 and seconds < 10  # generous: the body is never read
            assert huge_body(base, 6 << 20, chunked=True)[0] == 413  # no Content-Length: stopped as it streams
        finally:
            stop.set()
            background.join(60)
        assert answered and set(answered) == {200}

        too_many = {"texts": ["a"] * 1025}
        assert request(f"{base}/predict", too_many, token=TOKEN)[0] == 413
        assert request(f"{base}/predict", {"texts": ["b" * 3_000_000]}, token=TOKEN)[0] == 200  # cut, then answered

        sent = 5
        for _ in range(sent):
            assert request(f"{base}/predict", payload, token=TOKEN)[0] == 200
        found = metrics(base, TOKEN)
        assert sample(found, "tunepipe_requests_total", endpoint="/predict", status="200") == sent + len(answered) + 1
        assert sample(found, "tunepipe_requests_total", endpoint="/predict", status="401") == 2
        assert sample(found, "tunepipe_requests_total", endpoint="/predict", status="413") == 3
        assert sample(found, "tunepipe_rejected_requests_total", reason="unauthorized") == 4
        assert sample(found, "tunepipe_rejected_requests_total", reason="body_too_large") == 2
        assert sample(found, "tunepipe_rejected_requests_total", reason="too_many_texts") == 1
        assert sample(found, "tunepipe_predicted_texts_total") == 2 * sent + len(answered) + 1
        assert sample(found, "tunepipe_model_version", model=NAME) == 1
        assert sample(found, "tunepipe_request_seconds_count", endpoint="/predict") == sent + len(answered) + 6
        assert sample(found, "tunepipe_batch_texts_count") >= 1
        assert sample(found, "tunepipe_queue_texts") == 0


def test_long_texts_are_refused_when_asked(registered: Path, in_workspace: Path):
    with server(in_workspace, ["serve.long_text=refuse", "serve.log=false"], "refuse") as (base, _):
        status, body, _ = request(f"{base}/predict", {"texts": ["fine", "word " * 1000]})
        assert status == 422 and "texts[1]" in body["detail"] and "serve.long_text" in body["detail"]
        assert request(f"{base}/predict", {"texts": ["fine"]})[0] == 200


def test_batching_gives_every_caller_its_own_predictions(registered: Path, in_workspace: Path):
    predictor = OnnxPredictor.from_dir(registered)
    texts = [f"Item {i}: {SENTENCES[i % 4]} " + "more words " * (i % 7) for i in range(96)]
    expected = {text: predictor.predict([text])[0] for text in texts}
    # the texts' answers tell them apart: a row given to the wrong caller would not match
    assert len({tuple(round(p, 5) for p in row["probabilities"].values()) for row in expected.values()}) == len(texts)
    with server(in_workspace, ["serve.max_batch_wait_ms=5", "serve.log=false"], "batching") as (base, _):
        requests = [[text] for text in texts[:64]] + [texts[i : i + 8] for i in range(64, 96, 8)]

        def ask(batch: list[str]) -> tuple[list[str], dict]:
            status, body, _ = request(f"{base}/predict", {"texts": batch})
            assert status == 200, body
            return batch, body

        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(ask, requests * 3))
        for batch, body in answers:
            assert len(body["predictions"]) == len(batch)
            for text, row in zip(batch, body["predictions"], strict=True):
                want = expected[text]
                for label, p in want["probabilities"].items():
                    assert row["probabilities"][label] == pytest.approx(p, abs=2e-6), text
        found = metrics(base)
        batches = sample(found, "tunepipe_batch_requests_count")
        assert batches < len(answers)  # requests were merged: fewer batches than requests
        assert sample(found, "tunepipe_batch_requests_sum") == len(answers)


def test_a_burst_beyond_the_queue_gets_503_and_the_server_stays_up(registered: Path, in_workspace: Path):
    sets = ["serve.max_queue=16", "serve.max_texts=16", "serve.max_batch_size=16", "serve.log=false"]
    with server(in_workspace, sets, "burst") as (base, proc):
        rss_before = rss_mb(proc.pid)
        statuses: list[int] = []
        retry_after: set[str] = set()

        def ask(_: int) -> None:
            status, _, headers = request(f"{base}/predict", {"texts": [LONG] * 16})
            statuses.append(status)
            if status == 503:
                retry_after.add(headers["retry-after"])

        with ThreadPoolExecutor(48) as pool:
            list(pool.map(ask, range(240)))
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) > 0 and statuses.count(200) > 0
        assert retry_after and all(value.isdigit() for value in retry_after)
        assert request(f"{base}/predict", {"texts": ["still here"]})[0] == 200
        assert proc.poll() is None
        assert rss_mb(proc.pid) - rss_before < 300  # memory stays bounded
        assert sample(metrics(base), "tunepipe_rejected_requests_total", reason="overloaded") == statuses.count(503)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_sigterm_under_load_answers_every_accepted_request(registered: Path, in_workspace: Path):
    folder = in_workspace / "sigterm-predictions"
    sets = [f"serve.log_path={folder.name}", "serve.log_texts=true"]
    with server(in_workspace, sets, "sigterm") as (base, proc):
        answered: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def big(i: int) -> None:  # 8 requests of 32 texts: seconds of work queued when SIGTERM comes
            batch = [f"big {i}-{j}: {SENTENCES[j % 4]}" for j in range(32)]
            status, body, _ = request(f"{base}/predict", {"texts": batch})
            if status == 200:
                answered.extend(batch)
            else:
                failures.append(f"{status} {body}")

        def loop(n: int) -> None:  # single-text clients until the server goes away
            i = 0
            while not stop.is_set():
                text = f"loop {n}-{i}: {SENTENCES[i % 4]}"
                try:
                    status, _, _ = request(f"{base}/predict", {"texts": [text]})
                except OSError:  # refused once the server stopped listening: not accepted
                    return
                if status == 200:
                    answered.append(text)
                else:
                    failures.append(str(status))
                i += 1

        loops = [threading.Thread(target=loop, args=(n,)) for n in range(8)]
        bigs = [threading.Thread(target=big, args=(i,)) for i in range(8)]
        for thread in bigs:
            thread.start()
        deadline = time.monotonic() + 60
        while sample(metrics(base), "tunepipe_in_flight_requests") < 8:  # all big requests accepted
            assert time.monotonic() < deadline, "the big requests never got in"
            time.sleep(0.05)
        for thread in loops:
            thread.start()
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
        stop.set()
        for thread in loops + bigs:
            thread.join(60)
        assert not failures
        assert sum(text.startswith("big") for text in answered) == 8 * 32  # every accepted big request answered
        logged = read_log(folder)
        assert set(answered) <= set(logged["text"])
        assert set(logged["text_sha256"]) >= {text_sha256(t) for t in answered}


def test_several_workers_behind_one_port(registered: Path, in_workspace: Path):
    with server(in_workspace, ["serve.workers=2", "serve.log=false"], "workers") as (base, _):
        sent = 40
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(lambda i: request(f"{base}/predict", {"texts": [SENTENCES[i % 4]]})[0], range(sent))
            )
        assert statuses == [200] * sent
        found = metrics(base)  # whichever worker answers, it counts both
        assert sample(found, "tunepipe_requests_total", endpoint="/predict", status="200") == sent
        assert sample(found, "tunepipe_predicted_texts_total") == sent
        assert sample(found, "tunepipe_model_version", model=NAME) == 1


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM), made with the cryptography library."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_tls_with_the_configured_certificate(registered: Path, in_workspace: Path):
    import ssl

    folder = in_workspace / "tls"
    folder.mkdir(exist_ok=True)
    cert, key = self_signed(folder)
    port = free_port()
    sets = [f"serve.ssl_certfile={cert}", f"serve.ssl_keyfile={key}", "serve.log=false"]
    args = [sys.executable, "-m", "flows.cli", "serve", "--model", MODEL, "--port", str(port), *cli_sets(*sets)]
    log = in_workspace.parent / "tls-serve.log"
    context = ssl.create_default_context(cafile=str(cert))
    with child(args, log, child_env(PYTHONPATH=str(REPO)), cwd=in_workspace) as proc:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
                connection.request(
                    "POST", "/predict", json.dumps({"texts": SENTENCES[:1]}), {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                break
            except (ConnectionRefusedError, ConnectionResetError):
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 1
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # no TLS: no answer
        with pytest.raises((OSError, http.client.HTTPException)):
            plain.request("GET", "/health")
            plain.getresponse()
