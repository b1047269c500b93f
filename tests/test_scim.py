"""SCIM 2.0 endpoints: lifecycles, identity providers' quirks, auth and organization scoping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase

from example_app.models import Team, User, db
from flask_csvdirectory import CSVDirectory, runs
from flask_csvdirectory.changes import Change, ChangeKind, ChangeSet
from flask_csvdirectory.extension import get_state
from flask_csvdirectory.models import RunStatus, TokenScope
from flask_csvdirectory.records import AccessRecord, PersonRecord, Role
from flask_csvdirectory.testing import InMemoryAdapter
from flask_csvdirectory.tokens import create_token, list_tokens, revoke_token

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv

BASE = "/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SCIM_JSON = "application/scim+json"


class Scim:
    """A SCIM client over Flask's test client, with a bearer token."""

    def __init__(self, client: FlaskClient, token: str | None) -> None:
        self.client = client
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = SCIM_JSON,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        all_headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        all_headers.update(headers or {})
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type=content_type)
        return self.client.open(BASE + path, method=method, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self("POST", path, body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self("PUT", path, body, **kwargs)

    def patch(self, path: str, *operations: dict[str, Any], **kwargs: Any) -> Any:
        return self("PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": list(operations)},
                    **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self("DELETE", path, **kwargs)

    def filter(self, path: str, expression: str, **params: Any) -> Any:
        return self.get(path, query_string={"filter": expression, **params})


def user_body(email: str, external_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": email, "type": "work", "primary": True}],
        "active": True,
    }
    if external_id:
        body["externalId"] = external_id
    body.update(fields)
    return body


def group_body(name: str, *member_ids: str) -> dict[str, Any]:
    return {
        "schemas": [GROUP_SCHEMA],
        "displayName": name,
        "members": [{"value": key} for key in member_ids],
    }


def assert_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == SCIM_JSON
    body = response.get_json(force=True)
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type
    return body


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == SCIM_JSON
    return response.get_json(force=True)


def member_ids(group: dict[str, Any]) -> list[str]:
    return [m["value"] for m in group.get("members", [])]


def scim_token(org: str = "default") -> str:
    """Turn SCIM on for ``org`` and return a new SCIM-scoped token's plaintext."""
    runs.update_settings(org, ADMIN, scim_enabled=True)
    return create_token(org, "IdP", created_by="1", scopes=(TokenScope.SCIM,))[1]


@pytest.fixture
def scim(app: Flask, client: FlaskClient) -> Scim:
    """A SCIM client with a token of the example platform's (only) organization."""
    return Scim(client, scim_token())


def scim_id(email: str) -> str:
    row = person(email)
    assert row is not None and row.scim_id
    return row.scim_id


def person(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


# -- lifecycles (both stacks) --------------------------------------------------------------------


def test_user_lifecycle(scim: Scim, stack: str) -> None:
    created = scim.post("/Users", user_body("Jane.Doe@Example.com", "E100", title="Engineer"))
    user = ok(created, 201)
    uid = user["id"]
    assert user["userName"] == "jane.doe@example.com"
    assert user["externalId"] == "E100"
    assert user["name"] == {"givenName": "Jane", "familyName": "Doe"}
    assert user["emails"] == [{"value": "jane.doe@example.com", "type": "work"}]
    assert user["meta"]["created"] == user["meta"]["lastModified"]
    assert user["active"] is True and "groups" not in user
    assert user["meta"]["resourceType"] == "User"
    assert user["meta"]["location"] == f"http://localhost{BASE}/Users/{uid}"
    assert created.headers["Location"] == user["meta"]["location"]
    assert created.headers["ETag"] == user["meta"]["version"]
    row = person("jane.doe@example.com")
    assert row is not None and row.scim_id == uid != str(row.id) and row.employee_id == "E100"
    assert row.title == "Engineer" and row.team_id is None

    assert ok(scim.get(f"/Users/{uid}")) == user
    found = ok(scim.filter("/Users", 'userName eq "jane.doe@example.com"'))
    assert found["totalResults"] == 1 and found["Resources"] == [user]

    replaced = ok(scim.put(f"/Users/{uid}", user_body(
        "jane.doe@example.com", "E100", name={"givenName": "Janet", "familyName": "Doe"},
        title="Staff engineer",
    )))
    assert replaced["name"]["givenName"] == "Janet" and replaced["title"] == "Staff engineer"
    assert replaced["meta"]["version"] != user["meta"]["version"]

    patched = ok(scim.patch(f"/Users/{uid}", {"op": "replace", "path": "title", "value": "CTO"}))
    assert patched["title"] == "CTO" and person("jane.doe@example.com").title == "CTO"

    # Okta deactivation: replace without a path, the value an object
    off = ok(scim.patch(f"/Users/{uid}", {"op": "replace", "value": {"active": False}}))
    assert off["active"] is False and person("jane.doe@example.com").active is False
    # Entra ID reactivation: capitalised op, string boolean
    on = ok(scim.patch(f"/Users/{uid}", {"op": "Replace", "path": "active", "value": "True"}))
    assert on["active"] is True and person("jane.doe@example.com").active is True

    # DELETE deactivates by default: the person stays, their SCIM id is retired for good
    deleted = scim.delete(f"/Users/{uid}")
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert_error(scim.get(f"/Users/{uid}"), 404)
    row = person("jane.doe@example.com")
    assert row is not None and row.active is False and row.scim_id is None
    assert ok(scim.filter("/Users", 'userName eq "jane.doe@example.com"'))["totalResults"] == 0
    assert_error(scim.delete(f"/Users/{uid}"), 404)


def test_group_lifecycle(scim: Scim, stack: str) -> None:
    ids = [ok(scim.post("/Users", user_body(f"p{n}@example.com")), 201)["id"] for n in range(4)]
    group = ok(scim.post("/Groups", group_body("Platform", ids[0])), 201)
    gid = group["id"]
    assert group["displayName"] == "Platform" and member_ids(group) == [ids[0]]
    assert group["members"][0] == {
        "value": ids[0], "$ref": f"http://localhost{BASE}/Users/{ids[0]}", "type": "User"
    }
    team = db.session.scalar(select(Team).where(Team.scim_id == gid))
    assert team is not None and team.name == "Platform"
    team_id = team.id
    assert person("p0@example.com").team_id == team_id
    # the user shows the team as its group
    assert ok(scim.get(f"/Users/{ids[0]}"))["groups"] == [
        {"value": gid, "$ref": f"http://localhost{BASE}/Groups/{gid}", "display": "Platform"}
    ]

    added = ok(scim.patch(f"/Groups/{gid}", {"op": "add", "path": "members",
                                             "value": [{"value": ids[1]}, {"value": ids[2]}]}))
    assert member_ids(added) == ids[:3]

    # Entra ID: remove by a value filter in the path
    removed = ok(scim.patch(f"/Groups/{gid}",
                            {"op": "Remove", "path": f'members[value eq "{ids[1]}"]'}))
    assert member_ids(removed) == [ids[0], ids[2]]
    assert person("p1@example.com").team_id is None
    # Entra ID: remove with the members as the value
    removed = ok(scim.patch(f"/Groups/{gid}",
                            {"op": "Remove", "path": "members", "value": [{"value": ids[2]}]}))
    assert member_ids(removed) == [ids[0]]

    # adding someone moves them: a person has one team
    other = ok(scim.post("/Groups", group_body("Other", ids[3])), 201)
    ok(scim.patch(f"/Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": ids[3]}]}))
    assert "members" not in ok(scim.get(f"/Groups/{other['id']}"))

    emptied = ok(scim.patch(f"/Groups/{gid}", {"op": "replace", "path": "members", "value": []}))
    assert "members" not in emptied
    assert person("p0@example.com").team_id is None

    renamed = ok(scim.patch(f"/Groups/{gid}",
                            {"op": "replace", "value": {"id": gid, "displayName": "Core"}}))
    assert renamed["displayName"] == "Core" and renamed["id"] == gid
    db.session.expire_all()
    assert db.session.get(Team, team_id).name == "Core"

    replaced = ok(scim.put(f"/Groups/{gid}", group_body("Core Platform", ids[0], ids[1])))
    assert replaced["displayName"] == "Core Platform" and member_ids(replaced) == ids[:2]

    assert scim.delete(f"/Groups/{gid}").status_code == 204
    assert_error(scim.get(f"/Groups/{gid}"), 404)
    db.session.expire_all()
    assert db.session.get(Team, team_id) is None
    assert person("p0@example.com").team_id is None  # members stay, without a team
    assert ok(scim.get(f"/Users/{ids[0]}"))["active"] is True


