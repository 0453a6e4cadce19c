"""The report's plots as a reader sees them: colours decoded from the rendered PNG."""

import io
from collections import Counter

import matplotlib.image
import pytest

from optforge.report_plots import fig_heatmap


def _cell_colour(scores: list[float]) -> tuple[float, float, float]:
    """The colour filling most of a one-row heatmap of `scores` (its cells; the colour bar is a thin
    strip, the rest white, grey or black), as RGB in [0, 1]."""
    fig = fig_heatmap([("rule", {f"task{i}": {"score": s} for i, s in enumerate(scores)})], 0)
    pixels = matplotlib.image.imread(io.BytesIO(fig.png), format="png")[..., :3].reshape(-1, 3)
    counts = Counter(tuple(round(float(c), 2) for c in px) for px in pixels if max(px) - min(px) > 0.1)
    return counts.most_common(1)[0][0]


@pytest.mark.parametrize("score", [-0.4, -2.5])
def test_heatmap_colours_a_score_below_zero_red(score):
    r, g, _ = _cell_colour([score, score])
    assert r > g + 0.05, (score, r, g)


@pytest.mark.parametrize("score", [0.4, 1.5])
def test_heatmap_colours_a_score_above_zero_green(score):
    r, g, _ = _cell_colour([score, score])
    assert g > r + 0.05, (score, r, g)


def test_heatmap_colours_zero_as_the_neutral_middle():
    r, g, b = _cell_colour([0.0, 0.0])
    assert abs(r - g) < 0.03 and b < r  # RdYlGn's yellow: neither red nor green


def test_heatmap_colours_equal_magnitudes_equally_strongly():
    neg, pos = _cell_colour([-1.0]), _cell_colour([1.0])
    assert abs((neg[0] - neg[1]) - (pos[1] - pos[0])) < 0.1  # as far from yellow on either side
