"""SCIM 2.0 (RFC 7643/7644) over the host adapter: records <-> resources, queries, writes.

The protocol itself (routing, validation, PATCH, ETags, errors) is `scim2-server`_'s
:class:`~scim2_server.service.ScimService` over `scim2-models`_; this module supplies

- the resource models: exactly the attributes the directory stores (anything else is not in
  ``/Schemas``), so what a client writes is what it reads back;
- :class:`DirectoryStorage`, a :class:`~scim2_server.storage.ScimStorage` bound to one
  organization: reads are adapter queries (:meth:`~.adapter.DirectoryAdapter.find_people`,
  :meth:`~.adapter.DirectoryAdapter.find_teams`) translated from SCIM filters, so a request
  costs the same at 1k or 100k people; writes are small :class:`~.changes.ChangeSet` applied
  with :meth:`~.adapter.DirectoryAdapter.apply` (the CSV's path), after the same validators;
- :class:`DirectoryScimService`, the service with the identity providers' quirks handled.

.. _scim2-server: https://scim2-server.readthedocs.io/
.. _scim2-models: https://scim2-models.readthedocs.io/
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, TypeVar, cast

from pydantic import ConfigDict, Field
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    ConflictException,
    Context,
    ETag,
    Extension,
    Filter,
    InvalidFilterException,
    InvalidValueException,
    Mutability,
    NotFoundException,
    NotImplementedException,
    Patch,
    PatchOp,
    Reference,
    Required,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
    UniquenessException,
)
from scim2_models.path import (
    AttrPath,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from scim2_models.resources.resource import AnyExtension
from scim2_models.urn import URN
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import ScimService
from scim2_server.storage import ScimStorage, SearchPage

from . import validation
from .adapter import DirectoryAdapter
from .changes import Change, ChangeKind, ChangeSet
from .query import AnyOf, Compare, Condition, Negate, Op, Page, Query, all_of
from .records import PersonRecord, Role, TeamRecord, normalize_email

__all__ = [
    "MAX_RESULTS",
    "DirectoryGroup",
    "DirectoryScimHandler",
    "DirectoryScimService",
    "DirectoryStorage",
    "DirectoryUser",
    "EnterpriseExtension",
    "ScimWrite",
    "FilterTranslator",
    "build_provider",
    "build_service",
    "group_document",
    "scim_id_of",
    "scim_validator",
    "user_document",
    "version_of",
]

#: Most resources one search returns (``filter.maxResults``); clients page with startIndex.
MAX_RESULTS = 1000
#: Group members are read this many at a time.
MEMBER_PAGE = 5000

USER = "User"
GROUP = "Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_VERSION_DIGITS = 20
PHONE_TYPES = ("work", "mobile", "fax")


# -- the resource models: what the directory stores, nothing more ---------------------------


#: References to a User and to a Group, by resource type name.
UserReference: Any = cast(Any, Reference)["User"]
GroupReference: Any = cast(Any, Reference)["Group"]

#: Attributes the directory does not store are ignored in requests (identity providers send
#: what their mappings hold) and never advertised in /Schemas.
_IGNORE_EXTRA = ConfigDict(extra="ignore")


class PersonName(ComplexAttribute):
    """The name parts the directory stores."""

    model_config = _IGNORE_EXTRA

    given_name: str | None = None
    family_name: str | None = None


class WorkEmail(ComplexAttribute):
    """The person's (one) email, their work address."""

    model_config = _IGNORE_EXTRA

    value: Annotated[str | None, Required.true] = None
    type: str | None = Field(None, examples=["work"])


class PhoneNumber(ComplexAttribute):
    """A phone number: one each of work, mobile and fax."""

    model_config = _IGNORE_EXTRA

    value: str | None = None
    type: str | None = Field(None, examples=list(PHONE_TYPES))


class GroupRef(ComplexAttribute):
    """The team a person is in (read-only: membership is written on the Group)."""

    value: Annotated[str | None, Mutability.read_only, CaseExact.true] = None
    ref: Annotated[GroupReference | None, Mutability.read_only] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    display: Annotated[str | None, Mutability.read_only] = None


class DashboardRole(ComplexAttribute):
    """The person's dashboard role (read-only: Users.csv manages dashboard access)."""

    value: Annotated[str | None, Mutability.read_only] = None


class ManagerRef(ComplexAttribute):
    """The person's manager: another User's id."""

    model_config = _IGNORE_EXTRA

    value: Annotated[str | None, Required.true, CaseExact.true] = None
    #: optional: Entra ID and Okta send the id only
    ref: Annotated[UserReference | None, Required.false] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )


class EnterpriseExtension(Extension):
    """The enterprise extension's attributes the directory stores."""

    model_config = _IGNORE_EXTRA

    __schema__ = URN(ENTERPRISE)

    employee_number: str | None = None
    department: str | None = None
    manager: ManagerRef | None = None


class DirectoryUser(Resource[AnyExtension]):
    """A person: the core ``User`` schema reduced to what the directory stores."""

    model_config = _IGNORE_EXTRA

    __schema__ = URN("urn:ietf:params:scim:schemas:core:2.0:User")

    user_name: Annotated[str | None, Uniqueness.server, Required.true] = None
    name: PersonName | None = None
    display_name: str | None = None
    title: str | None = None
    #: always stored (a person is active or not): required, and ``true`` when a POST leaves it out
    active: Annotated[bool | None, Required.true] = None
    emails: Annotated[list[WorkEmail] | None, Required.true] = None
    phone_numbers: list[PhoneNumber] | None = None
    groups: Annotated[list[GroupRef] | None, Mutability.read_only] = None
    roles: Annotated[list[DashboardRole] | None, Mutability.read_only] = None


class GroupMember(ComplexAttribute):
    """A member of a team: a User."""

    model_config = _IGNORE_EXTRA

    value: Annotated[str | None, Mutability.immutable, CaseExact.true] = None
    ref: Annotated[UserReference | None, Mutability.immutable] = Field(
        None, serialization_alias="$ref", validation_alias="$ref"
    )
    type: Annotated[str | None, Mutability.immutable] = Field(None, examples=["User"])


class DirectoryGroup(Resource[Any]):
    """A team: the core ``Group`` schema (no external id: teams have none)."""

    model_config = _IGNORE_EXTRA

    __schema__ = URN("urn:ietf:params:scim:schemas:core:2.0:Group")

    external_id: Annotated[str | None, Mutability.read_only, CaseExact.true] = None
    display_name: Annotated[str | None, Required.true] = None
    members: list[GroupMember] | None = None


