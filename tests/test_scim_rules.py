"""SCIM under the same rules as the CSV: switch, token scopes, validators, the last admin,
deactivating DELETE, stable ids, real timestamps, races, the write lock, one history."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from example_app.models import User, db
from flask_csvdirectory import runs
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.locks import organization_lock
from flask_csvdirectory.models import HistoryEntry, RunStatus, TokenScope
from flask_csvdirectory.scim import DirectoryStorage
from flask_csvdirectory.tokens import create_token

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv
from .test_scim import (
    ENTERPRISE_SCHEMA,
    SEARCH_SCHEMA,
    Scim,
    assert_error,
    group_body,
    member_ids,
    ok,
    person,
    scim_id,
    scim_token,
    user_body,
)

pytestmark = pytest.mark.scim
API = "/api/csv-directory/v1"


@pytest.fixture
def scim(app: Flask, client: FlaskClient) -> Scim:
    """A SCIM client of the example platform, SCIM turned on."""
    return Scim(client, scim_token())


def _clients(app: Flask, token: str, count: int) -> list[Scim]:
    return [Scim(app.test_client(), token) for _ in range(count)]


def _race(calls: list[Any]) -> list[Any]:
    """Run the calls at the same moment, one thread each; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


# -- the switch and the token scopes ---------------------------------------------------------


def test_scim_is_off_until_an_admin_turns_it_on(app: Flask, client: FlaskClient) -> None:
    token = create_token("default", "IdP", "1", (TokenScope.SCIM,))[1]
    scim = Scim(client, token)
    refused = assert_error(scim.get("/Users"), 403)
    assert "turned off" in refused["detail"]
    assert_error(scim.post("/Users", user_body("ann@example.com")), 403)
    assert person("ann@example.com") is None
    runs.update_settings("default", ADMIN, scim_enabled=True)
    assert ok(scim.get("/Users"))["totalResults"] == 2


def test_a_token_is_for_the_csv_api_for_scim_or_both(app: Flask, client: FlaskClient) -> None:
    runs.update_settings("default", ADMIN, scim_enabled=True)
    api_only = create_token("default", "HR export", "1")[1]  # the default scope: the CSV API
    scim_only = create_token("default", "IdP", "1", (TokenScope.SCIM,))[1]
    both = create_token("default", "Both", "1", (TokenScope.API, TokenScope.SCIM))[1]
    assert "not for SCIM" in assert_error(Scim(client, api_only).get("/Users"), 403)["detail"]
    assert ok(Scim(client, scim_only).get("/Users"))["totalResults"] == 2
    assert ok(Scim(client, both).get("/Users"))["totalResults"] == 2

    def api(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return client.get(f"{API}/imports", headers=headers).status_code

    assert (api(api_only), api(scim_only), api(both)) == (200, 403, 200)


def test_the_settings_page_has_the_scim_switch_and_token_scopes(
    app: Flask, client: FlaskClient
) -> None:
    client.post("/login", data={"email": "admin@example.com", "password": "admin"})
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.email == "admin@example.com"))
        assert admin is not None
        admin.set_password("admin")
        db.session.commit()
    client.post("/login", data={"email": "admin@example.com", "password": "admin"})
    page = client.get("/settings/integrations/csv-import/").get_data(as_text=True)
    assert 'name="scim_enabled"' in page and 'name="scim_hard_delete"' in page
    assert 'name="scope" value="scim"' in page
    assert not runs.get_settings("default").scim_enabled
    saved = client.post("/settings/integrations/csv-import/", data={
        "enabled": "1", "approval_threshold": "50", "scim_enabled": "1",
    })
    assert saved.status_code == 303
    db.session.expire_all()
    settings = runs.get_settings("default")
    assert settings.scim_enabled and not settings.scim_hard_delete
    created = client.post("/settings/integrations/csv-import/tokens",
                          data={"name": "Okta", "scope": "scim"})
    assert created.status_code == 303  # post-redirect-get: the token is shown by the next page
    shown = client.get(created.location)
    assert shown.status_code == 200 and "SCIM" in shown.get_data(as_text=True)


