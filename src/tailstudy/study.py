"""From a study configuration to the run table — pure functions, no Snakemake.

``config.yaml`` declares *studies*, not runs: each study is a list of grids over
``variant × model × recipe × seed``. ``expand(config)`` turns every grid into runs with
deterministic ids ``<variant>_<model>_<recipe>_s<seed>``, de-duplicates runs shared between
studies, adds the runs that others depend on (a run whose text tower comes from another run), and
records which study holds which run. ``check(config)`` catches every cross-reference error with a
one-line message before any job starts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from tailstudy.config import RunConfig, recipe_from_dict
from tailstudy.data.spec import check_spec, variant_chain
from tailstudy.figures.kinds import RUNS as RUN_FIGURE
from tailstudy.figures.kinds import check_needs, kind_of
from tailstudy.io import UserError
from tailstudy.models import language
from tailstudy.train import objectives

RUN_ID = re.compile(r"^[a-z0-9-]+(_[a-z0-9-]+)*$")
GRID_AXES = ("variant", "model", "recipe", "seed")
TEMPLATE_CAPTIONS = "template"  # caption kind of variants without natural-language fields


#: recipe mappings an extending recipe updates key by key (rather than replacing)
NESTED_RECIPE_KEYS = ("dino",)


def run_id(variant: str, model: str, recipe: str, seed: int) -> str:
    return f"{variant}_{model}_{recipe}_s{seed}"


def resolve_recipe(config: dict, name: str) -> dict:
    """A recipe's own keys over those of the recipes it ``extends`` (single inheritance)."""
    recipes = config.get("recipes", {})
    chain, cur = [], name
    while cur is not None:
        if cur not in recipes:
            where = f"recipe {chain[-1]} extends" if chain else "a study names recipe"
            raise UserError(
                f"{where} unknown recipe {cur!r}; defined: {', '.join(sorted(recipes))}"
            )
        if cur in chain:
            raise UserError(f"recipe {name}: circular 'extends' chain {' -> '.join(chain + [cur])}")
        chain.append(cur)
        cur = recipes[cur].get("extends")
    merged: dict = {}
    for r in reversed(chain):
        for k, v in recipes[r].items():
            if k in NESTED_RECIPE_KEYS and v is not None:  # merged key by key
                merged[k] = {**(merged.get(k) or {}), **v}
            elif k not in ("extends", "label"):
                merged[k] = v
    return merged


def _grids(config: dict, study: str) -> list[dict]:
    grids = config["studies"][study]
    return grids if isinstance(grids, list) else [grids]


def check(config: dict) -> None:
    """Cross-reference checks that JSON Schema cannot express. Raises UserError (one line)."""
    datasets, variants = config.get("datasets", {}), config.get("variants", {})
    models, studies = config.get("models", {}), config.get("studies", {})
    encoders = config.get("text_encoders", {})
    for v, spec in variants.items():
        check_spec(v, spec)
        variant_chain(config, v)  # every name it reads is declared; no counts_of cycle
    ev = config.get("evaluation", {}).get("dataset")
    if ev not in datasets:
        raise UserError(f"evaluation.dataset {ev!r} is not a declared dataset")
    also = [("evaluation.also", a) for a in config.get("evaluation", {}).get("also", [])]
    for v, spec in variants.items():
        also += [
            (f"variant {v}: evaluation.also", a) for a in spec.get("evaluation", {}).get("also", [])
        ]
    for where, a in also:
        if a["dataset"] not in datasets:
            raise UserError(f"{where} names {a['dataset']!r}, which is not a declared dataset")
        for r in a.get("recipes", []):
            if r not in config.get("recipes", {}):
                raise UserError(f"{where} names unknown recipe {r!r}")
    for name in config.get("recipes", {}):
        r = resolve_recipe(config, name)
        recipe_from_dict(r, name)  # types and unknown keys
        enc = r.get("text_encoder")
        if enc is not None and enc not in encoders:
            raise UserError(f"recipe {name} uses unknown text_encoder {enc!r}")
    for study in studies:
        for grid in _grids(config, study):
            for axis, known in (("variant", variants), ("model", models)):
                for value in grid[axis]:
                    if value not in known:
                        raise UserError(f"study {study} names unknown {axis} {value!r}")
            for value in grid["recipe"]:
                resolve_recipe(config, value)
            for m, rname in itertools.product(grid["model"], grid["recipe"]):
                _check_recipe_fits(config, m, rname, study)
    for enc, spec in encoders.items():
        if "run" in spec:
            ref = spec["run"]
            for axis, known in (("variant", variants), ("model", models)):
                if ref[axis] not in known:
                    raise UserError(f"text encoder {enc} names unknown {axis} {ref[axis]!r}")
            resolve_recipe(config, ref["recipe"])
            if not objectives.get(models[ref["model"]]["objective"]).has_text_tower:
                with_text = [o for o, c in objectives.OBJECTIVES.items() if c.has_text_tower]
                raise UserError(
                    f"text encoder {enc} must come from a run with a text tower "
                    f"(objective {' or '.join(with_text)})"
                )
    for fig, spec in config.get("figures", {}).items():
        check_needs(spec, fig)
        for s in spec.get("studies", []):
            if s not in studies:
                raise UserError(f"figure {fig} needs unknown study {s!r}")
        for v in spec.get("descriptiveness", []):
            if v not in config["variants"]:
                raise UserError(f"figure {fig}: descriptiveness names unknown variant {v!r}")
    for claim in config.get("claims", []):
        if claim["study"] not in studies:
            raise UserError(f"claim {claim['id']} uses unknown study {claim['study']!r}")
    expand(config)  # id grammar, uniqueness, dependency resolution


