import torch
import torch.nn.functional as F

from gluefactory.geometry.coordinates import (
    from_center_convention,
    image_corners,
    in_image,
    normalize_for_grid_sample,
    pixel_centers,
    pixel_index,
    scale_keypoints,
    to_center_convention,
)


def test_pixel_centres_are_half_integers():
    c = pixel_centers(2, 3)
    assert c[0, 0].tolist() == [0.5, 0.5] and c[1, 2].tolist() == [2.5, 1.5]
    assert pixel_index(c).tolist()[1][2] == [2, 1]


def test_center_convention_roundtrip():
    k = torch.tensor([[0.0, 0.0], [10.0, 3.0]])
    assert torch.equal(from_center_convention(k), k + 0.5)
    assert torch.equal(to_center_convention(from_center_convention(k)), k)


def test_grid_sample_reads_pixel_at_its_centre():
    img = torch.arange(12.0).view(1, 1, 3, 4)
    kpts = pixel_centers(3, 4).view(1, 1, -1, 2)
    grid = normalize_for_grid_sample(kpts, torch.tensor([4.0, 3.0]))
    sampled = F.grid_sample(img, grid, align_corners=False)
    assert torch.allclose(sampled.flatten(), img.flatten(), atol=1e-5)


def test_corners_and_in_image():
    assert image_corners(4, 3).tolist() == [[0, 0], [4, 0], [4, 3], [0, 3]]
    k = torch.tensor([[[0.0, 0.0], [3.99, 2.99], [4.0, 1.0], [-0.1, 1.0]]])
    assert in_image(k, torch.tensor([[4.0, 3.0]])).tolist() == [
        [True, True, False, False]
    ]
    assert in_image(k[0], torch.tensor([4.0, 3.0])).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_scale_keypoints_is_exact_in_the_corner_convention():
    # x' = s x per axis: the image corner (0, 0) stays, every point scales exactly
    k = torch.tensor([[1.5, 2.5], [0.0, 0.0]])
    out = scale_keypoints(k, torch.tensor([2.0, 3.0]))
    assert out.tolist() == [[3.0, 7.5], [0.0, 0.0]]