def test_csv_import_then_scim_sees_the_same_directory(scim: Scim, stack: str) -> None:
    run = runs.start_run(
        "default",
        runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1), employee(2, team="Support")])),
        ADMIN,
    )
    db.session.expire_all()
    assert runs.get_run("default", run.id).status == RunStatus.AUTO_APPROVED
    listed = ok(scim.filter("/Users", 'userName sw "person"', sortBy="userName"))
    assert [u["userName"] for u in listed["Resources"]] == [
        "person1@example.com", "person2@example.com"
    ]
    first = listed["Resources"][0]
    assert first["externalId"] == "E000001" and first["title"] == "Associate"
    assert first["groups"][0]["display"] == "Sales"
    groups = ok(scim.get("/Groups", query_string={"sortBy": "displayName"}))
    assert [g["displayName"] for g in groups["Resources"]] == ["Headquarters", "Sales", "Support"]
    # the manager left Users.csv and Employees.csv: deactivated, visible as such
    manager = ok(scim.filter("/Users", 'userName eq "manager@example.com"'))["Resources"][0]
    assert manager["active"] is False and "roles" not in manager
    # and a SCIM change is what the next import plans against
    ok(scim.patch(f"/Users/{first['id']}", {"op": "replace", "path": "title", "value": "Lead"}))
    outcome = runs.dry_run(
        "default",
        runs.Upload("Users.csv", users_csv()),
        runs.Upload("Employees.csv", employees_csv([employee(1), employee(2, team="Support")])),
    )
    assert [(c.kind.value, c.after) for c in outcome.changeset] == [
        ("employee_updated", {"title": "Associate"})
    ]


