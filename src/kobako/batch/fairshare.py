"""Fair-share scheduling: scheduling policies (the API) and share usage (the scheduler's).

AWS tracks each share identifier's usage as vCPU time x weightFactor and dispatches
from the share with the lowest value; a lower weightFactor therefore means a larger
share. kobako charges a job one vCPU-second per vCPU when it is dispatched (so that
even trivial jobs count, like a billing minimum) and the rest of its vCPU time when it
ends; usage decays exponentially with shareDecaySeconds as its time constant, and a
decay of 0 counts only the vCPUs running now, as AWS documents. Usage is kept in
memory and rebuilt from the job table when the server starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kobako.batch.common import arn, check_name, client_error, dumps, loads, now_ms
from kobako.batch.paging import offset_of, page_size, token_for
from kobako.batch.store import BatchStore
from kobako.server.service import Handler, RequestContext
from kobako.store.db import Row

DISPATCH_CHARGE_S = 1.0


@dataclass(frozen=True)
class Policy:
    """A fairsharePolicy, parsed once per scheduling pass."""

    decay_s: float
    reservation: int
    weights: dict[str, float]

    @classmethod
    def parse(cls, spec: dict[str, Any]) -> Policy:
        fair = spec.get("fairsharePolicy") or {}
        weights = {str(s["shareIdentifier"]): float(s.get("weightFactor", 1.0))
                   for s in fair.get("shareDistribution") or []}
        return cls(float(fair.get("shareDecaySeconds") or 0),
                   int(fair.get("computeReservation") or 0), weights)

    def weight(self, share: str) -> float:
        """The exact identifier's weight, else the longest matching `prefix*`, else 1."""
        if share in self.weights:
            return self.weights[share]
        best, weight = -1, 1.0
        for key, value in self.weights.items():
            if key.endswith("*") and share.startswith(key[:-1]) and len(key) > best:
                best, weight = len(key), value
        return weight

    def usable_fraction(self, active_shares: int) -> float:
        """What shares already running may use: the rest is kept for new identifiers."""
        if not self.reservation or not active_shares:
            return 1.0
        return 1.0 - (self.reservation / 100.0) ** active_shares


@dataclass
class ShareUsage:
    """Decayed vCPU-seconds per (queue, share identifier)."""

    charged: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def value(self, queue: str, share: str, decay_s: float, now_s: float,
              running_vcpus: float) -> float:
        if decay_s <= 0:
            return running_vcpus
        amount, at = self.charged.get((queue, share), (0.0, now_s))
        return amount * math.exp(-(now_s - at) / decay_s) + running_vcpus

    def charge(self, queue: str, share: str, amount: float, decay_s: float,
               now_s: float) -> None:
        if decay_s <= 0 or amount <= 0:
            return
        old, at = self.charged.get((queue, share), (0.0, now_s))
        self.charged[(queue, share)] = (old * math.exp(-(now_s - at) / decay_s) + amount,
                                        now_s)

    def rebuild(self, store: BatchStore, decays: dict[str, float]) -> None:
        """Re-charge the jobs of fair-share queues that ran within five decay times."""
        self.charged.clear()
        now_s = now_ms() / 1000
        for queue, decay in decays.items():
            if decay <= 0:
                continue
            for row in store.recent_share_jobs(queue, int((now_s - 5 * decay) * 1000)):
                started = int(row["started_at"]) / 1000
                stopped = int(row["stopped_at"]) / 1000 if row["stopped_at"] else now_s
                used = float(row["vcpus"]) * max(stopped - started, DISPATCH_CHARGE_S)
                key = (queue, str(row["share"]))
                old = self.charged.get(key, (0.0, now_s))[0]
                self.charged[key] = (old + used * math.exp(-(now_s - stopped) / decay), now_s)