def variant_eval_dataset(config: dict, variant: str) -> str:
    """The dataset a variant's runs are evaluated on: its own ``evaluation.dataset``, else the
    global one (e.g. IN-100 val for IN-Caps-100 and IN-Caps (10%), METHODS §4.6)."""
    own = config["variants"][variant].get("evaluation", {}).get("dataset")
    return own or config["evaluation"]["dataset"]


def eval_sets(config: dict, cfg: RunConfig) -> list[str]:
    """The evaluation datasets of a run: its default one first (``cfg.eval_dataset``), then
    those of the variant's ``evaluation.also`` (else the global one) that apply to its
    objective and recipe."""
    own = config["variants"][cfg.variant].get("evaluation", {})
    also = own["also"] if "also" in own else config["evaluation"].get("also", [])
    out = [cfg.eval_dataset]
    for a in also:
        fits = cfg.objective in a.get("objectives", [cfg.objective])
        fits = fits and cfg.recipe_name in a.get("recipes", [cfg.recipe_name])
        if fits and a["dataset"] not in out:
            out.append(a["dataset"])
    return out


def _check_recipe_fits(config: dict, model: str, recipe: str, where: str) -> None:
    objective = config["models"][model]["objective"]
    r = resolve_recipe(config, recipe)
    bad = [k for k in objectives.foreign_keys(objective) if k in r]
    if bad:
        raise UserError(
            f"{where}: recipe {recipe} sets {', '.join(bad)}, which a {objective} model ignores"
        )
    rec = recipe_from_dict(r, recipe)
    needs_text = objectives.get(objective).needs_text_encoder(rec)
    if needs_text and not r.get("text_encoder"):
        raise UserError(f"{where}: recipe {recipe} needs a text_encoder for its frozen text/head")
    if needs_text:
        kind = text_encoder_kind(config["text_encoders"][r["text_encoder"]])
        wanted = objectives.get(objective).text_encoder_kind(rec)
        if kind != wanted:
            raise UserError(
                f"{where}: recipe {recipe} ({objective}) needs a {wanted} text encoder, but "
                f"text_encoder {r['text_encoder']} is a {kind}"
            )
        spec = config["text_encoders"][r["text_encoder"]]
        if "hf_model" in spec:  # checked where a study trains with it
            language.check(r["text_encoder"], spec["hf_model"])


def text_encoder_kind(spec: dict) -> str:
    """``language model`` (hf_model) or ``CLIP text tower`` (a run, an open_clip model)."""
    return "language model" if "hf_model" in spec else "CLIP text tower"


