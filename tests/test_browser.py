"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

The example platform is served on a free localhost port from a background thread, as in
production: in-process jobs, CSRF on, SQLite in a temporary directory. Screenshots of the key
pages go to ``tests/screenshots/`` (git-ignored).

Skipped with a reason when ``/usr/bin/chromium`` or Playwright is missing, unless
``CSVDIRECTORY_REQUIRE_BROWSER=1`` (then that is a failure). ``playwright install`` is never
needed: the system Chromium is used.
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

from .conftest import TEST_ENCRYPTION_KEY, build_app
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
SCREENSHOTS = Path(__file__).parent / "screenshots"
PREFIX = "/settings/integrations/csv-import"
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.browser


def _require_browser() -> Any:
    """The Playwright sync API, or skip (fail when CSVDIRECTORY_REQUIRE_BROWSER=1)."""
    required = os.environ.get("CSVDIRECTORY_REQUIRE_BROWSER") == "1"
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
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


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """The example platform on a real HTTP server in a thread: (app, base URL)."""
    app = build_app(
        "sqlite",
        tmp_path,
        WTF_CSRF_ENABLED=True,
        TESTING=False,
        CSVDIRECTORY_ENCRYPTION_KEYS=[TEST_ENCRYPTION_KEY],
        CSVDIRECTORY_JOBS_MODE="inprocess",
        CSVDIRECTORY_MIN_SYNC_INTERVAL=timedelta(seconds=0),
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        get_state(app).runner.wait_idle()
        from example_app.models import db

        with app.app_context():
            db.session.remove()
            db.engine.dispose()


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


def sign_in(page: Any, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_admin_syncs_the_directory_in_a_real_browser(live_app: tuple[Flask, str]) -> None:
    sync_api = _require_browser()
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    app, base = live_app
    runner = get_state(app).runner
    users, employees = people()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 900}, accept_downloads=True
            )
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            sign_in(page, base, "admin@example.com", "admin")

            # Settings: reached from the host's settings page; enable, threshold 3
            page.goto(f"{base}/settings/")
            page.get_by_role("link", name="CSV Import").click()
            expect(page.get_by_role("heading", name="CSV Import", exact=True)).to_be_visible()
            expect(page.locator(".csvd-badge--off")).to_have_text("Disabled")
            page.get_by_label("Enable the CSV import integration").check()
            page.get_by_label("Approval threshold (changes)").fill("-2")
            page.get_by_role("button", name="Save settings").click()
            expect(page.locator("#approval_threshold-error")).to_contain_text("whole number")
            page.get_by_label("Enable the CSV import integration").check()
            page.get_by_label("Approval threshold (changes)").fill("3")
            page.get_by_role("button", name="Save settings").click()
            expect(page.get_by_text("CSV import settings saved.")).to_be_visible()
            expect(page.locator(".csvd-badge--auto-approved").first).to_have_text("Enabled")
            page.get_by_label("New token name").fill("Nightly HR export")
            page.get_by_role("button", name="Create token").click()
            expect(page.locator("#csvd-new-token")).to_have_value(
                re.compile(r"^csvd_[0-9a-f]{8}_")
            )
            shot(page, "1-settings")

            # Templates: both downloads, with their headers
            page.get_by_role("link", name="Upload", exact=True).click()
            for name, first_line in (
                ("Users.csv", "email,name,role,teams"),
                ("Employees.csv", "email,employee_id,first_name,last_name,team,title"),
            ):
                link = page.locator(f'a[href="{PREFIX}/templates/{name}"]')
                with page.expect_download() as info:
                    link.click()
                download = info.value
                assert download.suggested_filename == name
                assert Path(download.path()).read_text().splitlines()[0] == first_line
                response = context.request.get(f"{base}{PREFIX}/templates/{name}")
                assert response.headers["content-disposition"] == f"attachment; filename={name}"
                assert response.headers["content-type"].startswith("text/csv")

            # Upload: submit stays disabled until both files are chosen
            submit = page.get_by_role("button", name="Upload and process")
            expect(submit).to_be_disabled()
            page.get_by_label("Users file").set_input_files(
                csv_file("Users.csv", users_csv(users))
            )
            expect(submit).to_be_disabled()
            expect(page.get_by_text("Choose both files to upload.")).to_be_visible()
            page.get_by_label("Employees file").set_input_files(
                csv_file("Employees.csv", employees_csv([*employees, employee(1), employee(2)]))
            )
            expect(submit).to_be_enabled()
            shot(page, "2-upload")

            # Hold the in-process worker so the run page is seen processing, then let it go:
            # the page must finish by itself (the test never reloads it).
            gate = threading.Event()
            runner.enqueue(lambda _run_id: gate.wait(20), "gate", "gate")
            submit.click()
            expect(page.locator("#csvd-status")).to_have_text("File Processing")
            live = page.locator('[aria-live="polite"]')
            expect(live).to_contain_text("Waiting for a worker to pick the run up")
            shot(page, "2b-run-processing")
            gate.set()
            expect(page.locator("#csvd-status")).to_have_text("Auto-Approved")
            expect(page.locator("[data-csvd-status-url]")).to_have_count(0)
            expect(page.locator("#csvd-counts")).to_contain_text("Employees created")

            # A large change waits for approval; review it
            page.get_by_role("link", name="Upload", exact=True).click()
            many = [employee(n, team="Support" if n % 3 else "Sales") for n in range(3, 33)]
            page.get_by_label("Users file").set_input_files(
                csv_file("Users.csv", users_csv(users))
            )
            page.get_by_label("Employees file").set_input_files(
                csv_file("Employees.csv", employees_csv([*employees, employee(1),
                                                        employee(2, title="Lead"), *many]))
            )
            page.get_by_role("button", name="Upload and process").click()
            expect(page.locator("#csvd-status")).to_have_text("Waiting for Approval")
            counts = page.locator("#csvd-counts")
            expect(counts.locator('tr[data-kind="employee_created"] td').nth(1)).to_have_text("30")
            expect(counts.locator('tr[data-kind="team_created"] td').nth(1)).to_have_text("1")
            expect(counts.locator('tr[data-kind="employee_updated"] td').nth(1)).to_have_text("1")
            updated = page.locator('table[data-kind="employee_updated"]')
            expect(updated.locator(".csvd-before")).to_have_text("Associate")
            expect(updated.locator(".csvd-after")).to_have_text("Lead")
            shot(page, "3-run-waiting-for-approval")

            page.get_by_label("Kind").select_option("employee_created")
            page.get_by_label("Search").fill("person12@")
            page.get_by_role("button", name="Filter").click()
            created = page.locator('table[data-kind="employee_created"] tbody tr')
            expect(created).to_have_count(1)
            expect(created).to_contain_text("person12@example.com")
            expect(page.locator('table[data-kind="team_created"]')).to_have_count(0)
            assert app_person(app, "person12@example.com") is None

            # Approve (accepting the confirmation); the run applies and the page follows it
            dialogs: list[str] = []

            def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            page.once("dialog", accept)
            page.get_by_role("button", name="Approve and apply").click()
            expect(page.locator("#csvd-status")).to_have_text("Approved by Ada Admin")
            expect(page.locator("[data-csvd-status-url]")).to_have_count(0)
            assert dialogs == ["Apply these 32 changes to the directory?"]

            page.get_by_role("link", name="History").click()
            rows = page.locator("#csvd-history tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("Approved by Ada Admin")
            expect(rows.nth(1)).to_contain_text("Auto-Approved")
            shot(page, "4-history")

            # The host's directory page shows the new people
            page.goto(f"{base}/")
            expect(page.locator('tr[data-email="person13@example.com"]')).to_contain_text("Support")
            expect(page.locator('tr[data-email="person2@example.com"]')).to_contain_text("Lead")
            expect(page.locator("#directory tbody tr")).to_have_count(34)
            shot(page, "5-directory-after")

            # A run with a bad file ends in Error while processing, its reason on hover
            page.goto(f"{base}{PREFIX}/upload")
            page.get_by_label("Users file").set_input_files(
                csv_file("Users.csv", users_csv(users))
            )
            page.get_by_label("Employees file").set_input_files(
                csv_file("Employees.csv", employees_csv([*employees, employee(40, email="x@")]))
            )
            page.get_by_role("button", name="Upload and process").click()
            expect(page.locator("#csvd-status")).to_have_text("Error while processing")
            expect(page.locator("#csvd-row-errors tbody tr")).to_have_count(1)
            expect(page.locator("#csvd-error-reason")).to_contain_text("Employees.csv had 1 error")
            shot(page, "6-run-error")
            page.get_by_role("link", name="History").click()
            expect(page.locator("#csvd-history .csvd-badge--error")).to_have_attribute(
                "title", re.compile(r"^Employees\.csv had 1 error")
            )

            # A manager is refused
            manager = browser.new_context()
            manager_page = manager.new_page()
            sign_in(manager_page, base, "manager@example.com", "manager")
            refused = manager_page.goto(f"{base}{PREFIX}/")
            assert refused is not None and refused.status == 403
            refused = manager_page.goto(f"{base}{PREFIX}/upload")
            assert refused is not None and refused.status == 403
            manager.close()
            context.close()
        finally:
            browser.close()


def app_person(app: Flask, email: str) -> Any:
    from sqlalchemy import select

    from example_app.models import User, db

    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))

