"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

The example platform is served on a free localhost port from a background thread, as in
production: in-process jobs, CSRF on, SQLite in a temporary directory, mail to a real local SMTP
server (aiosmtpd). Every page is checked with axe-core (``make test`` installs it from the npm
registry into ``tests/.node``) at 1280 and 390 px wide, and a serious or critical violation
fails the test; screenshots of both widths go to ``tests/screenshots/`` (git-ignored).

Skipped with a reason when ``/usr/bin/chromium``, Playwright or axe-core is missing, unless
``CSVDIRECTORY_REQUIRE_BROWSER=1`` (then that is a failure). ``playwright install`` is never
needed: the system Chromium is used. One browser serves the whole module (2 cores are shared).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from flask_csvdirectory.extension import get_state

from .conftest import TEST_ENCRYPTION_KEY, Inbox, build_app
from .factories import employee, employees_csv, users_csv

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parent / ".node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).parent / "screenshots"
PREFIX = "/settings/integrations/csv-import"
TIMEOUT_MS = 15_000
WIDTHS = (1280, 390)
#: WCAG 2.0, 2.1 and 2.2, levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

pytestmark = pytest.mark.browser


def _require_browser() -> Any:
    """The Playwright sync API, or skip (fail when CSVDIRECTORY_REQUIRE_BROWSER=1)."""
    required = os.environ.get("CSVDIRECTORY_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    elif not AXE.exists():
        problem = f"{AXE} is missing (make axe)"
    else:
        try:
            import playwright.sync_api as sync_api
        except ImportError:
            problem = "Playwright is not installed (pip install playwright)"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_api


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    sync_api = _require_browser()
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def expect() -> Any:
    return _require_browser().expect


@pytest.fixture
def live_app(tmp_path: Path, smtp_server: tuple[Inbox, int]) -> Iterator[tuple[Flask, str]]:
    """The example platform on a real HTTP server in a thread: (app, base URL)."""
    _, smtp_port = smtp_server
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    base = f"http://127.0.0.1:{server.server_port}"
    app = build_app(
        "sqlite",
        tmp_path,
        WTF_CSRF_ENABLED=True,
        TESTING=False,
        CSVDIRECTORY_ENCRYPTION_KEYS=[TEST_ENCRYPTION_KEY],
        CSVDIRECTORY_JOBS_MODE="inprocess",
        CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(seconds=0),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_port,
        MAIL_DEFAULT_SENDER="directory@example.com",
        EXAMPLE_EXTERNAL_URL=base,
    )
    server.app = app
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield app, base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        get_state(app).runner.wait_idle()
        from example_app.models import db

        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- helpers ---------------------------------------------------------------------------------


def people() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Users.csv and Employees.csv rows keeping the seeded admin and manager as they are."""
    users = [
        {"email": "admin@example.com", "name": "Ada Admin", "role": "Admin", "teams": "*"},
        {"email": "manager@example.com", "name": "Max Manager", "role": "Manager",
         "teams": "Headquarters"},
    ]
    employees = [
        {"email": "admin@example.com", "employee_id": "", "first_name": "Ada",
         "last_name": "Admin", "team": "Headquarters", "title": "IT administrator"},
        {"email": "manager@example.com", "employee_id": "", "first_name": "Max",
         "last_name": "Manager", "team": "Headquarters", "title": "Team lead"},
    ]
    return users, employees


def csv_file(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "mimeType": "text/csv", "buffer": data}


def choose_files(page: Any, users: bytes, employees: bytes) -> None:
    page.get_by_label("Users file (Users.csv)").set_input_files(csv_file("Users.csv", users))
    page.get_by_label("Employees file (Employees.csv)").set_input_files(
        csv_file("Employees.csv", employees)
    )


def sign_in(page: Any, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.2 A/AA violations of the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return list(
        page.evaluate(
            """async (tags) => {
                const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
                return result.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
                }));
            }""",
            AXE_TAGS,
        )
    )


def audit(page: Any, name: str) -> None:
    """At 1280 and 390 px: axe finds no serious or critical violation, nothing but a table's
    own scroll box is wider than the screen, and a screenshot is saved."""
    SCREENSHOTS.mkdir(exist_ok=True)
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        serious = [v for v in axe_violations(page) if v["impact"] in ("serious", "critical")]
        problems += [f"{name} @{width}px: {v['id']} ({v['impact']}): {v['help']} {v['nodes']}"
                     for v in serious]
        overflow = page.evaluate("document.documentElement.scrollWidth")
        if overflow > width:
            wide = page.evaluate(
                """(width) => Array.from(document.querySelectorAll("body *"))
                    .filter((e) => e.getBoundingClientRect().right > width + 1)
                    .slice(0, 5).map((e) => e.tagName + "." + e.className + "#" + e.id)""",
                width,
            )
            problems.append(f"{name} @{width}px: the page is {overflow}px wide: {wide}")
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, "\n".join(problems)


def hold_worker(app: Flask) -> threading.Event:
    """Occupy the in-process worker until the returned event is set."""
    gate = threading.Event()
    get_state(app).runner.enqueue(lambda _run_id: gate.wait(20), "gate", "gate")
    return gate


# -- the walk --------------------------------------------------------------------------------


def test_an_admin_checks_uploads_reviews_approves_rejects_and_is_notified(
    live_app: tuple[Flask, str], page: Any, expect: Any, smtp_server: tuple[Inbox, int]
) -> None:
    app, base = live_app
    inbox, _ = smtp_server
    users, employees = people()
    sign_in(page, base, "admin@example.com", "admin")

    # Settings: reached from the host's settings page; enable, threshold 5
    page.goto(f"{base}/settings/")
    page.get_by_role("link", name="CSV Import").click()
    expect(page.get_by_role("heading", name="CSV Import", exact=True)).to_be_visible()
    page.get_by_label("Enable the CSV import integration").check()
    page.get_by_label("Approval threshold (changes)").fill("-2")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#approval_threshold-error")).to_contain_text("whole number")
    page.get_by_label("Enable the CSV import integration").check()
    page.get_by_label("Approval threshold (changes)").fill("5")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("CSV import settings saved.")).to_be_visible()

    # A token: post-redirect-get, shown once at the top, in view, with a copy button
    page.get_by_label("New token name").fill("Nightly HR export")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#csvd-new-token")
    expect(token).to_have_value(re.compile(r"^csvd_[0-9a-f]{8}_"))
    expect(token).to_be_in_viewport()
    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    page.get_by_role("button", name="Copy token").click()
    expect(page.locator("[data-csvd-copy-status]")).not_to_be_empty()
    audit(page, "01-settings-new-token")
    page.reload()
    expect(page.locator("#csvd-new-token")).to_have_count(0)
    expect(page.locator("#csvd-tokens tbody tr")).to_have_count(1)
    expect(page.locator("#csvd-tokens")).to_contain_text("Never")

    page.get_by_role("link", name="Templates", exact=True).click()
    audit(page, "02-templates")

    # Pre-flight check: every error of both files at once, nothing started
    page.get_by_role("link", name="Upload", exact=True).click()
    check = page.get_by_role("button", name="Check files")
    start = page.get_by_role("button", name="Start sync")
    expect(check).to_be_disabled()
    expect(start).to_be_disabled()
    scoped = [*users, {"email": "person2@example.com", "name": "Pia Two", "role": "Admin",
                       "teams": "*"}]
    bad_users = [*scoped, {"email": "ghost@example.com", "name": "G", "role": "Manager",
                           "teams": "Nowhere"}]
    choose_files(page, users_csv(bad_users),
                 employees_csv([*employees, employee(1, email="x@"), employee(2)]))
    check.click()
    result = page.locator("#csvd-check")
    expect(result).to_contain_text("Check failed: 2 errors")
    expect(result.locator("tbody tr")).to_have_count(2)
    expect(result).to_contain_text("Nowhere")
    expect(result).to_contain_text("x@")
    audit(page, "03-upload-check-errors")

    # Fixed: the check says what would happen; the files stay chosen for Start sync
    choose_files(page, users_csv(scoped), employees_csv([*employees, employee(1), employee(2)]))
    check.click()
    expect(result).to_contain_text("Check passed: 4 changes")
    expect(page.locator("#csvd-check-verdict")).to_contain_text(
        "This sync would be applied at once"
    )
    audit(page, "04-upload-check-passed")
    assert page.evaluate("document.querySelectorAll('input[type=file]')[1].files.length") == 1

    # Start sync: the page follows the run by itself through its phases to the outcome
    gate = hold_worker(app)
    start.click()
    expect(page.locator("#csvd-status")).to_have_text("File Processing")
    expect(page.locator("[aria-current=step]")).to_have_text("Waiting for a worker")
    audit(page, "05-run-processing")
    gate.set()
    expect(page.locator("#csvd-status")).to_have_text("Auto-Approved")
    expect(page.locator("#csvd-outcome")).to_contain_text(
        re.compile(r"4 changes applied in \d+\.\d s\.")
    )
    expect(page.get_by_role("link", name="See the directory")).to_have_attribute("href", "/")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the result (CSV)").click()
    result_lines = Path(info.value.path()).read_text().splitlines()
    assert result_lines[0] == "email,name,team,active,dashboard_role,dashboard_teams,changes"
    assert len(result_lines) == 3  # person1 and person2 (with her Admin access)
    audit(page, "06-run-applied")

    # person2 gained dashboard access through Users.csv: invited by email
    inbox.wait_for(2)
    invitation = inbox.with_subject("invited")
    assert [m["To"] for m in invitation] == ["person2@example.com"]
    link = re.search(rf"{re.escape(base)}/set-password/\S+", str(invitation[0].get_content()))
    assert link is not None

    # A held run with destructive changes: person1 leaves, person2 and the manager lose access
    page.get_by_role("link", name="Upload", exact=True).click()
    new_people = [employee(n, team="Support") for n in range(3, 6)]
    choose_files(page, users_csv(users[:1]),
                 employees_csv([*employees, employee(2), *new_people]))
    start.click()
    expect(page.locator("#csvd-status")).to_have_text("Waiting for Approval")
    # the safeguards' reasons come first, above the decision and the review
    guards = page.locator("#csvd-guards")
    expect(guards).to_contain_text("Why this run waits for approval")
    assert page.evaluate(
        "document.querySelector('#csvd-guards').compareDocumentPosition("
        "document.querySelector('#csvd-decision-heading')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    counts = page.locator("#csvd-counts tbody tr")
    expect(counts.nth(0)).to_have_attribute("data-kind", "employee_deactivated")
    expect(counts.nth(0)).to_contain_text("Destructive")
    expect(counts.nth(1)).to_have_attribute("data-kind", "access_revoked")
    expect(page.locator("#csvd-risk")).to_contain_text(
        "Admins losing access (1): First2 Last2 (person2@example.com)"
    )
    first_table = page.locator("table.csvd-review").first
    expect(first_table).to_have_attribute("data-kind", "employee_deactivated")
    expect(first_table).to_contain_text("First1 Last1")
    expect(first_table).to_contain_text("Sales")
    audit(page, "07-run-waiting-destructive")

    page.get_by_label("Search email, name or team").fill("support")
    page.get_by_role("button", name="Filter").click()
    # the new team and the three people created into it
    expect(page.locator("table.csvd-review tbody tr")).to_have_count(4)
    expect(page.locator('table[data-kind="team_created"] tbody tr')).to_have_text(
        re.compile("Support")
    )
    page.get_by_role("link", name="Clear the filter").click()

    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Approve and apply").click()
    expect(page.locator("#csvd-status")).to_have_text("Approved by Ada Admin")
    expect(page.locator("#csvd-outcome")).to_contain_text("7 changes applied")
    assert dialogs == [
        "Apply these 7 changes to the directory?\n"
        "This includes: Employees deactivated: 1; Dashboard access revoked: 2.\n"
        "Admins losing access: First2 Last2 (person2@example.com)."
    ]

    # A rejection
    page.get_by_role("link", name="Upload", exact=True).click()
    more = [employee(n) for n in range(6, 12)]
    choose_files(page, users_csv(users[:1]),
                 employees_csv([*employees, employee(2), *new_people, *more]))
    start.click()
    expect(page.locator("#csvd-status")).to_have_text("Waiting for Approval")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_label("Reason for rejecting").fill("Wrong export: the contractors are missing")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#csvd-status")).to_have_text("Rejected by Ada Admin")
    expect(page.locator("#csvd-outcome")).to_contain_text("nothing was applied")
    expect(page.locator("#csvd-reject-reason")).to_have_text(
        "Wrong export: the contractors are missing"
    )
    audit(page, "08-run-rejected")

    # An error run; in the history its reason opens by keyboard
    page.get_by_role("link", name="Upload", exact=True).click()
    choose_files(page, users_csv(users[:1]), employees_csv([*employees, employee(40, email="x@")]))
    start.click()
    expect(page.locator("#csvd-status")).to_have_text("Error while processing")
    expect(page.locator("#csvd-error-reason")).to_contain_text("Employees.csv had 1 error")
    audit(page, "09-run-error")
    page.get_by_role("link", name="History").click()
    why = page.locator("#csvd-history details.csvd-reason summary")
    expect(why).to_have_count(1)
    why.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#csvd-history details.csvd-reason p")).to_contain_text(
        "Employees.csv had 1 error"
    )
    times = page.locator("#csvd-history time")
    expect(times.first).to_have_attribute("title", re.compile(r"\d\d:\d\d:\d\d UTC$"))
    expect(times.first).to_have_text(re.compile(r"\d\d:\d\d:\d\d"))
    audit(page, "10-history")

    # The admin was emailed: waiting for approval, applied (twice), failed
    subjects = [str(m["Subject"]) for m in inbox.wait_for(7)]
    held = inbox.with_subject("CSV import held by a safeguard: 7 changes wait for approval")
    assert len(held) == 1 and "Why it is held:" in str(held[0].get_content())
    assert subjects.count("CSV import: 6 changes wait for your approval") == 1
    assert "CSV import applied: 4 changes" in subjects
    assert "CSV import applied: 7 changes" in subjects
    assert "CSV import failed: Error while processing" in subjects

    # the dashboard's not-found page, then the host's pages the walk passed through
    page.goto(f"{base}{PREFIX}/runs/0123456789abcdef0123456789abcdef")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    audit(page, "11-not-found")
    page.goto(f"{base}/")
    audit(page, "12-host-directory")
    page.goto(link.group(0))
    expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    audit(page, "13-host-set-password")
    page.goto(f"{base}/login")
    audit(page, "14-host-login")


def test_polling_stops_with_a_message_when_the_check_fails(
    live_app: tuple[Flask, str], page: Any, expect: Any
) -> None:
    app, base = live_app
    users, employees = people()
    from flask_csvdirectory import runs

    from .conftest import ADMIN

    with app.app_context():
        runs.update_settings("default", ADMIN, enabled=True)
    sign_in(page, base, "admin@example.com", "admin")
    page.goto(f"{base}{PREFIX}/upload")
    choose_files(page, users_csv(users), employees_csv([*employees, employee(1)]))
    gate = hold_worker(app)
    try:
        page.get_by_role("button", name="Start sync").click()
        expect(page.locator("#csvd-status")).to_have_text("File Processing")
        run_url = page.url
        failure = page.locator("[data-csvd-poll-error]")

        # the server fails: polling stops and says so
        page.route("**/status", lambda route: route.fulfill(status=500, body="boom"))
        expect(failure).to_be_visible()
        expect(failure).to_contain_text("could not report the run's status")
        expect(failure).to_contain_text("HTTP 500")
        page.unroute("**/status")

        # the network is gone
        page.goto(run_url)
        page.route("**/status", lambda route: route.abort())
        expect(failure).to_contain_text("connection to the server was lost")
        page.unroute("**/status")

        # the session is lost (signed out elsewhere): no spinner forever, a message instead
        page.goto(run_url)
        expect(page.locator("[data-csvd-phase]")).to_be_visible()
        page.context.clear_cookies()
        expect(failure).to_contain_text("You are signed out")
        expect(page.locator(".csvd-spinner")).to_be_hidden()
        audit(page, "15-run-signed-out")
        page.get_by_role("link", name="Reload this page").click()
        page.wait_for_url(re.compile(r"/login"))
    finally:
        gate.set()