ManagerRef.model_rebuild()
GroupMember.model_rebuild()

UserModel: Any = DirectoryUser[EnterpriseExtension]
T = TypeVar("T")


def build_provider() -> ScimProvider:
    """Users (with the enterprise extension) and Groups; what the server supports."""
    config = ServiceProviderConfig(
        documentation_uri=Reference("https://flask-csvdirectory.readthedocs.io/en/latest/scim/"),
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="API token",
                description="An API token with the SCIM scope, created on the CSV directory "
                "settings page, sent as 'Authorization: Bearer <token>'.",
                primary=True,
            )
        ],
    )
    return ScimProvider(
        models=[DirectoryUser, EnterpriseExtension, DirectoryGroup],
        resource_types=[
            ResourceType.from_resource(UserModel),
            ResourceType.from_resource(DirectoryGroup),
        ],
        config=config,
    )


def build_service() -> DirectoryScimService:
    """The service the SCIM blueprint serves (stateless: one per app is enough)."""
    return DirectoryScimService(build_provider())


# -- the service: protocol steps with the identity providers' quirks ----------------------------


class DirectoryScimService(ScimService):
    """:class:`~scim2_server.service.ScimService` adjusted for what Okta and Entra ID send.

    - PATCH is answered ``200`` with the whole resource;
    - ``{"op": "remove", "path": "members", "value": [{"value": id}, ...]}`` (Entra ID) removes
      those members, as ``members[value eq "id"]`` would;
    - a manager written as a bare id (Entra ID: ``"path": "...:manager", "value": "37"``) is
      read as ``{"value": "37"}``, as POST and PUT take it;
    - a User created without ``active`` is active (the attribute is required: always stored).
    """

    def read_patch(
        self, resource_type: ResourceType, body: bytes, content_type: str | None
    ) -> PatchOp[Any]:
        """Validate a PATCH body after rewriting the identity providers' shapes."""
        self.ensure_patch_supported()
        payload = self.decode_body(body, content_type)
        if isinstance(payload, dict):
            payload = _rewrite_operations(payload)
            body = json.dumps(payload).encode()
        return super().read_patch(resource_type, body, content_type)

    def read_creation(
        self, resource_type: ResourceType, body: bytes, content_type: str | None
    ) -> Resource[Any]:
        """Validate a creation body; a User created without ``active`` is active."""
        payload = self.decode_body(body, content_type)
        if (
            resource_type.name == USER
            and isinstance(payload, dict)
            and not any(str(k).casefold() == "active" for k in payload)
        ):
            body = json.dumps({**payload, "active": True}).encode()
        return super().read_creation(resource_type, body, content_type)

    def patch_response(
        self,
        base_url: str,
        resource: Resource[Any],
        response_parameters: ResponseParameters[Any],
    ) -> ScimResponse:
        """Answer ``200`` with the resource (and its ETag), whatever the parameters."""
        return self.resource_response(
            self.publish(base_url, resource),
            Context.RESOURCE_REPLACEMENT_RESPONSE,
            response_parameters,
        )


def _rewrite_operations(payload: dict[str, Any]) -> dict[str, Any]:
    """Entra ID's member removal by value becomes filtered removals; a bare manager id
    becomes ``{"value": id}``. Other operations are kept as they are."""
    key = next((k for k in payload if k.casefold() == "operations"), None)
    operations = payload.get(key) if key else None
    if key is None or not isinstance(operations, list):
        return payload
    rewritten: list[Any] = []
    for operation in operations:
        fields = (
            {str(k).casefold(): v for k, v in operation.items()}
            if isinstance(operation, dict)
            else {}
        )
        op, path, value = fields.get("op"), fields.get("path"), fields.get("value")
        if (
            isinstance(op, str)
            and op.casefold() == "remove"
            and isinstance(path, str)
            and "[" not in path
            and isinstance(value, list)
            and value
            and all(isinstance(v, dict) and "value" in v for v in value)
        ):
            rewritten += [
                {"op": "remove", "path": f"{path}[value eq {json.dumps(str(v['value']))}]"}
                for v in value
            ]
        elif (
            isinstance(path, str)
            and path.casefold().endswith("manager")
            and isinstance(value, str | int)
        ):
            rewritten.append({"op": op, "path": path, "value": {"value": str(value)}})
        else:
            rewritten.append(operation)
    return {**payload, key: rewritten}


class DirectoryScimHandler(ScimHandler):
    """:class:`~scim2_server.handler.ScimHandler` with a fast read path.

    A GET of one user or group, or a GET search of ``/Users`` or ``/Groups``, without
    ``attributes``/``excludedAttributes`` (but ``excludedAttributes=members`` on groups) is
    answered from :meth:`DirectoryStorage.document` / :meth:`DirectoryStorage.search_documents`:
    the same JSON as the pydantic path, built straight from the records, so a page of 100 users
    costs milliseconds. Everything else (writes, projections, conditional GETs, ``.search``)
    takes scim2-server's path.
    """

    storage: DirectoryStorage

    def query(self, request: ScimRequest) -> ScimResponse:
        """Read one resource (fast path when the request allows it)."""
        fast = self._fast_members(request)
        if fast is None or request.header("If-None-Match"):
            return super().query(request)
        with self.service.provider:
            target = self.service.route(request, Operation.query)
            if target.me:
                return super().query(request)
            resource_type = self.service.resource_type_at(cast(str, target.endpoint))
            self.service.authorize(request, target, resource_type)
            if resource_type.name == USER and not fast:
                return super().query(request)
            document = self.storage.document(
                cast(str, resource_type.name), cast(str, target.resource_id), request.base_url,
                members=fast,
            )
            headers = {"Content-Location": document["meta"]["location"],
                       "ETag": document["meta"]["version"]}
            return ScimResponse(HTTPStatus.OK, document, headers)

    def search(self, request: ScimRequest) -> ScimResponse:
        """Search with GET (fast path on /Users and /Groups when the request allows it)."""
        fast = self._fast_members(request)
        if fast is None:
            return super().search(request)
        with self.service.provider:
            target = self.service.route(request, Operation.search)
            if target.endpoint is None or target.endpoint.strip("/").casefold() not in (
                "users", "groups"
            ):
                return super().search(request)
            resource_types = self.service.searched_types(target.endpoint)
            if resource_types[0].name == USER and not fast:
                return super().search(request)
            authorized = self.service.authorized_types(request, target, resource_types)
            search_request, _position = self.service.read_search_query(
                resource_types, request.query
            )
            if search_request.cursor is not None:
                return super().search(request)
            total, documents = self.storage.search_documents(
                authorized, search_request, request.base_url
            )
            body = {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": total,
                "startIndex": search_request.start_index,
                "itemsPerPage": len(documents),
                "Resources": documents,
            }
            return ScimResponse(HTTPStatus.OK, body)

    @staticmethod
    def _fast_members(request: ScimRequest) -> bool | None:
        """``None`` when the request needs the pydantic path; else whether members are wanted
        (``excludedAttributes=members`` is the one projection the fast path serves)."""
        query = {key.casefold(): value for key, value in request.query.items()}
        if "attributes" in query:
            return None
        excluded = query.get("excludedattributes")
        if excluded is None:
            return True
        if excluded.strip().casefold() in ("members", f"{CORE_GROUP.casefold()}:members"):
            return False
        return None


