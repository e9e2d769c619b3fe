"""IAM's operations on roles: typed parameters in, plain dicts out (the query codec
writes the XML). Validation and messages follow AWS's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from kobako.iam.store import (
    MAX_SESSION,
    MAX_TAGS,
    MIN_SESSION,
    POLICY_ARN,
    IamStore,
    Role,
    check_name,
    check_path,
    check_policy,
    encoded,
    invalid,
)
from kobako.protocol.errors import AwsError
from kobako.server.service import Handler, RequestContext

T = TypeVar("T")

TRUST_MALFORMED = "This policy contains invalid Json"
POLICY_MALFORMED = "Syntax errors in policy."


def _max_items(params: dict[str, Any]) -> int:
    limit = int(params.get("MaxItems", 100))
    if limit < 1:
        raise invalid("maxItems", limit, "Member must have value greater than or equal to 1")
    if limit > 1000:
        raise invalid("maxItems", limit, "Member must have value less than or equal to 1000")
    return limit


def _page(params: dict[str, Any], fetch: Callable[[str, int], Sequence[T]],
          key: Callable[[T], str]) -> tuple[Sequence[T], dict[str, Any]]:
    """One page as AWS pages: MaxItems, then IsTruncated and the Marker to go on from.
    The marker is the last item's sort key; the store lists what sorts after it."""
    limit = _max_items(params)
    items = fetch(str(params.get("Marker") or ""), limit + 1)
    if len(items) > limit:
        items = items[:limit]
        return items, {"IsTruncated": True, "Marker": key(items[-1])}
    return items, {"IsTruncated": False}


