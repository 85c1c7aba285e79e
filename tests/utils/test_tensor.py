import numpy as np
import pytest
import torch

from gluefactory.utils.tensor import (
    batch_to_device,
    collate,
    index_batch,
    map_tensors,
    rbd,
)


def test_collate_nested():
    samples = [
        {
            "image": torch.zeros(3, 4, 4),
            "name": "a",
            "H": np.eye(3),
            "idx": 0,
            "view": {"s": torch.ones(2)},
        },
        {
            "image": torch.ones(3, 4, 4),
            "name": "b",
            "H": np.eye(3),
            "idx": 1,
            "view": {"s": torch.ones(2)},
        },
    ]
    b = collate(samples)
    assert b["image"].shape == (2, 3, 4, 4)
    assert b["name"] == ["a", "b"]
    assert b["H"].shape == (2, 3, 3) and b["H"].dtype == torch.float64
    assert b["idx"].tolist() == [0, 1]
    assert b["view"]["s"].shape == (2, 2)


def test_collate_shape_mismatch_is_clear():
    with pytest.raises(ValueError, match="different shapes"):
        collate([torch.zeros(2), torch.zeros(3)])


def test_device_and_indexing():
    data = {"a": torch.zeros(2, 3), "b": [torch.ones(2)], "c": "x"}
    moved = batch_to_device(data, "cpu")
    assert moved["c"] == "x" and moved["a"].device.type == "cpu"
    assert index_batch(data, 1)["a"].shape == (1, 3)
    assert rbd({"a": torch.zeros(1, 5)})["a"].shape == (5,)
    assert map_tensors(data, lambda t: t + 1)["b"][0].tolist() == [2.0, 2.0]
