"""IAM roles through boto3 and the aws CLI against a real kobako server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from awscli_helper import aws
from conftest import Server, start_server

_n = iter(range(1_000_000))

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
POLICY = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
MANAGED = "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"


@pytest.fixture
def iam(server: Server) -> Any:
    return server.client("iam")


def _name(stem: str = "role") -> str:
    return f"{stem}-{os.getpid()}-{next(_n)}"


def _error(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = error.value.response
    return (str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"]),
            str(response["Error"]["Message"]))


def test_create_get_role_with_path_tags_and_trust_policy(iam: Any) -> None:
    name = _name()
    created = iam.create_role(RoleName=name, Path="/service-role/",
                              AssumeRolePolicyDocument=json.dumps(TRUST),
                              Description="for training", MaxSessionDuration=7200,
                              Tags=[{"Key": "team", "Value": "ml"}])["Role"]
    assert created["Arn"] == f"arn:aws:iam::000000000000:role/service-role/{name}"
    assert created["RoleId"].startswith("AROA") and len(created["RoleId"]) == 21
    assert created["AssumeRolePolicyDocument"] == TRUST  # URL-encoded, decoded by botocore
    role = iam.get_role(RoleName=name)["Role"]
    assert role["RoleId"] == created["RoleId"]
    assert (role["Path"], role["Description"], role["MaxSessionDuration"]) == (
        "/service-role/", "for training", 7200)
    assert role["Tags"] == [{"Key": "team", "Value": "ml"}]
    assert role["AssumeRolePolicyDocument"] == TRUST
    # names are unique without regard to case, as on AWS
    assert iam.get_role(RoleName=name.upper())["Role"]["RoleName"] == name
    with pytest.raises(ClientError) as error:
        iam.create_role(RoleName=name.upper(), AssumeRolePolicyDocument=json.dumps(TRUST))
    assert _error(error) == ("EntityAlreadyExists", 409,
                             f"Role with name {name.upper()} already exists.")


def test_errors_follow_aws(iam: Any, server: Server) -> None:
    with pytest.raises(ClientError) as error:
        iam.get_role(RoleName="no-such-role")
    assert _error(error) == ("NoSuchEntity", 404,
                             "The role with name no-such-role cannot be found.")
    with pytest.raises(ClientError) as error:
        iam.create_role(RoleName=_name(), AssumeRolePolicyDocument="{not json")
    assert _error(error)[:2] == ("MalformedPolicyDocument", 400)
    with pytest.raises(ClientError) as error:
        iam.create_role(RoleName="bad/name", AssumeRolePolicyDocument=json.dumps(TRUST))
    assert _error(error)[:2] == ("ValidationError", 400)
    with pytest.raises(ClientError) as error:
        iam.create_role(RoleName=_name(), AssumeRolePolicyDocument=json.dumps(TRUST),
                        Path="no-slashes")
    assert _error(error)[:2] == ("ValidationError", 400)
    unchecked = server.client("iam", config=BotoConfig(parameter_validation=False,
                                                       retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as error:  # botocore checks the minimum itself
        unchecked.create_role(RoleName=_name(), AssumeRolePolicyDocument=json.dumps(TRUST),
                              MaxSessionDuration=60)
    code, status, message = _error(error)
    assert (code, status) == ("ValidationError", 400) and "maxSessionDuration" in message


def test_update_role_and_trust_policy(iam: Any) -> None:
    name = _name()
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.update_role(RoleName=name, Description="now described", MaxSessionDuration=43200)
    role = iam.get_role(RoleName=name)["Role"]
    assert (role["Description"], role["MaxSessionDuration"]) == ("now described", 43200)
    other = {**TRUST, "Statement": [{**TRUST["Statement"][0],  # type: ignore[dict-item]
                                     "Principal": {"Service": "batch.amazonaws.com"}}]}
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(other))
    assert iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == other
    with pytest.raises(ClientError) as error:
        iam.update_role(RoleName=name, MaxSessionDuration=50000)
    assert _error(error)[:2] == ("ValidationError", 400)


def test_list_roles_path_prefix_and_pagination(iam: Any) -> None:
    prefix = f"/list-{os.getpid()}-{next(_n)}/"
    names = sorted(_name("lr") for _ in range(5))
    for name in names:
        iam.create_role(RoleName=name, Path=prefix, AssumeRolePolicyDocument=json.dumps(TRUST))
    seen: list[str] = []
    kwargs: dict[str, Any] = {"PathPrefix": prefix, "MaxItems": 2}
    pages = 0
    while True:
        page = iam.list_roles(**kwargs)
        pages += 1
        assert len(page["Roles"]) <= 2
        seen += [role["RoleName"] for role in page["Roles"]]
        if not page["IsTruncated"]:
            break
        kwargs["Marker"] = page["Marker"]
    assert (seen, pages) == (names, 3)
    listed = iam.list_roles(PathPrefix=prefix)["Roles"][0]
    assert "Tags" not in listed and listed["Path"] == prefix
    # the paginator walks the same pages
    paged = [r["RoleName"] for p in iam.get_paginator("list_roles").paginate(
        PathPrefix=prefix, PaginationConfig={"PageSize": 2}) for r in p["Roles"]]
    assert paged == names
    assert iam.list_roles(PathPrefix="/nothing-here/")["Roles"] == []


def test_tags(iam: Any) -> None:
    name = _name()
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST),
                    Tags=[{"Key": "a", "Value": "1"}])
    iam.tag_role(RoleName=name, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
    assert iam.list_role_tags(RoleName=name)["Tags"] == [
        {"Key": "a", "Value": "3"}, {"Key": "b", "Value": "2"}]
    page = iam.list_role_tags(RoleName=name, MaxItems=1)
    assert page["IsTruncated"] and page["Tags"] == [{"Key": "a", "Value": "3"}]
    assert iam.list_role_tags(RoleName=name, Marker=page["Marker"])["Tags"] == [
        {"Key": "b", "Value": "2"}]
    iam.untag_role(RoleName=name, TagKeys=["a"])
    assert iam.get_role(RoleName=name)["Role"]["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as error:
        iam.tag_role(RoleName=name, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)])
    assert _error(error)[:2] == ("LimitExceeded", 409)


def test_inline_and_attached_policies_and_delete_conflict(iam: Any) -> None:
    name = _name()
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps(POLICY))
    got = iam.get_role_policy(RoleName=name, PolicyName="read")
    assert (got["RoleName"], got["PolicyName"], got["PolicyDocument"]) == (name, "read", POLICY)
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == ["read"]
    with pytest.raises(ClientError) as error:
        iam.put_role_policy(RoleName=name, PolicyName="bad", PolicyDocument="[nope")
    assert _error(error) == ("MalformedPolicyDocument", 400, "Syntax errors in policy.")
    with pytest.raises(ClientError) as error:
        iam.get_role_policy(RoleName=name, PolicyName="missing")
    assert _error(error) == ("NoSuchEntity", 404,
                             "The role policy with name missing cannot be found.")

    iam.attach_role_policy(RoleName=name, PolicyArn=MANAGED)
    iam.attach_role_policy(RoleName=name, PolicyArn=MANAGED)  # idempotent, as on AWS
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == [
        {"PolicyName": "AmazonSageMakerFullAccess", "PolicyArn": MANAGED}]
    with pytest.raises(ClientError) as error:
        iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:s3:::not-a-policy-arn")
    assert _error(error)[:2] == ("InvalidInput", 400)

    with pytest.raises(ClientError) as error:
        iam.delete_role(RoleName=name)
    assert _error(error) == ("DeleteConflict", 409,
                             "Cannot delete entity, must detach all policies first.")
    iam.detach_role_policy(RoleName=name, PolicyArn=MANAGED)
    with pytest.raises(ClientError) as error:
        iam.detach_role_policy(RoleName=name, PolicyArn=MANAGED)
    assert _error(error)[:2] == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as error:
        iam.delete_role(RoleName=name)
    assert _error(error) == ("DeleteConflict", 409,
                             "Cannot delete entity, must delete policies first.")
    iam.delete_role_policy(RoleName=name, PolicyName="read")
    iam.delete_role(RoleName=name)
    with pytest.raises(ClientError) as error:
        iam.get_role(RoleName=name)
    assert _error(error)[0] == "NoSuchEntity"


def test_simulate_principal_policy_allows_everything_for_existing_roles(iam: Any) -> None:
    """kobako enforces no IAM policy: the simulator says so, for roles that exist."""
    name = _name()
    arn = iam.create_role(RoleName=name, Path="/service-role/",
                          AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    actions = ["s3:PutObject", "sagemaker:CreateTrainingJob", "logs:PutLogEvents"]
    results = [r for page in iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=arn, ActionNames=actions, PaginationConfig={"PageSize": 2})
        for r in page["EvaluationResults"]]
    assert [(r["EvalActionName"], r["EvalDecision"]) for r in results] == [
        (a, "allowed") for a in actions]
    with pytest.raises(ClientError) as error:
        iam.simulate_principal_policy(PolicySourceArn=arn.replace(name, "gone"),
                                      ActionNames=actions)
    assert _error(error)[:2] == ("NoSuchEntity", 404)


def test_roles_are_per_account_and_survive_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "kobako.toml"
    config.write_text(
        '[[users]]\naccess_key_id = "alice"\nsecret_access_key = "alice-secret"\n'
        'account_id = "111111111111"\n'
        '[[users]]\naccess_key_id = "bob"\nsecret_access_key = "bob-secret"\n'
        'account_id = "222222222222"\n')
    server = start_server(tmp_path / "data", config=config)
    try:
        alice = server.client("iam", aws_access_key_id="alice",
                              aws_secret_access_key="alice-secret")
        bob = server.client("iam", aws_access_key_id="bob", aws_secret_access_key="bob-secret")
        arn = alice.create_role(RoleName="shared-name",
                                AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
        assert arn == "arn:aws:iam::111111111111:role/shared-name"
        with pytest.raises(ClientError) as error:
            bob.get_role(RoleName="shared-name")
        assert _error(error)[0] == "NoSuchEntity"
        bob.create_role(RoleName="shared-name", AssumeRolePolicyDocument=json.dumps(TRUST))
        server.kill()
        server = start_server(tmp_path / "data", config=config)
        alice = server.client("iam", aws_access_key_id="alice",
                              aws_secret_access_key="alice-secret")
        assert alice.get_role(RoleName="shared-name")["Role"]["Arn"] == arn
    finally:
        server.stop()


def test_aws_cli_create_get_list_roles(server: Server, tmp_path: Path) -> None:
    name = _name("cli")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(TRUST))
    created = json.loads(aws(server.url, tmp_path, "iam", "create-role", "--role-name", name,
                             "--assume-role-policy-document", f"file://{trust}",
                             "--path", "/cli/").stdout)["Role"]
    assert created["Arn"] == f"arn:aws:iam::000000000000:role/cli/{name}"
    got = json.loads(aws(server.url, tmp_path, "iam", "get-role", "--role-name", name).stdout)
    assert got["Role"]["AssumeRolePolicyDocument"] == TRUST
    listed = json.loads(aws(server.url, tmp_path, "iam", "list-roles",
                            "--path-prefix", "/cli/").stdout)
    assert name in [role["RoleName"] for role in listed["Roles"]]
    missing = aws(server.url, tmp_path, "iam", "get-role", "--role-name", "nope-cli",
                  check=False)
    assert missing.returncode != 0 and "NoSuchEntity" in missing.stderr