# -- quirks and protocol details ----------------------------------------------------------------


def test_filters_are_case_insensitive_and_combine(scim: Scim) -> None:
    ok(scim.post("/Users", user_body("ann@example.com", "A1", title="Engineer")), 201)
    ok(scim.post("/Users", user_body("bob@example.com", "B2")), 201)

    def names(expression: str) -> list[str]:
        return [u["userName"] for u in ok(scim.filter("/Users", expression))["Resources"]]

    assert names('userName eq "ann@example.com"') == ["ann@example.com"]
    assert names('username EQ "ANN@example.com"') == ["ann@example.com"]
    assert names('externalId eq "B2"') == ["bob@example.com"]
    assert names('externalId eq "b2"') == []  # externalId is case-exact
    assert names('userName eq "ann@example.com" and externalId eq "A1"') == ["ann@example.com"]
    assert names('userName eq "ann@example.com" and externalId eq "B2"') == []
    assert names('userName eq "ann@example.com" or userName eq "bob@example.com"') == [
        "ann@example.com", "bob@example.com"
    ]
    assert names('userName co "nn@"') == ["ann@example.com"]
    assert names('userName sw "bo"') == ["bob@example.com"]
    assert names('userName ew "b@example.com"') == ["bob@example.com"]
    assert names('userName sw "a" and not (userName eq "admin@example.com")') == [
        "ann@example.com"
    ]
    assert names('externalId ne "A1" and externalId pr') == ["bob@example.com"]
    assert names("title pr") == ["admin@example.com", "manager@example.com", "ann@example.com"]
    assert names('emails[type eq "work" and value eq "bob@example.com"]') == ["bob@example.com"]
    assert names(f'id eq "{scim_id("admin@example.com")}"') == ["admin@example.com"]
    groups = ok(scim.filter("/Groups", 'displayname eq "headquarters"'))
    assert [g["displayName"] for g in groups["Resources"]] == ["Headquarters"]


