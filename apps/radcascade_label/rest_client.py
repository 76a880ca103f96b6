"""Start the app's MONAI Label server the way users start it, and call it the way 3D Slicer's MONAI Label module
does: the server tests (``tests/monailabel/test_server.py``) and ``benchmarks/monailabel_real.py`` share this.

    with LabelServer.start(studies, {"models": "chest_xray"}) as server:
        server.upload("cxr_1", Path("cxr_1.png"))               # Slicer's "Upload Volume"
        status, params, label = server.infer("chest_xray", "cxr_1")

Only the standard library: it runs in the main environment and talks to the server over HTTP.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path

__all__ = ["LabelServer", "free_port", "multipart"]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO_ROOT / "scripts" / "start_monailabel.sh"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(fields: Mapping[str, str], files: Mapping[str, Path]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type, as the Slicer module encodes its requests."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, path in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{Path(path).name}"\r\n'
        body += f"{head}Content-Type: application/octet-stream\r\n\r\n".encode() + Path(path).read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


class LabelServer:
    """A running MONAI Label server (``scripts/start_monailabel.sh``) and the HTTP calls of Slicer's client.

    Args:
        url: the server's address.
        process: its process (the script ``exec``s the server, so this PID is the server), or None for a server
            started elsewhere.
        log: the file its output goes to.
    """

    def __init__(self, url: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
        self.url, self.process, self.log = url, process, log

    @classmethod
    def start(
        cls,
        studies: str | os.PathLike,
        conf: Mapping[str, str],
        *,
        log: str | os.PathLike,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        timeout: float = 240.0,
    ) -> LabelServer:
        """Start ``bash scripts/start_monailabel.sh STUDIES --conf KEY VALUE ...`` on 127.0.0.1 and wait until
        ``GET /info/`` answers.

        Raises:
            RuntimeError: when the server exits or does not answer within ``timeout`` seconds (with its log tail).
        """
        port = port or free_port()
        command = ["bash", str(START_SCRIPT), str(studies)]
        for key, value in conf.items():
            command += ["--conf", key, str(value)]
        environment = {**os.environ, **(env or {}), "MONAILABEL_HOST": "127.0.0.1", "MONAILABEL_PORT": str(port)}
        environment.pop("PYTHONPATH", None)
        log = Path(log)
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=cwd)
        server = cls(f"http://127.0.0.1:{port}", process, log)
        t0 = time.perf_counter()
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with code {process.returncode}\n{server.tail()}")
            if time.perf_counter() - t0 > timeout:
                server.stop()
                raise RuntimeError(f"the server did not answer within {timeout:.0f} s\n{server.tail()}")
            try:
                if server.request("GET", "/info/")[0] == 200:
                    return server
            except OSError:
                pass
            time.sleep(1.0)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def __enter__(self) -> LabelServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        """``(status, content type, body bytes)``; HTTP errors are returned, not raised."""
        headers = {"content-type": content_type} if content_type else {}
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=600) as response:
                return response.status, response.headers.get("content-type", ""), response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("content-type", ""), e.read()

    def json(self, method: str, path: str, payload: dict | None = None):
        """A JSON request that must succeed (HTTP 200): its decoded answer.

        Raises:
            RuntimeError: for another status, with the answer and the server's log tail.
        """
        body = json.dumps(payload).encode() if payload is not None else None
        status, _, data = self.request(method, path, body, "application/json" if body else None)
        if status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:2000]!r}\n{self.tail()}")
        return json.loads(data)

    def upload(self, image_id: str, path: str | os.PathLike):
        """``PUT /datastore/?image=<id>`` with the file, as Slicer's "Upload Volume" (``MONAILabelClient.upload_image``)
        sends it: ``(status, content type, body bytes)``."""
        body, content_type = multipart({"params": "{}"}, {"file": Path(path)})
        query = urllib.parse.urlencode({"image": image_id})
        return self.request("PUT", f"/datastore/?{query}", body, content_type)

    def infer(self, model: str, image: str) -> tuple[int, dict | str, bytes | None]:
        """``POST /infer/<model>?image=<id>`` with a ``params`` form field, as ``MONAILabelClient.infer`` sends it.

        Returns ``(status, params, label file bytes)``; on an error ``params`` is the response text.
        """
        body, content_type = multipart({"params": "{}"}, {})
        query = urllib.parse.urlencode({"image": image})
        status, response_type, data = self.request("POST", f"/infer/{model}?{query}", body, content_type)
        if status != 200:
            return status, data.decode(errors="replace"), None
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {response_type}\r\n\r\n".encode() + data
        )
        params, image_bytes = None, None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "params":
                params = json.loads(part.get_content())
            else:
                image_bytes = part.get_payload(decode=True)
        return status, params, image_bytes

    def tail(self, chars: int = 6000) -> str:
        """The end of the server's log."""
        if self.log is None or not self.log.is_file():
            return ""
        return "server log tail:\n" + self.log.read_text(errors="replace")[-chars:]
