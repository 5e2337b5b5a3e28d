"""CLIP models pre-trained elsewhere, as the config lists them (``pretrained_models:``).

An entry names an open_clip architecture (``open_clip``), its pretrained tag (``pretrained``),
the pre-training corpus (``corpus``, a corpus of ``frequency.corpora``) and the backbone
``family``. Its weights come from open_clip's own resolution of the tag (hub or cache) or, with
``weights: PATH``, from a local checkpoint file. Embedded counterparts name a ``run`` of this
workflow instead; its ``model.pt`` is a workflow output and is not checked here.

:func:`check` rejects, before any job, an entry whose architecture or tag open_clip does not
know, or whose weights file is missing, with one line naming the model. It needs no network:
``open_clip.list_models()`` and ``open_clip.list_pretrained()`` are local tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from tailstudy.io import UserError


def _known() -> tuple[set[str], set[tuple[str, str]]]:
    import open_clip

    from tailstudy.models.factory import register_presets

    register_presets()
    return set(open_clip.list_models()), {tuple(p) for p in open_clip.list_pretrained()}


def check(
    models: Mapping[str, Mapping],
    corpora: Iterable[str] | None = None,
    root: str | Path = ".",
) -> None:
    """Raise :class:`UserError` for the first entry of ``models`` that cannot be loaded.

    ``corpora``: the corpus names an entry's ``corpus`` (and ``frequency`` values) may take;
    ``root``: the folder relative ``weights`` paths are read from (the working directory)."""
    archs, tags = _known()
    corpora = None if corpora is None else set(corpora)
    seen: dict[tuple, str] = {}
    for name, m in models.items():
        where = f"pretrained model {name}"
        for key in ("corpus", "family"):
            if not m.get(key):
                raise UserError(f"{where}: set {key}")
        if corpora is not None:
            refs = [m["corpus"], *dict(m.get("frequency") or {}).values()]
            bad = next((c for c in refs if c not in corpora), None)
            if bad is not None:
                raise UserError(f"{where}: corpus {bad!r} is not in frequency.corpora")
        if "run" in m:
            if "open_clip" in m or "weights" in m:
                raise UserError(f"{where}: give either run or open_clip/weights, not both")
            continue
        arch, tag, weights = m.get("open_clip"), m.get("pretrained"), m.get("weights")
        if not arch:
            raise UserError(f"{where}: set open_clip (an architecture, e.g. ViT-B-32) or run")
        if arch not in archs:
            raise UserError(f"{where}: open_clip has no architecture {arch!r}")
        if weights:
            path = Path(root, weights)
            if not path.is_file():
                raise UserError(
                    f"{where}: weights file {weights} does not exist; put the checkpoint there "
                    "or drop weights to let open_clip fetch the tag"
                )
        elif not tag:
            raise UserError(f"{where}: set pretrained (an open_clip tag) or weights (a file)")
        elif (arch, tag) not in tags:
            own = sorted(t for a, t in tags if a == arch)
            raise UserError(
                f"{where}: open_clip has no pretrained tag {tag!r} for {arch} "
                f"(it has: {', '.join(own) or 'none'}); fix the tag or give weights: <file>"
            )
        key = (arch, tag, weights)
        if key in seen:
            raise UserError(f"{where}: the same model as pretrained model {seen[key]}")
        seen[key] = name


def open_clip_args(entry: Mapping, root: str | Path = ".") -> dict:
    """Keyword arguments of ``open_clip.create_model_and_transforms`` for an entry of a model
    pre-trained elsewhere: the architecture and the tag, or the local weights file together with
    the tag's own preprocessing (mean, std, interpolation, resize mode), which open_clip applies
    only when it resolves the tag itself."""
    import open_clip

    from tailstudy.models.factory import register_presets

    register_presets()
    arch, tag, weights = entry["open_clip"], entry.get("pretrained"), entry.get("weights")
    if not weights:
        return {"model_name": arch, "pretrained": tag}
    args = {"model_name": arch, "pretrained": str(Path(root, weights))}
    cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    pre = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    if pre:
        args["force_preprocess_cfg"] = pre
    return args


def activation(entry: Mapping) -> dict:
    """The text/vision activation of an open_clip entry: ``quick_gelu`` of the architecture
    (what the model is built with) and of the tag (what its weights were trained with). They
    differ for e.g. ``ViT-B-32``/``laion400m_e31``, which the study loads with GELU on purpose
    (METHODS §7: pairs 7/11 share one checkpoint)."""
    import open_clip

    from tailstudy.models.factory import register_presets

    register_presets()
    arch, tag = entry["open_clip"], entry.get("pretrained")
    cfg = open_clip.get_model_config(arch) or {}
    tag_cfg = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    return {
        "arch_quick_gelu": bool(cfg.get("quick_gelu", False)),
        "tag_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
    }
