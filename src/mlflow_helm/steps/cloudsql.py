"""Cloud SQL steps: instance flags, the database, the user (and its Secret), the grant."""

from __future__ import annotations

import secrets
import string

from ..changes import CREATE, UNCHANGED, UPDATE, Change
from .base import Step

PASSWORD_KEY = "password"
BUILT_IN_USER = "mlflow"
IAM_SA_TYPE = "CLOUD_IAM_SERVICE_ACCOUNT"


# URI-unreserved punctuation (RFC 3986 section 2.3): a password made of these and
# alphanumerics needs no encoding where the chart expands it into a MySQL URI.
SYMBOLS = "-._~"
CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, SYMBOLS)


def new_password(length: int = 32, policy: dict | None = None, user: str = "") -> str:
    """A random password that every Cloud SQL password policy accepts: each of the four
    character classes COMPLEXITY_DEFAULT asks for (lower, upper, digit, non-alphanumeric), at
    least the policy's minLength, and never the user name inside it (disallowUsernameSubstring).
    See PasswordValidationPolicy in the sqladmin v1 discovery document."""
    policy = policy or {}
    length = max(length, int(policy.get("minLength") or 0), len(CLASSES))
    alphabet = "".join(CLASSES)
    while True:
        chars = [secrets.choice(c) for c in CLASSES]
        chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
        # Shuffle with a CSPRNG so the classes' positions are not fixed.
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        password = "".join(chars)
        if not user or user.lower() not in password.lower():
            return password


def sql_at(step: Step) -> dict[str, str]:
    """Where a database or user lives, for the install record (purge finds it there)."""
    return {"project": step.ctx.instance_project, "instance": step.opts.instance_name}


class InstanceFlagsStep(Step):
    """IAM database authentication needs an instance flag; MLflow's MySQL triggers need
    log_bin_trust_function_creators when binary logging is on."""

    name = "instance-flags"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and self.opts.database == "cloudsql"

    def desired(self) -> dict[str, str]:
        flags: dict[str, str] = {}
        engine = self.ctx.facts.engine
        if self.opts.iam_db_auth:
            name = ("cloudsql.iam_authentication" if engine == "postgres"
                    else "cloudsql_iam_authentication")
            flags[name] = "on"
        settings = self.ctx.facts.instance.get("settings", {})
        if engine == "mysql" and settings.get("backupConfiguration", {}).get(
                "binaryLogEnabled"):
            flags["log_bin_trust_function_creators"] = "on"
        return flags

    def plan(self) -> list[Change]:
        current = {f["name"]: f["value"] for f in
                   self.ctx.facts.instance.get("settings", {}).get("databaseFlags", [])}
        instance = self.ctx.facts.connection_name
        wanted = {f: v for f, v in self.desired().items() if current.get(f) != v}
        offered: dict[str, dict] = {}
        if wanted:
            version = self.ctx.facts.instance.get("databaseVersion", "")
            offered = self.ctx.sql.list_flags(version)
        changes = []
        for flag, value in self.desired().items():
            if flag not in wanted:
                changes.append(self.change(UNCHANGED, "cloud sql instance flag",
                                           f"{flag}={value}", f"on {instance}",
                                           flag=flag, value=value))
                continue
            # Cloud SQL says which flags restart the instance when changed (Flag.
            # requiresRestart); one it does not list for this version is taken to restart.
            restart = offered.get(flag, {}).get("requiresRestart", True)
            detail = f"on {instance}" + ("; RESTARTS THE INSTANCE" if restart else "")
            changes.append(self.change(UPDATE, "cloud sql instance flag", f"{flag}={value}",
                                       detail, flag=flag, value=value, restart=restart))
        return changes

    def apply(self, changes: list[Change]) -> None:
        flags = {c.data["flag"]: c.data["value"] for c in changes if c.action != UNCHANGED}
        self.ctx.sql.set_flags(self.ctx.instance_project, self.opts.instance_name, flags)


class DatabaseStep(Step):
    name = "database"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and self.opts.database == "cloudsql"

    def plan(self) -> list[Change]:
        db = self.ctx.sql.get_database(self.ctx.instance_project, self.opts.instance_name,
                                       self.opts.database_name)
        where = f"on {self.ctx.facts.connection_name}"
        return [self.change(UNCHANGED if db else CREATE, "cloud sql database",
                            self.opts.database_name, where, at=sql_at(self))]

    def apply(self, changes: list[Change]) -> None:
        self.ctx.sql.create_database(self.ctx.instance_project, self.opts.instance_name,
                                     self.opts.database_name)


