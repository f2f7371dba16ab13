"""The speech playground (`GET /`) in headless Chromium, driven over the DevTools protocol.

Run by scripts/e2e.sh against a real `higgs-serve serve --demo --api-key ...` process
(HIGGS_E2E_URL, HIGGS_E2E_KEY). In order: the page loads and its first API call's 401 opens the
key dialog (a wrong key is refused and asked again, the right one loads the voice list); an
uploaded recording appears in the voice list, selected; a request streams (bytes counted as they
arrive, first-audio time reported), the <audio> element gets the WAV of the same samples and
plays, the download link serves it; the uploaded voice is deleted again. No page exception is
allowed. A screenshot of the final page and Chromium's log are kept in target/test-artefacts/
(HIGGS_WEB_ARTEFACTS), also when a step fails.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import websocket  # websocket-client

URL = os.environ.get("HIGGS_E2E_URL", "http://127.0.0.1:18765").rstrip("/")
KEY = os.environ.get("HIGGS_E2E_KEY", "e2e-key")
ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("HIGGS_WEB_ARTEFACTS", ROOT / "target" / "test-artefacts"))
VOICE_WAV = Path(
    os.environ.get("HIGGS_WEB_VOICE_WAV")
    or Path(os.environ.get("HIGGS_FIXTURES", ROOT.parent / "shared" / "fixtures")) / ".." / "voices" / "en_man.wav"
)
UPLOADED = f"web_test_{os.getpid()}"


def find_chromium():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium not found: run scripts/install-test-deps.sh (installs the Debian package `chromium`)")


class Cdp:
    """A minimal DevTools protocol client on one page target."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.exceptions = []
        self.console_errors = []

    def _on_event(self, msg):
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.exceptions.append((d.get("exception") or {}).get("description") or d.get("text"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Page.javascriptDialogOpening":
            # confirm() before deleting a voice: accept (answered without waiting for the reply).
            self.next_id += 1
            self.ws.send(json.dumps({"id": self.next_id, "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}))

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self._on_event(msg)
            elif msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError(f"DevTools {method} failed: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise AssertionError(f"page script `{expr[:80]}` threw: {(d.get('exception') or {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expr, what, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; page status: {self.status()}")

    def status(self):
        return self.eval(
            """JSON.stringify({out: document.getElementById('output').dataset,
                progress: document.getElementById('progress').textContent,
                error: document.getElementById('error').textContent,
                voiceDesc: document.getElementById('voice-desc').textContent,
                upload: document.getElementById('upload-status').textContent,
                keyDialogOpen: document.getElementById('key-dialog').open,
                server: document.getElementById('server-status').textContent})"""
        )

    def click(self, element_id):
        self.eval(f"document.getElementById({json.dumps(element_id)}).click(), true")

    def type_into(self, element_id, text):
        """Focuses the field, clears it, and types `text` as keyboard input (input events fire)."""
        self.eval(f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); e.focus(); e.value = ''; return true; }})()")
        self.call("Input.insertText", text=text)

    def voices(self):
        return self.eval("[...document.getElementById('voice').options].map(o => o.value)")


@pytest.fixture(scope="module")
def page():
    chromium = find_chromium()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="higgs-web-chromium-")
    log = open(ARTEFACTS / "web-page-chromium.log", "wb")
    proc = subprocess.Popen(
        [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--mute-audio",
            "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
            "--remote-allow-origins=*", f"--user-data-dir={profile}", "--window-size=1280,1000",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    cdp = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode} at start; see {ARTEFACTS / 'web-page-chromium.log'}")
            if time.monotonic() > deadline:
                pytest.fail("chromium did not open its DevTools port within 30 s")
            time.sleep(0.05)
        port = int(port_file.read_text().split("\n")[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        target = next(t for t in targets if t.get("type") == "page")
        cdp = Cdp(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "DOM"):
            cdp.call(f"{domain}.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
        yield cdp
    finally:
        if cdp is not None:
            try:
                shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                (ARTEFACTS / "web-page.png").write_bytes(base64.b64decode(shot["data"]))
                print(f"\nscreenshot: {ARTEFACTS / 'web-page.png'}")
            except Exception as e:  # the screenshot must not hide the test's own failure
                print(f"\nno screenshot: {e}")
            cdp.ws.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_page_loads_and_asks_for_the_api_key(page):
    page.call("Page.navigate", url=f"{URL}/")
    page.wait("document.readyState === 'complete' && !!document.getElementById('voice')", "the page to load")
    assert "higgs-serve" in page.eval("document.title")
    page.wait("document.getElementById('server-status').dataset.state === 'ok'", "the server status to say ready")
    # The voice list is the first API call: its 401 opens the key dialog.
    page.wait("document.getElementById('key-dialog').open", "the API key dialog after a 401")
    page.type_into("key-input", "not-the-key")
    page.click("key-save")
    page.wait(
        "document.getElementById('key-dialog').open && !document.getElementById('key-error').hidden",
        "the dialog to ask again after a wrong key",
    )
    assert "refused" in page.eval("document.getElementById('key-error').textContent")
    page.type_into("key-input", KEY)
    page.click("key-save")
    page.wait("!document.getElementById('key-dialog').open", "the dialog to close")
    page.wait("document.getElementById('voice').options.length > 1", "the voice list to load with the key")
    voices = page.voices()
    assert "" in voices and len(voices) >= 2, voices
    assert page.eval("document.getElementById('key-button').textContent").startswith("API key ✓")


def test_an_uploaded_voice_appears_in_the_list(page):
    assert VOICE_WAV.exists(), f"no recording to upload at {VOICE_WAV}"
    assert UPLOADED not in page.voices()
    page.eval("document.getElementById('upload-panel').open = true")
    page.type_into("voice-name", UPLOADED)
    page.type_into("voice-transcript", "This is a voice uploaded by the browser test.")
    doc = page.call("DOM.getDocument", depth=0)
    node = page.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#voice-file")
    page.call("DOM.setFileInputFiles", files=[str(VOICE_WAV.resolve())], nodeId=node["nodeId"])
    page.click("upload")
    page.wait(
        f"[...document.getElementById('voice').options].some(o => o.value === {json.dumps(UPLOADED)})",
        "the uploaded voice in the voice list",
    )
    assert page.eval("document.getElementById('voice').value") == UPLOADED, "the new voice is selected"
    assert "added" in page.eval("document.getElementById('upload-status').textContent")


def test_a_request_streams_plays_and_downloads(page):
    page.type_into("input-text", "Hello from the browser test of the speech playground.")
    page.type_into("scene", "Audio is recorded from a quiet room.")
    page.eval("document.getElementById('advanced').open = true")
    page.type_into("max-new-tokens", "32")
    page.type_into("seed", "7")
    page.click("generate")
    page.wait("document.getElementById('output').dataset.state !== 'idle'", "the request to start")
    state = page.wait(
        "(s => s === 'streaming' ? '' : s)(document.getElementById('output').dataset.state)",
        "the streamed request to finish", timeout=60,
    )
    assert state == "done", f"request ended `{state}`: {page.status()}"
    out = json.loads(page.status())["out"]
    received = int(out["bytes"])
    assert received > 0, "no audio bytes received"
    assert "firstAudioMs" in out, "no first-audio time reported"
    assert "received" in page.eval("document.getElementById('progress').textContent")
    # The <audio> element has the WAV of the streamed samples.
    page.wait("document.getElementById('player').readyState >= 1", "the audio element to load the result")
    duration = page.eval("document.getElementById('player').duration")
    assert abs(duration - received / 2 / 24000) < 0.05, (duration, received)
    page.eval("document.getElementById('player').play().then(() => true)")
    page.wait("document.getElementById('player').currentTime > 0", "the audio element to play", timeout=10)
    page.eval("document.getElementById('player').pause(), true")
    # The download link serves the same audio as a WAV file.
    assert not page.eval("document.getElementById('download').hidden")
    head = page.eval(
        """fetch(document.getElementById('download').href).then(r => r.arrayBuffer()).then(b =>
             ({size: b.byteLength, magic: String.fromCharCode(...new Uint8Array(b, 0, 4))}))"""
    )
    assert head == {"size": received + 44, "magic": "RIFF"}, head
    assert page.eval("document.getElementById('download').download").endswith(".wav")


def test_the_uploaded_voice_can_be_deleted_and_no_script_failed(page):
    page.eval(f"(() => {{ const s = document.getElementById('voice'); s.value = {json.dumps(UPLOADED)}; s.dispatchEvent(new Event('change')); return true; }})()")
    page.click("delete-voice")
    page.wait(
        f"![...document.getElementById('voice').options].some(o => o.value === {json.dumps(UPLOADED)})",
        "the deleted voice to leave the list",
    )
    page.eval("window.scrollTo(0, 0), true")
    assert not page.exceptions, f"uncaught page exceptions: {page.exceptions}"
    assert not page.console_errors, f"console errors: {page.console_errors}"