# -- validation: the CSV's rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"userName": "a" * 5000 + "@example.com"}, "userName"),
        ({"name": {"givenName": "J" * 5000, "familyName": "Doe"}}, "name.givenName"),
        ({"name": {"givenName": "Ja\x00ne", "familyName": "Doe"}}, "name.givenName"),
        ({"displayName": "Jane\u200bDoe"}, "displayName"),
        ({"title": "x" * 201}, "title"),
        ({"emails": [{"value": "x@@y", "type": "work"}]}, "emails.value"),
        ({"userName": "jane\x07doe"}, "userName"),
    ],
)
def test_values_go_through_the_csv_validators(
    scim: Scim, fields: dict[str, Any], what: str
) -> None:
    body = user_body("jane@example.com", **fields)
    refused = assert_error(scim.post("/Users", body), 400, "invalidValue")
    assert what in refused["detail"]
    assert person("jane@example.com") is None
    # and the same through PATCH
    created = ok(scim.post("/Users", user_body("ok@example.com")), 201)
    patch_value = dict(fields)
    refused = scim.patch(f"/Users/{created['id']}", {"op": "replace", "value": patch_value})
    assert_error(refused, 400, "invalidValue")


def test_user_name_is_any_unique_string_separate_from_the_email(scim: Scim) -> None:
    created = ok(scim.post("/Users", user_body("jdoe@example.com", userName="jdoe")), 201)
    assert created["userName"] == "jdoe"
    assert created["emails"] == [{"value": "jdoe@example.com", "type": "work"}]
    row = person("jdoe@example.com")
    assert row is not None and row.username == "jdoe"
    assert ok(scim.filter("/Users", 'userName eq "JDOE"'))["totalResults"] == 1
    other = user_body("other@example.com", userName="JDoe")
    assert_error(scim.post("/Users", other), 409, "uniqueness")
    # a login name may not take someone's email either (one login namespace)
    taken = user_body("third@example.com", userName="admin@example.com")
    assert_error(scim.post("/Users", taken), 409, "uniqueness")


# -- stored attributes (Okta's and Entra ID's default mappings) --------------------------------


def test_okta_and_entra_default_attributes_are_stored_and_returned(scim: Scim) -> None:
    boss = ok(scim.post("/Users", user_body("boss@example.com")), 201)
    body = user_body(
        "jane@example.com", "E-7", userName="jane.doe", displayName="Jane D.", title="Engineer",
        phoneNumbers=[{"value": "+1 555 0100", "type": "work"},
                      {"value": "+1 555 0101", "type": "mobile"},
                      {"value": "+1 555 0102", "type": "fax"}],
    )
    body["schemas"].append(ENTERPRISE_SCHEMA)
    body[ENTERPRISE_SCHEMA] = {"employeeNumber": "701", "department": "R&D",
                               "manager": {"value": boss["id"]}}
    created = ok(scim.post("/Users", body), 201)
    again = ok(scim.get(f"/Users/{created['id']}"))
    assert again == created
    assert again["displayName"] == "Jane D." and again["title"] == "Engineer"
    assert [p["type"] for p in again["phoneNumbers"]] == ["work", "mobile", "fax"]
    assert again[ENTERPRISE_SCHEMA]["employeeNumber"] == "701"
    assert again[ENTERPRISE_SCHEMA]["department"] == "R&D"
    assert again[ENTERPRISE_SCHEMA]["manager"]["value"] == boss["id"]
    row = person("jane@example.com")
    assert row is not None
    assert (row.username, row.display_name, row.work_phone, row.mobile_phone, row.fax_phone) == (
        "jane.doe", "Jane D.", "+1 555 0100", "+1 555 0101", "+1 555 0102"
    )
    assert (row.employee_number, row.department) == ("701", "R&D")
    assert row.manager_id == person("boss@example.com").id

    # Entra ID's manager update: the bare id as the value
    other_boss = ok(scim.post("/Users", user_body("boss2@example.com")), 201)
    patched = ok(scim.patch(f"/Users/{created['id']}", {
        "op": "Replace", "path": f"{ENTERPRISE_SCHEMA}:manager", "value": other_boss["id"]}))
    assert patched[ENTERPRISE_SCHEMA]["manager"]["value"] == other_boss["id"]
    assert_error(scim.patch(f"/Users/{created['id']}", {
        "op": "Replace", "path": f"{ENTERPRISE_SCHEMA}:manager", "value": "no-such-user"}),
        400, "invalidValue")
    # PATCH replace displayName and remove name are not silent no-ops
    renamed = ok(scim.patch(f"/Users/{created['id']}",
                            {"op": "replace", "path": "displayName", "value": "J. Doe"},
                            {"op": "remove", "path": "name"}))
    assert renamed["displayName"] == "J. Doe" and "name" not in renamed
    row = person("jane@example.com")
    assert (row.display_name, row.first_name, row.last_name) == ("J. Doe", "", "")
    # a phone type the directory does not store is refused, not dropped
    assert_error(scim.patch(f"/Users/{created['id']}", {
        "op": "add", "path": "phoneNumbers", "value": [{"value": "1", "type": "pager"}]}),
        400, "invalidValue")