class DatabaseUserStep(Step):
    """The database user: built-in with a generated password kept in a Secret, or IAM.

    Password order: the Secret is written first, then the user is created from it, so a
    crash in between leaves a Secret a re-run reuses, never a user whose password is lost.
    """

    name = "database-user"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and self.opts.database == "cloudsql"

    def _find(self, users: list[dict], names: set[str], iam: bool) -> dict | None:
        for user in users:
            is_iam = user.get("type") == IAM_SA_TYPE
            if user.get("name") in names and is_iam == iam:
                return user
        return None

    def plan(self) -> list[Change]:
        project, instance = self.ctx.instance_project, self.opts.instance_name
        users = self.ctx.sql.list_users(project, instance)
        if self.opts.iam_db_auth:
            email = self.opts.gsa_email
            names = {email, self.ctx.iam_db_user}
            found = self._find(users, names, iam=True)
            return [self.change(UNCHANGED if found else CREATE, "cloud sql iam user",
                                self.ctx.iam_db_user, f"on {self.ctx.facts.connection_name}",
                                at=sql_at(self))]
        secret_name = f"{self.opts.namespace}/{self.opts.db_secret_name}"
        secret = self.ctx.kube.get_secret(self.opts.namespace, self.opts.db_secret_name)
        has_secret = bool(secret and secret.get(PASSWORD_KEY))
        user = self._find(users, {self.opts.db_user}, iam=False)
        where = f"on {self.ctx.facts.connection_name}"
        changes = [self.change(UNCHANGED if has_secret else CREATE, "secret", secret_name,
                               "database password (not shown)",
                               at={"namespace": self.opts.namespace})]
        at = sql_at(self)
        if user is None:
            changes.append(self.change(CREATE, "cloud sql user", self.opts.db_user, where,
                                       at=at))
        elif not has_secret:
            changes.append(self.change(UPDATE, "cloud sql user", self.opts.db_user,
                                       f"new password {where}", host=user.get("host"), at=at))
        else:
            changes.append(self.change(UNCHANGED, "cloud sql user", self.opts.db_user, where,
                                       at=at))
        return changes

    def apply(self, changes: list[Change]) -> None:
        project, instance = self.ctx.instance_project, self.opts.instance_name
        if self.opts.iam_db_auth:
            name = (self.ctx.iam_db_user if self.ctx.facts.engine == "postgres"
                    else self.opts.gsa_email)
            self.ctx.sql.create_user(project, instance, name, IAM_SA_TYPE)
            return
        ns, secret_name = self.opts.namespace, self.opts.db_secret_name
        secret = self.ctx.kube.get_secret(ns, secret_name) or {}
        password = secret.get(PASSWORD_KEY)
        if not password:
            policy = (self.ctx.facts.instance.get("settings") or {}).get(
                "passwordValidationPolicy")
            password = new_password(policy=policy, user=self.opts.db_user)
            self.ctx.kube.put_secret(ns, secret_name, {PASSWORD_KEY: password})
        for change in changes:
            if change.kind != "cloud sql user" or change.action == UNCHANGED:
                continue
            if change.action == CREATE:
                self.ctx.sql.create_user(project, instance, self.opts.db_user, "BUILT_IN",
                                         password)
            else:
                self.ctx.sql.set_password(project, instance, self.opts.db_user, password,
                                          change.data.get("host"))


class DatabaseGrantStep(Step):
    """Cloud SQL IAM users start with no rights on the database (PostgreSQL and MySQL): grant
    them once, from a Job in the cluster (see dbgrant.py). A ConfigMap records that the grant
    ran, so a re-run makes no change."""

    name = "database-grant"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and self.opts.iam_db_auth

    @property
    def marker(self) -> str:
        return f"{self.opts.fullname[:53].rstrip('-')}-db-grant"

    def expected(self) -> dict[str, str]:
        return {"instance": self.ctx.facts.connection_name,
                "database": self.opts.database_name, "owner": self.ctx.iam_db_user}

    def plan(self) -> list[Change]:
        current = self.ctx.kube.get_configmap(self.opts.namespace, self.marker)
        action = UNCHANGED if current == self.expected() else CREATE
        # The kind keeps its first name: install records written before MySQL grants use it.
        return [self.change(action, "database owner", self.opts.database_name,
                            f"for {self.ctx.iam_db_user}, by a one-time Job in "
                            f"{self.opts.namespace}",
                            at={"namespace": self.opts.namespace, "configmap": self.marker})]

    def apply(self, changes: list[Change]) -> None:
        from ..dbgrant import run_grant

        run_grant(self.ctx)
        self.ctx.kube.put_configmap(self.opts.namespace, self.marker, self.expected())
