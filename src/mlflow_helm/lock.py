"""One run at a time per release: a `coordination.k8s.io/v1` Lease in its namespace.

`install` and `uninstall` (not plan, status or --dry-run, which only read) hold the Lease
`mlflow-helm.lock.RELEASE` for the whole run:
- take it: create it (holderIdentity `user@host pid N`, acquireTime, renewTime,
  leaseDurationSeconds); when it exists and its holder renewed it less than
  leaseDurationSeconds ago, the run fails at once (exit 7) naming the holder and since when;
  when it has expired (a crashed or killed run), it is taken over with a replace that carries
  the resourceVersion read, so of two runs taking over at once one gets 409 Conflict and
  fails (optimistic concurrency: https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions);
- keep it: a thread renews renewTime every third of the duration;
- give it back at the end, on error too: a delete with a resourceVersion precondition, so a
  Lease someone else took over after ours expired is left alone.
A namespace that does not exist yet holds no release and no Lease: the lock is then taken
right after the install creates the namespace, before anything else changes.
Lease reference: https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import socket
import threading

from . import interrupt
from .errors import UserError

DURATION = 60  # seconds without a renewal after which a Lease is taken over


class LockHeld(UserError):
    """Another run holds the release's Lease."""

    exit_code = 7


def lease_name(release: str) -> str:
    return f"mlflow-helm.lock.{release}"


def holder_identity() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _micro(t: dt.datetime) -> str:
    """MicroTime, as the API serves it: RFC 3339 with microseconds."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class Lock:
    # `release_name`, not `release`: release() gives the Lease back.

    def __init__(self, kube, namespace: str, release: str, duration: int = DURATION,
                 say=lambda _m: None) -> None:
        self.kube, self.namespace, self.release_name = kube, namespace, release
        self.name = lease_name(release)
        self.duration = duration
        self.say = say
        self.identity = holder_identity()
        self.version = ""  # resourceVersion of our Lease; "" = not held
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mu = threading.Lock()

    @property
    def held(self) -> bool:
        return bool(self.version)

    def _spec(self, acquired: dt.datetime, transitions: int = 0) -> dict:
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                "acquireTime": _micro(acquired), "renewTime": _micro(_now()),
                "leaseTransitions": transitions}

    def acquire(self) -> bool:
        """Take the Lease; False when the namespace does not exist yet (take it again once
        it does). Raises LockHeld when another run holds it."""
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "labels": {
                    "app.kubernetes.io/managed-by": "mlflow-helm",
                    "mlflow-helm/release": self.release_name}},
                "spec": self._spec(_now())}
        status, obj = self.kube.create_lease(self.namespace, body)
        if status == 404:
            return False
        if status < 300:
            self._held(obj)
            return True
        current = self.kube.get_lease(self.namespace, self.name)
        if current is None:  # released in between: try once more
            status, obj = self.kube.create_lease(self.namespace, body)
            if status < 300:
                self._held(obj)
                return True
            current = self.kube.get_lease(self.namespace, self.name) or {}
        spec = current.get("spec") or {}
        renewed = _parse(spec.get("renewTime", "")) or _parse(spec.get("acquireTime", ""))
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        if spec.get("holderIdentity") and renewed and \
                (_now() - renewed).total_seconds() < duration:
            raise self._refusal(spec, renewed, duration)
        # Expired: a run that crashed or was killed. Take it over, if nobody else does first.
        current["spec"] = self._spec(_now(), int(spec.get("leaseTransitions") or 0) + 1)
        status, obj = self.kube.replace_lease(self.namespace, self.name, current)
        if status == 409:
            latest = self.kube.get_lease(self.namespace, self.name) or {}
            lspec = latest.get("spec") or {}
            raise self._refusal(lspec, _parse(lspec.get("renewTime", "")) or _now(),
                                int(lspec.get("leaseDurationSeconds") or self.duration))
        self.say(f"  took over the lock of {spec.get('holderIdentity') or 'nobody'} "
                 f"(expired: not renewed since {spec.get('renewTime')})")
        self._held(obj)
        return True

    def _refusal(self, spec: dict, renewed: dt.datetime, duration: int) -> LockHeld:
        since = spec.get("acquireTime") or spec.get("renewTime") or "?"
        ago = max(0, int((_now() - renewed).total_seconds()))
        return LockHeld(
            f"release {self.namespace}/{self.release_name} is being changed by another run: "
            f"{spec.get('holderIdentity')}, since {since} (Lease {self.namespace}/{self.name}, "
            f"renewed {ago}s ago)",
            "wait for that run to finish; if it crashed, its lock expires "
            f"{duration}s after its last renewal and the next run takes it over")

    def _held(self, obj: dict) -> None:
        with self._mu:
            self.version = (obj.get("metadata") or {}).get("resourceVersion", "") or "?"
            self._lease = obj
        self._thread = threading.Thread(target=self._renew, name="lease-renew", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.duration / 3):
            with self._mu:
                if not self.version:
                    return
                lease = dict(self._lease)
                lease["spec"] = {**lease["spec"], "renewTime": _micro(_now())}
                try:
                    # Kept up during cleanup after a signal too, until release().
                    with interrupt.shielded(10):
                        status, obj = self.kube.replace_lease(self.namespace, self.name,
                                                              lease)
                except (Exception, interrupt.Interrupted):  # the next renewal tries again
                    continue
                if status == 409:
                    self.say("  warning: the lock was taken over by another run")
                    self.version = ""
                    return
                if status < 300:
                    self._lease, self.version = obj, obj["metadata"]["resourceVersion"]

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._mu:
            version, self.version = self.version, ""
        if version:
            # Never hide the run's own result behind this; an unreleased Lease expires.
            # After a signal too (interrupt.py): giving the Lease back is cleanup.
            with contextlib.suppress(Exception), interrupt.shielded(10):
                self.kube.delete_lease(self.namespace, self.name, version)