@pytest.mark.parametrize(
    "expression",
    ['nosuchattribute eq "x"', 'userName eq "x" and bogus pr', "userName eq", 'userName xx "a"'],
)
def test_an_invalid_filter_is_refused_not_ignored(scim: Scim, expression: str) -> None:
    assert_error(scim.filter("/Users", expression), 400, "invalidFilter")


def test_pagination_is_stable_and_one_based(scim: Scim) -> None:
    created = [
        ok(scim.post("/Users", user_body(f"u{n:02d}@example.com")), 201)["id"] for n in range(11)
    ]
    everyone = ok(scim.get("/Users"))
    assert everyone["totalResults"] == 13 and everyone["startIndex"] == 1
    keys = [u["id"] for u in everyone["Resources"]]  # creation order
    assert keys == [scim_id("admin@example.com"), scim_id("manager@example.com"), *created]

    page = ok(scim.get("/Users", query_string={"startIndex": 4, "count": 5}))
    assert page["totalResults"] == 13 and page["startIndex"] == 4 and page["itemsPerPage"] == 5
    assert [u["id"] for u in page["Resources"]] == keys[3:8]
    last = ok(scim.get("/Users", query_string={"startIndex": 11, "count": 5}))
    assert [u["id"] for u in last["Resources"]] == keys[10:]
    beyond = ok(scim.get("/Users", query_string={"startIndex": 40, "count": 5}))
    assert beyond["totalResults"] == 13 and beyond["itemsPerPage"] == 0
    assert not beyond.get("Resources")
    only_total = ok(scim.get("/Users", query_string={"count": 0}))
    assert only_total["totalResults"] == 13 and not only_total.get("Resources")
    filtered = ok(scim.filter("/Users", 'userName sw "u0"', count=2, startIndex=2))
    assert filtered["totalResults"] == 10
    assert [u["userName"] for u in filtered["Resources"]] == ["u01@example.com", "u02@example.com"]


def test_uniqueness_conflicts(scim: Scim) -> None:
    first = ok(scim.post("/Users", user_body("ann@example.com", "A1")), 201)
    second = ok(scim.post("/Users", user_body("bob@example.com", "B2")), 201)
    assert_error(scim.post("/Users", user_body("ANN@example.com")), 409, "uniqueness")
    assert_error(scim.post("/Users", user_body("new@example.com", "A1")), 409, "uniqueness")
    assert_error(
        scim.put(f"/Users/{second['id']}", user_body("ann@example.com", "B2")), 409, "uniqueness"
    )
    assert_error(
        scim.patch(f"/Users/{second['id']}", {"op": "replace", "path": "externalId",
                                              "value": "A1"}),
        409, "uniqueness",
    )
    assert_error(scim.post("/Groups", group_body("  headquarters ")), 409, "uniqueness")
    other = ok(scim.post("/Groups", group_body("Other")), 201)
    assert_error(
        scim.patch(f"/Groups/{other['id']}", {"op": "replace", "path": "displayName",
                                              "value": "HEADQUARTERS"}),
        409, "uniqueness",
    )
    # nothing changed
    assert ok(scim.get(f"/Users/{first['id']}"))["externalId"] == "A1"
    assert ok(scim.get(f"/Groups/{other['id']}"))["displayName"] == "Other"