def test_schemas_advertise_only_what_is_stored(scim: Scim) -> None:
    user_schema = ok(scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"))
    names = {a["name"] for a in user_schema["attributes"]}
    assert names == {"userName", "name", "displayName", "title", "active", "emails",
                     "phoneNumbers", "groups", "roles"}
    by_name = {a["name"]: a for a in user_schema["attributes"]}
    assert by_name["groups"]["mutability"] == "readOnly"
    assert by_name["roles"]["mutability"] == "readOnly"
    assert {s["name"] for s in by_name["name"]["subAttributes"]} == {"givenName", "familyName"}
    enterprise = ok(scim.get(f"/Schemas/{ENTERPRISE_SCHEMA}"))
    assert {a["name"] for a in enterprise["attributes"]} == {
        "employeeNumber", "department", "manager"
    }
    # attributes an identity provider sends that are not stored are ignored, not an error
    created = ok(scim.post("/Users", user_body("nick@example.com", nickName="N",
                                                preferredLanguage="en")), 201)
    assert "nickName" not in created and "preferredLanguage" not in created


# -- ids, timestamps, DELETE -------------------------------------------------------------------


def test_ids_are_never_reused_and_delete_deactivates_by_default(scim: Scim) -> None:
    first = ok(scim.post("/Users", user_body("ann@example.com")), 201)
    assert scim.delete(f"/Users/{first['id']}").status_code == 204
    row = person("ann@example.com")
    assert row is not None and row.active is False  # kept, deactivated
    assert_error(scim.get(f"/Users/{first['id']}"), 404)
    second = ok(scim.post("/Users", user_body("bob@example.com")), 201)
    assert second["id"] != first["id"]


@pytest.mark.settings()
def test_hard_delete_is_a_setting_and_ids_stay_unique(app: Flask, scim: Scim) -> None:
    runs.update_settings("default", ADMIN, scim_hard_delete=True)
    seen = set()
    for _ in range(3):  # SQLite would hand the same integer key out again
        created = ok(scim.post("/Users", user_body("ann@example.com")), 201)
        assert created["id"] not in seen
        seen.add(created["id"])
        assert scim.delete(f"/Users/{created['id']}").status_code == 204
        assert person("ann@example.com") is None
        assert_error(scim.get(f"/Users/{created['id']}"), 404)


def test_meta_timestamps_are_real_and_last_modified_filters_work(scim: Scim) -> None:
    ann = ok(scim.post("/Users", user_body("ann@example.com")), 201)
    bob = ok(scim.post("/Users", user_body("bob@example.com")), 201)
    created = datetime.fromisoformat(ann["meta"]["created"])
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    time.sleep(0.01)
    mark = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.01)
    changed = ok(scim.patch(f"/Users/{bob['id']}", {"op": "replace", "path": "title",
                                                    "value": "Lead"}))
    assert changed["meta"]["created"] == bob["meta"]["created"]
    assert changed["meta"]["lastModified"] > bob["meta"]["lastModified"]
    found = ok(scim.filter("/Users", f'meta.lastModified gt "{mark}"'))
    assert [u["id"] for u in found["Resources"]] == [bob["id"]]
    older = ok(scim.filter("/Users", f'meta.lastModified le "{mark}"'))
    assert ann["id"] in [u["id"] for u in older["Resources"]]
    assert_error(scim.filter("/Users", 'meta.lastModified gt "yesterday"'), 400)


