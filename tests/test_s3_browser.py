"""Browser uploads in a real headless Chromium: POST forms served from a bucket, and
cross-origin fetch() with CORS preflights, against a real kobako server.

The browser decides here, not the test: Chromium builds the multipart form from the
DOM, follows (or not) the redirect, sends the preflight and refuses a response that
CORS does not allow, exactly as it would for a user.
"""

from __future__ import annotations

import hashlib
import html
import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from browser_helpers import CHROMIUM, CHROMIUM_ARGS, have_chromium
from conftest import Server, free_port


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = have_chromium()
    if why:
        pytest.skip(why)
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright (the `test` extra) is not installed")
    driver = sync_api.sync_playwright().start()
    try:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        driver.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def app_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A web app on another origin (another port): a plain static file server."""
    root = tmp_path_factory.mktemp("app")
    (root / "app.html").write_text("<!doctype html><title>app</title><h1>app</h1>")
    port = free_port()

    def handler(*args: Any) -> http.server.BaseHTTPRequestHandler:
        return _QuietHandler(*args, directory=str(root))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def v4_client(server: Server) -> Any:
    return server.client("s3", config=BotoConfig(signature_version="s3v4",
                                                 retries={"max_attempts": 1}))


_names = iter(range(1_000_000))


def new_bucket(s3: Any, stem: str) -> str:
    name = f"{stem}-{os.getpid()}-{next(_names)}"
    s3.create_bucket(Bucket=name)
    return name


def form_page(post: dict[str, Any], title: str) -> bytes:
    """An HTML page with a real multipart form carrying a presigned POST's fields."""
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in post["fields"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head><body>
<form action="{html.escape(post['url'])}" method="post" enctype="multipart/form-data">
{hidden}
<input type="file" name="file">
<button type="submit">Upload</button>
</form></body></html>""".encode()


def put_page(s3: Any, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/html; charset=utf-8",
                  ACL="public-read")


def submit(page: Any, name: str, content: bytes, mime: str = "text/plain") -> Any:
    """Fill the file input and submit the form; the response Chromium navigated to."""
    page.set_input_files("input[type=file]",
                         files=[{"name": name, "mimeType": mime, "buffer": content}])
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    return navigation.value


def test_form_served_from_a_bucket_uploads_and_redirects(server: Server, browser: Any) -> None:
    s3 = v4_client(server)
    bucket = new_bucket(s3, "browser-forms")
    done = f"{server.url}/{bucket}/done.html"
    put_page(s3, bucket, "done.html", b'<!doctype html><h1 id="done">Uploaded</h1>')
    post = s3.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"success_action_redirect": done, "Content-Type": "text/plain",
                "x-amz-meta-source": "chromium"},
        Conditions=[["starts-with", "$key", "uploads/"], {"success_action_redirect": done},
                    ["starts-with", "$Content-Type", "text/"], {"x-amz-meta-source": "chromium"},
                    ["content-length-range", 1, 64]],
        ExpiresIn=300)
    put_page(s3, bucket, "form.html", form_page(post, "upload"))
    page = browser.new_page()
    try:
        assert page.goto(f"{server.url}/{bucket}/form.html").status == 200
        content = b"hello from chromium"
        landed = submit(page, "hello.txt", content)
        # Chromium followed kobako's 303 to the success_action_redirect page.
        assert landed.status == 200 and page.url.startswith(done + "?")
        assert landed.request.redirected_from.method == "POST"
        assert landed.request.redirected_from.response().status == 303
        assert page.inner_text("#done") == "Uploaded"
        query = parse_qs(urlsplit(page.url).query)
        assert query["bucket"] == [bucket] and query["key"] == ["uploads/hello.txt"]
        assert query["etag"] == [f'"{hashlib.md5(content).hexdigest()}"']
        got = s3.get_object(Bucket=bucket, Key="uploads/hello.txt")
        assert got["Body"].read() == content
        assert got["ContentType"] == "text/plain" and got["Metadata"] == {"source": "chromium"}

        # The same form with a file over content-length-range: refused, nothing stored.
        assert page.goto(f"{server.url}/{bucket}/form.html").status == 200
        refused = submit(page, "big.txt", b"x" * 65)
        assert refused.status == 400 and b"EntityTooLarge" in refused.body()
        assert urlsplit(page.url).path == f"/{bucket}"
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key="uploads/big.txt")
    finally:
        page.close()


def test_form_with_success_action_status(server: Server, browser: Any) -> None:
    s3 = server.client("s3")  # boto3's default presigned POST: Signature Version 2
    bucket = new_bucket(s3, "browser-status")
    post = s3.generate_presigned_post(
        bucket, "report-${filename}", Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}, ["starts-with", "$key", "report-"]],
        ExpiresIn=300)
    assert "signature" in post["fields"]
    put_page(s3, bucket, "status.html", form_page(post, "status"))
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/{bucket}/status.html")
        created = submit(page, "a.csv", b"a,b\n1,2\n", "text/csv")
        assert created.status == 201
        body = created.body().decode()
        assert "<Key>report-a.csv</Key>" in body and f"<Bucket>{bucket}</Bucket>" in body
        got = s3.get_object(Bucket=bucket, Key="report-a.csv")
        assert got["Body"].read() == b"a,b\n1,2\n" and got["ContentType"] == "text/csv"
        # A tampered field (key outside the policy) is refused by kobako, in the browser.
        page.goto(f"{server.url}/{bucket}/status.html")
        page.eval_on_selector("input[name=key]", "field => { field.value = 'elsewhere' }")
        denied = submit(page, "b.csv", b"b")
        assert denied.status == 403 and b"Invalid according to Policy" in denied.body()
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [
            "report-a.csv", "status.html"]
    finally:
        page.close()


FETCH = """async ([url, init]) => {
    try {
        const response = await fetch(url, init);
        return {ok: true, status: response.status, text: await response.text(),
                etag: response.headers.get("ETag"),
                type: response.headers.get("Content-Type")};
    } catch (error) {
        return {ok: false, error: String(error)};
    }
}"""

POST_FORM = """async ([url, fields, content]) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("file", new Blob([content], {type: "text/plain"}), "w.txt");
    try {
        const response = await fetch(url, {method: "POST", body: form});
        return {ok: true, status: response.status, etag: response.headers.get("ETag")};
    } catch (error) {
        return {ok: false, error: String(error)};
    }
}"""


def log_once(server: Server, ready: Callable[[str], bool]) -> str:
    """The server's log once `ready` holds for it, or after 10 s: a request's line is
    written after its answer went out, so the browser may be faster than the log."""
    deadline = time.monotonic() + 10
    while not ready(text := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


def preflights(server: Server, bucket: str, at_least: int = 0) -> list[str]:
    """The server's log lines of preflights to `bucket`, once there are `at_least`."""
    def lines(log: str) -> list[str]:
        return [line for line in log.splitlines()
                if f"OPTIONS /{bucket}/" in line and "Preflight" in line]
    return lines(log_once(server, lambda log: len(lines(log)) >= at_least))