# -- SCIM filters -> adapter queries ------------------------------------------------------------

#: (schema URN or None, attribute, sub-attribute) folded -> person query field
_USER_FIELDS: dict[tuple[str | None, str, str | None], str] = {
    (None, "id", None): "id",
    (None, "username", None): "user_name",
    (None, "externalid", None): "external_id",
    (None, "displayname", None): "display_name",
    (None, "title", None): "title",
    (None, "active", None): "active",
    (None, "name", "givenname"): "first_name",
    (None, "name", "familyname"): "last_name",
    (None, "emails", None): "email",
    (None, "emails", "value"): "email",
    (None, "phonenumbers", None): "phone",
    (None, "phonenumbers", "value"): "phone",
    (None, "meta", "created"): "created_at",
    (None, "meta", "lastmodified"): "updated_at",
    (None, "groups", None): "team",
    (None, "groups", "value"): "team",
    (None, "roles", None): "role",
    (None, "roles", "value"): "role",
    (ENTERPRISE, "employeenumber", None): "employee_number",
    (ENTERPRISE, "department", None): "department",
    (ENTERPRISE, "manager", None): "manager",
    (ENTERPRISE, "manager", "value"): "manager",
}
_GROUP_FIELDS: dict[tuple[str | None, str, str | None], str] = {
    (None, "id", None): "id",
    (None, "displayname", None): "name",
    (None, "members", None): "member",
    (None, "members", "value"): "member",
    (None, "meta", "created"): "created_at",
    (None, "meta", "lastmodified"): "updated_at",
}
_CORE_URNS = {
    "urn:ietf:params:scim:schemas:core:2.0:user",
    "urn:ietf:params:scim:schemas:core:2.0:group",
}
#: always true / always false, as conditions every adapter understands
TRUE: Condition = Compare("key", Op.PR)
FALSE: Condition = Negate(TRUE)


@dataclass
class FilterTranslator:
    """Turns a scim2-models filter AST into a :class:`~.query.Condition` for one resource
    type. References (a group's id in ``groups.value``, a manager's or member's id) are
    resolved to host keys with indexed look-ups. Anything it cannot translate faithfully is a
    400 ``invalidFilter``, never "every row"."""

    fields: Mapping[tuple[str | None, str, str | None], str]
    resolve: Callable[[str, str], str | None]

    def translate(self, node: FilterNode, prefix: AttrPath | None = None) -> Condition:
        if isinstance(node, LogicalExpr):
            terms = tuple(self.translate(term, prefix) for term in node.terms)
            return all_of(terms) if node.op == LogicalOperator.and_ else AnyOf(terms)  # type: ignore[return-value]
        if isinstance(node, Not):
            return Negate(self.translate(node.expr, prefix))
        if isinstance(node, ValuePath):
            if prefix is not None or node.sub_attr is not None:
                raise InvalidFilterException(detail=f"Unsupported filter: {node}")
            return self.translate(node.val_filter, node.attr_path)
        if isinstance(node, Present):
            return Compare(self._field(node.attr_path, prefix), Op.PR)
        if isinstance(node, Comparison):
            if prefix is not None and node.attr_path.attr.casefold() == "type":
                return self._type_condition(prefix, node)
            name = self._field(node.attr_path, prefix)
            return Compare(name, Op(node.op.value), self._value(name, node.value))
        raise InvalidFilterException(detail=f"Unsupported filter: {node}")

    def _field(self, path: AttrPath, prefix: AttrPath | None) -> str:
        sub: str | None
        if prefix is not None:  # emails[value eq "x"]: the sub-attribute of the prefix
            uri, attr, sub = prefix.uri, prefix.attr, path.attr
        else:
            uri, attr, sub = path.uri, path.attr, path.sub_attr
        folded_uri = None if uri is None or uri.casefold() in _CORE_URNS else uri
        key = (folded_uri, attr.casefold(), sub.casefold() if sub else None)
        name = self.fields.get(key)
        if name is None:
            raise InvalidFilterException(
                detail=f"Filtering on {path if prefix is None else f'{prefix}.{path}'} is not "
                "supported"
            )
        return name

    def _type_condition(self, prefix: AttrPath, node: Comparison) -> Condition:
        """``emails[type eq "work"]``: every stored email is a work email."""
        if prefix.attr.casefold() == "emails" and node.op.value == "eq":
            return TRUE if str(node.value).casefold() == "work" else FALSE
        raise InvalidFilterException(detail=f"Filtering on {prefix}.type is not supported")

    def _value(self, name: str, value: Any) -> Any:
        if name in ("created_at", "updated_at"):
            try:
                return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                raise InvalidFilterException(detail=f"{value!r} is not a date-time") from None
        if name == "active" and not isinstance(value, bool):
            raise InvalidFilterException(detail="active compares with true or false")
        if name in ("team", "manager", "member"):
            return self.resolve(name, str(value)) or "\x00none"
        return value


# -- values through the CSV's validators -------------------------------------------------------