def test_etag_is_meta_version_and_preconditions_hold(scim: Scim) -> None:
    created = scim.post("/Users", user_body("ann@example.com"))
    user = ok(created, 201)
    version = user["meta"]["version"]
    assert version.startswith('W/"') and created.headers["ETag"] == version
    got = scim.get(f"/Users/{user['id']}")
    assert got.headers["ETag"] == version == ok(got)["meta"]["version"]
    assert scim.get(f"/Users/{user['id']}", headers={"If-None-Match": version}).status_code == 304

    patched = scim.patch(f"/Users/{user['id']}", {"op": "add", "path": "title", "value": "X"})
    new_version = ok(patched)["meta"]["version"]
    assert patched.headers["ETag"] == new_version != version
    put = scim.put(f"/Users/{user['id']}", user_body("ann@example.com", title="X"))
    assert put.headers["ETag"] == ok(put)["meta"]["version"] == new_version  # same content

    stale = scim.patch(f"/Users/{user['id']}", {"op": "add", "path": "title", "value": "Y"},
                       headers={"If-Match": version})
    assert_error(stale, 412)
    assert ok(scim.get(f"/Users/{user['id']}"))["title"] == "X"
    fresh = scim.patch(f"/Users/{user['id']}", {"op": "add", "path": "title", "value": "Y"},
                       headers={"If-Match": new_version})
    assert ok(fresh)["title"] == "Y"
    # a change outside SCIM (here a move) changes the version too
    group = ok(scim.post("/Groups", group_body("Team", user["id"])), 201)
    assert ok(scim.get(f"/Users/{user['id']}"))["meta"]["version"] != ok(fresh)["meta"]["version"]
    assert scim.get(f"/Groups/{group['id']}").headers["ETag"] == group["meta"]["version"]


def test_string_booleans_and_okta_style_creation(scim: Scim) -> None:
    created = ok(scim.post("/Users", user_body("ann@example.com", active="False")), 201)
    assert created["active"] is False and person("ann@example.com").active is False
    on = ok(scim.patch(f"/Users/{created['id']}", {"op": "replace",
                                                   "value": {"active": "true"}}))
    assert on["active"] is True and person("ann@example.com").active is True


def test_entra_style_user_updates(scim: Scim) -> None:
    user = ok(scim.post("/Users", user_body("ann@example.com")), 201)
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    patched = ok(scim.patch(
        f"/Users/{user['id']}",
        {"op": "Replace", "path": "name.givenName", "value": "Annie"},
        {"op": "Add", "path": "externalId", "value": "EID-9"},
        {"op": "Replace", "path": "userName", "value": "annie@example.com"},
        {"op": "Add", "path": f"{enterprise}:department", "value": "R&D"},
        {"op": "Replace", "path": "displayName", "value": "Annie Doe"},
    ))
    assert patched["name"]["givenName"] == "Annie" and patched["externalId"] == "EID-9"
    # userName is the login name, separate from the email
    assert patched["userName"] == "annie@example.com"
    assert patched["emails"][0]["value"] == "ann@example.com"
    assert patched["displayName"] == "Annie Doe" and patched[enterprise]["department"] == "R&D"
    row = person("ann@example.com")
    assert row is not None and row.first_name == "Annie" and row.employee_id == "EID-9"
    assert (row.username, row.display_name, row.department) == (
        "annie@example.com", "Annie Doe", "R&D"
    )
    cleared = ok(scim.patch(f"/Users/{user['id']}", {"op": "remove", "path": "externalId"},
                            {"op": "remove", "path": "displayName"},
                            {"op": "remove", "path": "name"}))
    assert "externalId" not in cleared and person("ann@example.com").employee_id is None
    assert "displayName" not in cleared and "name" not in cleared
    assert (person("ann@example.com").display_name, person("ann@example.com").first_name) == (
        None, ""
    )


def test_application_json_is_accepted_and_other_bodies_refused(scim: Scim) -> None:
    created = scim.post("/Users", user_body("ann@example.com"), content_type="application/json")
    assert ok(created, 201)["userName"] == "ann@example.com"
    assert_error(scim.post("/Users", user_body("bob@example.com"), content_type="text/plain"), 415)
    assert_error(scim("POST", "/Users", None, data="{not json", content_type=SCIM_JSON), 400)


