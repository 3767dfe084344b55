"""Preview pictures: contact sheets tile images row by row and label each tile readably."""

import numpy as np

from pipeline.core import previews


def test_contact_sheet_tiles_rows_and_pads_the_last_row():
    images = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    sheet = previews.contact_sheet(images, columns=2, height=96)
    assert sheet.shape == (3 * 96, 2 * 128, 3)
    assert (sheet[96:192, 128:] == 120).all()  # image 3, resized to the row height
    assert (sheet[192:, 128:] == 24).all()  # padding tile


def test_labels_are_white_text_on_a_darkened_strip_over_any_picture():
    bright = np.full((48, 64, 3), 240, np.uint8)
    sheet = previews.contact_sheet([bright], columns=1, height=96, labels=["ground truth t=13"])
    corner = sheet[-16:, :60]
    assert corner.min() < 100  # darkened behind the text
    assert (corner.min(axis=-1) > 200).any()  # white letters
    assert (sheet[:60] == 240).all()  # the picture above the label is untouched
