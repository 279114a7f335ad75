"""MkDocs hooks: the pages link to the repository's own files (plots, sweep files, benches), and
the reference pages are generated from dse's schemas at build time, so they cannot drift.

* ``on_files`` adds the files under ``results/``, ``bench/``, ``sweeps/`` and ``notebooks/``
  that a page can show or link (images, tables, sweep files, notes) to the site.
* ``on_page_markdown`` makes the home page from ``README.md``, rewrites ``](../results/...)``
  (the link as it reads on GitHub, from ``docs/``) to the site's path, and fills the markers ``<!-- dse:sweep-reference -->``,
  ``<!-- dse:metrics -->`` and ``<!-- dse:dsez-format -->``.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parent.parent
SHARED_FOLDERS = ("results", "bench", "sweeps", "notebooks")
SHARED_SUFFIXES = {".png", ".svg", ".csv", ".md", ".yaml", ".ipynb", ".sbatch", ".json", ".py"}
UP_LINK = re.compile(r"\]\(\.\./(" + "|".join(SHARED_FOLDERS) + r")/")


def on_files(files, config):
    for folder in SHARED_FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in SHARED_SUFFIXES and "runs" not in path.parts:
                files.append(File(path.relative_to(REPO).as_posix(), str(REPO), config["site_dir"],
                                  config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    if "<!-- dse:readme -->" in markdown:  # the home page is the README, its links made the site's
        readme = (REPO / "README.md").read_text(encoding="utf-8")
        markdown = markdown.replace("<!-- dse:readme -->", re.sub(r"\]\(docs/", "](", readme))
        return markdown
    markdown = UP_LINK.sub(r"](\1/", markdown)
    generated = {"<!-- dse:sweep-reference -->": sweep_reference, "<!-- dse:metrics -->": metrics_table,
                 "<!-- dse:dsez-format -->": dsez_format}
    for marker, make in generated.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


# ---- the reference tables ----
def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _bounds(field, key: str, arch_bounds: dict) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}
    parts = [f"{sign} {getattr(m, attr)}" for m in field.metadata for attr, sign in signs.items() if hasattr(m, attr)]
    if key in arch_bounds:
        parts.append(arch_bounds[key].rule)
    return ", ".join(parts)


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if hasattr(value, "model_dump"):
        return "see below"
    if value is None:
        return "`null`"
    if isinstance(value, Path):  # the user's home, not the machine that built the site
        value = str(value).replace(str(Path.home()), "~")
    return f"`{value!r}`".replace("|", "\\|")


def _nested_models(annotation) -> list:
    from pydantic import BaseModel

    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _nested_models(arg)]


def schema_table(model, prefix: str, seen: set | None = None) -> str:
    """A markdown table of ``model``'s fields (key, type, default, bounds, description), then one
    per nested model, each under its dotted key."""
    from dse.arch.spec import BOUNDS

    seen = set() if seen is None else seen
    rows, nested = ["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"], []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # retired keys, accepted only as null
        key = f"{prefix}{name}"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | "
                    f"{_bounds(field, name, BOUNDS if model.__name__ == 'ArchConfig' else {})} | {description} |")
        for sub in _nested_models(field.annotation):
            if sub not in seen:
                seen.add(sub)
                nested.append((f"{key}.", sub))
    doc = inspect.cleandoc(model.__dict__.get("__doc__") or "").split("\n\n")[0].replace("\n", " ")  # its own, not BaseModel's
    doc = re.sub(r":\w+:`([^`]+)`", r"`\1`", doc.replace("``", "`"))  # Sphinx roles and literals as markdown
    text = f"{doc}\n\n" + "\n".join(rows) + "\n"
    for sub_prefix, sub in nested:
        text += f"\n### `{sub_prefix.rstrip('.')}` ({sub.__name__})\n\n" + schema_table(sub, sub_prefix, seen)
    return text


def sweep_reference() -> str:
    from dse.sweep.config import SweepConfig
    from dse.train.config import TrainConfig

    return ("## The sweep file\n\n" + schema_table(SweepConfig, "")
            + "\n## `base`: the training config (`dse train`'s schema; `space` keys are its dotted paths)\n\n"
            + "`base.model` starts from the `squeezenet_small` preset (a 28x28 input, the small stem) unless it "
            "names another `preset`; the defaults below are the schema's own (SqueezeNet v1.0 on ImageNet).\n\n"
            + schema_table(TrainConfig, "base."))


def metrics_table() -> str:
    from dse.contract import METRICS, STAND_INS

    rows = ["| metric | label | unit | better | known | stand-in at ASHA rungs |", "|---|---|---|---|---|---|"]
    for m in METRICS.values():
        stand_in = f"`{STAND_INS[m.name]}`" if m.name in STAND_INS else ""
        rows.append(f"| `{m.name}` | {m.label} | {m.unit} | {m.goal} | {m.source} | {stand_in} |")
    return "\n".join(rows) + "\n"


def dsez_format() -> str:
    from dse.compress import container

    return inspect.getdoc(container).replace("``", "`").replace("::\n", ":\n").split("\n\n", 1)[1] + "\n"
