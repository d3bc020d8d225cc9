#!/usr/bin/env python3
"""Local fake of the GitHub Actions cache service v2, for tests.

Implements the Twirp JSON API that @actions/cache (>= 4, with
ACTIONS_CACHE_SERVICE_V2 set) talks to, plus the Azure-Blob-style SAS
upload/download endpoints that the API hands out. Listens on 127.0.0.1 only.

Usage:
    python3 tests/gha/server.py --port-file FILE [--port 0] [--data-dir DIR] [--log-headers]

Client environment:
    ACTIONS_RESULTS_URL=http://127.0.0.1:PORT/
    ACTIONS_CACHE_URL=http://127.0.0.1:PORT/
    ACTIONS_RUNTIME_TOKEN=<any non-empty token>
    ACTIONS_CACHE_SERVICE_V2=true

Test-only endpoints (no auth):
    POST /_control   JSON, any subset of:
        {"throttle": N, "retry_after": S}  next N Twirp requests get 429
        {"read_only_tokens": [..]}         tokens that may only read
        {"allowed_tokens": [..]}           if non-empty, other tokens get 401
        {"blob_errors": N}                 next N blob requests get 503 ServerBusy
        {"reset_stats": true}              zero the counters
        {"clear_entries": true}            forget all entries and blobs
    GET  /_stats     counters plus the entry list
    GET  /_entries   the entry list
    GET  /_health    {"ok": true}

Python 3 standard library only.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socketserver
import sys
import tempfile
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

TWIRP_PREFIX = "/twirp/github.actions.results.api.v1.CacheService/"
ACCOUNT = "devstoreaccount1"
CONTAINER = "actions-cache"
SAS_VERSION = "2024-11-04"
DEFAULT_MS_VERSION = "2024-11-04"
SAS_TTL_SECONDS = 6 * 3600
COPY_CHUNK = 1 << 20
MAX_TWIRP_BODY = 4 << 20
MAX_DRAIN = 256 << 20
MAX_KEY_LEN = 512

TWIRP_STATUS = {
    "canceled": 408,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}

STAT_NAMES = (
    "create",
    "create_conflict",
    "throttled",
    "finalize",
    "get_url",
    "get_url_hit",
    "blob_put_requests",
    "blocks_staged",
    "bytes_uploaded",
    "bytes_downloaded",
)


# --- Twirp's protobuf encoding of the three calls (field numbers as in
# github.actions.results.api.v1's cache.proto) ----------------------------------------------

PROTO_REQUESTS = {
    "CreateCacheEntry": {2: ("key", "string"), 3: ("version", "string")},
    "FinalizeCacheEntryUpload": {2: ("key", "string"), 3: ("size_bytes", "int64"), 4: ("version", "string")},
    "GetCacheEntryDownloadURL": {2: ("key", "string"), 3: ("restore_keys", "repeated string"), 4: ("version", "string")},
}
PROTO_RESPONSES = {
    "CreateCacheEntry": [(1, "ok", "bool"), (2, "signed_upload_url", "string"), (3, "message", "string")],
    "FinalizeCacheEntryUpload": [(1, "ok", "bool"), (2, "entry_id", "int64"), (3, "message", "string")],
    "GetCacheEntryDownloadURL": [(1, "ok", "bool"), (2, "signed_download_url", "string"), (3, "matched_key", "string")],
}


def _varint(data, i):
    shift = value = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def proto_decode(method, data):
    fields = PROTO_REQUESTS[method]
    out = {"restore_keys": []} if method == "GetCacheEntryDownloadURL" else {}
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            value = bytes(data[i:i + length])
            if len(value) != length:
                raise ValueError("truncated field")
            i += length
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        if number not in fields:
            continue  # metadata and unknown fields
        name, kind = fields[number]
        if kind == "string":
            out[name] = value.decode()
        elif kind == "repeated string":
            out.setdefault(name, []).append(value.decode())
        elif kind == "int64":
            out[name] = str(value)
    return out


def _put_varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def proto_encode(method, obj):
    out = bytearray()
    for number, name, kind in PROTO_RESPONSES[method]:
        value = obj.get(name)
        if kind == "bool":
            if value:
                out += _put_varint(number << 3) + _put_varint(1)
        elif kind == "int64":
            if value not in (None, "", 0, "0"):
                out += _put_varint(number << 3) + _put_varint(int(value))
        elif value:
            raw = value.encode()
            out += _put_varint(number << 3 | 2) + _put_varint(len(raw)) + raw
    return bytes(out)


class TwirpError(Exception):
    def __init__(self, code, msg, headers=None):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.headers = headers or {}


class BlobError(Exception):
    def __init__(self, status, code, msg, headers=None):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


class Entry:
    def __init__(self, entry_id, key, version, blob_name):
        self.id = entry_id
        self.key = key
        self.version = version
        self.blob_name = blob_name
        self.finalized = False
        self.size = None
        self.created_at = time.time()
        self.finalized_at = None
        self.finalized_seq = 0

    def to_json(self):
        return {
            "id": self.id,
            "key": self.key,
            "version": self.version,
            "size": self.size,
            "finalized": self.finalized,
        }


class Blob:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.path = None  # committed data file, None until first commit
        self.size = 0
        self.committed_blocks = []  # [(block_id, offset, length)]
        self.uncommitted = {}  # block_id -> (path, length)
        self.etag = None
        self.last_modified = None
        self.created = None
        self.content_md5 = None  # base64, only for Put Blob
        self.content_type = "application/octet-stream"


class State:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.blob_dir = os.path.join(data_dir, "blobs")
        self.block_dir = os.path.join(data_dir, "blocks")
        self.tmp_dir = os.path.join(data_dir, "tmp")
        for d in (self.blob_dir, self.block_dir, self.tmp_dir):
            os.makedirs(d, exist_ok=True)
        self.lock = threading.Lock()
        self.entries = {}  # (key, version) -> Entry
        self.blobs = {}  # blob name -> Blob
        self.sas = {}  # sig -> (blob name, perms, expiry)
        self.next_id = 1
        self.seq = 0
        self.etag_seq = 0
        self.throttle_remaining = 0
        self.retry_after = 1
        self.blob_errors = 0
        self.read_only_tokens = set()
        self.allowed_tokens = set()
        self.stats = {}
        self.reset_stats()

    def reset_stats(self):
        self.stats = {name: 0 for name in STAT_NAMES}

    def bump(self, name, n=1):
        with self.lock:
            self.stats[name] += n

    def new_etag(self):
        with self.lock:
            self.etag_seq += 1
            return '"0x%X"' % ((time.time_ns() // 100) * 1000 + self.etag_seq % 1000)

    def tmp_path(self):
        return os.path.join(self.tmp_dir, uuid.uuid4().hex)

    def entries_json(self):
        with self.lock:
            entries = sorted(self.entries.values(), key=lambda e: e.id)
            return [e.to_json() for e in entries]

    def clear_entries(self):
        with self.lock:
            self.entries.clear()
            self.blobs.clear()
            self.sas.clear()
        for d in (self.blob_dir, self.block_dir):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d, exist_ok=True)


def new_sig():
    # Shaped like a real SAS signature (base64 of an HMAC-SHA256). Always
    # contains a '+', so clients must keep the URL's percent-encoding intact.
    while True:
        sig = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        if "+" in sig:
            return sig


def iso_utc(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def http_date(ts):
    return formatdate(ts, usegmt=True)


def parse_range(value, size):
    """Return (start, end_inclusive), None for no/ignored range; raise for unsatisfiable."""
    m = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", value or "")
    if not m:
        return None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise BlobError(
            416,
            "InvalidRange",
            "The range specified is invalid for the current size of the resource.",
            {"Content-Range": "bytes */%d" % size},
        )
    return start, min(end, size - 1)


def json_field(body, *names, default=None):
    for n in names:
        if n in body and body[n] is not None:
            return body[n]
    return default


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        # Skip HTTPServer.server_bind's reverse DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zccache-gha-test-server"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 600

    # ---- plumbing -------------------------------------------------------

    def version_string(self):
        return self.server_version

    @property
    def state(self):
        return self.server.state

    def log_request(self, code="-", size="-"):
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        line = "[gha-server] %s %s %s\n" % (getattr(self, "command", "-"), path, code)
        if self.server.log_headers and hasattr(self, "headers"):
            query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
            shown = ["%s=%s" % (k, "<redacted>" if k == "sig" else v[0]) for k, v in query.items()]
            line += "    query: %s\n" % "&".join(shown)
            for k, v in self.headers.items():
                if k.lower() in ("authorization", "cookie"):
                    v = "<redacted>"
                line += "    %s: %s\n" % (k, v)
        sys.stderr.write(line)
        sys.stderr.flush()

    def log_message(self, fmt, *args):
        sys.stderr.write("[gha-server] " + (fmt % args) + "\n")
        sys.stderr.flush()

    def log_error(self, fmt, *args):
        # The base class passes the raw request line here, which may carry a
        # SAS signature: log only the status code.
        code = args[0] if args and isinstance(args[0], int) else "-"
        sys.stderr.write("[gha-server] protocol error %s\n" % code)
        sys.stderr.flush()

    def base_url(self):
        return "http://127.0.0.1:%d" % self.server.server_port

    def parsed(self):
        parts = urlsplit(self.path)
        # parse_qs decodes '+' as a space, like Azure does for SAS query strings.
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return parts.path, query

    def content_length(self):
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            n = int(value)
        except ValueError:
            return None
        return n if n >= 0 else None

    def is_chunked(self):
        return "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()

    def read_chunked(self, limit):
        out = bytearray()
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("eof in chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers
                    t = self.rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                return bytes(out)
            if len(out) + size > limit:
                raise ValueError("body too large")
            out += self.rfile.read(size)
            self.rfile.readline(3)

    def read_small_body(self, limit=MAX_TWIRP_BODY):
        if self.is_chunked():
            self._body_consumed = True
            try:
                return self.read_chunked(limit)
            except ValueError:
                self.close_connection = True
                raise
        n = self.content_length() or 0
        if n > limit:
            self.drain_body()
            raise ValueError("body too large")
        self._body_consumed = True
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            self.close_connection = True
            raise ConnectionError("short body")
        return data

    def drain_body(self):
        """Discard an unread request body so the connection can be reused."""
        if getattr(self, "_body_consumed", False):
            return
        self._body_consumed = True
        if self.is_chunked():
            try:
                self.read_chunked(MAX_DRAIN)
            except Exception:
                self.close_connection = True
            return
        n = self.content_length() or 0
        if n > MAX_DRAIN:
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, COPY_CHUNK))
            if not chunk:
                self.close_connection = True
                return
            n -= len(chunk)

    def send_bytes(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode("utf-8")
        self.send_bytes(status, body, "application/json", headers)

    def send_twirp_error(self, err):
        self.drain_body()
        status = TWIRP_STATUS.get(err.code, 500)
        self.send_json(status, {"code": err.code, "msg": err.msg}, err.headers)

    def azure_common_headers(self):
        h = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-version": self.headers.get("x-ms-version") or DEFAULT_MS_VERSION,
        }
        crid = self.headers.get("x-ms-client-request-id")
        if crid:
            h["x-ms-client-request-id"] = crid
        return h

    def send_blob_error(self, err):
        self.drain_body()
        h = self.azure_common_headers()
        h["x-ms-error-code"] = err.code
        h.update(err.headers)
        message = "%s\nRequestId:%s\nTime:%s" % (
            err.msg,
            h["x-ms-request-id"],
            time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime()),
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message></Error>'
            % (err.code, xml_escape(message))
        ).encode("utf-8")
        self.send_bytes(err.status, body, "application/xml", h)

    # ---- dispatch -------------------------------------------------------

    def dispatch(self):
        self._body_consumed = False
        path, query = self.parsed()
        try:
            if path.startswith("/twirp/"):
                if self.command != "POST":
                    raise TwirpError("bad_route", "twirp requests must be POST")
                self.handle_twirp(path)
            elif path in ("/_control", "/_stats", "/_entries", "/_health"):
                self.handle_test_endpoint(path)
            elif path.startswith("/%s/" % ACCOUNT) or path.count("/") >= 3:
                self.handle_blob(path, query)
            else:
                self.drain_body()
                self.send_json(404, {"code": "bad_route", "msg": "no such endpoint"})
        except TwirpError as e:
            self.send_twirp_error(e)
        except BlobError as e:
            self.send_blob_error(e)
        except (BrokenPipeError, ConnectionError):
            self.close_connection = True
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            try:
                if path.startswith("/twirp/"):
                    self.send_twirp_error(TwirpError("internal", "internal server error"))
                else:
                    self.send_blob_error(BlobError(500, "InternalError", "internal server error"))
            except Exception:
                pass

    do_GET = dispatch
    do_HEAD = dispatch
    do_POST = dispatch
    do_PUT = dispatch
    do_DELETE = dispatch

    # ---- test endpoints -------------------------------------------------

    def handle_test_endpoint(self, path):
        st = self.state
        if path == "/_health":
            self.drain_body()
            self.send_json(200, {"ok": True})
            return
        if path == "/_entries":
            self.drain_body()
            self.send_json(200, st.entries_json())
            return
        if path == "/_stats":
            self.drain_body()
            entries = st.entries_json()
            with st.lock:
                out = dict(st.stats)
            out["entries"] = entries
            self.send_json(200, out)
            return
        # /_control
        if self.command != "POST":
            self.drain_body()
            self.send_json(405, {"code": "bad_route", "msg": "POST JSON to /_control"})
            return
        try:
            body = json.loads(self.read_small_body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self.send_json(400, {"code": "malformed", "msg": "bad control body: %s" % e})
            return
        if body.get("clear_entries"):
            st.clear_entries()
        with st.lock:
            if "throttle" in body:
                st.throttle_remaining = int(body["throttle"])
            if "retry_after" in body:
                st.retry_after = int(body["retry_after"])
            if "read_only_tokens" in body:
                st.read_only_tokens = set(body["read_only_tokens"] or [])
            if "allowed_tokens" in body:
                st.allowed_tokens = set(body["allowed_tokens"] or [])
            if "blob_errors" in body:
                st.blob_errors = int(body["blob_errors"])
            if body.get("reset_stats"):
                st.reset_stats()
            out = {
                "ok": True,
                "throttle": st.throttle_remaining,
                "retry_after": st.retry_after,
                "blob_errors": st.blob_errors,
            }
        self.send_json(200, out)

    # ---- twirp ----------------------------------------------------------

    def handle_twirp(self, path):
        st = self.state
        method = path[len(TWIRP_PREFIX):] if path.startswith(TWIRP_PREFIX) else None
        handlers = {
            "CreateCacheEntry": self.twirp_create,
            "FinalizeCacheEntryUpload": self.twirp_finalize,
            "GetCacheEntryDownloadURL": self.twirp_get_url,
        }
        if method not in handlers:
            raise TwirpError("bad_route", "no handler for path %s" % path)

        with st.lock:
            throttled = st.throttle_remaining > 0
            if throttled:
                st.throttle_remaining -= 1
                st.stats["throttled"] += 1
                retry_after = st.retry_after
        if throttled:
            raise TwirpError(
                "resource_exhausted",
                "request was throttled, retry later",
                {"Retry-After": str(retry_after)},
            )

        auth = self.headers.get("Authorization") or ""
        m = re.fullmatch(r"\s*Bearer\s+(\S+)\s*", auth)
        if not m:
            raise TwirpError("unauthenticated", "missing or malformed bearer token")
        token = m.group(1)
        with st.lock:
            allowed = st.allowed_tokens
            read_only = token in st.read_only_tokens
        if allowed and token not in allowed:
            raise TwirpError("unauthenticated", "invalid bearer token")

        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/protobuf":
            # Twirp's binary encoding (opendal's ghac service, hence sccache, speaks it).
            try:
                body = proto_decode(method, self.read_small_body() or b"")
            except ValueError as e:
                raise TwirpError("malformed", "the protobuf request could not be decoded: %s" % e)
            result = handlers[method](body, read_only)
            self.send_bytes(200, proto_encode(method, result), "application/protobuf")
            return
        if ctype != "application/json":
            raise TwirpError("bad_route", "unexpected Content-Type: %r (application/json or application/protobuf)" % ctype)
        try:
            body = json.loads(self.read_small_body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("request body is not a JSON object")
        except ValueError as e:
            raise TwirpError("malformed", "the json request could not be decoded: %s" % e)
        result = handlers[method](body, read_only)
        self.send_json(200, result)

    def require_key_version(self, body):
        key = json_field(body, "key", default="")
        version = json_field(body, "version", default="")
        if not isinstance(key, str) or not key:
            raise TwirpError("invalid_argument", "key is required")
        if len(key) > MAX_KEY_LEN:
            raise TwirpError("invalid_argument", "key is longer than %d characters" % MAX_KEY_LEN)
        if "," in key:
            raise TwirpError("invalid_argument", "key cannot contain commas")
        if not isinstance(version, str) or not version:
            raise TwirpError("invalid_argument", "version is required")
        return key, version

    def signed_url(self, blob_name, perms):
        st = self.state
        sig = new_sig()
        now = time.time()
        expiry = now + SAS_TTL_SECONDS
        with st.lock:
            st.sas[sig] = (blob_name, perms, expiry)
        q = "sv=%s&sr=b&sp=%s&st=%s&se=%s&spr=http&sig=%s" % (
            SAS_VERSION,
            perms,
            quote(iso_utc(now - 300), safe=""),
            quote(iso_utc(expiry), safe=""),
            quote(sig, safe=""),
        )
        return "%s/%s/%s/%s?%s" % (self.base_url(), ACCOUNT, CONTAINER, blob_name, q)

    def twirp_create(self, body, read_only):
        st = self.state
        key, version = self.require_key_version(body)
        if read_only:
            raise TwirpError("permission_denied", "token is read-only: cannot create cache entries")
        blob_name = uuid.uuid4().hex
        with st.lock:
            st.stats["create"] += 1
            if (key, version) in st.entries:
                st.stats["create_conflict"] += 1
                conflict = True
            else:
                conflict = False
                entry = Entry(st.next_id, key, version, blob_name)
                st.next_id += 1
                st.entries[(key, version)] = entry
                st.blobs[blob_name] = Blob(blob_name)
        if conflict:
            raise TwirpError(
                "already_exists",
                "cache entry with the same key, version, and scope already exists",
            )
        return {"ok": True, "signed_upload_url": self.signed_url(blob_name, "cw"), "message": ""}

    def twirp_finalize(self, body, read_only):
        st = self.state
        key, version = self.require_key_version(body)
        if read_only:
            raise TwirpError("permission_denied", "token is read-only: cannot finalize cache entries")
        raw = json_field(body, "size_bytes", "sizeBytes", default="0")
        try:
            size = int(raw)
            if size < 0 or isinstance(raw, bool):
                raise ValueError
        except (TypeError, ValueError):
            raise TwirpError("invalid_argument", "size_bytes must be a non-negative integer")
        with st.lock:
            st.stats["finalize"] += 1
            entry = st.entries.get((key, version))
            if entry is None:
                raise TwirpError("not_found", "no reserved cache entry for this key and version")
            if entry.finalized:
                raise TwirpError("already_exists", "cache entry is already finalized")
            blob = st.blobs.get(entry.blob_name)
        with blob.lock:
            committed = blob.path is not None
            blob_size = blob.size
        if not committed:
            raise TwirpError("not_found", "no committed blob was uploaded for this cache entry")
        if blob_size != size:
            raise TwirpError(
                "invalid_argument",
                "size_bytes %d does not match the uploaded blob size %d" % (size, blob_size),
            )
        with st.lock:
            if entry.finalized:
                raise TwirpError("already_exists", "cache entry is already finalized")
            st.seq += 1
            entry.finalized = True
            entry.size = size
            entry.finalized_at = time.time()
            entry.finalized_seq = st.seq
            entry_id = entry.id
        return {"ok": True, "entry_id": str(entry_id), "message": ""}

    def twirp_get_url(self, body, read_only):
        st = self.state
        key = json_field(body, "key", default="")
        version = json_field(body, "version", default="")
        restore_keys = json_field(body, "restore_keys", "restoreKeys", default=[])
        if not isinstance(key, str) or not key:
            raise TwirpError("invalid_argument", "key is required")
        if not isinstance(version, str) or not version:
            raise TwirpError("invalid_argument", "version is required")
        if not isinstance(restore_keys, list) or not all(isinstance(k, str) for k in restore_keys):
            raise TwirpError("invalid_argument", "restore_keys must be a list of strings")
        with st.lock:
            st.stats["get_url"] += 1
            candidates = [e for e in st.entries.values() if e.finalized and e.version == version]
            found = None
            for k in [key] + restore_keys:
                exact = [e for e in candidates if e.key == k]
                if exact:
                    found = exact[0]
                    break
                prefixed = [e for e in candidates if e.key.startswith(k)]
                if prefixed:
                    found = max(prefixed, key=lambda e: e.finalized_seq)
                    break
            if found is not None:
                st.stats["get_url_hit"] += 1
        if found is None:
            return {"ok": False, "signed_download_url": "", "matched_key": ""}
        return {
            "ok": True,
            "signed_download_url": self.signed_url(found.blob_name, "r"),
            "matched_key": found.key,
        }

    # ---- blob storage ---------------------------------------------------

    def authorize_blob(self, path, query, need):
        st = self.state
        m = re.fullmatch(r"/([^/]+)/([^/]+)/(.+)", path)
        if not m:
            raise BlobError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        account, container, blob_name = m.group(1), m.group(2), unquote(m.group(3))
        sig = query.get("sig")
        if not sig:
            raise BlobError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
            )
        with st.lock:
            grant = st.sas.get(sig)
            blob = st.blobs.get(blob_name)
        if grant is None or account != ACCOUNT or container != CONTAINER or grant[0] != blob_name:
            raise BlobError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Signature did not match.",
            )
        _, perms, expiry = grant
        if time.time() > expiry:
            raise BlobError(403, "AuthenticationFailed", "Signed expiry time has passed.")
        if not any(p in perms for p in need):
            raise BlobError(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
        if blob is None:
            raise BlobError(404, "BlobNotFound", "The specified blob does not exist.")
        return blob

    def handle_blob(self, path, query):
        st = self.state
        if self.command == "PUT":
            blob = self.authorize_blob(path, query, "cw")
            st.bump("blob_put_requests")
        elif self.command in ("GET", "HEAD"):
            blob = self.authorize_blob(path, query, "r")
        else:
            raise BlobError(405, "UnsupportedHttpVerb", "The resource doesn't support the specified HTTP verb.")
        with st.lock:
            inject = st.blob_errors > 0
            if inject:
                st.blob_errors -= 1
        if inject:
            raise BlobError(503, "ServerBusy", "The server is busy (injected fault).")

        comp = query.get("comp")
        if self.command == "PUT":
            if comp is None:
                self.put_blob(blob)
            elif comp == "block":
                self.put_block(blob, query)
            elif comp == "blocklist":
                self.put_block_list(blob)
            else:
                raise BlobError(400, "UnsupportedQueryParameter", "comp=%s is not supported by this test server." % comp)
        else:
            if comp is None:
                self.get_blob(blob)
            elif comp == "blocklist" and self.command == "GET":
                self.get_block_list(blob, query)
            else:
                raise BlobError(400, "UnsupportedQueryParameter", "comp=%s is not supported by this test server." % comp)

    def receive_body_to_file(self):
        """Stream the request body to a temp file. Returns (path, length, md5 bytes)."""
        if self.is_chunked() or self.content_length() is None:
            raise BlobError(411, "MissingContentLengthHeader", "Content-Length HTTP header is required.")
        n = self.content_length()
        path = self.state.tmp_path()
        md5 = hashlib.md5()
        self._body_consumed = True
        remaining = n
        try:
            with open(path, "wb") as f:
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, COPY_CHUNK))
                    if not chunk:
                        raise ConnectionError("client closed the connection mid-body")
                    f.write(chunk)
                    md5.update(chunk)
                    remaining -= len(chunk)
        except BaseException:
            self.close_connection = True
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
        digest = md5.digest()
        sent_md5 = self.headers.get("Content-MD5")
        if sent_md5 and sent_md5.strip() != base64.b64encode(digest).decode("ascii"):
            os.unlink(path)
            raise BlobError(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
        self.state.bump("bytes_uploaded", n)
        return path, n, digest

    def put_success(self, headers):
        h = self.azure_common_headers()
        h["x-ms-request-server-encrypted"] = "true"
        h.update(headers)
        self.send_bytes(201, b"", "application/octet-stream", h)

    def put_blob(self, blob):
        btype = self.headers.get("x-ms-blob-type")
        if not btype:
            raise BlobError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.")
        if btype != "BlockBlob":
            raise BlobError(400, "InvalidHeaderValue", "Only x-ms-blob-type: BlockBlob is supported.")
        tmp, n, digest = self.receive_body_to_file()
        final = os.path.join(self.state.blob_dir, blob.name)
        etag = self.state.new_etag()
        now = time.time()
        with blob.lock:
            os.replace(tmp, final)
            self.discard_uncommitted(blob)
            blob.path = final
            blob.size = n
            blob.committed_blocks = []
            blob.etag = etag
            blob.last_modified = now
            blob.created = blob.created or now
            blob.content_md5 = base64.b64encode(digest).decode("ascii")
            blob.content_type = self.headers.get("x-ms-blob-content-type") or "application/octet-stream"
        self.put_success(
            {
                "ETag": etag,
                "Last-Modified": http_date(now),
                "Content-MD5": blob.content_md5,
            }
        )

    @staticmethod
    def discard_uncommitted(blob):
        for p, _ in blob.uncommitted.values():
            try:
                os.unlink(p)
            except OSError:
                pass
        blob.uncommitted = {}

    def put_block(self, blob, query):
        block_id = query.get("blockid")
        if not block_id:
            raise BlobError(400, "MissingRequiredQueryParameter", "blockid is required for comp=block.")
        try:
            raw = base64.b64decode(block_id, validate=True)
        except ValueError:
            raise BlobError(400, "InvalidQueryParameterValue", "blockid is not valid base64.")
        if not raw or len(raw) > 64:
            raise BlobError(400, "InvalidQueryParameterValue", "blockid must decode to 1..64 bytes.")
        with blob.lock:
            lengths = {len(b) for b in blob.uncommitted} | {len(b[0]) for b in blob.committed_blocks}
        if lengths and lengths != {len(block_id)}:
            self.drain_body()
            raise BlobError(400, "InvalidBlobOrBlock", "All block ids of a blob must have the same length.")
        tmp, n, digest = self.receive_body_to_file()
        block_dir = os.path.join(self.state.block_dir, blob.name)
        os.makedirs(block_dir, exist_ok=True)
        final = os.path.join(block_dir, hashlib.sha1(block_id.encode()).hexdigest())
        with blob.lock:
            os.replace(tmp, final)
            blob.uncommitted[block_id] = (final, n)
        self.state.bump("blocks_staged")
        self.put_success({"Content-MD5": base64.b64encode(digest).decode("ascii")})

    def put_block_list(self, blob):
        try:
            body = self.read_small_body(limit=16 << 20)
        except ValueError:
            raise BlobError(413, "RequestBodyTooLarge", "The block list is too large.")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise BlobError(400, "InvalidXmlDocument", "XML specified is not syntactically valid: %s" % e)
        if root.tag != "BlockList":
            raise BlobError(400, "InvalidXmlDocument", "root element must be BlockList")
        wanted = []
        for child in root:
            if child.tag not in ("Latest", "Committed", "Uncommitted"):
                raise BlobError(400, "InvalidXmlNodeValue", "unexpected element %s" % child.tag)
            wanted.append((child.tag, (child.text or "").strip()))

        with blob.lock:
            committed = {bid: (off, ln) for bid, off, ln in blob.committed_blocks}
            plan = []  # (block_id, source_path, offset, length)
            for kind, bid in wanted:
                if kind in ("Latest", "Uncommitted") and bid in blob.uncommitted:
                    p, ln = blob.uncommitted[bid]
                    plan.append((bid, p, 0, ln))
                elif kind in ("Latest", "Committed") and bid in committed:
                    off, ln = committed[bid]
                    plan.append((bid, blob.path, off, ln))
                else:
                    raise BlobError(400, "InvalidBlockList", "The specified block list is invalid (unknown %s block %r)." % (kind, bid))
            tmp = self.state.tmp_path()
            new_blocks = []
            offset = 0
            with open(tmp, "wb") as out:
                for bid, src, off, ln in plan:
                    with open(src, "rb") as f:
                        f.seek(off)
                        remaining = ln
                        while remaining > 0:
                            chunk = f.read(min(remaining, COPY_CHUNK))
                            if not chunk:
                                raise IOError("block data truncated")
                            out.write(chunk)
                            remaining -= len(chunk)
                    new_blocks.append((bid, offset, ln))
                    offset += ln
            final = os.path.join(self.state.blob_dir, blob.name)
            os.replace(tmp, final)
            self.discard_uncommitted(blob)
            now = time.time()
            etag = self.state.new_etag()
            blob.path = final
            blob.size = offset
            blob.committed_blocks = new_blocks
            blob.etag = etag
            blob.last_modified = now
            blob.created = blob.created or now
            blob.content_md5 = None
            blob.content_type = self.headers.get("x-ms-blob-content-type") or "application/octet-stream"
        self.put_success({"ETag": etag, "Last-Modified": http_date(now)})

    def get_block_list(self, blob, query):
        self.drain_body()
        which = (query.get("blocklisttype") or "committed").lower()
        with blob.lock:
            committed = [(b, ln) for b, _, ln in blob.committed_blocks]
            uncommitted = [(b, ln) for b, (_, ln) in blob.uncommitted.items()]
        parts = ['<?xml version="1.0" encoding="utf-8"?><BlockList>']
        if which in ("committed", "all"):
            parts.append("<CommittedBlocks>")
            parts += ["<Block><Name>%s</Name><Size>%d</Size></Block>" % (xml_escape(b), ln) for b, ln in committed]
            parts.append("</CommittedBlocks>")
        if which in ("uncommitted", "all"):
            parts.append("<UncommittedBlocks>")
            parts += ["<Block><Name>%s</Name><Size>%d</Size></Block>" % (xml_escape(b), ln) for b, ln in uncommitted]
            parts.append("</UncommittedBlocks>")
        parts.append("</BlockList>")
        h = self.azure_common_headers()
        h["x-ms-blob-content-length"] = str(blob.size)
        self.send_bytes(200, "".join(parts).encode("utf-8"), "application/xml", h)

    def get_blob(self, blob):
        self.drain_body()
        with blob.lock:
            if blob.path is None:
                raise BlobError(404, "BlobNotFound", "The specified blob does not exist.")
            path, size, etag = blob.path, blob.size, blob.etag
            last_modified, created = blob.last_modified, blob.created
            content_md5, content_type = blob.content_md5, blob.content_type
            # Keep the data readable even if the blob is replaced mid-download.
            f = open(path, "rb")
        try:
            rng = parse_range(self.headers.get("x-ms-range") or self.headers.get("Range"), size)
            h = self.azure_common_headers()
            h.update(
                {
                    "x-ms-blob-type": "BlockBlob",
                    "ETag": etag,
                    "Last-Modified": http_date(last_modified),
                    "x-ms-creation-time": http_date(created),
                    "Accept-Ranges": "bytes",
                    "x-ms-lease-status": "unlocked",
                    "x-ms-lease-state": "available",
                    "x-ms-server-encrypted": "true",
                }
            )
            if rng is None:
                status, start, length = 200, 0, size
                if content_md5:
                    h["Content-MD5"] = content_md5
            else:
                status, start, length = 206, rng[0], rng[1] - rng[0] + 1
                h["Content-Range"] = "bytes %d-%d/%d" % (rng[0], rng[1], size)
                if content_md5:
                    h["x-ms-blob-content-md5"] = content_md5
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            for k, v in h.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "HEAD":
                return
            f.seek(start)
            remaining = length
            sent = 0
            try:
                while remaining > 0:
                    chunk = f.read(min(remaining, COPY_CHUNK))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    remaining -= len(chunk)
            finally:
                self.state.bump("bytes_downloaded", sent)
            if remaining:
                self.close_connection = True
        finally:
            f.close()


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port-file", required=True, help="write the listening port here")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = pick a free one)")
    ap.add_argument("--data-dir", help="blob storage directory (default: temp dir removed at exit)")
    ap.add_argument(
        "--log-headers",
        action="store_true",
        help="also log each request's query and headers (Authorization and sig redacted)",
    )
    args = ap.parse_args()

    if args.data_dir:
        data_dir = os.path.abspath(args.data_dir)
        os.makedirs(data_dir, exist_ok=True)
        remove_data_dir = False
    else:
        data_dir = tempfile.mkdtemp(prefix="zccache-gha-server-")
        remove_data_dir = True

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(data_dir)
    server.log_headers = args.log_headers
    port = server.server_address[1]

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()

    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, args.port_file)
    sys.stderr.write("[gha-server] listening on http://127.0.0.1:%d/ data-dir %s\n" % (port, data_dir))
    sys.stderr.flush()

    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        if remove_data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        sys.stderr.write("[gha-server] stopped\n")
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