def test_filters_become_queries_and_unsupported_ones_are_refused(scim: Scim) -> None:
    people = [ok(scim.post("/Users", user_body(f"p{n}@example.com")), 201) for n in range(5)]
    group = ok(scim.post("/Groups", group_body("Ops", people[1]["id"], people[3]["id"])), 201)
    found = ok(scim.filter("/Users", f'groups.value eq "{group["id"]}"'))
    assert sorted(u["id"] for u in found["Resources"]) == sorted(
        [people[1]["id"], people[3]["id"]]
    )
    member = ok(scim.filter("/Groups", f'members[value eq "{people[3]["id"]}"]'))
    assert [g["id"] for g in member["Resources"]] == [group["id"]]
    none = ok(scim.filter("/Groups", f'members[value eq "{people[0]["id"]}"]'))
    assert none["totalResults"] == 0
    page = ok(scim.filter("/Users", 'userName co "@example"', startIndex=2, count=2,
                          sortBy="userName", sortOrder="descending"))
    assert page["totalResults"] == 7 and len(page["Resources"]) == 2
    for expression in ('phoneNumbers[type eq "work"]', 'nickName eq "x"',
                       'emails[display eq "x"]'):
        assert_error(scim.filter("/Users", expression), 400, "invalidFilter")


def test_group_members_are_read_a_page_at_a_time(
    scim: Scim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flask_csvdirectory.scim.MEMBER_PAGE", 2)
    ids = [ok(scim.post("/Users", user_body(f"m{n}@example.com")), 201)["id"] for n in range(5)]
    group = ok(scim.post("/Groups", group_body("Five", *ids)), 201)
    adapter = get_state().adapter
    calls: list[tuple[int, int | None]] = []
    original = adapter.team_member_ids

    def counted(org: str, team_key: str, *, offset: int = 0, limit: int | None = None) -> Any:
        calls.append((offset, limit))
        return original(org, team_key, offset=offset, limit=limit)

    monkeypatch.setattr(adapter, "team_member_ids", counted)
    assert member_ids(ok(scim.get(f"/Groups/{group['id']}"))) == ids
    assert calls == [(0, 2), (2, 2), (4, 2)]
    calls.clear()
    ok(scim.get(f"/Groups/{group['id']}", query_string={"excludedAttributes": "members"}))
    assert calls == []


# -- the last admin (issue 9, item 7) -----------------------------------------------------------


@pytest.mark.safeguards
def test_the_last_active_admin_cannot_be_deactivated_deleted_or_demoted(scim: Scim) -> None:
    admin = scim_id("admin@example.com")
    refused = assert_error(
        scim.patch(f"/Users/{admin}", {"op": "replace", "path": "active", "value": False}), 409
    )
    assert "last active admin" in refused["detail"]
    assert_error(scim.put(f"/Users/{admin}", user_body("admin@example.com", active=False)), 409)
    assert_error(scim.delete(f"/Users/{admin}"), 409)
    runs.update_settings("default", ADMIN, scim_hard_delete=True)
    assert_error(scim.delete(f"/Users/{admin}"), 409)
    # demotion: roles are read-only through SCIM (Users.csv manages dashboard access)
    assert_error(scim.patch(f"/Users/{admin}", {"op": "replace", "path": "roles",
                                                "value": [{"value": "Manager"}]}), 400)
    row = person("admin@example.com")
    assert row is not None and row.active and row.role == "admin"
    # a manager is not protected; and once a second admin exists, the first may go
    manager = scim_id("manager@example.com")
    ok(scim.patch(f"/Users/{manager}", {"op": "replace", "path": "active", "value": False}))
    second = person("manager@example.com")
    assert second is not None
    second.role = "admin"  # an inactive admin does not count
    db.session.commit()
    assert_error(scim.delete(f"/Users/{admin}"), 409)
    second.active = True
    db.session.commit()
    assert scim.delete(f"/Users/{admin}").status_code == 204


# -- concurrency ---------------------------------------------------------------------------------


def test_racing_duplicate_creates_give_one_201_and_409s(app: Flask, stack: str) -> None:
    token = scim_token()
    clients = _clients(app, token, 8)
    responses = _race(
        [lambda c=c: c.post("/Users", user_body("race@example.com")) for c in clients]
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 7}
    for response in responses:
        if response.status_code == 409:
            assert response.get_json(force=True)["scimType"] == "uniqueness"
    assert db.session.scalar(select(User).where(User.email == "race@example.com")) is not None


def test_a_unique_constraint_the_checks_miss_is_a_409_not_a_500(
    scim: Scim, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(scim.post("/Users", user_body("ann@example.com", "A1")), 201)
    monkeypatch.setattr(DirectoryStorage, "_check_user_unique", lambda *args: None)
    assert_error(scim.post("/Users", user_body("ann2@example.com", "A1")), 409, "uniqueness")
    assert person("ann2@example.com") is None


def test_concurrent_group_patches_without_if_match_all_apply(app: Flask, stack: str) -> None:
    token = scim_token()
    scim = Scim(app.test_client(), token)
    ids = [ok(scim.post("/Users", user_body(f"g{n}@example.com")), 201)["id"] for n in range(6)]
    group = ok(scim.post("/Groups", group_body("Busy")), 201)
    clients = _clients(app, token, len(ids))
    responses = _race([
        lambda c=c, i=i: c.patch(f"/Groups/{group['id']}",
                                 {"op": "add", "path": "members", "value": [{"value": i}]})
        for c, i in zip(clients, ids, strict=True)
    ])
    assert [r.status_code for r in responses] == [200] * len(ids)
    assert sorted(member_ids(ok(scim.get(f"/Groups/{group['id']}")))) == sorted(ids)


@pytest.mark.settings(CSVDIRECTORY_SCIM_LOCK_TIMEOUT=0.3)
def test_a_scim_write_during_a_csv_apply_gets_a_retryable_409(
    app: Flask, stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = scim_token()
    adapter = get_state().adapter
    started, release = threading.Event(), threading.Event()
    original = adapter.apply
    calls = {"n": 0}

    def slow_apply(org: str, changeset: Any, progress: Any = None) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the CSV apply: hold on until told
            started.set()
            release.wait(30)
        original(org, changeset, progress)

    monkeypatch.setattr(adapter, "apply", slow_apply)

    def sync() -> str:
        with app.app_context():
            run = runs.start_run(
                "default",
                runs.Upload("Users.csv", users_csv()),
                runs.Upload("Employees.csv", employees_csv([employee(1), employee(2)])),
                ADMIN,
            )
            return runs.get_run("default", run.id).status

    result: dict[str, str] = {}
    thread = threading.Thread(target=lambda: result.update(status=sync()))
    thread.start()
    assert started.wait(30)
    busy = Scim(app.test_client(), token).post("/Users", user_body("during@example.com"))
    assert_error(busy, 409)
    assert busy.headers["Retry-After"] == "2"
    assert person("during@example.com") is None
    # reads are not held up
    assert Scim(app.test_client(), token).get("/Users").status_code == 200
    release.set()
    thread.join(60)
    assert result["status"] == RunStatus.AUTO_APPROVED
    ok(Scim(app.test_client(), token).post("/Users", user_body("after@example.com")), 201)


@pytest.mark.settings(CSVDIRECTORY_SCIM_LOCK_TIMEOUT=10)
def test_a_scim_write_waits_for_the_organization_lock(app: Flask, stack: str) -> None:
    token = scim_token()
    engine = get_state().db.engine
    held = threading.Event()

    def hold() -> None:
        with organization_lock(engine, "default", 5):
            held.set()
            time.sleep(1.0)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    started = time.monotonic()
    ok(Scim(app.test_client(), token).post("/Users", user_body("waited@example.com")), 201)
    assert time.monotonic() - started > 0.5
    thread.join(10)


# -- one history -----------------------------------------------------------------------------


def test_every_scim_write_is_recorded_with_the_csv_runs(
    app: Flask, client: FlaskClient, stack: str
) -> None:
    token = scim_token()
    scim = Scim(client, token)
    created = ok(scim.post("/Users", user_body("hist@example.com")), 201)
    ok(scim.patch(f"/Users/{created['id']}", {"op": "replace", "path": "title", "value": "Dr"}))
    assert scim.delete(f"/Users/{created['id']}").status_code == 204
    run = runs.start_run(
        "default",
        runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1)])),
        ADMIN,
    )
    assert runs.get_run("default", run.id).status == RunStatus.AUTO_APPROVED

    api_token = create_token("default", "Reader", "1")[1]
    listed = client.get(f"{API}/history", headers={"Authorization": f"Bearer {api_token}"})
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert [(i["source"], i["action"]) for i in items] == [
        ("csv", "applied"),
        ("scim", "deactivated (SCIM delete)"),
        ("scim", "updated"),
        ("scim", "created"),
    ]
    assert items[0]["run_id"] == run.id and items[0]["actor"]["name"] == "Ada Admin"
    update = items[2]
    assert update["actor"]["name"] == "API token 'IdP'"
    assert update["resource_type"] == "User" and update["resource_id"] == created["id"]
    assert update["details"]["before"].get("title") is None
    assert update["details"]["after"]["title"] == "Dr"
    # encrypted at rest: the stored bytes do not hold the person's data
    for entry in db.session.scalars(select(HistoryEntry)):
        assert entry.details is not None and b"hist@example.com" not in entry.details
    assert b"hist@example.com" not in b"".join(
        (e.summary or "").encode() for e in db.session.scalars(select(HistoryEntry))
    )
    filtered = client.get(f"{API}/history?source=scim",
                          headers={"Authorization": f"Bearer {api_token}"}).get_json()
    assert filtered["total"] == 3
    # and on the dashboard's history page
    client.post("/login", data={"email": "admin@example.com", "password": "admin"})
    page = client.get("/settings/integrations/csv-import/runs").get_data(as_text=True)
    assert "Directory changes" in page and "User updated" in page
    assert "CSV sync applied" in page and "API token &#39;IdP&#39;" in page


