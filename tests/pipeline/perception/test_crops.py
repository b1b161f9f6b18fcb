"""pipeline.perception.crops: crop geometry, JPEG round trip, per-track selection, the crop_jpeg column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.perception.crops import (
    CROP_COLUMN,
    CropConfig,
    crop_column,
    crop_field,
    crop_person,
    crop_square,
    decode_crop,
    encode_crop,
    encode_detection_crops,
    to_crop_pixels,
    track_crops,
)


def _frame_with_blob(centre, shape=(240, 320), sigma=2.0):
    h, w = shape
    y, x = np.mgrid[0:h, 0:w] + 0.5
    blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    return np.repeat((blob * 255).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(image):
    weight = image[..., 0].astype(np.float64)
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    return np.array([(weight * x).sum(), (weight * y).sum()]) / weight.sum()


def test_crop_square_is_scaled_longer_side():
    square = crop_square(np.array([[10.0, 20.0, 50.0, 120.0]]), scale=1.2)
    np.testing.assert_allclose(square, [[30.0, 70.0, 120.0]])
    with pytest.raises(ValueError, match="x0, y0, x1, y1"):
        crop_square(np.zeros(3))


@pytest.mark.parametrize("box,size", [((100, 60, 160, 200), 64), ((20, 10, 300, 230), 48), ((250, 150, 330, 260), 96)])
def test_crop_maps_points_where_to_crop_pixels_says(box, size):
    """A blob at a known frame point lands where to_crop_pixels predicts (also when the
    crop is minified 4x and when the square leaves the frame)."""
    box = np.array(box, np.float64)
    point = np.array([0.6 * box[0] + 0.4 * min(box[2], 319), 0.5 * box[1] + 0.5 * min(box[3], 239)])
    side = crop_square(box)[2]
    frame = _frame_with_blob(point, sigma=max(2.0, side / size * 1.5))
    crop = crop_person(frame, box, CropConfig(size=size))
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    expected = to_crop_pixels(point[None], box, size)[0]
    np.testing.assert_allclose(_centroid(crop), expected, atol=0.35)


def test_outside_the_frame_is_black():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_person(frame, np.array([60.0, 60.0, 100.0, 100.0]), CropConfig(size=40, scale=2.0))
    # Square of side 80 centred at (80, 80) spans [40, 120]: frame x/y 100 is crop pixel 30.
    assert crop[:29, :29].min() == 200
    assert crop[31:].max() == 0 and crop[:, 31:].max() == 0


def test_jpeg_round_trip():
    y, x = np.mgrid[0:64, 0:64]
    crop = np.stack([x * 4, y * 4, (x + y) * 2], axis=2).astype(np.uint8)
    data = encode_crop(crop, quality=90)
    assert data[:2] == b"\xff\xd8" and len(data) < crop.nbytes
    back = decode_crop(data)
    assert back.shape == crop.shape and back.dtype == np.uint8
    mse = np.mean((back.astype(np.float64) - crop) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35  # PSNR, dB
    assert np.abs(back.astype(int) - crop).mean() < np.abs(back[..., ::-1].astype(int) - crop).mean()  # RGB kept
    with pytest.raises(ValueError, match="empty crop"):
        decode_crop(b"")
    with pytest.raises(ValueError, match="not a decodable JPEG"):
        decode_crop(b"GIF89a not a jpeg")
    with pytest.raises(ValueError, match="uint8"):
        encode_crop(crop.astype(np.float32))


def test_config_checks():
    with pytest.raises(ValueError, match=r"CropConfig\.size=4 \(int\): must be an integer in \[8, 2048\]"):
        CropConfig(size=4)
    with pytest.raises(ValueError, match="quality"):
        CropConfig(quality=0)


def test_detection_crops_to_track_crops_to_column():
    frame = _frame_with_blob((100, 100))
    boxes = np.array([[80, 80, 120, 120], [np.nan] * 4, [10, 10, 40, 60]], np.float32)
    crops = encode_detection_crops(frame, boxes, CropConfig(size=24))
    assert crops[1] == b"" and all(decode_crop(c).shape == (24, 24, 3) for c in (crops[0], crops[2]))
    per_frame = [crops, crops[:1], crops]
    chosen = track_crops(per_frame, np.array([2, -1, 0]))
    assert chosen == (crops[2], b"", crops[0])
    with pytest.raises(ValueError, match="selected detection 2"):
        track_crops(per_frame, np.array([0, 2, 0]))
    column = crop_column(chosen, 3)
    assert column.type == pa.binary() and column.to_pylist() == [crops[2], None, crops[0]]
    assert crop_column(chosen, 3, keep=np.array([True, False, True])).to_pylist() == [crops[2], crops[0]]
    assert crop_column((), 2).null_count == 2
    with pytest.raises(ValueError, match="2 crops for a track of 3"):
        crop_column(chosen[:2], 3)
    field = crop_field()
    assert field.name == CROP_COLUMN == "crop_jpeg" and field.type == pa.binary() and field.nullable
