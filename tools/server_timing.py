"""The server's own share of each run, measured inside the Streamlit server (tools/load_test.py, tools/bench_lab.py).

On one 2-core machine the load test's 20 Chromium renderers use most of the CPU, and everything a
page stamps (its input event, the WebSocket frames it receives, its painted frame) waits for its
renderer. This module times what the server does, on the server's clock:

    request  the page's rerun request is taken off the WebSocket (AppSession.handle_backmsg);
    finished the run that answers it hands its "script finished" message to that page's socket
             (Runtime._send_message). A run cut short by a newer request does not count: the span
             goes on to the run that does finish.

Each span is appended to the file named by $CAPSNET_SERVER_TIMING as one JSON line
{"session", "kind" ("fragment" for a fragment's run: a pose slider, a class send, the teacher's
gallery; "full" otherwise), "query" (the page's query string, e.g. "class=...&teacher=..."),
"request", "finished"}.

It hooks two methods of Streamlit's runtime (the version pinned in requirements.txt). The load
test starts its own server with this installed through a generated sitecustomize.py; the app
never imports it. If Streamlit changes those methods, install() raises and the load test reports
that server timings are unavailable.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

ENV = "CAPSNET_SERVER_TIMING"
_lock = threading.Lock()
_pending: dict[str, tuple[float, str, str]] = {}  # session id -> (first unanswered request, kind, query)


def _write(path: str, record: dict) -> None:
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def install(path: str) -> None:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime import runtime as runtime_module
    from streamlit.runtime.app_session import AppSession

    handle_backmsg = AppSession.handle_backmsg
    send_message = runtime_module.Runtime._send_message

    def timed_handle_backmsg(self, msg):
        if msg.WhichOneof("type") == "rerun_script":
            kind = "fragment" if msg.rerun_script.fragment_id else "full"
            with _lock:
                _pending.setdefault(self.id, (time.monotonic(), kind, msg.rerun_script.query_string))
        return handle_backmsg(self, msg)

    def timed_send_message(self, session_info, msg):
        result = send_message(self, session_info, msg)
        if (
            msg.WhichOneof("type") == "script_finished"
            and msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN
        ):
            sid = session_info.session.id
            with _lock:
                started = _pending.pop(sid, None)
            if started is not None:
                _write(
                    path,
                    {
                        "session": sid,
                        "kind": started[1],
                        "query": started[2],
                        "request": started[0],
                        "finished": time.monotonic(),
                    },
                )
        return result

    AppSession.handle_backmsg = timed_handle_backmsg
    runtime_module.Runtime._send_message = timed_send_message


def sitecustomize_source() -> str:
    """What the load test writes as sitecustomize.py for its server (with the project root on
    PYTHONPATH): install() when $CAPSNET_SERVER_TIMING is set, and record a failure instead of
    stopping the server."""
    return (
        "import os\n"
        f"if os.environ.get({ENV!r}):\n"
        "    try:\n"
        "        from tools import server_timing\n"
        f"        server_timing.install(os.environ[{ENV!r}])\n"
        "    except Exception as e:\n"
        f"        with open(os.environ[{ENV!r}], 'a') as f:\n"
        "            f.write('{\"error\": %r}\\n' % repr(e).replace('\"', \"'\"))\n"
    )


def hooked_server_env(folder: str | os.PathLike, root: str | os.PathLike) -> tuple[dict[str, str], str]:
    """Environment for a server that times itself: a sitecustomize.py written into `folder` (a
    temporary folder the caller owns), `folder` and the project `root` on PYTHONPATH, and the
    spans file named. Returns (env to add, path of the spans file for read_spans)."""
    (Path(folder) / "sitecustomize.py").write_text(sitecustomize_source())
    log = str(Path(folder) / "spans.jsonl")
    pythonpath = os.pathsep.join(filter(None, [str(folder), str(root), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": pythonpath, ENV: log}, log


def read_spans(path: str | os.PathLike, since: float = 0.0) -> tuple[list[dict], list[str]]:
    """Spans whose request came at or after `since` (time.monotonic() of this machine), and errors."""
    spans, errors = [], []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return spans, errors
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "error" in rec:
            errors.append(str(rec["error"]))
        elif rec.get("request", -1.0) >= since:
            spans.append(rec)
    return spans, errors