def test_the_fast_read_path_and_the_pydantic_path_agree(scim: Scim) -> None:
    """GET searches and reads are built straight from records; POST .search and conditional
    GETs go through scim2-models: the JSON must be the same."""
    boss = ok(scim.post("/Users", user_body("boss@example.com", "B-1")), 201)
    body = user_body("jane@example.com", "E-2", userName="jane", displayName="Jane",
                     phoneNumbers=[{"value": "+1 555", "type": "mobile"}])
    body["schemas"].append(ENTERPRISE_SCHEMA)
    body[ENTERPRISE_SCHEMA] = {"department": "Ops", "manager": {"value": boss["id"]}}
    jane = ok(scim.post("/Users", body), 201)
    ok(scim.post("/Groups", group_body("Ops", jane["id"], boss["id"])), 201)
    for endpoint in ("/Users", "/Groups"):
        fast = ok(scim.get(endpoint))
        slow = ok(scim.post(f"{endpoint}/.search", {"schemas": [SEARCH_SCHEMA]}))
        assert fast == slow and fast["totalResults"] >= 1
        for resource in fast["Resources"]:
            path = f"{endpoint}/{resource['id']}"
            single = scim.get(path)
            conditional = scim.get(path, headers={"If-None-Match": 'W/"other"'})
            assert ok(single) == ok(conditional) == resource
            assert single.headers["ETag"] == conditional.headers["ETag"]
    excluded = ok(scim.get("/Groups", query_string={"excludedAttributes": "members"}))
    assert all("members" not in g for g in excluded["Resources"])


