"""SCIM 2.0 (RFC 7643/7644) over the host adapter: records <-> resources, searches, writes.

The protocol itself (routing, validation, filters, PATCH, ETags, errors) is `scim2-server`_'s
:class:`~scim2_server.service.ScimService` over `scim2-models`_; this module supplies

- :class:`DirectoryStorage`, a :class:`~scim2_server.storage.ScimStorage` bound to one
  organization of the host adapter: it reads :class:`~.records.DirectorySnapshot` records as
  ``User`` (people) and ``Group`` (teams) resources and turns every write into a small
  :class:`~.changes.ChangeSet` applied with :meth:`~.adapter.DirectoryAdapter.apply`, so SCIM
  and CSV imports change the same directory. Deleting and renaming use the adapter's
  single-record operations (``delete_person``, ``delete_team``, ``rename_team``);
- :class:`DirectoryScimService`, the service with the identity providers' quirks handled
  (PATCH answered 200 with the resource, Entra ID's ``remove`` of members by value);
- :func:`build_provider`, what the discovery endpoints announce.

.. _scim2-server: https://scim2-server.readthedocs.io/
.. _scim2-models: https://scim2-models.readthedocs.io/
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Union, cast

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ConflictException,
    Context,
    Email,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    GroupMember,
    GroupMembership,
    InvalidValueException,
    Meta,
    Name,
    NotFoundException,
    NotImplementedException,
    Patch,
    PatchOp,
    PreconditionFailedException,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    UniquenessException,
    User,
)
from scim2_models import Role as ScimRole
from scim2_models.path import CompareOperator, Comparison
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.storage import ScimStorage, SearchPage
from scim2_server.utils import parametrize

from .adapter import DirectoryAdapter
from .changes import Change, ChangeKind, ChangeSet
from .records import DirectorySnapshot, PersonRecord, TeamRecord, normalize_email, normalize_team

__all__ = [
    "MAX_RESULTS",
    "DirectoryScimService",
    "DirectoryStorage",
    "build_provider",
    "build_service",
]

#: Most resources one search returns (``filter.maxResults``); clients page with startIndex.
MAX_RESULTS = 1000

USER = "User"
GROUP = "Group"
#: ``meta.version`` is derived from this many hex digits of the resource's sha256.
_VERSION_DIGITS = 20


class DirectoryEmail(Email):
    """An email whose value is any string: a host's directory may hold addresses that strict
    validation rejects (``.local``, ``.test`` domains), and reading must never fail on them."""

    value: str | None = None


class DirectoryUser(User):
    """The core ``User`` schema, with :class:`DirectoryEmail` emails."""

    emails: list[DirectoryEmail] | None = None


def build_provider() -> ScimProvider:
    """Users (core schema, enterprise extension accepted) and Groups; what the server supports."""
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
                description="An API token created on the CSV directory settings page, sent as "
                "'Authorization: Bearer <token>'.",
                primary=True,
            )
        ],
    )
    return ScimProvider(
        models=[DirectoryUser, EnterpriseUser, Group],
        resource_types=[
            ResourceType.from_resource(DirectoryUser[EnterpriseUser]),
            ResourceType.from_resource(Group),
        ],
        config=config,
    )


def build_service() -> DirectoryScimService:
    """The service the SCIM blueprint serves (stateless: one per app is enough)."""
    return DirectoryScimService(build_provider())


# -- the service: protocol steps with the identity providers' quirks ----------------------------


class DirectoryScimService(ScimService):
    """:class:`~scim2_server.service.ScimService` adjusted for what Okta and Entra ID send.

    - PATCH is answered ``200`` with the whole resource (the library may answer ``204``; Entra ID
      and Okta both accept 200, and some clients read the body);
    - ``{"op": "remove", "path": "members", "value": [{"value": id}, ...]}`` (Entra ID) removes
      those members, as ``members[value eq "id"]`` would (RFC 7644 forbids a value there);
    - op names, attribute names and string booleans (``"False"``) are already case-insensitive or
      coerced by scim2-models.
    """

    def read_patch(
        self, resource_type: ResourceType, body: bytes, content_type: str | None
    ) -> PatchOp[Any]:
        """Validate a PATCH body after rewriting Entra ID's member removal by value."""
        self.ensure_patch_supported()
        payload = self.decode_body(body, content_type)
        if isinstance(payload, dict):
            payload = _rewrite_value_removals(payload)
            body = json.dumps(payload).encode()
        return super().read_patch(resource_type, body, content_type)

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