#: The longest text SCIM stores in a field whose host column declares no length.
MAX_TEXT_LENGTH = 255
#: SCIM attribute -> (the adapter's field for its length limit, the check it goes through)
_CHECKS: dict[str, tuple[str, str]] = {
    "userName": ("user_name", "identifier"),
    "emails.value": ("email", "email"),
    "externalId": ("external_id", "identifier"),
    "name.givenName": ("first_name", "text"),
    "name.familyName": ("last_name", "text"),
    "displayName": ("display_name", "text"),
    "title": ("title", "text"),
    "phoneNumbers.value": ("phone", "identifier"),
    "employeeNumber": ("employee_number", "identifier"),
    "department": ("department", "text"),
    "group.displayName": ("team", "text"),
}


def scim_validator(limits: Mapping[str, Any]) -> Callable[[str, str], str]:
    """A ``validate(attribute, value)`` for :class:`DirectoryStorage`: the CSV's checks
    (:mod:`~flask_csvdirectory.validation`: invisible and control characters, mixed scripts,
    email syntax) and the host's column lengths (``limits``: the adapter's field limits),
    ``MAX_TEXT_LENGTH`` where the host declares none. Returns the value normalised, or raises
    ``ValueError`` with the reason."""

    def validate(attribute: str, value: str) -> str:
        field_name, kind = _CHECKS.get(attribute, ("", "text"))
        limit = getattr(limits.get(field_name), "max_length", None)
        limit = MAX_TEXT_LENGTH if limit is None else min(limit, MAX_TEXT_LENGTH * 4)
        value = value.strip()
        if not value:
            return value
        if kind == "email":
            checked = validation.check_email(value, max_length=limit)
        elif kind == "identifier":
            checked = validation.check_identifier(value, max_length=limit)
        else:
            checked = validation.normalize_text(value, max_length=limit)
            if checked.ok:
                invisible = validation.find_invisible(checked.value)
                if invisible is not None:
                    checked = validation.Checked(value, invisible)
        if checked.problem is not None:
            raise ValueError(checked.problem.message)
        return checked.value

    return validate


def _sort_field(search_request: SearchRequest[Any], fields: Mapping[Any, str]) -> str | None:
    sort_by = search_request.sort_by
    if sort_by is None:
        return None
    text = str(sort_by)
    uri, _, rest = text.rpartition(":") if text.startswith("urn:") else (None, "", text)
    attr, _, sub = rest.partition(".")
    folded_uri = None if not uri or uri.casefold() in _CORE_URNS else uri
    name = fields.get((folded_uri, attr.casefold(), sub.casefold() or None))
    if name is None or name in ("phone", "team", "member", "role"):
        raise InvalidValueException(detail=f"Sorting by {text} is not supported")
    return name


# -- records -> resources -----------------------------------------------------------------------


def version_of(content: Any) -> str:
    """A weak ETag derived from a resource's content."""
    text = json.dumps(content, sort_keys=True, default=str)
    return f'W/"{hashlib.sha256(text.encode()).hexdigest()[:_VERSION_DIGITS]}"'


def scim_id_of(record: PersonRecord | TeamRecord) -> str:
    """A record's SCIM id: its stable ``scim_id``, or its key when the host keeps none."""
    return record.scim_id or record.key


CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != [] and v != {}}


def user_document(
    person: PersonRecord, team: TeamRecord | None, manager: PersonRecord | None
) -> dict[str, Any]:
    """A person as the JSON of a ``User`` (references relative to the SCIM root, no
    ``meta.location``): the one mapping from records to users, for the fast read path and for
    the pydantic resources the write path builds from it. ``meta.version`` hashes the rest."""
    extension = _compact({
        "employeeNumber": person.employee_number or None,
        "department": person.department or None,
        "manager": {"value": scim_id_of(manager), "$ref": f"Users/{scim_id_of(manager)}"}
        if manager is not None
        else None,
    })
    document = _compact({
        "schemas": [CORE_USER, ENTERPRISE] if extension else [CORE_USER],
        "id": scim_id_of(person),
        "externalId": person.external_id or None,
        "userName": person.login,
        "name": _compact({"givenName": person.first_name or None,
                          "familyName": person.last_name or None}),
        "displayName": person.display_name or None,
        "title": person.title or None,
        "active": person.active,
        "emails": [{"value": person.email, "type": "work"}],
        "phoneNumbers": [
            {"value": person.phones[kind], "type": kind}
            for kind in PHONE_TYPES
            if person.phones.get(kind)
        ],
        "groups": [{"value": scim_id_of(team), "$ref": f"Groups/{scim_id_of(team)}",
                    "display": team.name}]
        if team is not None
        else None,
        "roles": [{"value": person.role.value}] if person.role is not None else None,
        ENTERPRISE: extension,
    })
    document["meta"] = _compact({
        "resourceType": USER,
        "created": _iso(person.created_at),
        "lastModified": _iso(person.updated_at or person.created_at),
        "version": version_of(document),
    })
    return document


def group_document(team: TeamRecord, member_ids: list[str]) -> dict[str, Any]:
    """A team as the JSON of a ``Group`` (see :func:`user_document`); its version does not
    depend on whether members were read (the team's ``updated_at`` moves with them)."""
    document = _compact({
        "schemas": [CORE_GROUP],
        "id": scim_id_of(team),
        "displayName": team.name,
        "members": [{"value": m, "$ref": f"Users/{m}", "type": "User"} for m in member_ids],
    })
    document["meta"] = _compact({
        "resourceType": GROUP,
        "created": _iso(team.created_at),
        "lastModified": _iso(team.updated_at or team.created_at),
        "version": version_of([scim_id_of(team), team.name, str(team.updated_at)]),
    })
    return document


