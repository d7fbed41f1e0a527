"""gainbook.explorer: the σ/ω explorer's numbers and the structure of its static and live widgets.

The browser side (the static explorer switching panels with no kernel) is tested on the built
book in tests/test_book_html.py.
"""

from __future__ import annotations

import re

import pytest
import torch

import gainlib
from gainbook.explorer import masked_scores, prepare_explorer

widgets = pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

CLASS_NAMES = ["boat", "car", "bird"]
SIGMAS = (0.3, 0.5, 0.7)
OMEGAS = (10.0, 100.0)


@pytest.fixture(scope="module")
def model() -> gainlib.GAIN:
    torch.manual_seed(0)
    return gainlib.GAIN.from_name("small_cnn", num_classes=len(CLASS_NAMES)).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.nn.functional.interpolate(torch.randn(2, 3, 4, 4), size=16, mode="bilinear")


def _widgets_of(root, kind) -> list:
    found, stack = [], [root]
    while stack:
        widget = stack.pop()
        if isinstance(widget, kind):
            found.append(widget)
        stack.extend(getattr(widget, "children", ()))
    return found


def test_masked_scores_match_scoring_each_masked_image(model, images):
    inputs = prepare_explorer(model, images, CLASS_NAMES, classes=[2, 0])
    assert inputs.maps.shape == (2, 2, 16, 16) and inputs.class_names == ["bird", "boat"]
    grid = masked_scores(model, inputs, SIGMAS, OMEGAS, batch_size=5)   # several batches
    assert grid.shape == (len(SIGMAS), len(OMEGAS), 2, 2)
    for s, sigma in enumerate(SIGMAS):
        for w, omega in enumerate(OMEGAS):
            for slot, cls in enumerate(inputs.classes):
                mask = gainlib.soft_mask(inputs.maps[:, slot:slot + 1], sigma, omega)
                erased = gainlib.masked_image(images, mask)[:, 0]
                with torch.no_grad():
                    expected = model(erased)[:, cls]
                torch.testing.assert_close(grid[s, w, :, slot], expected, rtol=1e-4, atol=1e-5)
    one = masked_scores(model, inputs.select(1, 0), [0.5], [10.0])
    torch.testing.assert_close(one[0, 0, 0, 0], masked_scores(model, inputs, [0.5], [10.0])[0, 0, 1, 0])


def test_the_explorer_leaves_the_model_in_the_mode_it_found(model, images):
    model.train()
    try:
        prepare_explorer(model, images, CLASS_NAMES)
        assert model.training
    finally:
        model.eval()


def test_static_explorer_links_every_level_of_a_precomputed_grid(model, images):
    from gainbook.explorer import static_explorer

    explorer = static_explorer(model, images, CLASS_NAMES, sigmas=SIGMAS, omegas=OMEGAS)
    controls = explorer.controls
    assert controls["sigma"].options == ("0.3", "0.5", "0.7") and controls["sigma"].index == 1
    assert controls["omega"].index == 0                                  # nearest to ω = 10
    assert controls["image"].options == ("image 1", "image 2")

    panels = [w for w in _widgets_of(explorer, widgets.HTML) if "gain-explorer-panel" in w.value]
    assert len(panels) == len(images) * len(CLASS_NAMES) * len(SIGMAS) * len(OMEGAS)
    assert len({p.value for p in panels}) == len(panels), "two grid points render the same panel"
    for panel in panels:
        alts = re.findall(r'alt="([^"]+)"', panel.value)
        assert len(alts) == 2 and all("σ = " in alt for alt in alts), alts

    # Every Stack is linked in the browser to the control of its level, starting in step with it.
    stacks = _widgets_of(explorer, widgets.Stack)
    assert len(explorer.links) == len(stacks) == 1 + 2 + 2 * 3 + 2 * 3 * 3
    assert {id(link.target[0]) for link in explorer.links} == {id(stack) for stack in stacks}
    for link in explorer.links:
        control, stack = link.source[0], link.target[0]
        assert link.source[1] == "index" and link.target[1] == "selected_index"
        assert control in controls.values()
        assert stack.selected_index == control.index
        assert len(stack.children) == len(control.options)

    # Shared layout and style models keep the saved widget state small.
    assert len({id(p.layout) for p in panels}) == 1 and len({id(p.style) for p in panels}) == 1