def logged(server: Server, text: str) -> bool:
    return text in log_once(server, lambda log: text in log)


def test_cross_origin_fetch_follows_cors_rules(server: Server, browser: Any,
                                               app_origin: str) -> None:
    s3 = v4_client(server)
    allowed = new_bucket(s3, "browser-cors")
    other = new_bucket(s3, "browser-nocors")
    s3.put_bucket_cors(Bucket=allowed, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": [app_origin], "AllowedMethods": ["GET", "PUT", "POST"],
         "AllowedHeaders": ["content-type", "x-trace-id"], "ExposeHeaders": ["ETag"],
         "MaxAgeSeconds": 0}]})
    s3.put_bucket_cors(Bucket=other, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://elsewhere.example"], "AllowedMethods": ["GET", "PUT"],
         "AllowedHeaders": ["*"]}]})

    def presigned(method: str, bucket: str, key: str) -> str:
        return str(s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key},
                                             ExpiresIn=300))

    page = browser.new_page()
    try:
        page.goto(f"{app_origin}/app.html")
        assert page.evaluate("location.origin") == app_origin
        body = '{"from": "the browser"}'
        put = page.evaluate(FETCH, [presigned("put_object", allowed, "note.json"), {
            "method": "PUT", "body": body, "headers": {"Content-Type": "application/json"}}])
        assert put["ok"] and put["status"] == 200, put
        assert put["etag"] == f'"{hashlib.md5(body.encode()).hexdigest()}"'  # exposed
        stored = s3.get_object(Bucket=allowed, Key="note.json")
        assert stored["Body"].read() == body.encode()
        assert stored["ContentType"] == "application/json"
        assert preflights(server, allowed, 1), "the PUT went out without kobako's preflight"

        get = page.evaluate(FETCH, [presigned("get_object", allowed, "note.json"), {
            "headers": {"x-trace-id": "t-1"}}])
        assert get["ok"] and get["status"] == 200 and get["text"] == body, get
        assert get["type"] == "application/json"

        # A presigned POST sent by fetch() with FormData, as upload widgets do.
        post = s3.generate_presigned_post(allowed, "widget/${filename}", ExpiresIn=300)
        posted = page.evaluate(POST_FORM, [post["url"], post["fields"], "widget bytes"])
        assert posted["ok"] and posted["status"] == 204, posted
        assert posted["etag"] == f'"{hashlib.md5(b"widget bytes").hexdigest()}"'
        assert s3.get_object(Bucket=allowed, Key="widget/w.txt")["Body"].read() == \
            b"widget bytes"

        # A header the rule does not allow: the preflight is refused, fetch rejects.
        refused = page.evaluate(FETCH, [presigned("get_object", allowed, "note.json"), {
            "headers": {"x-not-allowed": "1"}}])
        assert not refused["ok"] and "Failed to fetch" in refused["error"], refused

        # A bucket whose rules name another origin: the PUT never happens...
        before = len(preflights(server, other))
        blocked = page.evaluate(FETCH, [presigned("put_object", other, "note.json"), {
            "method": "PUT", "body": body, "headers": {"Content-Type": "application/json"}}])
        assert not blocked["ok"] and "Failed to fetch" in blocked["error"], blocked
        assert len(preflights(server, other, before + 1)) == before + 1
        with pytest.raises(ClientError):
            s3.head_object(Bucket=other, Key="note.json")
        # ...and a simple GET is sent, answered, but its response kept from the page.
        s3.put_object(Bucket=other, Key="secret.txt", Body=b"not for this origin")
        hidden = page.evaluate(FETCH, [presigned("get_object", other, "secret.txt"), {}])
        assert not hidden["ok"] and "Failed to fetch" in hidden["error"], hidden
        assert logged(server, f"GET /{other}/secret.txt")
    finally:
        page.close()

