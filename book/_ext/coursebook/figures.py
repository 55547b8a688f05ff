"""Every picture in the book opens at full size when tapped or clicked.

On a phone a figure is shrunk to the width of the screen; a link to the image
file lets a reader open it alone and zoom in. Images in figures, glued figures
and cell outputs are all wrapped in ``<a class="ck-figure-link" href=...>``,
except one that already sits inside a link.

The kernels draw every matplotlib figure twice (``coursekit.bookbuild`` sets
their inline backend): as SVG, sharp at any size, and as a 200-dpi PNG.
:class:`KeepSmallerFigure` keeps the SVG unless the PNG is smaller (a plot of
thousands of points), so no figure is blurry and none is needlessly heavy.
Before the two are compared, a PNG is stored with a 256-colour palette when that
is smaller (:func:`palette_png`): a plot's thousands of colours are anti-aliasing
shades of a few, and chapter 1's scatter of sentence losses fell from 225 KB to 65 KB.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform


def _inside_link(node: nodes.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.reference):
            return True
        parent = parent.parent
    return False


def visit_image_html(translator: Any, node: nodes.image) -> None:
    start = len(translator.body)
    try:
        type(translator).visit_image(translator, node)
    except nodes.SkipNode:
        node["coursebook_link"] = False
        raise
    # visit_image has rewritten node["uri"] to the image's path in the output.
    linked = not _inside_link(node) and not node["uri"].startswith("data:")
    node["coursebook_link"] = linked
    if linked:
        translator.body.insert(
            start,
            f'<a class="ck-figure-link reference internal image-reference" href="{html.escape(node["uri"])}" '
            f'title="Open the image at full size">',
        )


def depart_image_html(translator: Any, node: nodes.image) -> None:
    type(translator).depart_image(translator, node)
    if node.get("coursebook_link"):
        translator.body.append("</a>")


PALETTE_COLOURS = 256


def palette_png(path: Path) -> None:
    """Rewrite the PNG at ``path`` with a palette of :data:`PALETTE_COLOURS` colours, if that is smaller.

    Args:
        path: a PNG file a kernel drew; rewritten in place (a file that already
            has a palette is left as it is, so a rebuild changes nothing).

    Example:
        >>> import random, tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     png = Path(folder) / "noise.png"
        ...     Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3)).save(png)
        ...     palette_png(png)
        ...     Image.open(png).mode
        'P'
    """
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":
            return
        image.load()
    buffer = io.BytesIO()
    image.quantize(PALETTE_COLOURS, method=Image.Quantize.FASTOCTREE).save(buffer, "PNG", optimize=True)
    if buffer.tell() < path.stat().st_size:
        path.write_bytes(buffer.getvalue())


def _path(image: nodes.image, srcdir: Path) -> Path:
    path = Path(image["uri"])
    return path if path.is_absolute() else srcdir / path


def _size(image: nodes.image, srcdir: Path) -> int | None:
    path = _path(image, srcdir)
    return path.stat().st_size if path.is_file() else None


class KeepSmallerFigure(SphinxPostTransform):
    """Store a cell output's PNG with a palette where smaller; of an SVG and a PNG of one figure, drop the larger.

    Runs before myst-nb picks one type from each output (``SelectMimeType``,
    priority 4), which would otherwise always take the SVG.
    """

    default_priority = 3
    formats = ("html",)

    def run(self, **kwargs: Any) -> None:
        srcdir = Path(self.env.srcdir)
        for bundle in list(self.document.findall(nodes.container)):
            if bundle.get("nb_element") != "mime_bundle":
                continue
            by_type = {child.get("mime_type"): child for child in bundle.children}
            for image in (by_type["image/png"].findall(nodes.image) if "image/png" in by_type else ()):
                if _path(image, srcdir).is_file():
                    palette_png(_path(image, srcdir))
            if "image/svg+xml" not in by_type or "image/png" not in by_type:
                continue
            sizes = {}
            for mime, child in by_type.items():
                images = list(child.findall(nodes.image)) if mime in ("image/svg+xml", "image/png") else []
                sizes[mime] = _size(images[0], srcdir) if images else None
            if sizes["image/svg+xml"] is None or sizes["image/png"] is None:
                continue
            larger = "image/svg+xml" if sizes["image/svg+xml"] > sizes["image/png"] else "image/png"
            bundle.remove(by_type[larger])


def setup(app: Sphinx) -> None:
    app.add_node(nodes.image, override=True, html=(visit_image_html, depart_image_html))
    app.add_post_transform(KeepSmallerFigure)
