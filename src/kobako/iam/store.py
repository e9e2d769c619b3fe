"""IAM's durable state: roles, their tags, inline and attached policies. No HTTP here.

Everything is per account (the caller's, from its credentials); IAM is global, so
there is no region. Role names are unique without regard to case, as on AWS.
kobako stores roles so that tools which read them work; it enforces no policy.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from dataclasses import dataclass
from urllib.parse import quote

from kobako.protocol.errors import AwsError
from kobako.store.db import Database, Row

SCHEMA = [
    """
    CREATE TABLE iam_roles (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        name TEXT NOT NULL COLLATE NOCASE,
        path TEXT NOT NULL,
        role_id TEXT NOT NULL,
        trust_policy TEXT NOT NULL,
        description TEXT,
        max_session INTEGER NOT NULL,
        boundary TEXT,
        created REAL NOT NULL,
        UNIQUE (account, name)
    );
    CREATE TABLE iam_role_tags (
        role INTEGER NOT NULL REFERENCES iam_roles (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (role, key)
    );
    CREATE TABLE iam_role_policies (
        role INTEGER NOT NULL REFERENCES iam_roles (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (role, name)
    );
    CREATE TABLE iam_role_attached (
        role INTEGER NOT NULL REFERENCES iam_roles (id) ON DELETE CASCADE,
        arn TEXT NOT NULL,
        PRIMARY KEY (role, arn)
    )
    """
]

NAME_PATTERN = re.compile(r"[\w+=,.@-]+")
PATH_PATTERN = re.compile(r"/|/[\x21-\x7e]+/")
POLICY_ARN = re.compile(r"arn:aws[\w-]*:iam::(aws|\d{12}):policy/(?:[\x21-\x7e]*/)?([\w+=,.@-]+)")
MAX_TAGS = 50
MIN_SESSION, MAX_SESSION = 3600, 43200


def invalid(field: str, value: object, constraint: str) -> AwsError:
    """AWS's wording for a parameter that breaks its model's constraint."""
    return AwsError("ValidationError", f"1 validation error detected: Value '{value}' at "
                    f"'{field}' failed to satisfy constraint: {constraint}")


def check_name(value: str, field: str, most: int) -> None:
    if not value or len(value) > most:
        raise invalid(field, value, f"Member must have length less than or equal to {most}"
                      if value else "Member must have length greater than or equal to 1")
    if not NAME_PATTERN.fullmatch(value):
        raise invalid(field, value,
                      "Member must satisfy regular expression pattern: [\\w+=,.@-]+")


def check_path(path: str, field: str = "path") -> None:
    if len(path) > 512 or not PATH_PATTERN.fullmatch(path):
        raise AwsError("ValidationError", f"The specified value for {field} is invalid. It "
                       "must begin and end with / and contain only alphanumeric characters "
                       "and/or / characters.")


def check_policy(document: str, malformed: str) -> None:
    """The document must be a JSON object: AWS's policy grammar is not checked further."""
    try:
        parsed = json.loads(document)
    except ValueError:
        raise AwsError("MalformedPolicyDocument", malformed) from None
    if not isinstance(parsed, dict):
        raise AwsError("MalformedPolicyDocument", malformed)


def encoded(document: str) -> str:
    """IAM returns policy documents URL-encoded (RFC 3986); the SDKs decode them."""
    return quote(document, safe="-_.~")


def new_role_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "AROA" + "".join(secrets.choice(alphabet) for _ in range(17))


@dataclass(frozen=True)
class Role:
    key: int
    account: str
    name: str
    path: str
    role_id: str
    trust_policy: str
    description: str | None
    max_session: int
    boundary: str | None
    created: float

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role{self.path}{self.name}"

    @classmethod
    def of(cls, row: Row) -> Role:
        return cls(row["id"], row["account"], row["name"], row["path"], row["role_id"],
                   row["trust_policy"], row["description"], row["max_session"],
                   row["boundary"], row["created"])


def no_such_role(name: str) -> AwsError:
    return AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)


class IamStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("iam", SCHEMA)

    # --- roles -------------------------------------------------------------------

    def create_role(self, account: str, name: str, path: str, trust_policy: str,
                    description: str | None, max_session: int, boundary: str | None,
                    tags: list[tuple[str, str]]) -> Role:
        with self.db.transaction():
            if self.db.one("SELECT 1 FROM iam_roles WHERE account = ? AND name = ?",
                           (account, name)):
                raise AwsError("EntityAlreadyExists",
                               f"Role with name {name} already exists.", 409)
            self.db.execute(
                "INSERT INTO iam_roles (account, name, path, role_id, trust_policy, "
                "description, max_session, boundary, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account, name, path, new_role_id(), trust_policy, description,
                 max_session, boundary, time.time()))
            role = self.role(account, name)
            self.db.executemany(
                "INSERT OR REPLACE INTO iam_role_tags (role, key, value) VALUES (?, ?, ?)",
                [(role.key, k, v) for k, v in tags])
        return role

    def role(self, account: str, name: str) -> Role:
        row = self.db.one("SELECT * FROM iam_roles WHERE account = ? AND name = ?",
                          (account, name))
        if row is None:
            raise no_such_role(name)
        return Role.of(row)

    def roles(self, account: str, path_prefix: str, after: str, limit: int) -> list[Role]:
        rows = self.db.query(
            "SELECT * FROM iam_roles WHERE account = ? AND substr(path, 1, ?) = ? "
            "AND name > ? ORDER BY name LIMIT ?",
            (account, len(path_prefix), path_prefix, after, limit))
        return [Role.of(row) for row in rows]

    def update_role(self, account: str, name: str, description: str | None,
                    max_session: int | None) -> Role:
        with self.db.transaction():
            role = self.role(account, name)
            self.db.execute(
                "UPDATE iam_roles SET description = ?, max_session = ? WHERE id = ?",
                (role.description if description is None else description,
                 role.max_session if max_session is None else max_session, role.key))
            return self.role(account, name)

    def update_trust_policy(self, account: str, name: str, document: str) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            self.db.execute("UPDATE iam_roles SET trust_policy = ? WHERE id = ?",
                            (document, role.key))

    def delete_role(self, account: str, name: str) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            if self.db.one("SELECT 1 FROM iam_role_attached WHERE role = ?", (role.key,)):
                raise AwsError("DeleteConflict",
                               "Cannot delete entity, must detach all policies first.", 409)
            if self.db.one("SELECT 1 FROM iam_role_policies WHERE role = ?", (role.key,)):
                raise AwsError("DeleteConflict",
                               "Cannot delete entity, must delete policies first.", 409)
            self.db.execute("DELETE FROM iam_roles WHERE id = ?", (role.key,))

    # --- tags --------------------------------------------------------------------

    def tags(self, role: Role, after: str = "", limit: int = -1) -> list[tuple[str, str]]:
        rows = self.db.query("SELECT key, value FROM iam_role_tags WHERE role = ? AND key > ? "
                             "ORDER BY key LIMIT ?", (role.key, after, limit))
        return [(row["key"], row["value"]) for row in rows]

    def tag_role(self, account: str, name: str, tags: list[tuple[str, str]]) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            keys = {k for k, _ in self.tags(role)} | {k for k, _ in tags}
            if len(keys) > MAX_TAGS:
                raise AwsError("LimitExceeded",
                               f"Cannot exceed quota for TagsPerRole: {MAX_TAGS}.", 409)
            self.db.executemany(
                "INSERT OR REPLACE INTO iam_role_tags (role, key, value) VALUES (?, ?, ?)",
                [(role.key, k, v) for k, v in tags])

    def untag_role(self, account: str, name: str, keys: list[str]) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            self.db.executemany("DELETE FROM iam_role_tags WHERE role = ? AND key = ?",
                                [(role.key, k) for k in keys])

    # --- inline policies ---------------------------------------------------------

    def put_policy(self, account: str, name: str, policy: str, document: str) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            self.db.execute("INSERT OR REPLACE INTO iam_role_policies (role, name, document) "
                            "VALUES (?, ?, ?)", (role.key, policy, document))

    def policy(self, account: str, name: str, policy: str) -> str:
        role = self.role(account, name)
        row = self.db.one("SELECT document FROM iam_role_policies WHERE role = ? AND name = ?",
                          (role.key, policy))
        if row is None:
            raise AwsError("NoSuchEntity",
                           f"The role policy with name {policy} cannot be found.", 404)
        return str(row["document"])

    def delete_policy(self, account: str, name: str, policy: str) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            if not self.db.execute("DELETE FROM iam_role_policies WHERE role = ? AND name = ?",
                                   (role.key, policy)):
                raise AwsError("NoSuchEntity",
                               f"The role policy with name {policy} cannot be found.", 404)

    def policy_names(self, account: str, name: str, after: str, limit: int) -> list[str]:
        role = self.role(account, name)
        rows = self.db.query("SELECT name FROM iam_role_policies WHERE role = ? AND name > ? "
                             "ORDER BY name LIMIT ?", (role.key, after, limit))
        return [str(row["name"]) for row in rows]

    # --- attached (managed) policies ----------------------------------------------

    def attach(self, account: str, name: str, arn: str) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            self.db.execute("INSERT OR IGNORE INTO iam_role_attached (role, arn) VALUES (?, ?)",
                            (role.key, arn))

    def detach(self, account: str, name: str, arn: str) -> None:
        with self.db.transaction():
            role = self.role(account, name)
            if not self.db.execute("DELETE FROM iam_role_attached WHERE role = ? AND arn = ?",
                                   (role.key, arn)):
                raise AwsError("NoSuchEntity", f"Policy {arn} was not found.", 404)

    def attached(self, account: str, name: str, after: str, limit: int) -> list[str]:
        role = self.role(account, name)
        rows = self.db.query("SELECT arn FROM iam_role_attached WHERE role = ? AND arn > ? "
                             "ORDER BY arn LIMIT ?", (role.key, after, limit))
        return [str(row["arn"]) for row in rows]