def test_live_explorer_redraws_on_every_control(model, images):
    from gainbook.explorer import live_explorer

    explorer = live_explorer(model, images, CLASS_NAMES)
    attention, masking = explorer.views["attention"], explorer.views["masking"]
    assert "σ = 0.5, ω = 10" in masking.value
    before = masking.value
    explorer.controls["sigma"].value = 0.8
    assert "σ = 0.8, ω = 10" in masking.value and masking.value != before
    explorer.controls["omega"].value = 100.0
    assert "ω = 100" in masking.value
    explorer.controls["class"].value = 2
    assert "class bird" in attention.value and "class bird" in masking.value
    score = float(re.search(r"s<sup>c</sup>\(I\*\) = ([-+][0-9.]+)", masking.value).group(1))
    expected = masked_scores(model, prepare_explorer(model, images, CLASS_NAMES).select(0, 2), [0.8], [100.0])
    assert score == pytest.approx(float(expected), abs=0.006)


def test_both_explorers_open_on_a_class_the_first_image_contains(model, images):
    from gainbook.explorer import live_explorer, static_explorer

    only_bird = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    live = live_explorer(model, images, CLASS_NAMES, labels=only_bird)
    assert live.controls["class"].value == 2 and "class bird" in live.views["attention"].value
    static = static_explorer(model, images, CLASS_NAMES, labels=only_bird, sigmas=(0.5,), omegas=(10.0,))
    assert static.controls["class"].value == "bird"
    for link in static.links:                    # every class stack starts on the bird's panel
        assert link.target[0].selected_index == link.source[0].index
    # Without labels, or with an image that holds none of the explored classes: the first class.
    assert live_explorer(model, images, CLASS_NAMES).controls["class"].value == 0
    assert live_explorer(model, images, CLASS_NAMES, labels=torch.zeros(2, 3)).controls["class"].value == 0


class _TinySet:
    """Protocol samples from fixed images; image 2 has no class."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.labels = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "labels": self.labels[i]}


def test_static_attention_picker_holds_one_linked_panel_per_model(model, images):
    from gainbook.explorer import attention_picker

    other = gainlib.GAIN.from_name("small_cnn", num_classes=len(CLASS_NAMES)).eval()
    data = _TinySet(torch.cat([images, images[:1]]))
    picker = attention_picker({"first": model, "second": other}, data, [0, 1, 2], CLASS_NAMES,
                              label="labels")
    slider = picker.controls["model"]
    assert slider.options == ("first", "second")
    (stack,) = _widgets_of(picker, widgets.Stack)
    assert len(stack.children) == 2 and stack.selected_index == 0
    first, second = (child.value for child in stack.children)
    # The first true class of each image, in the alt text; an image without a class says so.
    alts = re.findall(r'alt="([^"]+)"', first)
    assert alts == ["attention of first for class car on image 0",
                    "attention of first for class boat on image 1",
                    "attention of first for class no class on image 2"]
    assert first != second, "two models render the same panel"
    # The map shown is the model's Grad-CAM of that class.
    from gainbook.explorer import _PickerRenderer

    render = _PickerRenderer(data, CLASS_NAMES, 32, None, "jet", None, None)
    batch, classes, _ = render.batch([0, 1, 2])
    maps = render.maps(model, batch, classes)
    expected = model.attention(images[1:2], classes=torch.tensor([[0]])).maps[0, 0]
    torch.testing.assert_close(maps[1], expected)
    assert maps[2].abs().sum() == 0


def test_live_attention_picker_recomputes_on_model_and_page(model, images):
    from gainbook.explorer import attention_picker

    other = gainlib.GAIN.from_name("small_cnn", num_classes=len(CLASS_NAMES)).eval()
    data = _TinySet(torch.cat([images, images[:1]]))
    picker = attention_picker({"first": model, "second": other}, data, [1], CLASS_NAMES, live=True)
    assert "image 1" in picker.view.value and "of first" in picker.view.value
    picker.controls["model"].value = "second"
    assert "of second" in picker.view.value
    picker.controls["page"].value = 2
    assert "image 2" in picker.view.value and "no class" in picker.view.value
