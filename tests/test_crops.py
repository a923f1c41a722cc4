import pytest

from soebench.mining.crops import crop_to_int, eval_crop, teacher_crop


def test_teacher_crop_central_object_is_centred_square():
    # centre (0.5, 0.5) of a 400x200 image -> [0.25, 0.75] in both normalised axes
    assert teacher_crop([190, 90, 20, 20], 400, 200) == pytest.approx((100, 50, 300, 150))


def test_teacher_crop_off_centre_uses_quadrant():
    # centre (0.1, 0.9) -> bottom-left quadrant
    assert teacher_crop([30, 170, 20, 20], 400, 200) == pytest.approx((0, 100, 200, 200))
    # centre (0.8, 0.2) -> top-right quadrant
    assert teacher_crop([310, 30, 20, 20], 400, 200) == pytest.approx((200, 0, 400, 100))


def test_teacher_crop_on_central_boundary_stays_square():
    # centre exactly at 0.25 is still central: the square touches the border but fits
    box = teacher_crop([90, 40, 20, 20], 400, 200)
    assert box == pytest.approx((0, 0, 200, 100))


def test_eval_crop_shifted_inside_image():
    w, h = 512, 512
    assert eval_crop([246, 246, 20, 20], w, h) == pytest.approx((192, 192, 320, 320))
    x0, y0, x1, y1 = eval_crop([0, 500, 10, 12], w, h)
    assert (x0, y1) == pytest.approx((0, 512))
    assert x1 - x0 == pytest.approx(128) and y1 - y0 == pytest.approx(128)


def test_crop_to_int_clamps():
    assert crop_to_int((-3.2, 10.4, 50.6, 99.9), 50, 100) == (0, 10, 50, 100)