def _tags(raw: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    tags = [(str(t.get("Key", "")), str(t.get("Value", ""))) for t in raw or []]
    if len(tags) > MAX_TAGS:
        raise invalid("tags", "[...]", f"Member must have length less than or equal to "
                      f"{MAX_TAGS}")
    for k, v in tags:
        if not k or len(k) > 128:
            raise invalid("tags.member.key", k, "Member must have length less than or equal "
                          "to 128" if k else "Member must have length greater than or equal "
                          "to 1")
        if len(v) > 256:
            raise invalid("tags.member.value", v,
                          "Member must have length less than or equal to 256")
    return tags


def _session(value: Any) -> int | None:
    if value is None:
        return None
    seconds = int(value)
    if seconds < MIN_SESSION:
        raise invalid("maxSessionDuration", seconds,
                      f"Member must have value greater than or equal to {MIN_SESSION}")
    if seconds > MAX_SESSION:
        raise invalid("maxSessionDuration", seconds,
                      f"Member must have value less than or equal to {MAX_SESSION}")
    return seconds


def _description(value: Any) -> str | None:
    if value is not None and len(str(value)) > 1000:
        raise invalid("description", value, "Member must have length less than or equal "
                      "to 1000")
    return None if value is None else str(value)


def _listed(role: Role) -> dict[str, Any]:
    """A role as ListRoles shows it: no tags, no last use."""
    out: dict[str, Any] = {
        "Path": role.path,
        "RoleName": role.name,
        "RoleId": role.role_id,
        "Arn": role.arn,
        "CreateDate": datetime.fromtimestamp(role.created, UTC),
        "AssumeRolePolicyDocument": encoded(role.trust_policy),
        "MaxSessionDuration": role.max_session,
    }
    if role.description is not None:
        out["Description"] = role.description
    return out


def build_handlers(store: IamStore) -> dict[str, Handler]:
    def role_name(params: dict[str, Any]) -> str:
        name = str(params.get("RoleName", ""))
        check_name(name, "roleName", 64)
        return name

    def full(role: Role) -> dict[str, Any]:
        out = _listed(role)
        if role.boundary:
            out["PermissionsBoundary"] = {"PermissionsBoundaryType": "PermissionsBoundaryPolicy",
                                          "PermissionsBoundaryArn": role.boundary}
        tags = store.tags(role)
        if tags:
            out["Tags"] = [{"Key": k, "Value": v} for k, v in tags]
        out["RoleLastUsed"] = {}
        return out

    async def create_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = role_name(params)
        path = str(params.get("Path") or "/")
        check_path(path)
        trust = str(params.get("AssumeRolePolicyDocument", ""))
        check_policy(trust, TRUST_MALFORMED)
        boundary = params.get("PermissionsBoundary")
        if boundary is not None and not POLICY_ARN.fullmatch(str(boundary)):
            raise AwsError("InvalidInput", f"ARN {boundary} is not valid.")
        role = store.create_role(
            ctx.account_id, name, path, trust, _description(params.get("Description")),
            _session(params.get("MaxSessionDuration")) or MIN_SESSION,
            None if boundary is None else str(boundary), _tags(params.get("Tags")))
        out = full(role)
        del out["RoleLastUsed"]
        return {"Role": out}

    async def get_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Role": full(store.role(ctx.account_id, role_name(params)))}

    async def list_roles(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix = str(params.get("PathPrefix") or "/")
        check_path(prefix if prefix.endswith("/") else prefix + "/", "pathPrefix")
        roles, more = _page(params, lambda after, n: store.roles(ctx.account_id, prefix,
                                                                 after, n),
                            lambda role: role.name)
        return {"Roles": [_listed(role) for role in roles], **more}

    async def update_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.update_role(ctx.account_id, role_name(params),
                          _description(params.get("Description")),
                          _session(params.get("MaxSessionDuration")))
        return {}

    async def update_role_description(ctx: RequestContext,
                                      params: dict[str, Any]) -> dict[str, Any]:
        role = store.update_role(ctx.account_id, role_name(params),
                                 _description(params.get("Description", "")), None)
        return {"Role": full(role)}

    async def update_assume_role_policy(ctx: RequestContext,
                                        params: dict[str, Any]) -> dict[str, Any]:
        document = str(params.get("PolicyDocument", ""))
        check_policy(document, TRUST_MALFORMED)
        store.update_trust_policy(ctx.account_id, role_name(params), document)
        return {}

    async def delete_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.delete_role(ctx.account_id, role_name(params))
        return {}

    async def tag_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.tag_role(ctx.account_id, role_name(params), _tags(params.get("Tags")))
        return {}

    async def untag_role(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        store.untag_role(ctx.account_id, role_name(params),
                         [str(k) for k in params.get("TagKeys") or []])
        return {}

    async def list_role_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        role = store.role(ctx.account_id, role_name(params))
        tags, more = _page(params, lambda after, n: store.tags(role, after, n),
                           lambda tag: tag[0])
        return {"Tags": [{"Key": k, "Value": v} for k, v in tags], **more}

    def policy_name(params: dict[str, Any]) -> str:
        name = str(params.get("PolicyName", ""))
        check_name(name, "policyName", 128)
        return name

    async def put_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        document = str(params.get("PolicyDocument", ""))
        check_policy(document, POLICY_MALFORMED)
        store.put_policy(ctx.account_id, role_name(params), policy_name(params), document)
        return {}

    async def get_role_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name, policy = role_name(params), policy_name(params)
        document = store.policy(ctx.account_id, name, policy)
        role = store.role(ctx.account_id, name)
        return {"RoleName": role.name, "PolicyName": policy,
                "PolicyDocument": encoded(document)}

    async def list_role_policies(ctx: RequestContext,
                                 params: dict[str, Any]) -> dict[str, Any]:
        name = role_name(params)
        names, more = _page(params, lambda after, n: store.policy_names(ctx.account_id, name,
                                                                        after, n),
                            lambda policy: policy)
        return {"PolicyNames": list(names), **more}

    def policy_arn(params: dict[str, Any]) -> str:
        arn = str(params.get("PolicyArn", ""))
        if not POLICY_ARN.fullmatch(arn):
            raise AwsError("InvalidInput", f"ARN {arn} is not valid.")
        return arn

    def role_policy_change(change: Callable[[str, str, str], None],
                           policy: Callable[[dict[str, Any]], str]) -> Handler:
        """The handler of a call that names a role and a policy (`policy` reads and checks
        which, after the role name), has the store `change` them, and answers nothing."""

        async def change_role_policy(ctx: RequestContext,
                                     params: dict[str, Any]) -> dict[str, Any]:
            change(ctx.account_id, role_name(params), policy(params))
            return {}

        return change_role_policy

    async def list_attached_role_policies(ctx: RequestContext,
                                          params: dict[str, Any]) -> dict[str, Any]:
        name = role_name(params)
        prefix = str(params.get("PathPrefix") or "/")

        def fetch(after: str, limit: int) -> list[str]:
            arns = store.attached(ctx.account_id, name, after, -1)
            return [a for a in arns if _policy_path(a).startswith(prefix)][:limit]

        arns, more = _page(params, fetch, lambda arn: arn)
        return {"AttachedPolicies": [{"PolicyName": arn.rsplit("/", 1)[-1], "PolicyArn": arn}
                                     for arn in arns], **more}

    async def simulate_principal_policy(ctx: RequestContext,
                                        params: dict[str, Any]) -> dict[str, Any]:
        """kobako enforces no IAM policy, so every action is allowed: the simulator
        answers what kobako will do. The principal must exist, as on AWS."""
        source = str(params.get("PolicySourceArn", ""))
        _, _, resource = source.partition(":iam::")
        account, _, entity = resource.partition(":")
        if entity.startswith("role/"):
            name = entity.rsplit("/", 1)[-1]
            if account != ctx.account_id:
                raise no_such_entity_arn(source)
            store.role(account, name)
        elif not entity.startswith(("user/", "group/")):
            raise AwsError("InvalidInput", f"Invalid ARN: {source}")
        actions = [str(a) for a in params.get("ActionNames") or []]
        resources = [str(r) for r in params.get("ResourceArns") or []] or ["*"]
        results = [{"EvalActionName": action, "EvalResourceName": res,
                    "EvalDecision": "allowed", "MatchedStatements": [],
                    "MissingContextValues": []}
                   for action in actions for res in resources]
        limit = _max_items(params)
        start = int(params.get("Marker") or 0)
        page = results[start:start + limit]
        more: dict[str, Any] = {"IsTruncated": start + limit < len(results)}
        if more["IsTruncated"]:
            more["Marker"] = str(start + limit)
        return {"EvaluationResults": page, **more}

    return {
        "CreateRole": create_role,
        "GetRole": get_role,
        "ListRoles": list_roles,
        "UpdateRole": update_role,
        "UpdateRoleDescription": update_role_description,
        "UpdateAssumeRolePolicy": update_assume_role_policy,
        "DeleteRole": delete_role,
        "TagRole": tag_role,
        "UntagRole": untag_role,
        "ListRoleTags": list_role_tags,
        "PutRolePolicy": put_role_policy,
        "GetRolePolicy": get_role_policy,
        "DeleteRolePolicy": role_policy_change(store.delete_policy, policy_name),
        "ListRolePolicies": list_role_policies,
        "AttachRolePolicy": role_policy_change(store.attach, policy_arn),
        "DetachRolePolicy": role_policy_change(store.detach, policy_arn),
        "ListAttachedRolePolicies": list_attached_role_policies,
        "SimulatePrincipalPolicy": simulate_principal_policy,
    }


def no_such_entity_arn(arn: str) -> AwsError:
    return AwsError("NoSuchEntity", f"The entity {arn} cannot be found.", 404)


def _policy_path(arn: str) -> str:
    """`arn:aws:iam::aws:policy/service-role/X` -> `/service-role/`."""
    resource = arn.split(":policy", 1)[-1]
    return resource.rsplit("/", 1)[0] + "/"
