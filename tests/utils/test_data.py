import pytest

from gluefactory.models.base_model import MissingDataError as FromBaseModel
from gluefactory.models.base_model import check_data_keys as check_from_base_model
from gluefactory.utils.data import MissingDataError, check_data_keys, missing_keys
from gluefactory.utils.errors import InputError, UserError


def test_dotted_keys_are_looked_up_recursively():
    data = {"view0": {"image": 1}, "keypoints0": 2}
    assert missing_keys(["view0.image", "keypoints0"], data) == []
    assert missing_keys(["view0.depth", "view1.image", "x"], data) == [
        "view0.depth",
        "view1.image",
        "x",
    ]


def test_error_names_component_missing_and_present_keys():
    with pytest.raises(MissingDataError) as e:
        check_data_keys("Toy", ["view1.image", "keypoints0"], {"view0": {}})
    msg = str(e.value)
    assert msg.startswith("Toy is missing input key(s): view1.image, keypoints0.")
    assert "Input has: view0." in msg
    assert not msg.startswith("'")  # not KeyError's quoted repr


def test_missing_data_is_a_user_error_and_still_a_key_error():
    assert issubclass(MissingDataError, InputError)
    assert issubclass(MissingDataError, UserError)
    assert issubclass(MissingDataError, KeyError)


def test_historical_import_path_is_the_same_object():
    assert FromBaseModel is MissingDataError
    assert check_from_base_model is check_data_keys


def test_non_dict_input():
    with pytest.raises(MissingDataError, match="a list, not a dict"):
        check_data_keys("Toy", ["a"], [])
