"""Serve an eightbit model over HTTP with the standard library only (docs/deploy.md).

    python examples/serve_http.py model.eb 8000
    curl -s localhost:8000/predict -d '{"x": [[...], ...]}'     # {"y": [[...], ...]}
    curl -s localhost:8000/metrics                             # qm.monitor().as_dict() as JSON

POST /predict takes {input name: nested lists} (or {"x": ...} for a one-input model) and returns
{output name: nested lists}. ThreadingHTTPServer answers each request on its own thread; the C++
run releases the GIL, and the monitor's counters are shared by all of them.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

import eightbit as eb


def make_server(model, host="127.0.0.1", port=8000) -> ThreadingHTTPServer:
    monitor = model.monitor()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            if self.path != "/predict":
                return self._reply(404, {"error": f"no route {self.path}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                feeds = {name: np.asarray(value, np.float32) for name, value in body.items()}
                out = model.run(feeds)
            except (ValueError, TypeError, KeyError) as e:   # eightbit names the bad input
                return self._reply(400, {"error": str(e)})
            self._reply(200, {name: y.tolist() for name, y in out.items()})

        def do_GET(self):
            if self.path != "/metrics":
                return self._reply(404, {"error": f"no route {self.path}"})
            self._reply(200, monitor.as_dict())

        def log_message(self, *args):  # quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


if __name__ == "__main__":
    make_server(eb.load(sys.argv[1]), port=int(sys.argv[2]) if len(sys.argv) > 2 else 8000).serve_forever()
