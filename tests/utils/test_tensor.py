import numpy as np
import pytest
import torch

from gluefactory.geometry.wrappers import Pose
from gluefactory.utils.errors import InputError
from gluefactory.utils.tensor import (
    batch_to_device,
    collate,
    map_tensors,
    rbd,
    unbatch,
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
    assert rbd({"a": torch.zeros(1, 5)})["a"].shape == (5,)
    assert map_tensors(data, lambda t: t + 1)["b"][0].tolist() == [2.0, 2.0]


@pytest.mark.parametrize(
    "shape,item_dims,out",
    [
        ((5, 2), 2, (5, 2)),  # one item
        ((1, 5, 2), 2, (5, 2)),  # a batch of one
        ((1, 2), 2, (1, 2)),  # one item of one point: never mistaken for a batch
        ((1, 2), 1, (2,)),
        ((3,), 1, (3,)),
        ((1, 3), 1, (3,)),
    ],
)
def test_unbatch_follows_the_stated_item_rank(shape, item_dims, out):
    assert unbatch(torch.zeros(shape), item_dims).shape == out
    assert unbatch(np.zeros(shape), item_dims).shape == out


@pytest.mark.parametrize(
    "shape,item_dims", [((2, 5, 2), 2), ((5,), 2), ((1, 1, 5, 2), 2)]
)
def test_unbatch_rejects_batches_of_several_and_wrong_ranks(shape, item_dims):
    with pytest.raises(
        InputError,
        match="'kpts'.*" + str(tuple(shape)).replace("(", r"\(").replace(")", r"\)"),
    ):
        unbatch(torch.zeros(shape), item_dims, "kpts")


def test_unbatch_tensor_wrappers_by_batch_shape():
    T = Pose.from_Rt(torch.eye(3), torch.zeros(3))
    assert unbatch(T, 0) is T
    assert tuple(unbatch(Pose.stack([T]), 0).shape) == ()
    with pytest.raises(InputError, match="batch of 2"):
        unbatch(Pose.stack([T, T]), 0, "T_0to1")
    with pytest.raises(InputError, match="list"):
        unbatch([1], 0, "x")


def test_rbd_batch_of_one_only():
    out = rbd(
        {"a": torch.zeros(1, 5), "n": ["x"], "s": "k", "v": {"b": np.zeros((1, 2))}}
    )
    assert out["a"].shape == (5,) and out["n"] == "x" and out["s"] == "k"
    assert out["v"]["b"].shape == (2,)
    with pytest.raises(InputError, match="'a' has a batch of 2"):
        rbd({"a": torch.zeros(2, 5)})
