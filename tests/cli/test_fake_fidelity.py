"""The Google fake answers as Google does, and the CLI copes with those answers.

Each behaviour is checked twice: the fake refuses what the real API refuses (so it cannot
agree with a mistake of ours), and the CLI, run against it, does what a user needs. Each test
names its source: the discovery documents shipped in google-api-python-client
(googleapiclient/discovery_cache/documents/<api>.v1.json) or Google's documentation.
"""

from __future__ import annotations

import base64
import json
import string
import urllib.error
import urllib.request

import pytest

from mlflow_helm.commands import do_install, do_uninstall
from mlflow_helm.errors import UserError
from tests.cli.conftest import PROJECT

MYSQL = dict(database="cloudsql", cloudsql_instance="my-sql", skip_tests=True)
PG = dict(database="cloudsql", cloudsql_instance="pg", skip_tests=True)


def raw(world, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One request to the fake with no client library in between (it would refuse to send
    some of these)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{world.google_url}/{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def expect_rejected(world, count: int) -> None:
    """The test sent `count` invalid requests on purpose: take them off the fake's list, which
    the fixture requires to be empty."""
    assert len(world.google.rejected) == count, world.google.rejected
    world.google.rejected.clear()


# -- requests checked against the discovery documents ------------------------------------

def test_unknown_body_field_is_400_invalid_argument_with_the_field(world):
    # sqladmin.v1.json: users.insert takes a User; User has no field "passwd". Google's
    # front end answers 400 INVALID_ARGUMENT with a google.rpc.BadRequest naming the field
    # (https://cloud.google.com/apis/design/errors#http_mapping).
    status, body = raw(world, "POST", f"sqladmin/v1/projects/{PROJECT}/instances/pg/users",
                       {"name": "x", "passwd": "secret"})
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "passwd"' in body["error"]["message"]
    violations = [v for d in body["error"]["details"]
                  if d["@type"].endswith("google.rpc.BadRequest")
                  for v in d["fieldViolations"]]
    assert violations and "passwd" in violations[0]["description"]
    assert (PROJECT, "pg") in world.google.state.users
    assert ("x", "") not in world.google.state.users[(PROJECT, "pg")]
    expect_rejected(world, 1)


def test_enum_value_outside_the_enum_is_400(world):
    # sqladmin.v1.json: User.type is an enum (BUILT_IN, CLOUD_IAM_USER,
    # CLOUD_IAM_SERVICE_ACCOUNT, ...); "ROBOT" is none of them.
    status, body = raw(world, "POST", f"sqladmin/v1/projects/{PROJECT}/instances/pg/users",
                       {"name": "x", "type": "ROBOT"})
    assert status == 400 and "ROBOT" in body["error"]["message"]
    expect_rejected(world, 1)


def test_undeclared_query_parameter_and_wrong_type_are_400(world):
    # sqladmin.v1.json: users.list declares project and instance, plus the document's global
    # parameters (fields, prettyPrint, ...); "verbose" is not one of them.
    status, body = raw(world, "GET",
                       f"sqladmin/v1/projects/{PROJECT}/instances/pg/users?verbose=1")
    assert status == 400 and "verbose" in body["error"]["message"]
    # cloudresourcemanager.v1.json: GetPolicyOptions.requestedPolicyVersion is an integer.
    status, body = raw(world, "POST", f"cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy",
                       {"options": {"requestedPolicyVersion": "three"}})
    assert status == 400
    expect_rejected(world, 2)


def test_a_method_the_document_lacks_is_404(world):
    # sqladmin.v1.json has no DELETE on a database's collection.
    status, _ = raw(world, "DELETE", f"sqladmin/v1/projects/{PROJECT}/instances/pg/databases")
    assert status == 404


def test_what_the_cli_sends_is_valid(world):
    """A full install and purge through the validating fake: the fixture's teardown fails on
    any request the discovery documents would refuse; here we also check it saw requests of
    every API the run uses."""
    do_install(world.context(**PG, bucket="gs://team-artifacts", create_bucket=True))
    apis = {c.api for c in world.google.calls}
    assert {"sqladmin", "iam", "cloudresourcemanager", "container", "serviceusage"} <= apis
    assert world.google.rejected == []


# -- 403s, each with its own message --------------------------------------------------------

def test_missing_project_is_403_and_said_so(world):
    # cloudresourcemanager.v1.json, projects.get: "The caller must have read permissions for
    # this Project"; a project that does not exist gets the same 403 (Resource Manager does
    # not tell the two apart), so there is no 404 to wait for.
    status, body = raw(world, "GET", "cloudresourcemanager/v1/projects/no-such-proj")
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"
    with pytest.raises(UserError) as err:
        do_install(world.context(**PG, project="no-such-proj"))
    assert "project no-such-proj does not exist, or you cannot see it" in str(err.value)
    assert "roles/browser" in err.value.hint
    assert world.mutating() == []


def test_disabled_api_is_found_by_preflight_before_any_change(world):
    # Service Usage v1 services.batchGet (serviceusage.v1.json): each service's state is
    # ENABLED or DISABLED. A disabled API answers every call with 403 and ErrorInfo reason
    # SERVICE_DISABLED (https://cloud.google.com/service-usage/docs/troubleshoot and
    # google/api/error_reason.proto in googleapis).
    world.google.disable(PROJECT, "sqladmin.googleapis.com")
    world.google.disable(PROJECT, "iam.googleapis.com")
    status, body = raw(world, "GET", f"sqladmin/v1/projects/{PROJECT}/instances/pg")
    info = body["error"]["details"][0]
    assert status == 403 and info["reason"] == "SERVICE_DISABLED"
    assert info["metadata"]["activationUrl"].endswith("?project=123456789012")
    with pytest.raises(UserError) as err:
        do_install(world.context(**PG))
    assert "not enabled in project my-proj: iam.googleapis.com, sqladmin.googleapis.com" in \
        str(err.value) or \
        "not enabled in project my-proj: sqladmin.googleapis.com, iam.googleapis.com" in \
        str(err.value)
    assert "gcloud services enable" in err.value.hint and "--project my-proj" in err.value.hint
    assert world.mutating() == []
    batch = [c for c in world.google.calls if c.op == "services.batchGet"]
    assert len(batch) == 1 and batch[0].path == "/serviceusage/v1/projects/123456789012/" \
        "services:batchGet"


def test_api_disabled_in_the_quota_project_points_at_the_quota_project(world):
    # With a quota project on the credentials, that project is the consumer the ErrorInfo
    # names (https://cloud.google.com/docs/quotas/set-quota-project): enabling the API in
    # --project would not help.
    world.google.add_project("billing-proj", number="999999999999")
    world.google.quota_project = "billing-proj"
    world.google.disable("billing-proj", "sqladmin.googleapis.com")
    with pytest.raises(UserError) as err:
        do_install(world.context(**PG))
    assert "not enabled in project 999999999999" in str(err.value)
    assert "quota project" in str(err.value)
    assert "set-quota-project my-proj" in err.value.hint
    assert world.mutating() == []


# -- Cloud SQL users ----------------------------------------------------------------------

def test_fake_requires_host_for_mysql_users(world):
    # sqladmin.v1.json, User.host: "For a MySQL instance, it's required; for a PostgreSQL or
    # SQL Server instance, it's optional."
    status, body = raw(world, "DELETE",
                       f"sqladmin/v1/projects/{PROJECT}/instances/my-sql/users?name=root")
    assert status == 400 and "host" in body["error"]["message"]
    assert ("root", "%") in world.google.state.users[(PROJECT, "my-sql")]


def test_mysql_password_reset_and_purge_pass_the_host(world):
    do_install(world.context(**MYSQL))
    users = world.google.state.users[(PROJECT, "my-sql")]
    name = next(n for n, _ in users if n != "root")
    assert (name, "%") in users
    # The Secret is lost: the next install sets a new password on mlflow@%.
    world.kube.objects.pop(("secrets", "mlflow", "mlflow-db"))
    do_install(world.context(**MYSQL))
    updates = [c for c in world.google.calls if c.op == "users.update"]
    assert [c.status for c in updates] == [200]
    secret = world.kube.secret("mlflow", "mlflow-db")
    assert base64.b64decode(secret["data"]["password"]).decode() == \
        users[(name, "%")]["password"]
    do_uninstall(world.context(**MYSQL), purge=True, confirm=lambda *_: True)
    assert (name, "%") not in users
    assert ("root", "%") in users


STRICT = {"enablePasswordPolicy": True, "minLength": 40, "complexity": "COMPLEXITY_DEFAULT",
          "disallowUsernameSubstring": True, "reuseInterval": 5}


def test_fake_enforces_the_password_policy(world):
    # sqladmin.v1.json, PasswordValidationPolicy: minLength, complexity COMPLEXITY_DEFAULT ("A
    # combination of lowercase, uppercase, numeric, and non-alphanumeric characters"),
    # disallowUsernameSubstring. The 400's wording is ours (no source gives the text).
    world.google.state.instances[(PROJECT, "pg")]["settings"]["passwordValidationPolicy"] = \
        STRICT
    for password in ("a" * 30 + "A1-", "abcdefghij" * 4 + "ABC123", "Mlflow-1" + "x" * 40):
        status, body = raw(world, "POST",
                           f"sqladmin/v1/projects/{PROJECT}/instances/pg/users",
                           {"name": "mlflow", "password": password, "type": "BUILT_IN"})
        assert status == 400, password
        assert "password validation policy" in body["error"]["message"]


@pytest.mark.parametrize("instance", ["pg", "my-sql"])
def test_generated_passwords_meet_the_strictest_policy(world, instance):
    world.google.state.instances[(PROJECT, instance)]["settings"][
        "passwordValidationPolicy"] = STRICT
    do_install(world.context(database="cloudsql", cloudsql_instance=instance, skip_tests=True))
    users = world.google.state.users[(PROJECT, instance)]
    user = next(u for (name, _), u in users.items() if name not in ("postgres", "root"))
    password = user["password"]
    assert len(password) >= 40
    for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-._~"):
        assert set(password) & set(chars), chars
    assert user["name"].lower() not in password.lower()
    # RFC 3986 2.3 unreserved: the chart puts a MySQL password into the URI as it is.
    assert set(password) <= set(string.ascii_letters + string.digits + "-._~")


# -- instance flags that restart the instance ----------------------------------------------

def restarts(world, flag: str) -> None:
    """flags.list marks `flag` requiresRestart (discovery, sqladmin v1 Flag.requiresRestart:
    "Indicates whether changing this flag will trigger a database restart"). The flags the
    CLI sets do not restart today ("Configure database flags" for MySQL and PostgreSQL), so
    the test marks one as a flag that would."""
    for item in world.google.flags:
        if item["name"] == flag:
            item["requiresRestart"] = True


def test_flag_without_restart_is_planned_as_a_plain_update(world):
    result = do_install(world.context(**MYSQL))
    change = next(c for c in result.changes if c.kind == "cloud sql instance flag")
    assert change.name == "log_bin_trust_function_creators=on"
    assert change.action == "update" and "RESTART" not in change.detail
    assert [c.op for c in world.google.calls].count("flags.list") == 1


def test_flag_that_restarts_is_refused_without_a_terminal_or_yes(world):
    restarts(world, "log_bin_trust_function_creators")
    with pytest.raises(UserError) as err:
        do_install(world.context(**MYSQL))
    assert "setting log_bin_trust_function_creators=on restarts Cloud SQL instance " \
        f"{PROJECT}:europe-west1:my-sql" in str(err.value)
    assert "--yes" in err.value.hint
    assert world.mutating() == []


def test_flag_that_restarts_is_asked_about_and_no_means_nothing_changes(world):
    restarts(world, "log_bin_trust_function_creators")
    asked = []
    with pytest.raises(UserError, match="aborted: nothing was changed"):
        do_install(world.context(**MYSQL), confirm=lambda q: asked.append(q) or False)
    assert "restarts Cloud SQL instance" in asked[0]
    assert world.mutating() == []


def test_flag_that_restarts_is_applied_with_yes_and_shown_in_the_plan(world):
    restarts(world, "log_bin_trust_function_creators")
    result = do_install(world.context(**MYSQL, yes=True))
    change = next(c for c in result.changes if c.kind == "cloud sql instance flag")
    assert "RESTARTS THE INSTANCE" in change.detail
    flags = world.google.state.instances[(PROJECT, "my-sql")]["settings"]["databaseFlags"]
    assert {"name": "log_bin_trust_function_creators", "value": "on"} in flags


# -- buckets and service accounts of other projects ----------------------------------------

def test_bucket_of_another_project_is_named_as_such_before_any_change(world):
    # Bucket names are global: another project's bucket answers 403 to a read and 409 to a
    # create (tests/fakes/gcs.py, FakeGcs._foreign, after the Cloud Storage JSON API's
    # status codes page).
    world.gcs.foreign.add("taken-artifacts")
    with pytest.raises(UserError) as err:
        do_install(world.context(**PG, bucket="gs://taken-artifacts", create_bucket=True))
    assert "cannot read gs://taken-artifacts" in str(err.value)
    assert "belongs to another project" in str(err.value)
    assert "choose another --bucket" in err.value.hint
    assert world.mutating() == []


def test_bucket_name_taken_at_create_time_says_so(world):
    # The name was free when planned and taken by the time of the create (409), and the
    # bucket is not ours to read: the error says the name is taken.
    from mlflow_helm.gcp.storage import Storage

    storage = Storage(world.context(**PG).apis)
    world.gcs.foreign.add("raced-artifacts")
    with pytest.raises(UserError) as err:
        storage.create_bucket("raced-artifacts", PROJECT, "EUROPE-WEST1")
    assert "raced-artifacts" in str(err.value)
    assert "choose another --bucket" in err.value.hint


def test_gsa_of_another_project_is_created_there(world):
    # iam.v1.json, projects.serviceAccounts.create: "name: Required. The resource name of
    # the project associated with the service accounts, such as projects/my-project-123";
    # the account's email is ACCOUNT@PROJECT.iam.gserviceaccount.com of that project.
    world.google.add_project("shared-ids", number="777777777777")
    email = "team-mlflow@shared-ids.iam.gserviceaccount.com"
    do_install(world.context(**PG, gsa=email))
    assert world.google.state.accounts[email]["sa"]["projectId"] == "shared-ids"
    assert not any(e.startswith("team-mlflow@my-proj") for e in world.google.state.accounts)


def test_missing_google_managed_gsa_is_refused(world):
    with pytest.raises(UserError) as err:
        do_install(world.context(**PG, gsa="my-proj@appspot.gserviceaccount.com"))
    assert "only accounts named NAME@PROJECT.iam.gserviceaccount.com can be created" in \
        str(err.value)
    assert world.mutating() == []


# -- IAM policy versions ---------------------------------------------------------------------

def test_policy_version_is_the_policys_not_the_requested_one(world):
    # cloudresourcemanager.v1.json, Policy.version: "Valid values are `0`, `1`, and `3`...
    # If a policy does not include any conditions, operations on that policy may specify any
    # valid version or leave the field unset"; GetPolicyOptions.requestedPolicyVersion is the
    # most a caller can read. A policy without conditions comes back as version 1 even when
    # 3 is requested, and one with a condition as 3 only when 3 is requested.
    path = f"cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy"
    status, body = raw(world, "POST", path, {"options": {"requestedPolicyVersion": 3}})
    assert status == 200 and body["version"] == 1
    holder = world.google.state.projects[PROJECT]
    holder["policy"]["bindings"].append({
        "role": "roles/viewer", "members": ["user:temp@x.com"],
        "condition": {"title": "until 2027", "expression":
                      'request.time < timestamp("2027-01-01T00:00:00Z")'}})
    holder["policy"]["version"] = 3
    _, body = raw(world, "POST", path, {"options": {"requestedPolicyVersion": 3}})
    assert body["version"] == 3
    # The CLI's read-modify-write keeps the conditional binding (it asks for version 3).
    do_install(world.context(**PG))
    kept = [b for b in holder["policy"]["bindings"] if b.get("condition")]
    assert kept and kept[0]["members"] == ["user:temp@x.com"]
