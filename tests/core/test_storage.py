"""Result store on a local folder and on a real (moto) S3 endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.storage import MANIFEST, ResultStore


class StoreContract:
    """Behaviour every backend must share; subclasses provide the ``store`` fixture."""

    def test_parquet_round_trip(self, store: ResultStore) -> None:
        frame = pd.DataFrame({"group": ["all", "women"], "mean": [0.25, 0.5], "n": [3, 4]})
        store.write_parquet("w1/estimates.parquet", frame)
        pd.testing.assert_frame_equal(store.read_parquet("w1/estimates.parquet"), frame)

    def test_json_round_trip_turns_nan_into_null(self, store: ResultStore) -> None:
        store.write_json("w1/x.json", {"b": [1, 2], "a": float("nan"), "c": np.float64(0.5)})
        assert store.read_json("w1/x.json") == {"a": None, "b": [1, 2], "c": 0.5}

    def test_array_round_trip(self, store: ResultStore) -> None:
        array = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
        store.write_array("w1/m/draws.npy", array)
        loaded = store.read_array("w1/m/draws.npy")
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, array)

    def test_write_bytes_overwrites(self, store: ResultStore) -> None:
        store.write_bytes("w1/f.bin", b"first")
        store.write_bytes("w1/f.bin", b"second")
        assert store.read_bytes("w1/f.bin") == b"second"

    def test_list_gives_relative_paths_and_nothing_for_a_missing_folder(
        self, store: ResultStore
    ) -> None:
        store.write_bytes("w1/a.bin", b"a")
        store.write_bytes("w1/sub/b.bin", b"b")
        assert store.list("w1") == ["w1/a.bin", "w1/sub/b.bin"]
        assert store.list("missing") == []

    def test_publish_makes_a_wave_complete_and_retract_undoes_it(self, store: ResultStore) -> None:
        assert not store.is_complete("w1")
        store.publish("w1", b'{"models": 3}')
        assert store.is_complete("w1")
        assert store.read_json(f"w1/{MANIFEST}") == {"models": 3}
        store.retract("w1")
        assert not store.is_complete("w1")
        assert not store.exists(f"w1/{MANIFEST}")

    def test_retract_of_an_unpublished_wave_is_a_no_op(self, store: ResultStore) -> None:
        store.retract("never")
        assert not store.is_complete("never")

    def test_remove_deletes_a_file(self, store: ResultStore) -> None:
        store.write_bytes("w1/f.bin", b"x")
        store.remove("w1/f.bin")
        assert not store.exists("w1/f.bin")


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ResultStore:
        return ResultStore(str(tmp_path / "results"))


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3_bucket: tuple[str, dict[str, object]]) -> ResultStore:
        uri, options = s3_bucket
        return ResultStore(f"{uri}/results", options)


def test_uri_joins_the_root_and_a_relative_path(tmp_path: Path) -> None:
    store = ResultStore(f"{tmp_path}/results/")
    assert store.uri("/w1/x.json") == f"{tmp_path}/results/w1/x.json"


def test_local_write_bytes_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    store.write_bytes("w1/a.bin", b"one")
    store.write_bytes("w1/a.bin", b"two")
    store.write_json("w1/b.json", {"x": 1})
    assert sorted(os.listdir(tmp_path / "w1")) == ["a.bin", "b.json"]


def test_a_store_outage_raised_in_a_worker_process_reaches_the_run_intact() -> None:
    """A worker's exception is pickled to its parent: StoreUnavailable's three arguments
    did not survive it (TypeError in the parent instead of the outage; found by the issue-26
    probes, an S3 endpoint back empty mid-run)."""
    import pickle

    from misterp.storage import StoreUnavailable

    outage = StoreUnavailable("s3://b/out", "reading the staged wave", TimeoutError("slow"))
    back = pickle.loads(pickle.dumps(outage))
    assert type(back) is StoreUnavailable
    assert str(back) == str(outage)
    assert back.uri == "s3://b/out"
    assert isinstance(back.cause, TimeoutError)
