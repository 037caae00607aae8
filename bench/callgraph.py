"""The critical path of an install, from the calls the fakes recorded.

The critical path is the longest chain of calls that depend on each other: how long the
install would take if our code waited for nothing but what the work itself forces. The
ratio of the real wall time to it measures our own overhead: polling late, retrying
blind, waiting for unrelated work, Python between calls.

A call (`tests.fakes.google.Call`) carries when it arrived and was answered, the resource
it touched (`key`, a path: `sql/P/I/databases/D` lives in `sql/P/I`), the resources it
needs to exist (`refs`: service accounts a policy binds), and for Cloud SQL the operation
it started or polled and the instance whose queue it joins.

Dependencies (B depends on A, A earlier):
1. preflight: the plan's reads follow the preflight's checks (a bad flag or a stopped
   instance fails before anything else is read): Kubernetes `/version`, the GKE cluster,
   the Cloud SQL instance;
2. plan before change: every mutating call follows every read of the plan (nothing changes
   before the whole plan is known);
3. same resource: B touches A's resource, a parent or a child of it, and A or B mutates
   (read-modify-write, create before use, create the namespace before its Secrets);
4. Cloud SQL operations: a mutation's effect exists when its operation is DONE, which the
   fake makes `op_seconds` after the call; the poll that saw DONE is the completion, and
   whatever depends on the mutation depends on that poll. The instance runs one operation
   at a time, so an operation follows the completion of the one before it;
5. IAM consistency: a call on, or binding, a service account created in the run follows
   the creation by `sa_delay` (the account is invisible until then).

Calls that are work wasted are left out: polls that did not see DONE, and calls that
failed after the plan (retries of a busy instance or an unseen account). A call's own
duration is its weight; waits the work forces (rules 4 and 5) are lags on the edges.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PREFLIGHT_OPS = {"version", "clusters.get", "instances.get"}


def related(a: str, b: str) -> bool:
    """Same resource, or one contains the other (`ns/x` and `ns/x/secrets/y`)."""
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


@dataclass(eq=False)  # a node is one call: compared by identity (`node in plan`)
class Node:
    call: Any
    after: list[Node] = field(default_factory=list)  # starts once these ended
    ready: list[tuple[Node, float]] = field(default_factory=list)  # ends lag after these
    finish: float = 0.0  # earliest possible end, from the phase's start
    via: Node | None = None  # the predecessor that set `finish`

    @property
    def weight(self) -> float:
        return self.call.end - self.call.start

    def label(self) -> str:
        c = self.call
        return f"{c.op} {c.key}".strip()


@dataclass
class Analysis:
    wall: float
    critical: float
    chain: list[Node]
    reads: int
    mutating: int
    reads_by_resource: Counter
    nodes: list[Node]  # the calls that count, with their earliest finish
    waste: Counter  # the calls left out, by operation and status

    @property
    def wasted(self) -> int:
        return sum(self.waste.values())

    @property
    def ratio(self) -> float:
        return self.wall / self.critical if self.critical else float("nan")

    @property
    def reads_per_resource(self) -> float:
        return self.reads / len(self.reads_by_resource) if self.reads_by_resource else 0.0


def analyse(calls: list, op_seconds: float, sa_delay: float) -> Analysis:
    calls = sorted(calls, key=lambda c: c.start)
    first_change = min((c.start for c in calls if c.mutating and c.status < 400),
                       default=float("inf"))

    def wasted(c) -> bool:
        if c.op == "operations.get" and not c.done:
            return True
        return c.status >= 400 and c.start >= first_change

    left_out = [c for c in calls if wasted(c)]
    nodes = [Node(c) for c in calls if not wasted(c)]
    preflight = [n for n in nodes if n.call.start < first_change and n.call.op in PREFLIGHT_OPS]
    plan = [n for n in nodes if n.call.start < first_change and not n.call.mutating
            and n not in preflight]
    done_poll = {n.call.operation: n for n in nodes if n.call.done}
    created_sa = {n.call.key: n for n in nodes
                  if n.call.op == "serviceAccounts.create" and n.call.status < 400}

    def completion(n: Node) -> Node:
        if n.call.operation and not n.call.done:
            return done_poll.get(n.call.operation, n)
        return n

    last_op: dict[str, Node] = {}
    for i, node in enumerate(nodes):
        c = node.call
        if node in plan:
            node.after += preflight
        if c.mutating:
            node.after += plan
        for prior in nodes[:i]:
            p = prior.call
            if p.end <= c.start and related(p.key, c.key) and (p.mutating or c.mutating):
                done = completion(prior)
                node.after.append(done if done.call.end <= c.start else prior)
        if c.done:
            starter = next((n for n in nodes[:i] if n.call.operation == c.operation
                            and not n.call.done), None)
            if starter:
                node.after.append(starter)
                node.ready.append((starter, op_seconds))
        if c.instance and c.operation:
            if c.instance in last_op:
                node.after.append(completion(last_op[c.instance]))
            last_op[c.instance] = node
        needs = {k for k in created_sa if k != c.key and (related(k, c.key) or k in c.refs)}
        for key in needs:
            if created_sa[key].call.end <= c.start:
                node.after.append(created_sa[key])
                node.ready.append((created_sa[key], sa_delay))

    for node in nodes:  # in start order: every predecessor is already done
        node.finish, node.via = node.weight, None
        for prior in node.after:
            if prior.finish + node.weight > node.finish:
                node.finish, node.via = prior.finish + node.weight, prior
        for prior, lag in node.ready:
            if prior.finish + lag > node.finish:
                node.finish, node.via = prior.finish + lag, prior

    chain: list[Node] = []
    last = max(nodes, key=lambda n: n.finish, default=None)
    while last is not None:
        chain.append(last)
        last = last.via
    reads = [c for c in calls if not c.mutating]
    return Analysis(
        wall=(max(c.end for c in calls) - calls[0].start) if calls else 0.0,
        critical=chain[0].finish if chain else 0.0,
        chain=chain[::-1],
        reads=len(reads),
        mutating=sum(1 for c in calls if c.mutating),
        reads_by_resource=Counter(c.key for c in reads),
        nodes=nodes,
        waste=Counter(f"{c.op} {c.status}" for c in left_out),
    )