def _rewrite_value_removals(payload: dict[str, Any]) -> dict[str, Any]:
    """Turn ``remove`` operations carrying a list of ``{"value": id}`` into one filtered
    ``remove`` per value (``path[value eq "id"]``); other operations are kept as they are."""
    key = next((k for k in payload if k.casefold() == "operations"), None)
    operations = payload.get(key) if key else None
    if not isinstance(operations, list):
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
        else:
            rewritten.append(operation)
    return {**payload, key: rewritten}


# -- records -> resources -----------------------------------------------------------------------


def _sort_key(key: str) -> tuple[int, int | str]:
    """Numeric keys in numeric order, then the rest as text (stable listing order)."""
    return (0, int(key)) if key.isdigit() else (1, key)


def version_of(resource: Resource[Any]) -> str:
    """A weak ETag derived from the resource's content (its meta left out)."""
    content = json.dumps(resource.model_dump(exclude={"meta"}), sort_keys=True, default=str)
    return f'W/"{hashlib.sha256(content.encode()).hexdigest()[:_VERSION_DIGITS]}"'


def _stamp(resource: Resource[Any], resource_type: str) -> Resource[Any]:
    resource.meta = Meta(resource_type=resource_type, version=version_of(resource))
    return resource


@dataclass
class _Directory:
    """A snapshot with the indexes SCIM needs (team by key, members by team name)."""

    snapshot: DirectorySnapshot

    def __post_init__(self) -> None:
        self.people = {p.key: p for p in self.snapshot.people}
        self.teams = {t.key: t for t in self.snapshot.teams}
        self.members: dict[str, list[PersonRecord]] = {}
        for person in sorted(self.snapshot.people, key=lambda p: _sort_key(p.key)):
            if person.team is not None:
                self.members.setdefault(normalize_team(person.team), []).append(person)

    def team_named(self, name: str | None) -> TeamRecord | None:
        return None if name is None else self.snapshot.team_by_name.get(normalize_team(name))

    def user(self, person: PersonRecord) -> Resource[Any]:
        """The ``User`` resource of a person."""
        display = f"{person.first_name} {person.last_name}".strip()
        team = self.team_named(person.team)
        access = self.snapshot.access_by_email.get(normalize_email(person.email))
        model = cast(Any, DirectoryUser[EnterpriseUser])
        user = model(
            id=person.key,
            external_id=person.external_id or None,
            user_name=person.email,
            name=Name(
                given_name=person.first_name or None,
                family_name=person.last_name or None,
                formatted=display or None,
            ),
            display_name=display or None,
            title=person.title or None,
            active=person.active,
            emails=[DirectoryEmail(value=person.email, type=Email.Type.work, primary=True)],
            groups=[
                GroupMembership(
                    value=team.key, ref=f"Groups/{team.key}", display=team.name, type="direct"
                )
            ]
            if team is not None
            else None,
            roles=[ScimRole(value=access.role.value, display=access.role.value, primary=True)]
            if access is not None
            else None,
        )
        return _stamp(user, USER)

    def group(self, team: TeamRecord) -> Resource[Any]:
        """The ``Group`` resource of a team (its members: people whose team it is)."""
        members = [
            GroupMember(
                value=p.key,
                ref=f"Users/{p.key}",
                type="User",
                display=f"{p.first_name} {p.last_name}".strip() or p.email,
            )
            for p in self.members.get(normalize_team(team.name), [])
        ]
        return _stamp(Group(id=team.key, display_name=team.name, members=members or None), GROUP)

    def resources(self, names: Iterable[str]) -> Iterator[Resource[Any]]:
        for name in names:
            if name == USER:
                for person in sorted(self.snapshot.people, key=lambda p: _sort_key(p.key)):
                    yield self.user(person)
            elif name == GROUP:
                for team in sorted(self.snapshot.teams, key=lambda t: _sort_key(t.key)):
                    yield self.group(team)


