"""The servers a chaos stack owns, started from this machine's own packages."""

from __future__ import annotations

from serve.chaos.stores import PrivateMlflow


def test_the_private_mlflow_server_answers_and_stops(tmp_path):
    from mlflow import MlflowClient

    server = PrivateMlflow(tmp_path).start()
    try:
        assert server.running()
        client = MlflowClient(tracking_uri=server.url)
        client.create_registered_model("monitor-policy")
        assert [m.name for m in client.search_registered_models()] == ["monitor-policy"]
        assert (tmp_path / "mlflow.db").exists()  # its own store, in its own directory
    finally:
        server.stop()
    assert not server.running()
