"""The σ/ω explorer: how the soft mask and the masked image of attention mining change with σ and ω.

For an image ``I``, a class ``c`` and its attention map ``A^c`` (Eq. 1-2), the explorer shows
``A^c``, the soft mask ``T(A^c) = sigmoid(ω (A^c - σ))`` (Eq. 4), the masked image
``I*^c = I - T(A^c) ⊙ I`` (Eq. 3) and the score ``s^c(I*^c)`` that the attention-mining loss
(Eq. 5) drives down, next to ``s^c(I)``.

Two modes draw the same panels:

* :func:`live_explorer` — in JupyterLab with a running kernel: continuous σ and ω sliders,
  the mask and the score recomputed in Python on every change.
* :func:`static_explorer` — for the published HTML, which has no kernel: every panel of a
  small σ × ω grid is precomputed as an HTML widget holding compressed images. The panels sit
  in nested ``Stack`` widgets whose ``selected_index`` is ``jslink``-ed to the pickers and
  sliders, so the browser switches panels by itself. The widget state saved in the executed
  notebook is the whole explorer; its size grows with images × classes × σ values × ω values.

The **attention picker** (:func:`attention_picker`) shows the same images under the attention
of several trained models — e.g. GAIN_ext trained with more and more extra labels (chapter 3) —
and switches between the models with a slider: precomputed for the static book, or recomputed
by the kernel (``live=True``) with a second slider that pages through the data set.

Both need ipywidgets (the ``book`` extra); the colour maps come from matplotlib.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from gainlib.data.protocol import IMAGENET_MEAN, IMAGENET_STD
from gainlib.masking import DEFAULT_OMEGA, DEFAULT_SIGMA, masked_image, soft_mask
from gainbook.viz import display_image

__all__ = [
    "DEFAULT_SIGMAS",
    "DEFAULT_OMEGAS",
    "ExplorerInputs",
    "prepare_explorer",
    "masked_scores",
    "live_explorer",
    "static_explorer",
    "attention_picker",
]

DEFAULT_SIGMAS = (0.2, 0.35, 0.5, 0.65, 0.8)
DEFAULT_OMEGAS = (3.0, 10.0, 100.0)

# CSS class names, for styling and for the browser tests that drive the published explorer.
CSS_CLASS = "gain-explorer"
_PANEL_CLASS = "gain-explorer-panel"
PICKER_CLASS = "gain-picker"


@dataclass
class ExplorerInputs:
    """What both modes need, computed once by :func:`prepare_explorer`.

    Attributes:
        images: ``[N, 3, H, W]`` normalised images (CPU).
        maps: ``[N, K, H, W]`` attention map ``A^c`` of each image for each explored class.
        classes: the ``K`` explored label indices.
        class_names: their names.
        image_names: a name for each image.
        scores: ``[N, K]`` logits ``s^c(I)`` of the unmasked images.
        mean, std: the normalisation of ``images`` (to display them).
    """

    images: Tensor
    maps: Tensor
    classes: list[int]
    class_names: list[str]
    image_names: list[str]
    scores: Tensor
    mean: Sequence[float]
    std: Sequence[float]

    def select(self, image: int, slot: int) -> "ExplorerInputs":
        """The inputs reduced to one image and one class."""
        return ExplorerInputs(
            self.images[image:image + 1], self.maps[image:image + 1, slot:slot + 1],
            [self.classes[slot]], [self.class_names[slot]], [self.image_names[image]],
            self.scores[image:image + 1, slot:slot + 1], self.mean, self.std)


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class _EvalMode:
    """Score in eval mode (BatchNorm running statistics), then restore the training flag."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def prepare_explorer(model: nn.Module, images: Tensor, class_names: Sequence[str],
                     classes: Sequence[int] | None = None,
                     image_names: Sequence[str] | None = None,
                     mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None) -> ExplorerInputs:
    """Compute the attention maps and the unmasked scores once.

    Args:
        model: a :class:`~gainlib.gain.GAIN` (anything with ``attention(images, classes=...)``
            returning :class:`~gainlib.attention.AttentionMaps`, and ``model(images)`` logits).
        images: ``[N, 3, H, W]`` normalised images.
        class_names: the name of every label index of the model.
        classes: the label indices to explore (default: all).
        image_names: names shown by the image picker (default ``image 1``, ``image 2``, ...).
        mean, std: the images' normalisation (default: ImageNet's, as gainlib's datasets).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {list(images.shape)}")
    classes = list(range(len(class_names))) if classes is None else [int(c) for c in classes]
    if image_names is None:
        image_names = [f"image {i + 1}" for i in range(len(images))]
    if len(image_names) != len(images):
        raise ValueError(f"{len(image_names)} image names for {len(images)} images")
    images = images.detach().cpu().float()
    device = _device_of(model)
    slots = torch.tensor(classes, device=device).expand(len(images), -1)
    with _EvalMode(model):
        out = model.attention(images.to(device), classes=slots)
    return ExplorerInputs(
        images=images, maps=out.maps.detach().cpu(), classes=classes,
        class_names=[str(class_names[c]) for c in classes], image_names=list(image_names),
        scores=out.logits.detach().cpu()[:, classes],
        mean=tuple(IMAGENET_MEAN if mean is None else mean),
        std=tuple(IMAGENET_STD if std is None else std))


@torch.no_grad()
def masked_scores(model: nn.Module, inputs: ExplorerInputs, sigmas: Sequence[float],
                  omegas: Sequence[float], batch_size: int = 256) -> Tensor:
    """Logits ``s^c(I*^c)`` of the masked images for every (σ, ω) of a grid.

    All masked images go through the model (on its device) in batches of ``batch_size``: one
    forward of a few hundred small images is several times faster on a CPU than one per (σ, ω).

    Returns:
        ``[S, W, N, K]`` for ``S`` sigmas, ``W`` omegas, ``N`` images and ``K`` classes.
    """
    sigma = torch.tensor(sigmas, dtype=torch.float32).view(-1, 1, 1, 1, 1, 1)
    omega = torch.tensor(omegas, dtype=torch.float32).view(1, -1, 1, 1, 1, 1)
    masks = torch.sigmoid(omega * (inputs.maps[None, None] - sigma))   # Eq. 4: [S, W, N, K, H, W]
    grid = masks.shape[:4]
    erased = masked_image(inputs.images.repeat(grid[0] * grid[1], 1, 1, 1),  # Eq. 3
                          masks.flatten(0, 2))                               # [S*W*N, K, 3, H, W]
    flat, device = erased.flatten(0, 1), _device_of(model)
    with _EvalMode(model):
        logits = torch.cat([model(chunk.to(device)).cpu() for chunk in flat.split(batch_size)])
    logits = logits.view(*grid, -1)                                          # [S, W, N, K, C]
    classes = torch.tensor(inputs.classes).view(1, 1, 1, -1, 1).expand(*grid, 1)
    return logits.gather(4, classes).squeeze(4)


# --- rendering ------------------------------------------------------------------------------

def _image_data_uri(pixels: np.ndarray, quality: int | None) -> str:
    """``[H, W]`` or ``[H, W, 3]`` floats in [0, 1] as a data URI.

    Lossy WebP at ``quality`` (0-100) by default: about a tenth of a PNG's size for these small
    pictures, which matters because the static explorer holds hundreds of them; ``None`` gives
    a lossless PNG.
    """
    picture = Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8))
    buffer = io.BytesIO()
    if quality is None:
        picture.save(buffer, format="PNG")
        mime = "image/png"
    else:
        picture.save(buffer, format="WEBP", quality=quality)
        mime = "image/webp"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# One stylesheet, shipped once in the explorer's header, keeps each of the hundreds of panels short.
_STYLE = f"""<style>
.{CSS_CLASS}-row {{display:flex; align-items:flex-start; flex-wrap:wrap; gap:6px}}
.{CSS_CLASS}-row figure {{margin:0; text-align:center}}
.{CSS_CLASS}-row img {{border:1px solid #ccc}}
.{CSS_CLASS}-row figcaption {{font-size:0.85em}}
.{CSS_CLASS}-score {{align-self:center; margin-left:6px; font-family:monospace}}
.{CSS_CLASS}-score small {{color:#666}}
</style>"""


def _figure(uri: str, alt: str, caption: str, size: int) -> str:
    return (f'<figure><img src="{uri}" alt="{html.escape(alt, quote=True)}" width="{size}" '
            f'height="{size}"><figcaption>{caption}</figcaption></figure>')


def _row(figures: Sequence[str], score: str, extra_class: str = "") -> str:
    classes = f"{CSS_CLASS}-row {extra_class}".strip()
    return f'<div class="{classes}">' + "".join(figures) + score + "</div>"


def _score_html(label: str, logit: float, note: str = "") -> str:
    probability = float(torch.sigmoid(torch.tensor(logit)))
    note_html = f"<br><small>{note}</small>" if note else ""
    return (f'<div class="{CSS_CLASS}-score">{label} = {logit:+.2f}<br>'
            f'sigmoid = {probability:.3f}{note_html}</div>')


class _Renderer:
    """Turns one (image, class slot) or (image, class slot, σ, ω) into HTML; shared by both modes."""

    def __init__(self, inputs: ExplorerInputs, size: int, quality: int | None, cmap: str) -> None:
        import matplotlib

        self.inputs, self.size, self.quality = inputs, size, quality
        self.colormap = matplotlib.colormaps[cmap]
        self.rgb = [display_image(img, True, inputs.mean, inputs.std) for img in inputs.images]

    def picture(self, pixels: np.ndarray, alt: str, caption: str) -> str:
        return _figure(_image_data_uri(pixels, self.quality), alt, caption, self.size)

    def attention(self, image: int, slot: int) -> str:
        """The image, ``A^c`` over it and the unmasked score ``s^c(I)``."""
        name, cls = self.inputs.image_names[image], self.inputs.class_names[slot]
        heat = self.inputs.maps[image, slot].numpy()
        overlay = 0.5 * self.rgb[image] + 0.5 * self.colormap(heat)[..., :3]
        return _row([
            self.picture(self.rgb[image], name, "image I"),
            self.picture(overlay, f"attention map A^c of class {cls} on {name}",
                         f"A<sup>c</sup>, c = {html.escape(cls)}"),
        ], _score_html("s<sup>c</sup>(I)", float(self.inputs.scores[image, slot])))

    def masking(self, image: int, slot: int, sigma: float, omega: float, score: float) -> str:
        """``T(A^c)``, ``I*^c`` and the masked score ``s^c(I*)`` at one (σ, ω)."""
        cls = self.inputs.class_names[slot]
        mask = soft_mask(self.inputs.maps[image:image + 1, slot:slot + 1], sigma, omega)
        erased = masked_image(self.inputs.images[image:image + 1], mask)[0, 0]
        setting = f"σ = {sigma:g}, ω = {omega:g}"
        return _row([
            self.picture(mask[0, 0].numpy(), f"soft mask T(A^c) of class {cls}, {setting}",
                         "T(A<sup>c</sup>)"),
            self.picture(display_image(erased, True, self.inputs.mean, self.inputs.std),
                         f"masked image I* for class {cls}, {setting}",
                         "I*<sup>c</sup> = I − T(A<sup>c</sup>)·I"),
        ], _score_html("s<sup>c</sup>(I*)", score, setting), extra_class=_PANEL_CLASS)


def _control_rows(image: Any, cls: Any, sigma: Any, omega: Any) -> list:
    """The four controls, each after an HTML label.

    Not the controls' own ``description``: the html-manager typesets descriptions with
    MathJax 2's ``MathJax.Hub``, which the book's MathJax 3 lacks, and every description then
    raises an error in the published page. HTML widgets are not typeset.
    """
    import ipywidgets as widgets

    label_layout = widgets.Layout(width="5em")
    return [widgets.HBox([widgets.HTML(f"<b>{label}</b>", layout=label_layout), control])
            for label, control in (("image", image), ("class c", cls), ("σ", sigma), ("ω", omega))]


def _nearest_index(values: Sequence[float], target: float) -> int:
    return int(np.argmin([abs(np.log(v / target)) if v > 0 and target > 0 else abs(v - target)
                          for v in values]))


# --- the two modes --------------------------------------------------------------------------

def _opening_class(labels: Tensor | np.ndarray | None, classes: Sequence[int]) -> int:
    """The slot of the first explored class that the first image contains (0 without labels,
    or when it contains none of them)."""
    if labels is None:
        return 0
    first = torch.as_tensor(labels)[0]
    return next((slot for slot, c in enumerate(classes) if first[c] > 0), 0)


def static_explorer(model: nn.Module, images: Tensor, class_names: Sequence[str], *,
                    classes: Sequence[int] | None = None,
                    image_names: Sequence[str] | None = None,
                    labels: Tensor | np.ndarray | None = None,
                    sigmas: Sequence[float] = DEFAULT_SIGMAS,
                    omegas: Sequence[float] = DEFAULT_OMEGAS,
                    size: int = 112, quality: int | None = 80, cmap: str = "jet",
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Any:
    """The explorer for pages without a kernel: a precomputed σ × ω grid switched in the browser.

    Args:
        model, images, class_names, classes, image_names, mean, std: see :func:`prepare_explorer`.
        labels: multi-hot ``[N, C]`` labels of the images, if known: the explorer opens on a
            class the first image contains.
        sigmas, omegas: the grid of the σ and ω sliders.
        size: displayed side of each picture in CSS pixels (the pictures keep the images'
            resolution).
        quality: WebP quality of the pictures (``None``: lossless PNGs, pages several times
            larger).
        cmap: colour map of ``A^c``.

    Returns:
        An ``ipywidgets.VBox`` with a ``controls`` dict (``"image"``, ``"class"``, ``"sigma"``,
        ``"omega"``) and its ``links`` (one per Stack); display it (make it a cell's last
        expression). Keep the grid small: every (image, class, σ, ω) is one panel in the page.
    """
    import ipywidgets as widgets
    from ipywidgets.widgets.widget_string import HTMLStyle

    if not sigmas or not omegas:
        raise ValueError("sigmas and omegas must each hold at least one value")
    inputs = prepare_explorer(model, images, class_names, classes, image_names, mean, std)
    render = _Renderer(inputs, size, quality, cmap)
    scores = masked_scores(model, inputs, sigmas, omegas)                       # [S, W, N, K]
    sigma_start = _nearest_index(sigmas, DEFAULT_SIGMA)
    omega_start = _nearest_index(omegas, DEFAULT_OMEGA)

    class_start = _opening_class(labels, inputs.classes)
    image_picker = widgets.ToggleButtons(options=inputs.image_names)
    class_picker = widgets.ToggleButtons(options=inputs.class_names, index=class_start)
    sigma_slider = widgets.SelectionSlider(options=[f"{s:g}" for s in sigmas], index=sigma_start)
    omega_slider = widgets.SelectionSlider(options=[f"{w:g}" for w in omegas], index=omega_start)
    for control, name in ((image_picker, "image"), (class_picker, "class"),
                          (sigma_slider, "sigma"), (omega_slider, "omega")):
        control.add_class(f"{CSS_CLASS}-{name}")

    # Nested stacks image > class > σ > ω; each level's selected_index follows its control in
    # the browser through a jslink, so no kernel is needed to switch panels. Hundreds of widgets
    # share one Layout and one HTMLStyle model: the saved state holds every model in full, and
    # a model per widget would weigh more than the pictures.
    layout, style = widgets.Layout(), HTMLStyle()
    links = []

    def stack(children: list, control: Any, start: int) -> Any:
        box = widgets.Stack(children=children, selected_index=start, layout=layout)
        links.append(widgets.jslink((control, "index"), (box, "selected_index")))
        return box

    def panel(markup: str) -> Any:
        return widgets.HTML(markup, layout=layout, style=style)

    def omega_level(i: int, k: int, s: int) -> Any:
        return stack([panel(render.masking(i, k, sigmas[s], omegas[w], float(scores[s, w, i, k])))
                      for w in range(len(omegas))], omega_slider, omega_start)

    def class_level(i: int, k: int) -> Any:
        sigma_stack = stack([omega_level(i, k, s) for s in range(len(sigmas))],
                            sigma_slider, sigma_start)
        return widgets.VBox([panel(render.attention(i, k)), sigma_stack], layout=layout)

    panels = stack([stack([class_level(i, k) for k in range(len(inputs.classes))], class_picker,
                          class_start)
                    for i in range(len(inputs.images))], image_picker, 0)
    title = widgets.HTML(_STYLE + "<b>σ/ω explorer</b>: a precomputed grid; move the sliders, "
                         "or run the notebook in JupyterLab for continuous values.")
    explorer = widgets.VBox([title, *_control_rows(image_picker, class_picker, sigma_slider,
                                                   omega_slider), panels])
    explorer.add_class(CSS_CLASS)
    explorer.controls = {"image": image_picker, "class": class_picker,
                         "sigma": sigma_slider, "omega": omega_slider}
    explorer.links = links
    return explorer


def live_explorer(model: nn.Module, images: Tensor, class_names: Sequence[str], *,
                  classes: Sequence[int] | None = None,
                  image_names: Sequence[str] | None = None,
                  labels: Tensor | np.ndarray | None = None,
                  sigma: float = DEFAULT_SIGMA, omega: float = DEFAULT_OMEGA,
                  size: int = 160, cmap: str = "jet",
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Any:
    """The explorer for JupyterLab: continuous sliders, recomputed in Python (needs a kernel).

    Args:
        model, images, class_names, classes, image_names, mean, std: see :func:`prepare_explorer`.
        labels: multi-hot ``[N, C]`` labels of the images, if known: the explorer opens on a
            class the first image contains.
        sigma, omega: the sliders' starting values (σ in [0, 1], ω from 1 to 1000, log scale).
        size: displayed side of each picture in CSS pixels.
        cmap: colour map of ``A^c``.

    Returns:
        An ``ipywidgets.VBox`` with ``controls`` (as :func:`static_explorer`), ``views`` (the
        ``"attention"`` and ``"masking"`` HTML widgets) and ``update()``, which redraws them and
        runs on every change of a control.
    """
    import ipywidgets as widgets

    inputs = prepare_explorer(model, images, class_names, classes, image_names, mean, std)
    render = _Renderer(inputs, size, None, cmap)
    image_picker = widgets.Dropdown(options=[(n, i) for i, n in enumerate(inputs.image_names)])
    class_picker = widgets.Dropdown(options=[(n, k) for k, n in enumerate(inputs.class_names)],
                                    value=_opening_class(labels, inputs.classes))
    sigma_slider = widgets.FloatSlider(value=sigma, min=0.0, max=1.0, step=0.01)
    omega_slider = widgets.FloatLogSlider(value=omega, base=10, min=0, max=3, step=0.05)
    attention_view, masking_view = widgets.HTML(), widgets.HTML()

    def update(change: Any = None) -> None:
        i, k = image_picker.value, class_picker.value
        s, w = float(sigma_slider.value), float(omega_slider.value)
        attention_view.value = render.attention(i, k)
        score = masked_scores(model, inputs.select(i, k), [s], [w])
        masking_view.value = render.masking(i, k, s, w, float(score))

    for control in (image_picker, class_picker, sigma_slider, omega_slider):
        control.observe(update, names="value")
    update()
    title = widgets.HTML(_STYLE + "<b>σ/ω explorer</b> (live)")
    explorer = widgets.VBox([title, *_control_rows(image_picker, class_picker, sigma_slider,
                                                   omega_slider), attention_view, masking_view])
    explorer.add_class(CSS_CLASS)
    explorer.controls = {"image": image_picker, "class": class_picker,
                         "sigma": sigma_slider, "omega": omega_slider}
    explorer.views = {"attention": attention_view, "masking": masking_view}
    explorer.update = update
    return explorer


# --- the attention picker -------------------------------------------------------------------

class _PickerRenderer:
    """One HTML row per model: every image with the model's map of its first true class."""

    def __init__(self, dataset: Any, class_names: Sequence[str], size: int, quality: int | None,
                 cmap: str, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        import matplotlib

        self.dataset, self.class_names = dataset, list(class_names)
        self.size, self.quality = size, quality
        self.colormap = matplotlib.colormaps[cmap]
        self.mean = tuple(IMAGENET_MEAN if mean is None else mean)
        self.std = tuple(IMAGENET_STD if std is None else std)

    def batch(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, list[str]]:
        """Images, the first true class of each (``-1``: none) and its name."""
        samples = [self.dataset[i] for i in indices]
        images = torch.stack([sample["image"] for sample in samples]).float()
        labels = torch.stack([torch.as_tensor(sample["labels"]) for sample in samples])
        first = torch.where(labels.any(dim=1), (labels > 0.5).float().argmax(dim=1), -1)
        names = [self.class_names[c] if c >= 0 else "no class" for c in first.tolist()]
        return images, first, names

    def maps(self, model: nn.Module, images: Tensor, classes: Tensor) -> Tensor:
        """``[N, H, W]`` maps of ``classes`` (zeros where an image has no class)."""
        device = _device_of(model)
        with _EvalMode(model):
            out = model.attention(images.to(device), classes=classes.clamp_min(0)[:, None].to(device))
        return out.maps[:, 0].detach().cpu() * (classes >= 0)[:, None, None]

    def row(self, title: str, images: Tensor, maps: Tensor, names: Sequence[str],
            indices: Sequence[int]) -> str:
        figures = []
        for image, heat, name, index in zip(images, maps, names, indices):
            rgb = display_image(image, True, self.mean, self.std)
            overlay = 0.5 * rgb + 0.5 * self.colormap(heat.numpy())[..., :3]
            figures.append(_figure(_image_data_uri(overlay, self.quality),
                                   f"attention of {title} for class {name} on image {index}",
                                   html.escape(f"#{index} {name}"), self.size))
        return _row(figures, f'<div class="{CSS_CLASS}-score">{html.escape(title)}</div>',
                    extra_class=f"{PICKER_CLASS}-panel")


def attention_picker(models: Mapping[str, nn.Module], dataset: Any, indices: Sequence[int],
                     class_names: Sequence[str], *, live: bool = False, label: str = "model",
                     size: int = 96, quality: int | None = 80, cmap: str = "jet",
                     mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None) -> Any:
    """Pick a model with a slider and see its attention on the same images.

    Each image is shown with the model's Grad-CAM map ``A^c`` (Eq. 1-2) of its first true
    class, over the image.

    Args:
        models: slider label -> trained model (e.g. ``{"28 masks": m28, "207 masks": m207}``),
            in slider order.
        dataset: a dataset of :mod:`gainlib.data.protocol` samples (``image``, ``labels``).
        indices: the samples shown (static) or shown first (live).
        class_names: the name of every label index.
        live: ``False`` precomputes one panel per model, switched in the browser with no kernel
            (for the published book); ``True`` recomputes in the kernel and adds a ``page``
            slider that shows the next ``len(indices)`` samples of ``dataset`` (JupyterLab).
        label: the slider's label.
        size, quality, cmap, mean, std: as :func:`static_explorer`.

    Returns:
        An ``ipywidgets.VBox`` with ``controls`` (``"model"``, and ``"page"`` when live); live
        pickers also have ``view`` (the HTML widget) and ``update()``.
    """
    import ipywidgets as widgets

    if not models:
        raise ValueError("models must hold at least one model")
    if not len(indices):
        raise ValueError("indices must name at least one sample")
    render = _PickerRenderer(dataset, class_names, size, None if live else quality, cmap, mean, std)
    names = list(models)
    slider = widgets.SelectionSlider(options=names, value=names[0],
                                     layout=widgets.Layout(width="28em"))
    slider.add_class(f"{PICKER_CLASS}-model")
    controls: dict[str, Any] = {"model": slider}
    rows = [widgets.HBox([widgets.HTML(f"<b>{html.escape(label)}</b>",
                                       layout=widgets.Layout(width="6em")), slider])]
    if live:
        view = widgets.HTML()
        per_page = len(indices)
        page = widgets.IntSlider(value=0, min=0, max=max(0, (len(dataset) - 1) // per_page))
        controls["page"] = page
        rows.append(widgets.HBox([widgets.HTML("<b>page</b>", layout=widgets.Layout(width="6em")),
                                  page]))

        def shown() -> list[int]:
            if page.value == 0:
                return list(indices)
            start = page.value * per_page
            return list(range(start, min(len(dataset), start + per_page)))

        def update(change: Any = None) -> None:
            chosen = shown()
            images, classes, class_of = render.batch(chosen)
            maps = render.maps(models[slider.value], images, classes)
            view.value = render.row(slider.value, images, maps, class_of, chosen)

        slider.observe(update, names="value")
        page.observe(update, names="value")
        update()
        body: Any = view
    else:
        images, classes, class_of = render.batch(list(indices))
        layout = widgets.Layout()
        panels = [widgets.HTML(render.row(name, images, render.maps(model, images, classes),
                                          class_of, list(indices)), layout=layout)
                  for name, model in models.items()]
        body = widgets.Stack(children=panels, selected_index=0, layout=layout)
        widgets.jslink((slider, "index"), (body, "selected_index"))
    title = widgets.HTML(_STYLE + f"<b>attention picker</b>: {'recomputed live' if live else 'precomputed; run the notebook in JupyterLab with a kernel to page through the data'}.")
    picker = widgets.VBox([title, *rows, body])
    picker.add_class(PICKER_CLASS)
    picker.controls = controls
    if live:
        picker.view, picker.update = view, update
    return picker