# -- the storage: one organization of the host adapter ------------------------------------------


class DirectoryStorage(ScimStorage):
    """SCIM resources of organization ``org`` of ``adapter``.

    Reads take a snapshot; writes are change sets applied through the adapter (never more than
    one person's or one team's changes). ``meta.version`` is derived from each resource's
    content, so any change to a person (a CSV import included) changes its ETag.
    """

    def __init__(self, adapter: DirectoryAdapter, org: str) -> None:
        self.adapter = adapter
        self.org = org

    def _directory(self) -> _Directory:
        return _Directory(self.adapter.snapshot(self.org))

    # -- reads ---------------------------------------------------------------------------

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        """The resource, or :class:`~scim2_models.NotFoundException`."""
        return self._get(self._directory(), resource_type.name, resource_id)

    def _get(self, directory: _Directory, name: str | None, resource_id: str) -> Resource[Any]:
        if name == USER and resource_id in directory.people:
            return directory.user(directory.people[resource_id])
        if name == GROUP and resource_id in directory.teams:
            return directory.group(directory.teams[resource_id])
        raise NotFoundException(detail=f"{name} {resource_id!r} not found")

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        """Filter, sort and page every resource of the types (users first, then groups)."""
        directory = self._directory()
        names = [rt.name for rt in resource_types if rt.name]
        scim_filter = search_request.filter
        candidates = list(self._candidates(directory, names, scim_filter))
        if scim_filter is not None and not scim_filter.models and candidates:
            models = tuple(dict.fromkeys(type(r) for r in candidates))
            scim_filter = parametrize(
                ScimFilter, models[0] if len(models) == 1 else _union(models)
            )(str(scim_filter))
        found = [r for r in candidates if scim_filter is None or scim_filter.match(r)]
        found = search_request.sort(found)
        start = search_request.start_index_0 or 0
        count = search_request.count
        stop = None if count is None else start + count
        return SearchPage(len(found), found[start:stop])

    def _candidates(
        self, directory: _Directory, names: list[str], scim_filter: ScimFilter[Any] | None
    ) -> Iterator[Resource[Any]]:
        """Every resource of the types, or only those an ``eq`` on a key attribute can match
        (``userName``, ``externalId``, ``id``, ``displayName``): the IdPs' lookups stay cheap."""
        hint = _equality(scim_filter)
        if hint is None or len(names) != 1:
            yield from directory.resources(names)
            return
        attribute, value = hint
        snapshot = directory.snapshot
        if names == [USER]:
            if attribute == "username":
                people = [snapshot.by_email.get(normalize_email(value))]
            elif attribute == "externalid":
                people = [snapshot.by_external_id.get(value)]
            elif attribute == "id":
                people = [directory.people.get(value)]
            else:
                yield from directory.resources(names)
                return
            for person in people:
                if person is not None:
                    yield directory.user(person)
        elif names == [GROUP]:
            if attribute == "displayname":
                teams = [snapshot.team_by_name.get(normalize_team(value))]
            elif attribute == "id":
                teams = [directory.teams.get(value)]
            else:
                yield from directory.resources(names)
                return
            for team in teams:
                if team is not None:
                    yield directory.group(team)

    # -- writes --------------------------------------------------------------------------

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        """Create a person (``User``) or a team with its members (``Group``)."""
        directory = self._directory()
        if resource_type.name == USER:
            return self._create_user(directory, resource)
        return self._create_group(directory, resource)

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        """Apply the new state of a resource (PUT, or PATCH already applied by the service)."""
        directory = self._directory()
        current = self._get(directory, resource_type.name, cast(str, resource.id))
        _check_version(current, expected_version)
        if resource_type.name == USER:
            self._update_user(directory, directory.people[cast(str, resource.id)], resource)
        else:
            self._update_group(directory, directory.teams[cast(str, resource.id)], resource)
        return self.get(resource_type, cast(str, resource.id))

    def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        """Delete for good: a person (and their dashboard access), or a team (its members are
        left without a team first). A team some manager's dashboard scope names is refused."""
        directory = self._directory()
        current = self._get(directory, resource_type.name, resource_id)
        _check_version(current, expected_version)
        try:
            if resource_type.name == USER:
                self.adapter.delete_person(self.org, resource_id)
                return
            team = directory.teams[resource_id]
            scoped = [a.email for a in directory.snapshot.access if team.name in a.teams]
            if scoped:
                raise _conflict(
                    f"Team {team.name!r} is in the dashboard scope of {', '.join(scoped)}; "
                    "change Users.csv first."
                )
            members = directory.members.get(normalize_team(team.name), [])
            self._apply([_move(p, None) for p in members])
            self.adapter.delete_team(self.org, team.name)
        except NotImplementedError as exc:
            raise NotImplementedException(detail=str(exc)) from exc

    # -- users ---------------------------------------------------------------------------

    def _create_user(self, directory: _Directory, resource: Resource[Any]) -> Resource[Any]:
        values = _user_values(resource)
        email = values["email"]
        self._check_user_unique(directory, None, email, values.get("external_id"))
        after = {
            "email": email,
            "first_name": values["first_name"],
            "last_name": values["last_name"],
            "title": values["title"],
            "team": None,
            "external_id": values["external_id"],
            "extra": {},
        }
        self._apply([Change(ChangeKind.EMPLOYEE_CREATED, email, None, None, after)])
        directory = self._directory()
        person = directory.snapshot.by_email.get(normalize_email(email))
        if person is None:  # pragma: no cover - the adapter did not create the person
            raise RuntimeError(f"the adapter did not create {email!r}")
        if values["active"] is False:
            self._apply([_activation(person, False)])
            directory = self._directory()
            person = directory.people[person.key]
        return directory.user(person)

    def _update_user(
        self, directory: _Directory, person: PersonRecord, resource: Resource[Any]
    ) -> None:
        values = _user_values(resource)
        self._check_user_unique(directory, person.key, values["email"], values["external_id"])
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        current = {
            "email": person.email,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "title": person.title,
            "external_id": person.external_id,
        }
        for field, old in current.items():
            new = values[field]
            if field == "email" and normalize_email(old) == new:
                continue
            if (old or None) != (new or None):
                before[field], after[field] = old, new
        changes: list[Change] = []
        if after:
            changes.append(
                Change(ChangeKind.EMPLOYEE_UPDATED, person.email, person.key, before, after)
            )
        if values["active"] is not None and values["active"] != person.active:
            changes.append(_activation(person, values["active"]))
        self._apply(changes)

    @staticmethod
    def _check_user_unique(
        directory: _Directory, key: str | None, email: str, external_id: str | None
    ) -> None:
        snapshot = directory.snapshot
        holder = snapshot.by_email.get(normalize_email(email))
        if holder is not None and holder.key != key:
            raise UniquenessException(detail=f"userName {email!r} is already taken")
        if external_id:
            holder = snapshot.by_external_id.get(external_id)
            if holder is not None and holder.key != key:
                raise UniquenessException(detail=f"externalId {external_id!r} is already taken")

    # -- groups --------------------------------------------------------------------------

    def _create_group(self, directory: _Directory, resource: Resource[Any]) -> Resource[Any]:
        name = _group_name(resource)
        if directory.team_named(name) is not None:
            raise UniquenessException(detail=f"displayName {name!r} is already taken")
        members = _member_people(directory, resource)
        self._apply(
            [Change(ChangeKind.TEAM_CREATED, name, after={"name": name})]
            + [_move(p, name) for p in members]
        )
        directory = self._directory()
        team = directory.team_named(name)
        if team is None:  # pragma: no cover - the adapter did not create the team
            raise RuntimeError(f"the adapter did not create team {name!r}")
        return directory.group(team)

    def _update_group(
        self, directory: _Directory, team: TeamRecord, resource: Resource[Any]
    ) -> None:
        name = _group_name(resource)
        holder = directory.team_named(name)
        if holder is not None and holder.key != team.key:
            raise UniquenessException(detail=f"displayName {name!r} is already taken")
        wanted = {p.key: p for p in _member_people(directory, resource)}
        current = {p.key: p for p in directory.members.get(normalize_team(team.name), [])}
        if name != team.name:
            try:
                self.adapter.rename_team(self.org, team.name, name)
            except NotImplementedError as exc:
                raise NotImplementedException(detail=str(exc)) from exc
        moves = [_move(p, name) for key, p in wanted.items() if key not in current]
        moves += [_move(p, None) for key, p in current.items() if key not in wanted]
        self._apply(moves)

    # -- helpers -------------------------------------------------------------------------

    def _apply(self, changes: list[Change]) -> None:
        if changes:
            self.adapter.apply(self.org, ChangeSet.of(changes))