@dataclass
class RunTable:
    runs: dict[str, RunConfig] = field(default_factory=dict)  # run_id -> config, sorted
    studies: dict[str, list[str]] = field(default_factory=dict)  # study -> run ids
    depends: dict[str, str] = field(default_factory=dict)  # run_id -> run whose model it needs

    def rows(self) -> list[dict]:
        """One flat row per run (for results/run_table.tsv)."""
        out = []
        for rid, cfg in self.runs.items():
            row = {"run_id": rid, **cfg.factors, "depends_on": self.depends.get(rid, "")}
            row.update({f"recipe.{k}": v for k, v in cfg.to_dict()["recipe"].items()})
            out.append(row)
        return out

    def study_of(self) -> list[tuple[str, str]]:
        return [(s, r) for s, runs in self.studies.items() for r in runs]


def _make_run(config: dict, variant: str, model: str, recipe: str, seed: int) -> RunConfig:
    rid = run_id(variant, model, recipe, seed)
    if not RUN_ID.match(rid):
        raise UserError(f"run id {rid!r} is malformed: names must match ^[a-z0-9-]+$")
    r = recipe_from_dict(resolve_recipe(config, recipe), recipe)
    m = config["models"][model]
    v = config["variants"][variant]
    ev = config["evaluation"]
    text_source = None
    if r.text_encoder is not None:
        enc = config["text_encoders"][r.text_encoder]
        if "run" in enc:
            ref = enc["run"]
            text_source = {"run": run_id(ref["variant"], ref["model"], ref["recipe"], ref["seed"])}
        elif "hf_model" in enc:
            text_source = {
                "hf_model": enc["hf_model"],
                "pooler": enc.get("pooler", "mean_pooler"),
                "proj": enc.get("proj", "mlp"),
            }
        else:
            text_source = {"open_clip": enc["open_clip"], "pretrained": enc["pretrained"]}
    caption = v.get("captions", {})
    factors = {
        "variant": variant,
        "model": model,
        "recipe": recipe,
        "seed": seed,
        "objective": m["objective"],
        "arch": m["arch"],
        "dataset": v["dataset"],
        "variant_label": v.get("label", variant),
        "caption_kind": (
            "identity"
            if not caption
            else TEMPLATE_CAPTIONS
            if not caption.get("fields")
            else "natural"
        ),
        "recipe_label": config["recipes"][recipe].get("label", recipe),
        **objectives.run_factors(m["objective"], r),
    }
    return RunConfig(
        run_id=rid,
        scale=config["scale"],
        objective=m["objective"],
        arch=m["arch"],
        dataset=v["dataset"],
        variant=variant,
        seed=seed,
        eval_dataset=variant_eval_dataset(config, variant),
        eval_templates=ev["templates"],
        recipe_name=recipe,
        recipe=r,
        text_source=text_source,
        factors=factors,
    )


def expand(config: dict) -> RunTable:
    """Expand every study into runs (de-duplicated), plus the runs they depend on."""
    table = RunTable()
    runs: dict[str, RunConfig] = {}
    seeds = config.get("seeds", [0])
    for study in sorted(config.get("studies", {})):
        members = []
        for grid in _grids(config, study):
            axes = [grid.get(a, seeds) if a == "seed" else grid[a] for a in GRID_AXES]
            for v, m, r, s in itertools.product(*axes):
                cfg = _make_run(config, v, m, r, s)
                runs.setdefault(cfg.run_id, cfg)
                if cfg.run_id not in members:
                    members.append(cfg.run_id)
        table.studies[study] = members
    pending = list(runs.values())
    while pending:  # dependencies (pre-training runs of frozen text towers), transitively
        cfg = pending.pop()
        if cfg.text_source and "run" in cfg.text_source:
            dep = cfg.text_source["run"]
            table.depends[cfg.run_id] = dep
            if dep not in runs:
                enc = config["text_encoders"][cfg.recipe.text_encoder]["run"]
                runs[dep] = _make_run(
                    config, enc["variant"], enc["model"], enc["recipe"], enc["seed"]
                )
                pending.append(runs[dep])
            if dep == cfg.run_id:
                raise UserError(f"run {dep} would need its own text tower")
    table.runs = dict(sorted(runs.items()))
    return table


def figure_runs(config: dict, table: RunTable, figure: str) -> list[str]:
    """Every run a figure needs (its studies' runs; none for a frequency figure), sorted."""
    spec = config["figures"][figure]
    if kind_of(spec, figure).source != RUN_FIGURE:
        return []
    return sorted({r for s in spec.get("studies", []) for r in table.studies[s]})
