"""A local stand-in for the few Hub HTTP endpoints `HfApi.create_repo` / `create_branch` / `upload_folder` use.

Every file is answered as a "regular" (non-LFS) upload, so commits carry their files base64-encoded in the
NDJSON body; what arrives is written to `root/<org>/<name>/<revision>/`. Any other request is a 404 and is
recorded in `unexpected` (except huggingface_hub's best-effort agent-registry lookup), so a test can check
that nothing else was asked for.
"""

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROUTE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit|branch)/(?P<rev>[^?]+)")


class LocalHub:
    """`with LocalHub(root) as hub:` serves on `hub.endpoint` (127.0.0.1, a free port) until the block ends."""

    def __init__(self, root: str | Path, token: str = "hf_local_test_token"):
        self.root, self.token = Path(root), token
        self.repos: dict[str, dict] = {}  # repo id -> create_repo payload
        self.branches: set[tuple[str, str]] = set()
        self.commits: list[dict] = []  # {"repo", "revision", "summary", "files"}
        self.unexpected: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def repo_dir(self, repo_id: str, revision: str = "main") -> Path:
        return self.root / repo_id / revision

    def __enter__(self) -> "LocalHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path != "/api/agent-harnesses":  # huggingface_hub's best-effort user-agent lookup
                    hub.unexpected.append(f"GET {self.path}")
                self._reply(404, {"error": "not implemented by the local hub"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self._reply(401, {"error": "Invalid credentials in Authorization header"})
                    return
                if self.path == "/api/repos/create":
                    self._create_repo(json.loads(body))
                elif self.path == "/api/validate-yaml":
                    self._reply(200, {"errors": [], "warnings": []})
                elif match := REPO_ROUTE.match(self.path):
                    repo, op, revision = match["repo"], match["op"], match["rev"]
                    if repo not in hub.repos:
                        self.send_response(404)
                        self.send_header("X-Error-Code", "RepoNotFound")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    elif op == "preupload":
                        files = json.loads(body)["files"]
                        modes = [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                        ]
                        self._reply(200, {"files": modes})
                    elif op == "branch":
                        hub.branches.add((repo, revision))
                        self._reply(200, {})
                    else:
                        self._commit(repo, revision, body)
                else:
                    hub.unexpected.append(f"POST {self.path}")
                    self._reply(404, {"error": "not implemented by the local hub"})

            def _create_repo(self, payload: dict) -> None:
                repo = f"{payload['organization']}/{payload['name']}"
                if repo in hub.repos:
                    self._reply(
                        409, {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo}"}
                    )
                    return
                hub.repos[repo] = payload
                self._reply(200, {"url": f"{hub.endpoint}/{repo}", "name": repo})

            def _commit(self, repo: str, revision: str, body: bytes) -> None:
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header, files = lines[0]["value"], []
                for line in lines[1:]:
                    if line["key"] != "file":
                        self._reply(
                            400, {"error": f"the local hub only takes regular files, got {line['key']}"}
                        )
                        return
                    path = hub.repo_dir(repo, revision) / line["value"]["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(base64.b64decode(line["value"]["content"]))
                    files.append(line["value"]["path"])
                hub.commits.append(
                    {"repo": repo, "revision": revision, "summary": header["summary"], "files": files}
                )
                oid = hashlib.sha1(body).hexdigest()
                self._reply(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{oid}", "commitOid": oid})

        return Handler