def _validate(fair: Any) -> dict[str, Any]:
    if fair is None:
        return {}
    decay = fair.get("shareDecaySeconds")
    if decay is not None and not 0 <= int(decay) <= 604800:
        raise client_error("shareDecaySeconds must be between 0 and 604800")
    reservation = fair.get("computeReservation")
    if reservation is not None and not 0 <= int(reservation) <= 99:
        raise client_error("computeReservation must be between 0 and 99")
    shares = fair.get("shareDistribution") or []
    if len(shares) > 500:
        raise client_error("shareDistribution can have at most 500 entries")
    for share in shares:
        ident = str(share.get("shareIdentifier") or "")
        if not ident or len(ident) > 255:
            raise client_error("shareIdentifier must be 1-255 characters long")
        if "*" in ident[:-1]:
            raise client_error("shareIdentifier may only end with an asterisk (*)")
        weight = share.get("weightFactor")
        if weight is not None and not 0.0001 <= float(weight) <= 999.9999:
            raise client_error("weightFactor must be between 0.0001 and 999.9999")
    return dict(fair)


def find_policy(store: BatchStore, ref: str) -> Row | None:
    return store.db.one("SELECT * FROM batch_sched_policies WHERE arn = ?", (ref,))


def build_handlers(store: BatchStore, changed: Callable[[], None]) -> dict[str, Handler]:
    """`changed` tells the scheduler to re-read policies (it caches them)."""
    db = store.db

    def out(row: Row) -> dict[str, Any]:
        return {"name": row["name"], "arn": row["arn"],
                "fairsharePolicy": loads(row["spec"]).get("fairsharePolicy") or {},
                "tags": store.tags(str(row["arn"]))}

    async def create(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = check_name(params.get("name"), "schedulingPolicy")
        spec = {"fairsharePolicy": _validate(params.get("fairsharePolicy"))}
        policy_arn = arn(ctx.region, ctx.account_id, "scheduling-policy", name)
        with db.transaction():
            if find_policy(store, policy_arn) is not None:
                raise client_error("Object already exists")
            db.execute("INSERT INTO batch_sched_policies (arn, account, region, name, spec, "
                       "created) VALUES (?, ?, ?, ?, ?, ?)",
                       (policy_arn, ctx.account_id, ctx.region, name, dumps(spec), now_ms()))
            store.set_tags(policy_arn, params.get("tags") or {})
        return {"name": name, "arn": policy_arn}

    async def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arns = [str(a) for a in params.get("arns") or []]
        if not 1 <= len(arns) <= 100:
            raise client_error("arns must list between 1 and 100 scheduling policy ARNs")
        rows = {str(r["arn"]): r for r in (find_policy(store, a) for a in arns) if r}
        return {"schedulingPolicies": [out(rows[a]) for a in dict.fromkeys(arns) if a in rows]}

    async def update(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("arn") or "")
        with db.transaction():
            row = find_policy(store, ref)
            if row is None:
                raise client_error(f"{ref} does not exist")
            spec = loads(row["spec"])
            if params.get("fairsharePolicy") is not None:
                spec["fairsharePolicy"] = _validate(params["fairsharePolicy"])
            db.execute("UPDATE batch_sched_policies SET spec = ? WHERE arn = ?",
                       (dumps(spec), ref))
        changed()
        return {}

    async def delete(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = str(params.get("arn") or "")
        with db.transaction():
            if find_policy(store, ref) is None:
                raise client_error(f"{ref} does not exist")
            for queue in db.query("SELECT name, spec FROM batch_queues"):
                if loads(queue["spec"]).get("schedulingPolicyArn") == ref:
                    raise client_error(f"Cannot delete scheduling policy {ref}: job queue "
                                       f"{queue['name']} uses it")
            db.execute("DELETE FROM batch_sched_policies WHERE arn = ?", (ref,))
            db.execute("DELETE FROM batch_tags WHERE arn = ?", (ref,))
        return {}

    async def list_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = db.query("SELECT arn FROM batch_sched_policies WHERE account = ? AND region = ? "
                        "ORDER BY created, name", (ctx.account_id, ctx.region))
        offset = offset_of(params.get("nextToken"))
        size = page_size(params.get("maxResults"), 100, 1000)
        result: dict[str, Any] = {"schedulingPolicies": [
            {"arn": r["arn"]} for r in rows[offset:offset + size]]}
        if offset + size < len(rows):
            result["nextToken"] = token_for(offset + size)
        return result

    return {
        "CreateSchedulingPolicy": create,
        "DescribeSchedulingPolicies": describe,
        "UpdateSchedulingPolicy": update,
        "DeleteSchedulingPolicy": delete,
        "ListSchedulingPolicies": list_policies,
    }