def test_the_example_platform_signs_in_by_login_name(
    app: Flask, client: FlaskClient, scim: Scim
) -> None:
    ok(scim.post("/Users", user_body("jdoe@example.com", userName="jdoe")), 201)
    row = person("jdoe@example.com")
    assert row is not None
    row.set_password("secret")
    db.session.commit()
    signed_in = client.post("/login", data={"email": "JDoe", "password": "secret"})
    assert signed_in.status_code == 302 and signed_in.headers["Location"].endswith("/")
    wrong = client.post("/login", data={"email": "jdoe", "password": "nope"})
    assert wrong.status_code == 200 and "Wrong" in wrong.get_data(as_text=True)


def test_a_scim_write_and_its_history_entry_are_one_commit(
    app: Flask, client: FlaskClient, scim: Scim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference adapter's apply commits the history entry with the change: one commit,
    and a failing entry takes the change back with it."""
    created = ok(scim.post("/Users", user_body("one@example.com")), 201)
    engine = db.engine
    commits: list[str] = []

    def count(connection: Any) -> None:
        commits.append("commit")

    from sqlalchemy import event

    event.listen(engine, "commit", count)
    try:
        ok(scim.patch(f"/Users/{created['id']}", {"op": "replace", "path": "title", "value": "Dr"}))
        ok(scim.post("/Users", user_body("two@example.com")), 201)
    finally:
        event.remove(engine, "commit", count)
    # per write: the read-only commit before waiting for the lock, then the change with its entry
    assert len(commits) == 4
    entries = db.session.scalars(select(HistoryEntry).where(HistoryEntry.source == "scim")).all()
    assert [e.action for e in entries] == ["created", "updated", "created"]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("history unavailable")

    monkeypatch.setattr("flask_csvdirectory.web.scim.record_scim_write", broken)
    failed = scim.patch(f"/Users/{created['id']}", {"op": "replace", "path": "title",
                                                   "value": "Prof"})
    assert failed.status_code == 500
    db.session.rollback()
    row = person("one@example.com")
    assert row is not None and row.title == "Dr"  # the change went with its entry
    failed = scim.post("/Users", user_body("three@example.com"))
    assert failed.status_code == 500
    assert person("three@example.com") is None