def test_invalid_writes(scim: Scim) -> None:
    assert_error(scim.post("/Users", {"schemas": [USER_SCHEMA]}), 400)
    assert_error(scim.post("/Users", user_body("not-an-email")), 400, "invalidValue")
    assert_error(scim.post("/Users", user_body("x@@y")), 400, "invalidValue")
    assert_error(scim.post("/Groups", group_body("Team", "999")), 400, "invalidValue")
    assert_error(scim.patch("/Users/999", {"op": "replace", "path": "title", "value": "x"}), 404)
    assert_error(scim.delete("/Groups/999"), 404)
    assert_error(scim.get("/Nothing"), 404)
    assert scim.get("/Groups").status_code == 200


def test_roles_show_dashboard_access_and_are_read_only(scim: Scim) -> None:
    admin = ok(scim.filter("/Users", 'userName eq "admin@example.com"'))["Resources"][0]
    assert admin["roles"] == [{"value": "Admin"}]
    manager = ok(scim.filter("/Users", 'userName eq "manager@example.com"'))["Resources"][0]
    assert manager["roles"][0]["value"] == "Manager"
    refused = scim.patch(f"/Users/{manager['id']}",
                         {"op": "replace", "path": "roles", "value": [{"value": "Admin"}]})
    assert_error(refused, 400, "mutability")  # read-only, and said so: never a silent no-op
    assert ok(scim.get(f"/Users/{manager['id']}"))["roles"][0]["value"] == "Manager"
    assert person("manager@example.com").role == "manager"


def test_a_team_in_a_dashboard_scope_cannot_be_deleted(scim: Scim) -> None:
    hq = ok(scim.filter("/Groups", 'displayName eq "Headquarters"'))["Resources"][0]
    assert_error(scim.delete(f"/Groups/{hq['id']}"), 409)
    assert member_ids(ok(scim.get(f"/Groups/{hq['id']}"))) == [
        scim_id("admin@example.com"), scim_id("manager@example.com")
    ]


def test_discovery_and_search_endpoints(scim: Scim) -> None:
    config = ok(scim.get("/ServiceProviderConfig"))
    assert config["patch"]["supported"] and config["filter"]["supported"]
    assert config["etag"]["supported"] and not config["bulk"]["supported"]
    assert not config["changePassword"]["supported"]
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = ok(scim.get("/ResourceTypes"))
    assert {t["name"]: t["endpoint"] for t in types["Resources"]} == {
        "User": "/Users", "Group": "/Groups"
    }
    schemas = ok(scim.get("/Schemas"))
    assert {USER_SCHEMA, GROUP_SCHEMA} <= {s["id"] for s in schemas["Resources"]}
    ok(scim.get(f"/Schemas/{USER_SCHEMA}"))

    search = {"schemas": [SEARCH_SCHEMA], "filter": 'userName eq "admin@example.com"'}
    users = ok(scim.post("/Users/.search", search))
    assert users["schemas"] == [LIST_SCHEMA] and users["totalResults"] == 1
    everything = ok(scim.post("/.search", {"schemas": [SEARCH_SCHEMA], "count": 10}))
    assert {r["meta"]["resourceType"] for r in everything["Resources"]} == {"User", "Group"}
    assert everything["totalResults"] == 3  # two people and one team
    assert_error(scim.post("/.search", {"schemas": [SEARCH_SCHEMA], "filter": "bad filter"}),
                 400, "invalidFilter")


# -- auth and organizations --------------------------------------------------------------------


def test_requests_without_a_valid_token_get_401(app: Flask, client: FlaskClient) -> None:
    plaintext = scim_token()
    token = next(t for t in list_tokens("default") if plaintext.startswith(f"csvd_{t.prefix}_"))
    for scim in (Scim(client, None), Scim(client, "csvd_nope_nope"), Scim(client, "garbage")):
        response = scim.get("/Users")
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(scim.post("/Users", user_body("x@example.com")), 401)
    assert person("x@example.com") is None
    assert Scim(client, plaintext).get("/Users").status_code == 200
    assert revoke_token("default", token.id)
    assert_error(Scim(client, plaintext).get("/Users"), 401)