def _published(document: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A document with ``meta.location`` and absolute references, as responses carry it."""
    root = base_url.rstrip("/")
    endpoint = "Users" if document["meta"]["resourceType"] == USER else "Groups"
    published = dict(document)
    published["meta"] = {**document["meta"], "location": f"{root}/{endpoint}/{document['id']}"}
    for name in ("groups", "members"):
        if name in published:
            published[name] = [{**item, "$ref": f"{root}/{item['$ref']}"}
                               for item in published[name]]
    extension = published.get(ENTERPRISE)
    if extension and "manager" in extension:
        manager = extension["manager"]
        published[ENTERPRISE] = {**extension,
                                 "manager": {**manager, "$ref": f"{root}/{manager['$ref']}"}}
    return published


class EncodedDocument(dict[str, Any]):
    """A response body already serialized as JSON (``text``); as a mapping it is the document
    without its members (what the headers are taken from)."""

    def __init__(self, document: Mapping[str, Any], text: str) -> None:
        super().__init__(document)
        self.text = text


#: Text a JSON string may hold as it is (printable ASCII but the quote and the backslash).
_PLAIN_JSON = re.compile(r'[ !#-\[\]-~]*\Z')


def _json_with_members(document: dict[str, Any], ids: list[str], base_url: str) -> str:
    """The JSON of a published group ``document`` (without members) with ``members`` added,
    as :func:`group_document` and :func:`_published` would build them."""
    root = base_url.rstrip("/")
    if _PLAIN_JSON.match(root + "".join(ids)):
        members = ", ".join([
            f'{{"value": "{i}", "$ref": "{root}/Users/{i}", "type": "User"}}' for i in ids
        ])
    else:
        members = json.dumps(
            [{"value": i, "$ref": f"{root}/Users/{i}", "type": "User"} for i in ids]
        )[1:-1]
    head = json.dumps({key: value for key, value in document.items() if key != "meta"})
    meta = json.dumps({"meta": document["meta"]})[1:]
    return f'{head[:-1]}, "members": [{members}], {meta}'


@dataclass
class ScimWrite:
    """One SCIM write, for the audit trail: what changed, before and after."""

    action: str
    resource_type: str
    resource_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


# -- the storage: one organization of the host adapter ------------------------------------------


class DirectoryStorage(ScimStorage):
    """SCIM resources of organization ``org`` of ``adapter``.

    ``validate(field, value)`` checks a written text value (the CSV's validators) and returns
    it cleaned or raises ``ValueError``; ``guard(before, after)`` refuses a change that would
    leave the organization without an active admin (``ValueError``); ``record`` receives every
    write for the audit trail; ``hard_delete`` makes DELETE /Users remove people for good
    instead of deactivating them.

    ``before_commit(action)`` is a context manager in which ``action`` runs just before the
    extension's session commits (the web layer hooks the session's ``before_commit`` event).
    A write reads its result and records it in that hook, so when the adapter's apply commits
    the extension's session (the reference adapter does) the change and its history entry are
    one transaction and one commit; otherwise the action runs right after the apply.
    """

    def __init__(
        self,
        adapter: DirectoryAdapter,
        org: str,
        *,
        validate: Callable[[str, str], str] | None = None,
        record: Callable[[ScimWrite], None] | None = None,
        hard_delete: bool = False,
        before_commit: Callable[[Callable[[], None]], AbstractContextManager[None]] | None = None,
    ) -> None:
        self.adapter = adapter
        self.org = org
        self.validate = validate or (lambda _field, value: value)
        self.record = record or (lambda _write: None)
        self.hard_delete = hard_delete
        self.before_commit = before_commit or (lambda _action: nullcontext())
        self.writes: list[ScimWrite] = []
        self._read: dict[str, tuple[PersonRecord, dict[str, Any]]] = {}
        #: the teams user documents name, by key (group writes forget them)
        self._teams_by_key: dict[str, TeamRecord] = {}

    # -- reads ---------------------------------------------------------------------------

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        """The resource, or :class:`~scim2_models.NotFoundException`."""
        if resource_type.name == USER:
            return self._read_user(resource_id)[1]
        team = self._team(resource_id)
        return self._resource(
            GROUP, self._group_document(team, members=_wants_members(response_parameters))
        )

    def document(
        self, name: str, resource_id: str, base_url: str, *, members: bool = True
    ) -> dict[str, Any]:
        """The JSON of one resource as the response carries it (the fast read path). A group
        with its members is an :class:`EncodedDocument`: thousands of members are written
        as JSON text straight from their ids, not built as dicts and then serialized."""
        if name == USER:
            return _published(self._user_documents([self._person(resource_id)])[0], base_url)
        team = self._team(resource_id)
        document = _published(group_document(team, []), base_url)
        if not members:
            return document
        ids = self._member_ids(team)
        if not ids:
            return document
        return EncodedDocument(document, _json_with_members(document, ids, base_url))

    def _visible(self) -> list[Condition]:
        """People whose SCIM id was retired (deleted through SCIM) are not SCIM resources."""
        return [Compare("id", Op.PR)] if self.adapter.scim_ids else []

    def _person(self, resource_id: str) -> PersonRecord:
        page = self.adapter.find_people(
            self.org, Query(all_of([Compare("id", Op.EQ, resource_id), *self._visible()]), limit=1)
        )
        if not page.items:
            raise NotFoundException(detail=f"User {resource_id!r} not found")
        return page.items[0]

    def _team(self, resource_id: str) -> TeamRecord:
        team = self.adapter.find_team(self.org, "id", resource_id)
        if team is None:
            raise NotFoundException(detail=f"Group {resource_id!r} not found")
        return team

    def _resolve(self, name: str, scim_id: str) -> str | None:
        """The host key of a referenced team (``team``) or person (``manager``, ``member``)."""
        if name == "team":
            team = self.adapter.find_team(self.org, "id", scim_id)
            return None if team is None else team.key
        person = self.adapter.find_person(self.org, "id", scim_id)
        return None if person is None else person.key

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        """One page of users and/or groups, filtered, sorted and paged by the adapter."""
        total, documents = self.search_documents(resource_types, search_request)
        return SearchPage(
            total, [self._resource(d["meta"]["resourceType"], d) for d in documents]
        )

    def search_documents(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        base_url: str | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """The total and one page of resources as JSON documents (published when ``base_url``
        is given): users first, then groups. The adapter filters, sorts and pages."""
        start = search_request.start_index_0 or 0
        count = MAX_RESULTS if search_request.count is None else search_request.count
        names = [rt.name for rt in resource_types]
        members = _wants_members(search_request)
        total = 0
        documents: list[dict[str, Any]] = []
        for name in (USER, GROUP):
            if name not in names:
                continue
            query = self._query(name, search_request, len(names) > 1)
            if query is None:  # a filter naming another type's attributes: nothing matches
                continue
            offset = max(0, start - total)
            limit = max(0, count - len(documents))
            page = self._find(name, Query(query.where, query.order_by, query.descending,
                                          offset, limit))
            total += page.total
            if name == USER:
                documents += self._user_documents(cast(list[PersonRecord], page.items))
            else:
                documents += [
                    self._group_document(t, members=members)
                    for t in cast(list[TeamRecord], page.items)
                ]
        if base_url is not None:
            documents = [_published(d, base_url) for d in documents]
        return total, documents

    def _query(self, name: str, search_request: SearchRequest[Any], several: bool) -> Query | None:
        fields = _USER_FIELDS if name == USER else _GROUP_FIELDS
        translator = FilterTranslator(fields, self._resolve)
        terms = list(self._visible()) if name == USER else []
        if search_request.filter is not None:
            try:
                terms.append(translator.translate(search_request.filter.ast))
            except InvalidFilterException:
                if several:
                    return None
                raise
        order_by = _sort_field(search_request, fields) if not several else None
        descending = str(search_request.sort_order or "").endswith("descending")
        return Query(all_of(terms), order_by, descending)

    def _find(self, name: str, query: Query) -> Page[Any]:
        if name == USER:
            return self.adapter.find_people(self.org, query)
        return self.adapter.find_teams(self.org, query)

    def _resource(self, name: str, document: dict[str, Any]) -> Resource[Any]:
        """The pydantic resource of a document (what scim2-server's write path works on)."""
        model = UserModel if name == USER else DirectoryGroup
        return cast(Resource[Any], model.model_validate(document))

    def _user_documents(self, people: list[PersonRecord]) -> list[dict[str, Any]]:
        """The documents of a page of people: their teams and managers in two queries."""
        teams = self._teams_by_key
        team_keys = sorted({p.team_key for p in people if p.team_key} - teams.keys())
        manager_keys = sorted({p.manager for p in people if p.manager})
        if team_keys:  # teams read once a request (a write's second read reuses them)
            teams.update(
                (t.key, t)
                for t in self.adapter.find_teams(
                    self.org, Query(AnyOf(tuple(Compare("key", Op.EQ, k) for k in team_keys)))
                ).items
            )
        managers = {
            p.key: p
            for p in self.adapter.find_people(
                self.org,
                Query(all_of([AnyOf(tuple(Compare("key", Op.EQ, k) for k in manager_keys)),
                              *self._visible()])),
            ).items
        } if manager_keys else {}
        return [
            user_document(p, teams.get(p.team_key or ""), managers.get(p.manager or ""))
            for p in people
        ]

    def _group_document(self, team: TeamRecord, *, members: bool = True) -> dict[str, Any]:
        """The document of a team; its members read a page of ids at a time (none when
        ``members`` is false)."""
        return group_document(team, self._member_ids(team) if members else [])

    def _member_ids(self, team: TeamRecord) -> list[str]:
        """The SCIM ids of a team's members, read a page of ids at a time."""
        member_ids: list[str] = []
        offset = 0
        while True:
            page = self.adapter.team_member_ids(
                self.org, team.key, offset=offset, limit=MEMBER_PAGE
            )
            member_ids += page.items
            offset += MEMBER_PAGE
            if offset >= page.total:
                return member_ids

    # -- writes --------------------------------------------------------------------------

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        """Create a person (``User``) or a team with its members (``Group``)."""
        if resource_type.name == USER:
            return self._create_user(resource)
        return self._create_group(resource)

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        """Apply the new state of a resource (PUT, or PATCH already applied by the service).

        ``expected_version`` is the version the handler read a moment ago under the same
        organization lock, so it cannot have changed: it is not checked again (a client's own
        ``If-Match`` was checked by the service against that read)."""
        resource_id = cast(str, resource.id)
        if resource_type.name == USER:
            person, before = self._read_user(resource_id)
            return self._update_user(person, before, resource)
        team = self._team(resource_id)
        self._update_group(team, resource)
        return self.get(resource_type, resource_id)

    def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        """Users: deactivate and retire the SCIM id (or delete for good with ``hard_delete``).
        Groups: delete the team (its members are left without a team first); a team some
        manager's dashboard scope names is refused."""
        if resource_type.name == USER:
            self._delete_user(resource_id)
        else:
            self._delete_group(resource_id)

    # -- users ---------------------------------------------------------------------------

    def _create_user(self, resource: Resource[Any]) -> Resource[Any]:
        values = self._user_values(resource)
        self._check_user_unique(None, values)
        after = {**values, "team": None, "extra": {}}
        active = after.pop("active")
        create = Change(ChangeKind.EMPLOYEE_CREATED, values["email"], None, None, after)

        def created() -> Resource[Any]:
            person = self.adapter.find_person(self.org, "email", values["email"])
            if person is None:  # pragma: no cover - the adapter did not create the person
                raise RuntimeError(f"the adapter did not create {values['email']!r}")
            return self._record_user("created", person, None)

        if active is not False:
            return self._write([create], created)
        self._apply([create])  # an inactive creation (rare): created, then deactivated
        person = self.adapter.find_person(self.org, "email", values["email"])
        if person is None:  # pragma: no cover - the adapter did not create the person
            raise RuntimeError(f"the adapter did not create {values['email']!r}")
        return self._write([_activation(person, False)], created)

    def _read_user(self, resource_id: str) -> tuple[PersonRecord, Resource[Any]]:
        """A person and a fresh resource of them. The record and its document are remembered
        for the rest of this request: the handler reads before it writes, under the
        organization lock, so the write reuses the read."""
        cached = self._read.get(resource_id)
        if cached is None:
            person = self._person(resource_id)
            cached = self._read[resource_id] = (person, self._user_documents([person])[0])
        return cached[0], self._resource(USER, cached[1])

    def _update_user(
        self, person: PersonRecord, before_resource: Resource[Any], resource: Resource[Any]
    ) -> Resource[Any]:
        values = self._user_values(resource)
        current = _person_values(person)
        self._check_user_unique(
            person.key,
            {k: v for k, v in values.items() if _folded(v) != _folded(current.get(k))},
        )
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for name, new in values.items():
            if name == "active":
                continue
            old = current[name]
            if (old or None) != (new or None):
                before[name], after[name] = old, new
        changes: list[Change] = []
        if after:
            changes.append(
                Change(ChangeKind.EMPLOYEE_UPDATED, person.email, person.key, before, after)
            )
        if values["active"] is not None and values["active"] != person.active:
            if not values["active"]:
                self._guard_last_admin(person, "deactivate")
            changes.append(_activation(person, values["active"]))
        if not changes:
            return before_resource
        cached = self._read.pop(scim_id_of(person), None)
        before_document = cached[1] if cached is not None else before_resource

        def updated() -> Resource[Any]:
            return self._record_user("updated", self._person(scim_id_of(person)), before_document)

        return self._write(changes, updated)

    def _delete_user(self, resource_id: str) -> None:
        person, before = self._read_user(resource_id)
        self._guard_last_admin(person, "delete")
        self._read.pop(resource_id, None)
        if self.hard_delete:
            try:
                self._committed(
                    lambda: self.adapter.delete_person(self.org, person.key),
                    lambda: self._record("deleted", USER, before, before, None),
                )
            except NotImplementedError as exc:
                raise NotImplementedException(detail=str(exc)) from exc
            return
        after: dict[str, Any] = {"active": False}
        if self.adapter.scim_ids:
            after["scim_id"] = None  # retired: the id answers 404 from now on, and is never reused
        self._write(
            [Change(ChangeKind.EMPLOYEE_DEACTIVATED, person.email, person.key,
                    {"active": person.active, "scim_id": person.scim_id}, after)],
            lambda: self._record("deactivated (SCIM delete)", USER, before, before, None),
        )

    def _guard_last_admin(self, person: PersonRecord, action: str) -> None:
        """The organization's last active admin cannot be deactivated or deleted (the guards'
        rule, :func:`~.guards.removes_last_active_admin`: another active admin must remain).
        Only an active admin's write asks, with one query for one other active admin."""
        if person.role is not Role.ADMIN or not person.active:
            return
        another = Query(
            all_of([Compare("role", Op.EQ, Role.ADMIN.value), Compare("active", Op.EQ, True),
                    Negate(Compare("key", Op.EQ, person.key))]),
            limit=1,
        )
        if not self.adapter.find_people(self.org, another).items:
            raise ConflictException(
                detail=f"Cannot {action} {person.login}: they are the organization's last "
                "active admin. Give another person the Admin role in Users.csv first."
            )

    def _check_user_unique(self, key: str | None, values: Mapping[str, Any]) -> None:
        """``userName`` (one login namespace with the emails), the email and ``externalId``
        are unique: one query for all of them."""
        login, email, external_id = (values.get(n) for n in ("user_name", "email", "external_id"))
        terms: list[Condition] = []
        for value in {v for v in (login, email) if v}:
            terms += [Compare("user_name", Op.EQ, value), Compare("email", Op.EQ, value)]
        if external_id:
            terms.append(Compare("external_id", Op.EQ, external_id))
        if not terms:
            return
        holders = [
            p
            for p in self.adapter.find_people(self.org, Query(AnyOf(tuple(terms)), limit=10)).items
            if p.key != key
        ]
        for holder in holders:
            for value, label in ((login, "userName"), (email, "emails.value")):
                if value and value.casefold() in (holder.login.casefold(), holder.email.casefold()):
                    raise UniquenessException(detail=f"{label} {value!r} is already taken")
            if external_id and holder.external_id == external_id:
                raise UniquenessException(detail=f"externalId {external_id!r} is already taken")

    def _user_values(self, resource: Resource[Any]) -> dict[str, Any]:
        """The person fields a ``User`` asks for, through the CSV's validators."""
        user = cast(Any, resource)
        check = self._checked
        user_name = check("userName", user.user_name or "")
        if not user_name:
            raise InvalidValueException(detail="userName is required")
        emails = [e for e in user.emails or [] if e.value]
        email = next((e.value for e in emails if (e.type or "work") == "work"), None) or (
            emails[0].value if emails else None
        )
        if email is None and "@" in user_name:
            email = user_name
        if email is None:
            raise InvalidValueException(detail="A work email (emails.value) is required")
        email = normalize_email(check("emails.value", email))
        phones: dict[str, str] = {}
        for phone in user.phone_numbers or []:
            kind = (phone.type or "work").casefold()
            if kind not in PHONE_TYPES:
                raise InvalidValueException(
                    detail=f"phoneNumbers.type {phone.type!r} is not stored; use one of "
                    f"{', '.join(PHONE_TYPES)}"
                )
            if phone.value:
                phones[kind] = check("phoneNumbers.value", phone.value)
        extension = _extension(user)
        manager_key = None
        if extension is not None and extension.manager is not None:
            manager_id = extension.manager.value or _last_segment(extension.manager.ref)
            if manager_id:
                manager = self.adapter.find_person(self.org, "id", manager_id)
                if manager is None:
                    raise InvalidValueException(detail=f"No user {manager_id!r} to be manager")
                manager_key = manager.key
        name = user.name
        return {
            "user_name": "" if user_name.casefold() == email else user_name,
            "email": email,
            "first_name": check("name.givenName", (name.given_name if name else None) or ""),
            "last_name": check("name.familyName", (name.family_name if name else None) or ""),
            "display_name": check("displayName", user.display_name or ""),
            "title": check("title", user.title or ""),
            "external_id": check("externalId", user.external_id or "") or None,
            "phones": phones,
            "employee_number": check(
                "employeeNumber", (extension.employee_number if extension else None) or ""
            ),
            "department": check("department", (extension.department if extension else None) or ""),
            "manager": manager_key,
            "active": user.active,
        }

    def _checked(self, name: str, value: str) -> str:
        try:
            return self.validate(name, value)
        except ValueError as exc:
            raise InvalidValueException(detail=f"{name}: {exc}") from None

    # -- groups --------------------------------------------------------------------------

    def _create_group(self, resource: Resource[Any]) -> Resource[Any]:
        self._teams_by_key.clear()
        name = self._group_name(resource)
        if self.adapter.find_team(self.org, "name", name) is not None:
            raise UniquenessException(detail=f"displayName {name!r} is already taken")
        members = self._member_people(resource)

        def created() -> Resource[Any]:
            team = self.adapter.find_team(self.org, "name", name)
            if team is None:  # pragma: no cover - the adapter did not create the team
                raise RuntimeError(f"the adapter did not create team {name!r}")
            group = self._resource(GROUP, self._group_document(team))
            self._record("created", GROUP, group, None, group)
            return group

        return self._write(
            [Change(ChangeKind.TEAM_CREATED, name, after={"name": name})]
            + [_move(p, name) for p in members],
            created,
        )

    def _update_group(self, team: TeamRecord, resource: Resource[Any]) -> None:
        self._teams_by_key.clear()
        before = self._resource(GROUP, self._group_document(team))
        name = self._group_name(resource)
        holder = self.adapter.find_team(self.org, "name", name)
        if holder is not None and holder.key != team.key:
            raise UniquenessException(detail=f"displayName {name!r} is already taken")
        wanted = {p.key: p for p in self._member_people(resource)}
        current = {p.key: p for p in self.adapter.team_members(self.org, team.key).items}
        if name != team.name:
            try:
                self.adapter.rename_team(self.org, team.name, name)
            except NotImplementedError as exc:
                raise NotImplementedException(detail=str(exc)) from exc
        moves = [_move(p, name) for key, p in wanted.items() if key not in current]
        moves += [_move(p, None) for key, p in current.items() if key not in wanted]

        def updated() -> None:
            if moves or name != team.name:
                after = self._resource(GROUP, self._group_document(self._team(scim_id_of(team))))
                self._record("updated", GROUP, after, before, after)

        self._write(moves, updated)

    def _delete_group(self, resource_id: str) -> None:
        self._teams_by_key.clear()
        team = self._team(resource_id)
        before = self._resource(GROUP, self._group_document(team))
        scoped = [
            a.email for a in self.adapter.snapshot(self.org).access if team.name in a.teams
        ]
        if scoped:
            raise ConflictException(
                detail=f"Team {team.name!r} is in the dashboard scope of {', '.join(scoped)}; "
                "change Users.csv first."
            )
        members = self.adapter.team_members(self.org, team.key).items
        try:
            self._apply([_move(p, None) for p in members])
            self._committed(
                lambda: self.adapter.delete_team(self.org, team.name),
                lambda: self._record("deleted", GROUP, before, before, None),
            )
        except NotImplementedError as exc:
            raise NotImplementedException(detail=str(exc)) from exc

    def _group_name(self, resource: Resource[Any]) -> str:
        name = " ".join(
            self._checked("group.displayName", cast(Any, resource).display_name or "").split()
        )
        if not name:
            raise InvalidValueException(detail="displayName is required")
        return name

    def _member_people(self, resource: Resource[Any]) -> list[PersonRecord]:
        """The people a ``Group``'s members name (groups as members are refused)."""
        members = cast(Any, resource).members or []
        ids: list[str] = []
        for member in members:
            if (member.type or "User").casefold() != "user":
                raise InvalidValueException(detail="Only users can be members of a team")
            ids.append(member.value or _last_segment(member.ref) or "")
        if not ids:
            return []
        found: dict[str, PersonRecord] = {}
        for start in range(0, len(ids), MEMBER_PAGE):
            chunk = ids[start : start + MEMBER_PAGE]
            for person in self.adapter.find_people(
                self.org,
                Query(all_of([AnyOf(tuple(Compare("id", Op.EQ, i) for i in chunk)),
                              *self._visible()])),
            ).items:
                found[scim_id_of(person)] = person
        missing = [i for i in ids if i not in found]
        if missing:
            raise InvalidValueException(detail=f"No user {missing[0]!r} to make a member")
        return [found[i] for i in dict.fromkeys(ids)]

    # -- helpers -------------------------------------------------------------------------

    def _apply(self, changes: list[Change]) -> None:
        if changes:
            self.adapter.apply(self.org, ChangeSet.of(changes))

    def _write(self, changes: list[Change], then: Callable[[], T]) -> T:
        """Apply ``changes`` (see :meth:`_committed`)."""
        return self._committed(lambda: self._apply(changes), then)

    def _committed(self, operation: Callable[[], None], then: Callable[[], T]) -> T:
        """Run the adapter ``operation``, then ``then()`` (read the result, record the history
        entry): in the hook just before the operation's commit (one transaction with the
        change) when the adapter commits the extension's session, else right after it."""
        done: list[T] = []

        def run() -> None:
            if not done:
                done.append(then())

        with self.before_commit(run):
            operation()
        run()
        return done[0]

    def _record_user(
        self, action: str, person: PersonRecord, before: _Recorded
    ) -> Resource[Any]:
        """The resource of a person just written, recorded in the history."""
        document = self._user_documents([person])[0]
        self._record(action, USER, document, before, document)
        return self._resource(USER, document)

    def _record(
        self,
        action: str,
        resource_type: str,
        resource: Resource[Any] | dict[str, Any],
        before: _Recorded,
        after: _Recorded,
    ) -> None:
        resource_id = resource["id"] if isinstance(resource, dict) else resource.id
        write = ScimWrite(
            action=action,
            resource_type=resource_type,
            resource_id=str(resource_id),
            before=_dump(before),
            after=_dump(after),
        )
        self.writes.append(write)
        self.record(write)


#: What a history entry records of a resource: the resource, its document (the same JSON,
#: without serializing it again), or nothing.
_Recorded = Resource[Any] | dict[str, Any] | None


def _dump(resource: _Recorded) -> dict[str, Any] | None:
    if resource is None:
        return None
    if isinstance(resource, dict):
        return {key: value for key, value in resource.items() if key != "meta"}
    dumped = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    dumped.pop("meta", None)
    return dumped


def _wants_members(parameters: Any) -> bool:
    """Whether the response asks for ``members`` (not excluded, or named in attributes)."""
    if parameters is None:
        return True
    excluded = [str(p).casefold() for p in (parameters.excluded_attributes or [])]
    if any(p.endswith("members") or ".members" in p for p in excluded):
        return False
    attributes = [str(p).casefold() for p in (parameters.attributes or [])]
    return not attributes or any("members" in p for p in attributes)


def _extension(user: Any) -> EnterpriseExtension | None:
    try:
        return cast(EnterpriseExtension | None, user[EnterpriseExtension])
    except KeyError:
        return None


def _last_segment(reference: Any) -> str | None:
    return str(reference).rstrip("/").rsplit("/", 1)[-1] if reference else None


def _folded(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else (value or None)


def _person_values(person: PersonRecord) -> dict[str, Any]:
    return {
        "user_name": person.user_name,
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "display_name": person.display_name,
        "title": person.title,
        "external_id": person.external_id,
        "phones": dict(person.phones),
        "employee_number": person.employee_number,
        "department": person.department,
        "manager": person.manager,
    }


def _move(person: PersonRecord, team: str | None) -> Change:
    return Change(
        ChangeKind.EMPLOYEE_MOVED, person.email, person.key, {"team": person.team}, {"team": team}
    )


def _activation(person: PersonRecord, active: bool) -> Change:
    kind = ChangeKind.EMPLOYEE_REACTIVATED if active else ChangeKind.EMPLOYEE_DEACTIVATED
    return Change(kind, person.email, person.key, {"active": not active}, {"active": active})

