"""What a page of the book loads: the book's own CSS and JS, less what no page uses.

A chapter used to load about 4 MB in 43 requests. This module keeps each page to
what it needs:

* one icon source: the theme draws every icon with Font Awesome's web fonts
  (``<i class="fa-...">`` and CSS), and also loaded Font Awesome's 1.5 MB
  script, which redraws the same icons as inline SVG. ``templates/layout.html``
  filters that script out of the theme's ``<head>``; and the theme's CSS keeps
  the rules of the icons the site uses, not of all 1,900 (:func:`trim_icon_rules`);
* the search index (and the scripts that read it) only on the search page:
  the theme loaded them on every page for a search-as-you-type that is off;
* the theme's stylesheet ``theme.css`` only ``@import``-s Sphinx's ``basic.css``:
  pages link ``basic.css`` directly, one request instead of two in a row;
* sphinx-thebe's files only where Thebe is switched on (it is not), and
  sphinx-design's stylesheet and tab script only on pages that use its components;
* one stylesheet request where there were eight: the page's own stylesheets (Pygments,
  the book theme, the extensions', the book's) are served concatenated, in their order,
  as one file (:func:`bundle_page_styles`, written by :func:`write_style_bundles`);
* MathJax on the search page too, which typesets the formulas of the snippets;
* the repository buttons drawn with a solid icon: the GitHub logo was the only
  glyph of Font Awesome's brands font, 118 KB and a request on every page (links to
  GitHub in the text get the same solid glyph, in ``static/coursebook.css``);
* the solid icon font cut down to the glyphs the stylesheets name (:func:`subset_icon_font`):
  the site draws about 25 of its 1,400 icons, 3 KB instead of 156 KB on every page.

The book's own files (``static/coursebook.css`` and ``static/coursebook.js``)
are added to the build's static path when the builder starts, not kept in the
book's ``_static/``: Jupyter Book adds a ``<script>`` tag for every ``.js``
found there.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"

# <script ...src=".../fontawesome.js?digest=..."></script>, and the three search scripts.
_ICON_SCRIPT = re.compile(r'[ \t]*<script\b[^>]*\bsrc="[^"]*/fontawesome\.js[^"]*"[^>]*>\s*</script>\n?')
_SEARCH_SCRIPTS = re.compile(r'[ \t]*<script\b[^>]*\bsrc="[^"]*\b(?:searchtools|language_data|searchindex)\.js[^"]*"[^>]*>\s*</script>\n?')
_THEME_CSS = re.compile(r'href="([^"]*/)styles/theme\.css[^"]*"')
# A Font Awesome icon's glyph rule in the theme's CSS: ".fa-house:before,.fa-home:before{content:"\f015"}".
_ICON_RULE = re.compile(r'((?:\.fa-[a-z0-9-]+:{1,2}before,?)+)(\{content:[^}]*\})')
_ICON_NAME = re.compile(r"\bfa-[a-z0-9-]+")
THEME_CSS = "styles/pydata-sphinx-theme.css"
# A relative url(...) in a stylesheet (not data:, not absolute, not a fragment).
_CSS_URL = re.compile(r"""url\((["']?)(?![a-zA-Z][a-zA-Z0-9+.-]*:|/|#)([^)"']+)\1\)""")
BUNDLE_PREFIX = "coursebook-styles-"
# A CSS escape such as "\\f015" in a content string or a custom property: a glyph some rule draws.
_CSS_ESCAPE = re.compile(r"\\([0-9a-fA-F]{2,6})(?![0-9a-fA-F])")
ICON_FONTS = "vendor/fontawesome/webfonts"
# The theme's @font-face source of the solid icons: the WOFF2 file, then the TrueType fallback.
_SOLID_FONT_SOURCE = re.compile(
    r'url\(([^)]*/)fa-solid-900\.woff2\)\s*format\("woff2"\),\s*url\([^)]*/fa-solid-900\.ttf\)\s*format\("truetype"\)'
)
SOLID_SUBSET = "fa-solid-900-used.woff"


def prune_head(html: str) -> str:
    """The theme's ``<head>`` markup without Font Awesome's script and the search scripts.

    The search page loads the search scripts itself (outside the blocks this
    filter is applied to), so search keeps working there.

    Example:
        >>> prune_head('<script defer src="../_static/scripts/fontawesome.js?d=1"></script>\\n<meta x>')
        '<meta x>'
    """
    html = _SEARCH_SCRIPTS.sub("", _ICON_SCRIPT.sub("", str(html)))
    return _THEME_CSS.sub(r'href="\1basic.css"', html)


def trim_icon_rules(css: str, used: set[str]) -> str:
    """``css`` without the glyph rules of Font Awesome icons whose class is not in ``used``.

    Example:
        >>> trim_icon_rules('.fa-a:before,.fa-b:before{content:"1"}.fa-c:before{content:"2"}.x{}', {"fa-b"})
        '.fa-b:before{content:"1"}.x{}'
    """

    def keep(match: re.Match) -> str:
        selectors = [s for s in match.group(1).rstrip(",").split(",") if s.split(":")[0][1:] in used]
        return ",".join(selectors) + match.group(2) if selectors else ""

    return _ICON_RULE.sub(keep, css)


def trim_theme_css(app: Sphinx, exception: Exception | None) -> None:
    """Keep, in the theme's CSS, the icon rules of the icons any page, script or style uses."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    theme_css = outdir / "_static" / THEME_CSS
    if not theme_css.is_file():
        return
    used: set[str] = set()
    for pattern in ("**/*.html", "_static/**/*.js", "_static/**/*.css"):
        for path in outdir.glob(pattern):
            if path != theme_css:
                used.update(_ICON_NAME.findall(path.read_text(encoding="utf-8", errors="ignore")))
    css = theme_css.read_text(encoding="utf-8")
    trimmed = trim_icon_rules(css, used)
    if trimmed != css:
        theme_css.write_text(trimmed, encoding="utf-8")


def drawn_codepoints(css: str) -> set[int]:
    """Every code point a stylesheet names with a CSS escape (the glyphs its rules can draw).

    Example:
        >>> sorted(drawn_codepoints('.fa-house:before{content:"\\\\f015"}:root{--i:"\\\\f126"}'))
        [61461, 61734]
    """
    return {int(digits, 16) for digits in _CSS_ESCAPE.findall(css)}


def subset_icon_font(app: Sphinx, exception: Exception | None) -> None:
    """Serve the solid icon font with only the glyphs the site's stylesheets can draw.

    Runs after :func:`trim_theme_css`, so the theme's CSS names only the icons in use.
    The subset is written as WOFF (zlib; WOFF2 would need Brotli, which the book's
    environment does not have) beside the original, and the theme's ``@font-face``
    points at it.
    """
    if exception is not None or app.builder.format != "html":
        return
    from fontTools import subset
    from fontTools.ttLib import TTFont

    static = Path(app.outdir) / "_static"
    theme_css = static / THEME_CSS
    source = static / ICON_FONTS / "fa-solid-900.ttf"
    if not theme_css.is_file() or not source.is_file():
        return
    css = theme_css.read_text(encoding="utf-8")
    if not _SOLID_FONT_SOURCE.search(css):
        return
    codepoints = set()
    for path in static.rglob("*.css"):
        codepoints |= drawn_codepoints(path.read_text(encoding="utf-8", errors="ignore"))
    options = subset.Options()
    options.flavor = "woff"
    options.layout_features = []
    options.notdef_outline = True
    font = TTFont(source)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=codepoints)
    subsetter.subset(font)
    font.flavor = "woff"
    font.save(static / ICON_FONTS / SOLID_SUBSET)
    theme_css.write_text(_SOLID_FONT_SOURCE.sub(rf'url(\1{SOLID_SUBSET}) format("woff")', css), encoding="utf-8")


def add_templates_path(app: Sphinx, config: Config) -> None:
    if str(TEMPLATES) not in config.templates_path:
        config.templates_path.insert(0, str(TEMPLATES))


def add_static_files(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    if str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))
    app.add_css_file("coursebook.css")
    app.add_js_file("coursebook.js", loading_method="defer")
    app.builder.templates.environment.filters["coursebook_prune_head"] = prune_head


def _filename(asset: Any) -> str:
    return str(getattr(asset, "filename", asset) or "")


def _uses_sphinx_design(doctree: nodes.document | None) -> bool:
    if doctree is None:
        return False
    return any(name.startswith("sd-") for node in doctree.findall(nodes.Element) for name in node.get("classes", []))


def prune_page_assets(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Drop the scripts and styles this page does not use."""
    thebe_on = bool(app.config.html_theme_options.get("launch_buttons", {}).get("thebe"))
    design_on = _uses_sphinx_design(doctree)

    def wanted(asset: Any) -> bool:
        name = _filename(asset)
        body = str(getattr(asset, "attributes", {}).get("body", ""))
        if not thebe_on and ("sphinx-thebe" in name or "THEBE_JS_URL" in body):
            return False
        return design_on or not ("design-tabs.js" in name or "sphinx-design" in name)

    if "script_files" in context:
        context["script_files"] = [script for script in context["script_files"] if wanted(script)]
    if "css_files" in context:
        context["css_files"] = [sheet for sheet in context["css_files"] if wanted(sheet)]


def rebase_css_urls(css: str, folder: str) -> str:
    """``css`` of a stylesheet in ``_static/<folder>``, its relative ``url()`` made relative to ``_static``.

    Example:
        >>> rebase_css_urls('a{background:url("../img/x.svg")}b{src:url(fonts/f.woff)}c{src:url(data:,)}', "styles")
        'a{background:url("img/x.svg")}b{src:url(styles/fonts/f.woff)}c{src:url(data:,)}'
    """
    if not folder:
        return css

    def rebase(match: re.Match) -> str:
        quote = match.group(1)
        return f"url({quote}{posixpath.normpath(posixpath.join(folder, match.group(2)))}{quote})"

    return _CSS_URL.sub(rebase, css)


def bundle_name(names: list[str]) -> str:
    """The file under ``_static`` that serves the stylesheets ``names``, named by that list.

    Example:
        >>> bundle_name(["_static/a.css", "_static/b.css"]).startswith("_static/coursebook-styles-")
        True
    """
    return f"_static/{BUNDLE_PREFIX}{hashlib.sha256(chr(10).join(names).encode()).hexdigest()[:16]}.css"


def bundle_page_styles(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Serve each run of the page's local stylesheets as one file (one request instead of several).

    Only consecutive plain stylesheets are joined, so the cascade keeps its order.
    The page links the bundle now; :func:`write_style_bundles` writes it when the
    build finishes, after extensions that rewrite a stylesheet then (the theme
    rewrites ``pygments.css`` with its light and dark colours).
    """
    if app.builder.format != "html" or "css_files" not in context:
        return
    outdir = Path(app.outdir)
    bundles = app.builder.__dict__.setdefault("coursebook_style_bundles", {})

    def joinable(sheet: Any) -> bool:
        name = _filename(sheet)
        attributes = {k: v for k, v in getattr(sheet, "attributes", {}).items() if v is not None}
        return (name.startswith("_static/") and name.endswith(".css") and (outdir / name).is_file()
                and attributes.get("rel") == "stylesheet" and set(attributes) <= {"rel", "type"})

    sheets, run = [], []
    for sheet in [*context["css_files"], None]:
        if sheet is not None and joinable(sheet):
            run.append(sheet)
            continue
        if len(run) > 1:
            names = [_filename(s) for s in run]
            bundles[bundle_name(names)] = names
            sheets.append(type(run[0])(bundle_name(names), priority=run[0].priority, **run[0].attributes))
        else:
            sheets.extend(run)
        run = []
        if sheet is not None:
            sheets.append(sheet)
    context["css_files"] = sheets


# Each part of a bundle starts with a line naming its file, so a bundle says what it joins.
_BUNDLE_PART = re.compile(r"^/\* (_static/\S+\.css) \*/$", re.MULTILINE)


def write_style_bundles(app: Sphinx, exception: Exception | None) -> None:
    """Write every bundle from the stylesheets as they are now, including those of pages not rewritten."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    bundles = dict(app.builder.__dict__.get("coursebook_style_bundles", {}))
    for old in (outdir / "_static").glob(f"{BUNDLE_PREFIX}*.css"):
        bundles.setdefault(old.relative_to(outdir).as_posix(), _BUNDLE_PART.findall(old.read_text(encoding="utf-8")))
    for bundle, names in bundles.items():
        if not names or not all((outdir / name).is_file() for name in names):
            continue
        parts = []
        for name in names:
            folder = posixpath.dirname(posixpath.relpath(name, "_static"))
            parts.append(f"/* {name} */\n" + rebase_css_urls((outdir / name).read_text(encoding="utf-8"), folder))
        (outdir / bundle).write_text("\n".join(parts), encoding="utf-8")


def add_search_mathjax(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """MathJax for the search page, where coursebook.js typesets the snippets' formulas."""
    if pagename == "search" and app.builder.format == "html":
        app.add_js_file(None, body=f"window.MathJax = {json.dumps(app.config.mathjax3_config or {})}")
        app.add_js_file(app.config.mathjax_path, loading_method="defer")


BRAND_ICONS = {"fab fa-github": "fa-solid fa-code-branch", "fa-brands fa-github": "fa-solid fa-code-branch"}


def solid_header_icons(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Header buttons drawn from the solid icon font only (see the module's docstring)."""

    def swap(buttons: list[dict[str, Any]]) -> None:
        for button in buttons:
            if button.get("icon") in BRAND_ICONS:
                button["icon"] = BRAND_ICONS[button["icon"]]
            swap(button.get("buttons", []))

    swap(context.get("header_buttons", []))


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Keep one copy of each ``<script>``.

    Sphinx 7.4 registers an inline script added after the builder started (as
    sphinx-thebe adds its ``const THEBE_JS_URL = ...``) once with filename
    ``None`` and once with ``""``, which do not compare equal, so the page
    declared the constant twice and every page load raised a SyntaxError.
    """
    unique, seen = [], set()
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (_filename(script), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> None:
    app.connect("config-inited", add_templates_path)
    app.connect("builder-inited", add_static_files)
    app.connect("html-page-context", add_search_mathjax, priority=100)
    app.connect("html-page-context", prune_page_assets, priority=900)
    app.connect("html-page-context", drop_duplicate_scripts, priority=950)
    app.connect("html-page-context", solid_header_icons, priority=950)
    app.connect("html-page-context", bundle_page_styles, priority=990)
    # After the theme rewrites pygments.css (build-finished, priority 500).
    app.connect("build-finished", write_style_bundles, priority=900)
    app.connect("build-finished", trim_theme_css)
    app.connect("build-finished", subset_icon_font, priority=600)
