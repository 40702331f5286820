"""A fake Google Drive at the HTTP boundary under gdown, serving the official fixture checkpoints.

gdown talks to Drive through `requests`; `FakeDrive.install` replaces `HTTPAdapter.send`, so our code and
gdown run for real down to the bytes on the wire: the folder view HTML that gdown parses, `uc?id=` file
downloads (with the virus-scan confirmation form Drive shows for large files), byte ranges for resumed
downloads, the quota page, and connections cut off mid-file. Sockets are blocked for everything else
(the Hub): a test that passes here made no network call.
"""

from __future__ import annotations

import io
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

CLOVA_TF = Path(__file__).resolve().parent / "fixtures" / "clova_tf"
FOLDER_ID = "1o8vj8_ZOPByjRKZzRPZMbuoKyxIwd_IZ"  # the official folder (from the weight records)
QUOTA_PAGE = (
    '<html><head><title>Google Drive - Quota exceeded</title></head><body><div class="uc-main">'
    '<p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this time.</p>'
    '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try '
    "accessing the file again later. If the file you are trying to access is particularly large or is shared "
    "with many people, it may take up to 24 hours to be able to view or download the file.</p></div></body></html>"
)
CONFIRM_ABOVE = 100_000  # bytes; Drive asks to confirm downloads it cannot virus-scan


def official_tree(step: int = 112603) -> dict:
    """The folder as its README describes it: one folder per model, a checkpoint named by its step."""

    def model(name: str) -> dict:
        src = CLOVA_TF / name
        return {
            "checkpoint": {
                "checkpoint": f'model_checkpoint_path: "model.ckpt-{step}"\n'.encode(),
                f"model.ckpt-{step}.index": (src / "model.ckpt.index").read_bytes(),
                f"model.ckpt-{step}.data-00000-of-00001": (src / "model.ckpt.data-00000-of-00001").read_bytes(),
            },
            "eval.log": b"accuracy 0.8278\n",
        }

    return {"Assemble-ResNet50": model("assemble_resnet50_w8"), "Assemble-ResNet152": model("assemble_resnet152_w8")}


@dataclass
class FakeDrive:
    """Drive folder `tree` (nested dicts of name -> bytes) served over fake HTTP; records what was asked."""

    tree: dict
    quota: set[str] = field(default_factory=set)  # file names answered with the quota page
    cut_after: dict[str, int] = field(default_factory=dict)  # file name -> bytes sent before the line drops (once)
    down: bool = False  # no network: every request fails to connect
    requests: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)  # names of the files whose bytes were sent
    ranges: list[str] = field(default_factory=list)  # Range headers of resumed downloads
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # id -> (name, data)
    folders: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # id -> (name, child ids)

    def __post_init__(self) -> None:
        self._add_folder(FOLDER_ID, "pretrained model", self.tree)

    def _add_folder(self, folder_id: str, name: str, children: dict) -> None:
        self.folders[folder_id] = (name, [])
        for child, value in children.items():
            child_id = f"{len(self.files) + len(self.folders):03d}" + "x" * 30
            self.folders[folder_id][1].append(child_id)
            if isinstance(value, dict):
                self._add_folder(child_id, child, value)
            else:
                self.files[child_id] = (child, value)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeDrive:
        drive = self

        def send(adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs) -> requests.Response:
            return drive.respond(adapter, request)

        monkeypatch.setattr(HTTPAdapter, "send", send)
        block_sockets(monkeypatch)
        return self

    def respond(self, adapter: HTTPAdapter, request: requests.PreparedRequest) -> requests.Response:
        self.requests.append(request.url)
        if self.down:
            raise requests.ConnectionError(f"Failed to resolve 'drive.google.com' ({request.url})")
        url = urllib.parse.urlsplit(request.url)
        query = _query(request.url)
        item_id = query.get("id", [""])[0]
        if url.path == "/embeddedfolderview" and item_id in self.folders:
            return _response(adapter, request, 200, self._folder_view(item_id).encode(), "text/html; charset=utf-8")
        if item_id in self.files:
            name, data = self.files[item_id]
            if name in self.quota:
                return _response(adapter, request, 200, QUOTA_PAGE.encode(), "text/html; charset=utf-8")
            if len(data) > CONFIRM_ABOVE and url.netloc == "drive.google.com":
                return _response(adapter, request, 200, self._confirm_form(item_id).encode(), "text/html")
            return self._file(adapter, request, name, data)
        return _response(adapter, request, 404, b"not found", "text/html")

    def _folder_view(self, folder_id: str) -> str:
        name, children = self.folders[folder_id]
        links = []
        for child_id in children:
            if child_id in self.folders:
                href, title = f"https://drive.google.com/drive/folders/{child_id}", self.folders[child_id][0]
            else:
                href, title = f"https://drive.google.com/file/d/{child_id}/view?usp=drive_web", self.files[child_id][0]
            links.append(f'<a href="{href}"><div class="flip-entry-title">{title}</div></a>')
        return f"<html><head><title>{name}</title></head><body>{''.join(links)}</body></html>"

    def _confirm_form(self, item_id: str) -> str:
        return (
            '<html><body><form id="download-form" action="https://drive.usercontent.google.com/download" '
            f'method="get"><input type="hidden" name="id" value="{item_id}">'
            '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">'
            "</form></body></html>"
        )

    def _file(self, adapter: HTTPAdapter, request: requests.PreparedRequest, name: str, data: bytes):
        headers = {"Content-Disposition": f'attachment; filename="{name}"', "Accept-Ranges": "bytes"}
        status, start = 200, 0
        if request.headers.get("Range"):
            self.ranges.append(request.headers["Range"])
            start = int(request.headers["Range"].split("=")[1].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        self.served.append(name)
        headers["Content-Length"] = str(len(body))
        if name in self.cut_after:  # the connection drops: fewer bytes than announced
            body = body[: self.cut_after.pop(name)]
        return _response(adapter, request, status, body, "application/octet-stream", headers)


def _query(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


def _response(adapter, request, status, body, content_type, headers=None) -> requests.Response:
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(body),
        headers={"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})},
        status=status,
        preload_content=False,
        enforce_content_length=True,
    )
    return adapter.build_response(request, raw)


def block_sockets(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every socket connect fails at once (and is recorded): no test reaches the Hub or anything else."""
    attempts: list = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise ConnectionRefusedError(f"network blocked in tests ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts
