"""The server's catalog in the job database: put, replace, delete and load by kind,
committed at once and read back by another connection after a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flowbatch.store.catalog import Catalog
from flowbatch.store.jobstore import DB_NAME, Store, StoreError

ARN = "arn:aws:batch:us-east-1:000000000000:"


def test_put_then_load_by_kind_ordered_by_name(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        catalog = store.catalog
        catalog.put("job_queue", "b", ARN + "job-queue/b", {"jobQueueName": "b", "priority": 2})
        catalog.put("job_queue", "a", ARN + "job-queue/a", {"jobQueueName": "a", "priority": 1})
        catalog.put("compute_environment", "a", ARN + "compute-environment/a", {"n": [1, 2]})
        assert [b["jobQueueName"] for b in catalog.load("job_queue")] == ["a", "b"]
        assert catalog.load("compute_environment") == [{"n": [1, 2]}]
        assert catalog.load("job_definition") == []


def test_put_replaces_and_delete_removes(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        catalog = store.catalog
        catalog.put("job_definition", "d:1", ARN + "job-definition/d:1", {"status": "ACTIVE"})
        catalog.put("job_definition", "d:1", ARN + "job-definition/d:1", {"status": "INACTIVE"})
        assert catalog.load("job_definition") == [{"status": "INACTIVE"}]
        catalog.delete("job_definition", "d:1")
        catalog.delete("job_definition", "never-there")  # nothing to delete is no error
        assert catalog.load("job_definition") == []


def test_what_is_put_is_committed_for_the_next_opening(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    body = {"computeEnvironmentName": "ce", "tags": {"k": "v"}, "unicode": "é"}
    store.catalog.put("compute_environment", "ce", ARN + "compute-environment/ce", body)
    # Another connection sees it before this one closes: the put was committed.
    with sqlite3.connect(tmp_path / DB_NAME) as other:
        assert other.execute("SELECT name FROM catalog").fetchall() == [("ce",)]
    store.close()
    with Store.open(tmp_path) as reopened:
        assert reopened.catalog.load("compute_environment") == [body]


def test_unknown_kind_is_a_bug_not_a_row(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        with pytest.raises(ValueError, match="unknown catalog kind"):
            store.catalog.put("job", "x", "arn", {})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown catalog kind"):
            store.catalog.load("queue")  # type: ignore[arg-type]


def test_an_arn_names_one_resource(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.catalog.put("job_queue", "a", ARN + "job-queue/a", {})
        with pytest.raises(StoreError, match="cannot write"):
            store.catalog.put("job_queue", "b", ARN + "job-queue/a", {})
        assert store.catalog.load("job_queue") == [{}]


def test_a_damaged_body_is_a_store_error_naming_the_entry(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.catalog.put("job_queue", "q", ARN + "job-queue/q", {})
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute("UPDATE catalog SET body = '[1' WHERE name = 'q'")
    with Store.open(tmp_path) as store, pytest.raises(StoreError, match="entry job_queue q"):
        store.catalog.load("job_queue")


def test_a_catalog_is_of_its_store(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert isinstance(store.catalog, Catalog)
        assert store.catalog.path == store.path
