import pytest

from tests.cluster.harness import cluster

__all__ = ["cluster"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a cluster are marked ``cluster``: they run on PostgreSQL and Redis
    in either pass of scripts/test.sh, so the PostgreSQL pass leaves them out."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
