"""Property-based tests of the JSON API against its own OpenAPI document (schemathesis).

Every generated request, valid and invalid, goes to the served app (WSGI, no network) with a
valid token: no response may be a server error, and every response must match the document
(status codes, content types, headers, bodies).

Each operation gets its own bounded, derandomized Hypothesis run. (``schema.parametrize()``
over ``schemathesis.pytest.from_fixture`` would be the usual form, but it reads a pytest
internal that pytest 9 removed, so the operations are parametrized here by hand; a test checks
the list stays complete.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from flask_csvdirectory import runs, tokens

from .conftest import ADMIN
from .factories import employee, employees_csv, users_csv

API = "/api/csv-directory/v1"
OPERATIONS = [
    ("GET", "/templates/users.csv"),
    ("GET", "/templates/employees.csv"),
    ("GET", "/templates/prefilled/users.csv"),
    ("GET", "/templates/prefilled/employees.csv"),
    ("GET", "/settings"),
    ("POST", "/imports"),
    ("GET", "/imports"),
    ("GET", "/imports/{run_id}"),
    ("GET", "/imports/{run_id}/changes"),
    ("GET", "/imports/{run_id}/errors"),
    ("POST", "/imports/{run_id}/approve"),
    ("POST", "/imports/{run_id}/reject"),
    ("POST", "/imports/{run_id}/revert"),
    ("GET", "/imports/{run_id}/conflicts"),
    ("GET", "/status"),
    ("GET", "/settings"),
    ("GET", "/templates/prefilled/users.csv"),
    ("GET", "/templates/prefilled/employees.csv"),
    ("GET", "/history"),
]
#: Operations without parameters have nothing to make invalid.
NO_PARAMETERS = {
    ("GET", "/templates/users.csv"),
    ("GET", "/templates/employees.csv"),
    ("GET", "/templates/prefilled/users.csv"),
    ("GET", "/templates/prefilled/employees.csv"),
    ("GET", "/settings"),
    ("GET", "/status"),
    ("GET", "/settings"),
    ("GET", "/templates/prefilled/users.csv"),
    ("GET", "/templates/prefilled/employees.csv"),
}
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode is GenerationMode.NEGATIVE and (method, path) in NO_PARAMETERS)
]
MAX_EXAMPLES = 20


@pytest.fixture
def waiting_run(app: Flask) -> str:
    """The id of a run Waiting for Approval, for the run endpoints to find."""
    with app.app_context():
        runs.update_settings("default", ADMIN, approval_threshold=0)
        run = runs.start_run(
            "default",
            runs.Upload("Users.csv", users_csv()),
            runs.Upload("Employees.csv", employees_csv([employee(n) for n in range(3)])),
            ADMIN,
        )
        assert run.is_waiting
        return run.id


@pytest.fixture
def api_schema(app: Flask) -> Any:
    """The document the app serves, bound to the app."""
    # The token is sent with every request, so generating (or negating) the Authorization
    # header would only produce cases the fixed header then overrides.
    config = SchemathesisConfig.from_dict({"generation": {"with-security-parameters": False}})
    return schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app, config=config)


@pytest.fixture
def auth_headers(app: Flask) -> dict[str, str]:
    with app.app_context():
        _token, plaintext = tokens.create_token("default", "schemathesis", "Ada Admin")
    return {"Authorization": f"Bearer {plaintext}"}


def test_every_operation_is_exercised(api_schema: Any) -> None:
    documented = {
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in api_schema.get_all_operations())
    }
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_operation_conforms_to_the_document(
    api_schema: Any,
    auth_headers: dict[str, str],
    waiting_run: str,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=mode)
    if "{run_id}" in path and mode is GenerationMode.POSITIVE:
        # random ids only ever find nothing: half of the cases use the existing run
        strategy = st.one_of(
            strategy,
            operation.as_strategy(generation_mode=mode, path_parameters={"run_id": waiting_run}),
        )

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=auth_headers, excluded_checks=excluded)

    # A CSV upload valid by the document (any bytes in both parts) is still refused when the
    # bytes are not the files (400 invalid_files, 413): the document cannot say "a valid CSV".
    excluded = [positive_data_acceptance] if (method, path) == ("POST", "/imports") else []

    check()