class _Base(DeclarativeBase):
    pass


@pytest.fixture
def multi_org(tmp_path: Path) -> Iterator[tuple[Flask, InMemoryAdapter]]:
    """A minimal host: InMemoryAdapter, two organizations, SCIM only."""
    adapter = InMemoryAdapter()
    adapter.seed(
        "default",
        teams=["Sales"],
        people=[PersonRecord("1", "ann@acme.com", "Ann", "A", team="Sales")],
        access=[AccessRecord("ann@acme.com", Role.ADMIN, ("*",), "Ann A", "1")],
    )
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'multi.sqlite3'}",
        CSVDIRECTORY_JOBS_MODE="sync",
        CSVDIRECTORY_ENABLE_DASHBOARD=False,
    )
    sqla = SQLAlchemy(model_class=_Base)
    sqla.init_app(app)
    LoginManager(app)
    extension = CSVDirectory(app, adapter=adapter)
    with app.app_context():
        extension.create_all()
        yield app, adapter
        sqla.session.remove()
        sqla.engine.dispose()


def test_a_token_only_sees_its_organization(
    multi_org: tuple[Flask, InMemoryAdapter],
) -> None:
    app, adapter = multi_org
    client = app.test_client()
    default = Scim(client, scim_token("default"))
    other = Scim(client, scim_token("other"))
    assert get_state(app).adapter is adapter
    ann = adapter.get_person("default", "1")
    sales = adapter.get_team("default", "2") or adapter.find_team("default", "name", "Sales")
    assert ann is not None and ann.scim_id and sales is not None and sales.scim_id
    ann_id, sales_id = ann.scim_id, sales.scim_id

    assert ok(default.get("/Users"))["totalResults"] == 1
    assert ok(other.get("/Users"))["totalResults"] == 0
    assert ok(other.get("/Groups"))["totalResults"] == 0
    assert ok(other.filter("/Users", 'userName eq "ann@acme.com"'))["totalResults"] == 0
    assert_error(other.get(f"/Users/{ann_id}"), 404)
    assert_error(
        other.patch(f"/Users/{ann_id}", {"op": "replace", "value": {"active": False}}), 404
    )
    assert_error(other.delete(f"/Users/{ann_id}"), 404)
    assert_error(other.get(f"/Groups/{sales_id}"), 404)

    # the same email may exist in each organization; writes land in the token's
    created = ok(other.post("/Users", user_body("ann@acme.com")), 201)
    assert adapter.find_person("other", "id", created["id"]) is not None
    assert adapter.find_person("default", "id", created["id"]) is None
    assert adapter.get_person("default", "1").active is True
    assert ok(default.get("/Users"))["totalResults"] == 1
    group = ok(other.post("/Groups", group_body("Sales", created["id"])), 201)
    assert [t.name for t in adapter.snapshot("other").teams] == ["Sales"]
    assert member_ids(group) == [created["id"]]
    assert member_ids(ok(default.get(f"/Groups/{sales_id}"))) == [ann_id]


