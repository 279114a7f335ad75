"""Point labels that neither overlap each other nor leave the axes: a greedy placer.

Each label tries positions around its point, nearest first (right, left, above, below, the
diagonals, then the same farther out with a leader line), and takes the first one whose box
lies inside the axes and clears every label placed before it, the plotted markers and the
legend. Where none is clear it takes the one overlapping least. Positions are measured on
the laid-out figure, so call it after everything else is drawn; the labels are kept out of
the constrained layout, which therefore does not move the axes under them afterwards.
Offsets are in points, so a saved figure keeps the placement at any dpi.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
RADII_PT = (4, 12, 24, 40)  # from the marker's edge; the last two draw a leader line
MARKER_PT = 4  # half the side of the box a marker keeps clear


def _renderer(figure):
    if not hasattr(figure.canvas, "get_renderer"):
        FigureCanvasAgg(figure)  # a bare Figure: give it the canvas savefig would use for PNG
    figure.draw_without_rendering()  # settle the constrained layout before measuring
    return figure.canvas.get_renderer()


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Bbox, frame: Bbox) -> float:
    inside = _overlap(box, frame)
    return box.width * box.height - inside


def place_labels(ax: Axes, points: Sequence[tuple[float, float]], texts: Sequence[str], *, fontsize="x-small",
                 color="0.1", markers: Sequence[tuple[float, float]] = ()) -> list[Annotation]:
    """Annotate each data point in ``points`` with its text, placed clear of the others.

    Args:
        ax: the axes, with its limits, scales and legend final.
        points, texts: one label per point, in data coordinates; earlier ones choose first.
        markers: further data points whose markers labels should not cover (besides ``points``).

    Returns:
        The annotations, in the order given.
    """
    figure = ax.figure
    renderer = _renderer(figure)
    px_per_pt = figure.dpi / 72
    frame = ax.get_window_extent(renderer)
    to_display = ax.transData.transform
    half = MARKER_PT * px_per_pt
    blocked = [Bbox.from_extents(x - half, y - half, x + half, y + half)
               for x, y in to_display(np.asarray([*points, *markers], float).reshape(-1, 2))]
    legend = ax.get_legend()
    if legend is not None:
        blocked.append(legend.get_window_extent(renderer))
    placed = []
    style = {"textcoords": "offset points", "ha": "left", "va": "bottom", "fontsize": fontsize, "color": color,
             "annotation_clip": False}
    for point, text in zip(points, texts, strict=True):
        probe = ax.annotate(text, point, xytext=(0, 0), **style)  # measured, then replaced
        size = probe.get_window_extent(renderer)
        probe.remove()
        w, h = size.width, size.height
        anchor = to_display([point])[0]
        best, best_cost = None, np.inf
        for radius in RADII_PT:
            r = (radius + MARKER_PT) * px_per_pt
            for ux, uy in DIRECTIONS:
                # The box's lower-left corner: beside the point on the side (ux, uy) points to.
                x0 = anchor[0] + ux * r - (w if ux < 0 else w / 2 if ux == 0 else 0)
                y0 = anchor[1] + uy * r - (h if uy < 0 else h / 2 if uy == 0 else 0)
                box = Bbox.from_bounds(x0, y0, w, h)
                cost = 100 * _outside(box, frame) + sum(_overlap(box, other) for other in blocked)
                if cost < best_cost:
                    best, best_cost = (box, radius), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        box, radius = best
        offset = ((box.x0 - anchor[0]) / px_per_pt, (box.y0 - anchor[1]) / px_per_pt)
        leader = {"arrowprops": {"arrowstyle": "-", "lw": 0.5, "color": "0.5", "shrinkA": 0, "shrinkB": 2,
                                 "relpos": (0.5, 0.5)}} if radius >= RADII_PT[2] else {}
        label = ax.annotate(text, point, xytext=offset, **style, **leader)
        label.set_in_layout(False)
        blocked.append(box)
        placed.append(label)
    return placed


def label_boxes(figure, labels: Sequence[Annotation]) -> list[Bbox]:
    """The labels' boxes on the rendered figure (display coordinates): what a test checks."""
    renderer = _renderer(figure)
    return [label.get_window_extent(renderer) for label in labels]