def _union(models: tuple[type, ...]) -> Any:
    return Union[models]  # noqa: UP007


def _equality(scim_filter: ScimFilter[Any] | None) -> tuple[str, str] | None:
    """``(attribute name folded, value)`` of a filter that is one ``attr eq "string"``."""
    if scim_filter is None:
        return None
    node = scim_filter.ast
    if (
        isinstance(node, Comparison)
        and node.op == CompareOperator.eq
        and isinstance(node.value, str)
        and node.attr_path.sub_attr is None
        and node.attr_path.uri in (None, User.__schema__, Group.__schema__)
    ):
        return node.attr_path.attr.casefold(), node.value
    return None


def _check_version(current: Resource[Any], expected: str | None) -> None:
    if expected is not None and current.meta is not None and current.meta.version != expected:
        raise PreconditionFailedException(detail="The resource changed since it was read")


def _conflict(detail: str) -> Exception:
    return ConflictException(detail=detail)


def _user_values(resource: Resource[Any]) -> dict[str, Any]:
    """The person fields a ``User`` resource asks for (``userName`` is the email)."""
    user = cast(Any, resource)
    email = normalize_email(user.user_name or "")
    if "@" not in email or len(email) < 3 or any(c.isspace() for c in email):
        raise InvalidValueException(detail=f"userName must be an email address, not {email!r}")
    name = user.name
    first = (name.given_name if name else None) or ""
    last = (name.family_name if name else None) or ""
    if not first and not last and user.display_name:
        first, _, last = user.display_name.strip().partition(" ")
    return {
        "email": email,
        "first_name": first.strip(),
        "last_name": last.strip(),
        "title": (user.title or "").strip(),
        "external_id": (user.external_id or "").strip() or None,
        "active": user.active,
    }


def _group_name(resource: Resource[Any]) -> str:
    name = " ".join((cast(Any, resource).display_name or "").split())
    if not name:
        raise InvalidValueException(detail="displayName is required")
    return name


def _member_people(directory: _Directory, resource: Resource[Any]) -> list[PersonRecord]:
    """The people a ``Group``'s members name (groups as members are refused)."""
    people: list[PersonRecord] = []
    for member in cast(Any, resource).members or []:
        person = directory.people.get(member.value or "")
        if person is None or (member.type or "User").casefold() != "user":
            raise InvalidValueException(detail=f"No user {member.value!r} to make a member")
        people.append(person)
    return people


def _move(person: PersonRecord, team: str | None) -> Change:
    return Change(
        ChangeKind.EMPLOYEE_MOVED, person.email, person.key, {"team": person.team}, {"team": team}
    )


def _activation(person: PersonRecord, active: bool) -> Change:
    kind = ChangeKind.EMPLOYEE_REACTIVATED if active else ChangeKind.EMPLOYEE_DEACTIVATED
    return Change(kind, person.email, person.key, {"active": not active}, {"active": active})