def test_inmemory_adapter_lifecycle_through_scim(
    multi_org: tuple[Flask, InMemoryAdapter],
) -> None:
    """The reference adapter supports everything SCIM asks (rename keeps scopes)."""
    app, adapter = multi_org
    scim = Scim(app.test_client(), scim_token())
    adapter.seed("default", access=[AccessRecord("mia@acme.com", Role.MANAGER, ("Sales",))])
    sales = adapter.find_team("default", "name", "Sales")
    ann = adapter.get_person("default", "1")
    assert sales is not None and ann is not None
    renamed = ok(scim.patch(f"/Groups/{sales.scim_id}", {"op": "replace", "path": "displayName",
                                                         "value": "Field Sales"}))
    assert renamed["displayName"] == "Field Sales" and member_ids(renamed) == [ann.scim_id]
    snapshot = adapter.snapshot("default")
    assert snapshot.by_email["ann@acme.com"].team == "Field Sales"
    assert snapshot.access_by_email["mia@acme.com"].teams == ("Field Sales",)
    assert_error(scim.delete(f"/Groups/{sales.scim_id}"), 409)  # in Mia's scope
    # Ann is the only admin: SCIM cannot deactivate or delete her
    assert_error(scim.delete(f"/Users/{ann.scim_id}"), 409)
    adapter.seed("default", access=[AccessRecord("bo@acme.com", Role.ADMIN, ("*",))])
    assert scim.delete(f"/Users/{ann.scim_id}").status_code == 204
    assert_error(scim.get(f"/Users/{ann.scim_id}"), 404)
    retired = adapter.get_person("default", "1")
    assert retired is not None and retired.active is False and retired.scim_id is None


def test_entra_group_lookup_without_members(scim: Scim) -> None:
    found = ok(scim.filter("/Groups", 'displayName eq "Headquarters"',
                           excludedAttributes="members"))
    assert found["totalResults"] == 1
    assert found["Resources"][0]["displayName"] == "Headquarters"
    assert "members" not in found["Resources"][0]
    picked = ok(scim.get(f"/Users/{scim_id('admin@example.com')}",
                         query_string={"attributes": "userName"}))
    assert picked["userName"] == "admin@example.com" and "title" not in picked


def test_sqlalchemy_adapter_single_record_operations(app: Flask, stack: str) -> None:
    adapter = get_state(app).adapter
    adapter.apply("default", ChangeSet.of([
        Change(ChangeKind.TEAM_CREATED, "Empty", after={"name": "Empty"}),
    ]))
    with pytest.raises(ValueError, match="not empty"):
        adapter.delete_team("default", "Headquarters")
    with pytest.raises(ValueError, match="exists already"):
        adapter.rename_team("default", "empty", "HEADQUARTERS")
    with pytest.raises(LookupError):
        adapter.delete_person("default", "999")
    with pytest.raises(LookupError):
        adapter.rename_team("default", "Nowhere", "Somewhere")
    adapter.delete_team("default", "EMPTY")
    adapter.rename_team("default", "headquarters", "Head Office")
    snapshot = adapter.snapshot("default")
    assert [t.name for t in snapshot.teams] == ["Head Office"]
    assert snapshot.by_email["manager@example.com"].team == "Head Office"
    assert snapshot.access_by_email["manager@example.com"].teams == ("Head Office",)
    adapter.apply("default", ChangeSet.of([  # team None: nobody is in it any more
        Change(ChangeKind.EMPLOYEE_MOVED, email, key, {"team": "Head Office"}, {"team": None})
        for email, key in (("admin@example.com", "1"), ("manager@example.com", "2"))
    ]))
    assert {p.team for p in adapter.snapshot("default").people} == {None}
    with pytest.raises(ValueError, match="dashboard scope"):
        adapter.delete_team("default", "Head Office")  # still the manager's scope
    adapter.delete_person("default", "2")  # the manager, with their scope rows
    assert adapter.get_person("default", "2") is None
    assert "manager@example.com" not in adapter.snapshot("default").access_by_email
    adapter.delete_team("default", "Head Office")  # now empty and in no scope
    assert adapter.snapshot("default").teams == []


def test_a_group_members_json_text_is_the_published_document() -> None:
    """Big groups are serialized straight from member ids: the same JSON as the dicts."""
    import json as json_module

    from flask_csvdirectory.records import TeamRecord
    from flask_csvdirectory.scim import _json_with_members, _published, group_document

    team = TeamRecord("7", 'Ops "A"', "team-id")
    root = "https://idp.example/scim/v2"
    for ids in (["1", "2", "a-b"], ['q"uote', "back\\slash", "ünï", "tab\t"]):
        expected = _published(group_document(team, ids), root)
        text = _json_with_members(_published(group_document(team, []), root), ids, root)
        assert json_module.loads(text) == expected
