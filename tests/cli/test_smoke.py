from mlflow_helm.commands import do_install
from tests.cli.conftest import PROJECT


def test_smoke(world):
    ctx = world.context(database="cloudsql", cloudsql_instance="pg", bucket="gs://mlflow-art",
                        create_bucket=True)
    result = do_install(ctx)
    for c in result.changes:
        print(c.line())
    print(world.google.counts(), world.gcs.counts())
    print(world.helm_calls())
    assert result.tests["passed"]
