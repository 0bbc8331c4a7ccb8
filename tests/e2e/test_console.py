"""The web console in a real browser: Playwright driving Debian's Chromium against the running suite.

One user walks the pages (sign in, add a provider key, call the API with the openai SDK and watch the chart and
the table change, try a streamed completion), an admin grants credits and revokes the user's key, and the
user's session ends. Every response, console line, URL and page is searched for the keys planted on the way.
Screenshots of each page go to the test's tmp dir; `TOLLGATE_TEST_SCREENSHOTS=docs/screenshots` also writes
the docs' (docs/console.md shows them).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from services.launcher import Suite
from tests.conftest import IN_CI, ROOT
from tests.e2e.support import PLATFORM_KEY, create_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BYOK_CANARY = "sk-console-byok-canary-5d2e8f1a9c7b3064"
README_SHOTS = {"usage", "byok", "admin-users"}

if not os.access(CHROMIUM, os.X_OK):
    if IN_CI:
        pytest.fail(f"CI=true and {CHROMIUM} is missing: `make browser` installs it", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing: `make browser` installs it", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect, sync_playwright  # noqa: E402


@dataclass
class Watch:
    """Everything a browser context saw: response bodies, request URLs, console lines."""

    bodies: list[tuple[str, str, bytes]] = field(default_factory=list)  # (method, url, body)
    urls: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("request", lambda r: self.urls.append(r.url))
        context.on("response", self._response)

    def _response(self, response: Response) -> None:
        try:
            body = response.body()
        except Exception:  # a redirect or a cancelled request has no body to leak
            body = b""
        self.bodies.append((response.request.method, response.url, body))

    def page(self, context: BrowserContext) -> Page:
        page = context.new_page()
        page.on("console", lambda m: self.console.append(_line(m)))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        return page


def _line(message: ConsoleMessage) -> str:
    return f"{message.type}: {message.text}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], None]:
    wanted = os.environ.get("TOLLGATE_TEST_SCREENSHOTS", "")
    readme = ROOT / wanted if wanted else None

    def shoot(page: Page, name: str) -> None:
        page.wait_for_timeout(150)  # let charts paint
        path = tmp_path / f"console-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if readme is not None and name in README_SHOTS:
            readme.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, readme / path.name)

    return shoot


def gateway_url(suite: Suite) -> str:
    return f"http://{suite.host}:{suite.ports.gateway}"


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/console")
    field = page.get_by_label("API key")
    field.fill(key)
    field.press("Enter")
    expect(page.get_by_role("navigation", name="Console pages")).to_be_visible()


def go(page: Page, title: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()
    expect(page.locator("#page > section")).to_have_attribute("data-ready", "true")


def assert_no_leak(page: Page, watch: Watch, canaries: list[str], allowed: Callable[[str, str], bool]) -> None:
    dom = page.content() + page.evaluate("() => document.body.innerText")
    for canary in canaries:
        assert canary not in dom, "a key is in the page"
        assert not any(canary in u for u in watch.urls), "a key is in a URL"
        assert not any(canary in line for line in watch.console), "a key is in the browser console"
        leaked = [u for m, u, b in watch.bodies if canary.encode() in b and not allowed(m, u)]
        assert leaked == [], f"a key is in the responses of {leaked}"
    assert not any("localStorage" in line for line in watch.console)
    stored = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    for canary in canaries:
        assert canary not in stored


def test_a_user_and_an_admin_walk_the_console(
    suite: Suite, keys: dict[str, str], browser: Browser, shots: Callable[[Page, str], None]
) -> None:
    began = time.monotonic()
    url = gateway_url(suite)
    user = f"console-{uuid.uuid4().hex[:8]}"
    user_key = create_key(suite, user)
    canaries = [user_key, keys["admin_key"], BYOK_CANARY, PLATFORM_KEY]
    watch = Watch()

    # --- the user signs in: an HttpOnly, SameSite=Strict cookie, and the key nowhere in the browser ---
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watch.attach(context)
    page = watch.page(context)
    sign_in(page, url, user_key)
    expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()
    (cookie,) = [c for c in context.cookies() if c["name"] == "tollgate_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""
    expect(page.get_by_test_id("balance")).to_contain_text("1,000")
    shots(page, "balance")

    # --- a provider key: validated before sending, then stored and shown masked ---
    go(page, "Provider keys")
    page.get_by_label("Provider", exact=True).select_option("fake")
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_text("Paste the provider's API key.")).to_be_visible()
    page.get_by_label("Provider API key").fill(BYOK_CANARY)
    page.get_by_label("Label (optional)").fill("console test")
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_text("Saved your fake key")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="console test")
    expect(row).to_contain_text("fake")
    expect(page.get_by_label("Provider API key")).to_have_value("")
    row.get_by_role("button", name="Test the fake key").click()
    expect(page.get_by_text("fake: The provider accepted the key")).to_be_visible()
    shots(page, "byok")

    # --- usage: empty, then a request with the openai SDK shows in the chart and the table ---
    go(page, "Usage")
    recent = page.get_by_test_id("recent").get_by_role("row")
    day_chart = page.locator('[data-chart="day"]')
    before_rows = recent.count()  # the key test's call (and its failed first attempt), if any
    before_chart = day_chart.get_attribute("aria-label") or ""
    with openai.OpenAI(base_url=suite.base_url, api_key=user_key, max_retries=0, timeout=30) as sdk:
        for _ in range(2):
            sdk.chat.completions.create(model="echo-paid", messages=[{"role": "user", "content": "hello console"}])
        sdk.chat.completions.create(model="echo-free", messages=[{"role": "user", "content": "hello free"}])
    page.get_by_role("button", name="Show").click()
    expect(recent).to_have_count(max(before_rows, 1) + 3)  # a header row, and three more requests
    expect(recent.filter(has_text="echo-paid").first).to_contain_text("own key")
    expect(recent.filter(has_text="echo-free").first).to_contain_text("fake-free")
    expect(day_chart).to_have_attribute("data-points", "1")
    expect(day_chart).not_to_have_attribute("aria-label", before_chart)
    expect(page.locator('[data-chart="day"] canvas')).to_have_count(1)
    expect(page.locator('[data-chart="model"]')).to_have_attribute("aria-label", re.compile(r"echo-free 1 requests"))
    expect(page.locator('[data-chart="provider"]')).to_have_attribute("aria-label", re.compile(r"fake-free 1 requests"))
    requests = int(page.get_by_test_id("usage-totals").locator(".value").first.inner_text().replace(",", ""))
    assert requests == max(before_rows - 1, 0) + 3
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    csv = Path(download.value.path()).read_text()
    assert csv.count("\n") == requests + 1 and "echo-free" in csv and csv.startswith("created_at,request_id,model")
    shots(page, "usage")

    # --- the other user pages ---
    go(page, "API keys")
    expect(page.get_by_role("row").filter(has_text="this session")).to_have_count(1)
    shots(page, "keys")
    go(page, "Models")
    expect(page.get_by_role("row").filter(has_text="echo-paid")).to_contain_text("BALANCED")
    shots(page, "models")
    go(page, "Try it")
    page.get_by_label("Model").select_option("echo-paid")
    page.get_by_label("Message").fill("streamed through the console")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("answer")).to_contain_text("streamed through the console")
    expect(page.get_by_text("Done: served by echo-paid")).to_be_visible()
    shots(page, "try")
    assert not [n for n in page.get_by_role("navigation").get_by_role("link").all_inner_texts() if n == "Users"]

    # --- an admin, in another browser, grants credits and revokes the user's key ---
    admin_context = browser.new_context(viewport={"width": 1280, "height": 900})
    watch.attach(admin_context)
    admin = watch.page(admin_context)
    sign_in(admin, url, keys["admin_key"])
    go(admin, "Users")
    admin.get_by_label("User", exact=True).fill(user)
    admin.get_by_label("Amount (credits)").fill("-5")
    admin.get_by_role("button", name="Grant credits", exact=True).click()
    expect(admin.get_by_text("Enter a positive amount")).to_be_visible()
    admin.get_by_label("Amount (credits)").fill("25.5")
    admin.get_by_label("Reason").fill("console e2e top-up")
    admin.get_by_role("button", name="Grant credits", exact=True).click()
    expect(admin.get_by_text(f"Granted 25.50 credits to {user}")).to_be_visible()
    expect(admin.get_by_role("row").filter(has_text=user)).to_contain_text("1,025.5")
    shots(admin, "admin-users")

    go(admin, "All API keys")
    admin.get_by_label("User", exact=True).fill(user)
    admin.get_by_label("Name").fill("made in the console")
    admin.get_by_role("button", name="Create key").click()
    new_key = admin.get_by_test_id("new-key").inner_text()
    assert new_key.startswith("tg-")
    shots(admin, "admin-keys-created")
    admin.get_by_role("button", name="I have stored it").click()
    assert new_key not in admin.content()
    canaries.append(new_key)
    admin.get_by_label("Show keys of").fill(user)
    rows = admin.get_by_role("row").filter(has_text=user)
    expect(rows).to_have_count(2)
    original = rows.filter(has_text=user_key[:7])
    original.get_by_role("button", name="Revoke").click()
    original.get_by_role("button", name="Confirm revoke").click()
    expect(admin.get_by_text("Its sessions end within seconds")).to_be_visible()
    shots(admin, "admin-keys")

    go(admin, "Provider health")
    admin.get_by_role("button", name="Check all now").click()
    expect(admin.get_by_text(re.compile(r"Checked \d+ endpoint"))).to_be_visible()
    expect(admin.get_by_role("row").filter(has_text="dead").first).to_contain_text("down")
    shots(admin, "admin-health")
    go(admin, "Vault and audit")
    expect(admin.get_by_role("row").filter(has_text="api_key.revoke").first).to_be_visible()
    shots(admin, "admin-vault")

    # --- the revoked key's session ends: the user's next page goes back to sign-in ---
    deadline = time.monotonic() + 15
    while not page.get_by_role("heading", name="Sign in").is_visible():
        assert time.monotonic() < deadline, "the revoked key's session did not end"
        page.wait_for_timeout(500)
        go_to = "Balance" if "usage" in page.url else "Usage"
        link = page.get_by_role("navigation").get_by_role("link", name=go_to, exact=True)
        if link.is_visible():
            link.click()
    expect(page.get_by_role("alert")).to_contain_text("Your session has ended")
    shots(page, "session-ended")

    # --- and nothing the browsers saw holds a key, but the one-time creation response ---
    def created_once(method: str, u: str) -> bool:
        return method == "POST" and u.endswith("/v1/admin/keys")

    for seen in (page, admin):
        assert_no_leak(seen, watch, canaries, created_once)
    assert not [line for line in watch.console if "Content Security Policy" in line or "pageerror" in line]
    assert suite.log_dir is not None
    logs = "".join(p.read_text(errors="replace") for p in suite.log_dir.glob("*.log"))
    assert logs, "the services wrote no log to search"
    assert not [c for c in canaries if c in logs], "a key is in a service log"
    context.close()
    admin_context.close()
    print(f"\nconsole walk-through: {time.monotonic() - began:.1f} s")


def test_sign_in_errors_are_plain_and_an_ended_session_returns_to_sign_in(
    suite: Suite, keys: dict[str, str], browser: Browser, shots: Callable[[Page, str], None]
) -> None:
    url = gateway_url(suite)
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = context.new_page()
    page.goto(f"{url}/console")
    key = page.get_by_label("API key")
    error = page.locator("#signin-error")

    key.press("Enter")
    expect(error).to_have_text("Enter your API key.")
    key.fill("sk-not-ours")
    key.press("Enter")
    expect(error).to_contain_text("start with tg-")
    key.fill("tg-wrong-key-0123456789")
    key.press("Enter")
    expect(error).to_have_text("That key was not accepted: it is wrong, revoked or expired")
    assert "{" not in error.inner_text() and "Traceback" not in page.content()
    expect(key).to_have_value("")
    shots(page, "signin-error-phone")

    # Keyboard only: the key field has the focus on arrival, Enter signs in, links open with Enter.
    user_key = create_key(suite, f"console-kbd-{uuid.uuid4().hex[:6]}")
    page.goto(f"{url}/console")
    expect(key).to_be_focused()
    page.keyboard.type(user_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Balance")).to_be_visible()
    expect(page.locator("#page > section")).to_have_attribute("data-ready", "true")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.get_by_role("navigation").get_by_role("link", name="Usage").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Usage")).to_be_visible()
    expect(page.locator("#page > section")).to_have_attribute("data-ready", "true")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.get_by_role("button", name="Dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    shots(page, "usage-phone-dark")

    # The session is ended elsewhere (as expiry would): the next page asks to sign in again.
    session_id = next(c["value"] for c in context.cookies() if c["name"] == "tollgate_session")
    with httpx.Client(base_url=url, cookies={"tollgate_session": session_id}) as other:
        csrf = other.get("/console/session").json()["csrf_token"]
        assert other.delete("/console/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    go_link = page.get_by_role("navigation").get_by_role("link", name="Models", exact=True)
    go_link.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("Your session has ended")
    context.close()


def test_cross_site_requests_and_old_sessions_are_refused(suite: Suite, browser: Browser) -> None:
    url = gateway_url(suite)
    user_key = create_key(suite, f"console-csrf-{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=url, timeout=30) as http:
        signed = http.post("/console/session", json={"key": user_key})
        assert signed.status_code == 201, signed.text
        assert user_key not in signed.text
        set_cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        session_id = signed.cookies["tollgate_session"]
        csrf = signed.json()["csrf_token"]
        cookie = {"cookie": f"tollgate_session={session_id}"}
        chat = {"model": "echo-free", "messages": [{"role": "user", "content": "hi"}]}

        # The cookie alone, on any method and on the OpenAI routes too, is refused.
        for method, path, body in (
            ("GET", "/v1/credits", None),
            ("GET", "/v1/usage", None),
            ("POST", "/v1/chat/completions", chat),
            ("POST", "/v1/byok/keys", {"provider": "fake", "api_key": "sk-x" * 4}),
            ("DELETE", "/console/session", None),
        ):
            refused = http.request(method, path, json=body, headers=cookie)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["error"]["code"] == "permission_denied"
        # A request another site makes with the token (were it ever known) is refused as well.
        cross = {**cookie, "X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"}
        assert http.post("/v1/chat/completions", json=chat, headers=cross).status_code == 403
        assert (
            http.post("/console/session", json={"key": user_key}, headers={"Origin": "https://evil.test"}).status_code
            == 403
        )

        # With the token the same requests work, the OpenAI route included.
        good = {**cookie, "X-CSRF-Token": csrf}
        assert http.get("/v1/credits", headers=good).status_code == 200
        assert http.post("/v1/chat/completions", json=chat, headers=good).status_code == 200

        # After sign-out the id is worth nothing, with or without its token.
        assert http.delete("/console/session", headers=good).status_code == 200
        assert http.get("/v1/credits", headers=good).status_code == 401
        assert http.get("/console/session", headers=cookie).status_code == 401

    # In a browser: a page on another site posting a form and fetching with credentials gets nothing.
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/console")
    page.get_by_label("API key").fill(create_key(suite, f"console-victim-{uuid.uuid4().hex[:6]}"))
    page.get_by_label("API key").press("Enter")
    expect(page.locator("#page > section")).to_have_attribute("data-ready", "true")
    attacker = "http://attacker.test/"
    hits: list[tuple[str, int]] = []
    page.on("response", lambda r: hits.append((r.url, r.status)) if r.url.startswith(url) else None)
    page.route(
        attacker,
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"""<html><body>
              <form id="f" method="POST" action="{url}/v1/admin/credits" enctype="text/plain">
                <input name='{{"user_id":"x","amount":"1","x":"' value='"}}'></form>
              <script>
                fetch("{url}/v1/credits", {{credentials: "include", mode: "no-cors"}})
                  .finally(() => document.getElementById("f").submit());
              </script></body></html>""",
        ),
    )
    page.goto(attacker)
    page.wait_for_load_state("networkidle")
    statuses = [status for u, status in hits if "/v1/" in u]
    assert any(u.endswith("/v1/admin/credits") for u, _ in hits), hits
    assert statuses and all(status in (401, 403) for status in statuses), hits
    context.close()
