"""The papers' claims as data (configs/claims/NAME.yaml), judged on a results folder: one verdict per
claim, arm and scale, its table, and the verdicts kept under the claims file's content hash.

Decisions (docs/verdicts.md, "Claims"):

- A claim names its arms and baseline (ACT:NORM), a metric of one cell (``METRICS``), a direction
  (lower, higher: the arm differs that way; equal: within the margin) and a margin in the metric's
  units. Its cells are the arms and the baseline at each scale, with the file's and the claim's
  ``settings`` (the records are matched on those settings too).
- One family. Every comparison of a claims file is judged together (Holm over the file), with the
  verdicts of stats/verdicts.py, or, for a folder trained until decided, the sequential design's
  (stats/sequential.py). Claims carry their own margins: each comparison's per-seed differences are
  divided by its margin, so that every margin is 1; t-tests, TOST and Holm are unchanged by that
  scaling, and the differences and intervals are scaled back to the metric's units for the table.
- The claim's outcome reads its verdict against its direction: reproduced, not reproduced (the
  opposite, or equivalent where a difference was claimed, or a difference beyond the margin where
  equality was), undecided with what would decide it, or not learned (either side no better than
  token frequencies: nothing to judge).
- Pre-registration. The file's content hash (sha256, 12 hex digits) is part of every verdict; the
  verdicts are written to OUT/NAME/claims/<file>-<hash>.json with the file's text. A changed file has
  another hash, so its verdicts go to a new file and the old ones stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import ConfigError
from ..resources import configs_dir
from .records import Record
from .stats.groups import final_val_loss, learned, parse_baseline
from .stats.verdicts import ALPHA, BETTER, EQUIVALENT, PRIOR_NOISE, UNDECIDED, WORSE, Noise, Verdict, evidence, verdicts
from .tables import Column, Table

CLAIMS_DIR = configs_dir() / "claims"
FILE_KEYS = ("paper", "scales", "settings", "claims")
CLAIM_KEYS = ("id", "statement", "where", "arms", "baseline", "metric", "direction", "published", "margin",
              "settings")
DIRECTIONS = ("lower", "higher", "equal")
REPRODUCED, NOT_REPRODUCED, NOT_LEARNED, NO_DATA = "reproduced", "not reproduced", "not learned", "no data"


def _last_worst(key: str) -> Callable[[Record], float | None]:
    """The largest value over layers at the last probe sample of an ok record."""
    def get(r: Record) -> float | None:
        rows = (r.probes or {}).get(key) if r.status == "ok" else None
        last = rows[-1] if rows else None
        vals = [float(v) for v in (last or []) if isinstance(v, (int, float)) and math.isfinite(v)]
        return max(vals) if vals else None
    return get


def _spikes(r: Record) -> float | None:
    n = (r.probes or {}).get("loss_spikes") if r.status == "ok" else None
    return float(n) if isinstance(n, (int, float)) else None


@dataclass(frozen=True)
class Metric:
    """What a claim measures on one cell, and in which units its differences are compared."""

    description: str
    unit: str
    get: Callable[[Record], float | None]
    log: bool = False  # compared as ln(value): differences are log ratios

    def value(self, r: Record) -> float | None:
        v = self.get(r)
        if v is None or not math.isfinite(v) or (self.log and v <= 0):
            return None
        return math.log(v) if self.log else v


METRICS = {
    "val_loss": Metric("final validation loss", "nats", final_val_loss),
    "ffn_max_abs": Metric("FFN hidden max |a|, worst layer at the last probe sample", "ln ratio",
                          _last_worst("ffn_max_abs"), log=True),
    "ffn_kurtosis": Metric("FFN hidden kurtosis, worst layer at the last probe sample", "ln ratio",
                           _last_worst("ffn_kurtosis"), log=True),
    "loss_spikes": Metric("loss spikes over training (training probe)", "spikes", _spikes),
}


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    where: str
    arms: tuple[tuple[str, str], ...]
    baseline: tuple[str, str]
    metric: str
    direction: str
    published: dict
    margin: float
    settings: dict = field(default_factory=dict)  # the file's and the claim's, the claim's winning

    @property
    def groups(self) -> list[tuple[str, str]]:
        return [*self.arms, self.baseline]

    def published_text(self) -> str:
        p = self.published
        scale = f" ({p['scale']})" if p.get("scale") else ""
        if isinstance(p.get("effect"), (int, float)):
            return f"{p['effect']:+g} {p.get('unit', METRICS[self.metric].unit)}{scale}; {self.where}"
        return f"{p.get('text', 'no figure published')}{scale}; {self.where}"


@dataclass(frozen=True)
class Claims:
    """One claims file: its name, paper, default scales, claims, text and content hash."""

    name: str
    paper: str
    scales: tuple[str, ...]
    claims: tuple[Claim, ...]
    text: str
    path: str

    @property
    def digest(self) -> str:
        return content_hash(self.text)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def claims_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"claims file not found: {p}")
        return p
    from models import check_choice

    check_choice("claims file", name, sorted(q.stem for q in CLAIMS_DIR.glob("*.yaml")))
    return CLAIMS_DIR / f"{name}.yaml"


def _group(text, where: str) -> tuple[str, str]:
    try:
        got = parse_baseline(str(text))
    except ValueError:
        got = None
    if got is None:
        raise ConfigError(f"{where} must be ACTIVATION:NORM (e.g. swiglu:pre), got {text!r}")
    return got


def _claim(raw, path, settings: dict, seen: set) -> Claim:
    from models import check_choice

    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: each claim must be a mapping with keys {', '.join(CLAIM_KEYS)}, got {raw!r:.60}")
    for key in raw:
        check_choice(f"claim key in {path}", key, CLAIM_KEYS)
    cid = str(raw.get("id") or "")
    needed = ("id", "statement", "arms", "baseline", "metric", "direction", "margin")
    missing = [k for k in needed if raw.get(k) is None]
    if missing:
        raise ConfigError(f"{path}: claim {cid or '#' + str(len(seen) + 1)} lacks {', '.join(missing)}")
    if cid in seen:
        raise ConfigError(f"{path}: two claims are named {cid!r}; each id names one claim")
    seen.add(cid)
    where = f"{path}: claim {cid}"
    check_choice(f"metric of {where}", raw["metric"], METRICS)
    check_choice(f"direction of {where}", raw["direction"], DIRECTIONS)
    arms = raw["arms"] if isinstance(raw["arms"], list) else [raw["arms"]]
    try:
        margin = float(raw["margin"])
    except (TypeError, ValueError):
        margin = float("nan")
    if not margin > 0 or not math.isfinite(margin):
        raise ConfigError(f"{where}: margin must be a positive number in the metric's units, got {raw['margin']!r}")
    published = raw.get("published") or {}
    if not isinstance(published, dict):
        raise ConfigError(f"{where}: published must be a mapping (effect, unit, scale, or text), got {published!r:.60}")
    own = raw.get("settings") or {}
    if not isinstance(own, dict):
        raise ConfigError(f"{where}: settings must be a mapping of setting -> value, got {own!r:.60}")
    return Claim(cid, str(raw["statement"]), str(raw.get("where") or ""),
                 tuple(_group(a, f"{where}: each arm") for a in arms), _group(raw["baseline"], f"{where}: baseline"),
                 str(raw["metric"]), str(raw["direction"]), dict(published), margin, {**settings, **own})


def load_claims(name: str) -> Claims:
    """A claims file by name (configs/claims/NAME.yaml) or path, checked: one line per problem."""
    import yaml
    from models import check_choice

    path = claims_path(name)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list) or not raw["claims"]:
        raise ConfigError(f"{path}: a claims file is a mapping with a non-empty list 'claims' (keys: "
                          f"{', '.join(FILE_KEYS)})")
    for key in raw:
        check_choice(f"key in {path}", key, FILE_KEYS)
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: settings must be a mapping of setting -> value, got {settings!r:.60}")
    scales = raw.get("scales") or ["nano"]
    if not isinstance(scales, list):
        raise ConfigError(f"{path}: scales must be a list of scale names, got {scales!r:.60}")
    seen: set = set()
    claims = tuple(_claim(c, path, dict(settings), seen) for c in raw["claims"])
    return Claims(path.stem, str(raw.get("paper") or ""), tuple(map(str, scales)), claims, text, str(path))


# ---- judging --------------------------------------------------------------------------------------

def _setting(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def matches(r: Record, scale: str, group: tuple[str, str], settings: dict) -> bool:
    """A record of this claim's group at ``scale`` trained with the claim's settings."""
    if (r.scale, r.activation, r.norm) != (scale, *group):
        return False
    return all(str(_setting(r.config, k)) == str(v) for k, v in settings.items())


@dataclass
class Judged:
    """One claim's arm against its baseline at one scale."""

    claim: Claim
    arm: tuple[str, str]
    scale: str
    values: dict  # seed -> the arm's metric
    base_values: dict
    ids: tuple[str, ...] = ()
    base_ids: tuple[str, ...] = ()
    seconds: float = 0.0  # wall seconds of the cells read (arm and baseline)
    lr: tuple = ()  # the learning rates the arm's cells trained at
    base_lr: tuple = ()  # the baseline's
    learned: bool | None = None
    verdict: Verdict | None = None  # on the differences divided by the margin

    @property
    def shared(self) -> list[int]:
        return sorted(set(self.values) & set(self.base_values))

    @property
    def differences(self) -> list[float]:
        return [self.values[s] - self.base_values[s] for s in self.shared]

    @property
    def judged(self) -> bool:
        return self.learned is not False and bool(self.values) and bool(self.base_values)

    @property
    def diff(self) -> float | None:
        return None if self.verdict is None else self.verdict.diff * self.claim.margin

    @property
    def ci95(self) -> tuple[float, float] | None:
        ci = None if self.verdict is None else self.verdict.ci95
        return None if ci is None else (ci[0] * self.claim.margin, ci[1] * self.claim.margin)

    @property
    def seeds(self) -> str:
        return str(len(self.shared)) if len(self.shared) >= 2 or not self.values or not self.base_values \
            else f"{len(self.values)} vs {len(self.base_values)}"

    @property
    def outcome(self) -> str:
        if not self.values or not self.base_values:
            return NO_DATA
        if self.learned is False:
            return NOT_LEARNED
        v = self.verdict
        if v is None or v.kind == UNDECIDED:
            return UNDECIDED
        want = self.claim.direction
        if want == "equal":
            return REPRODUCED if v.kind == EQUIVALENT or v.within_margin else NOT_REPRODUCED
        return REPRODUCED if v.kind == {"lower": BETTER, "higher": WORSE}[want] else NOT_REPRODUCED

    def text(self) -> str:
        """The outcome and why, in the metric's units."""
        unit, m = METRICS[self.claim.metric].unit, self.claim.margin
        out = self.outcome
        if out == NO_DATA:
            return f"{NO_DATA}: no ok cell on {'the arm' if not self.values else 'the baseline'} side"
        if out == NOT_LEARNED:
            return f"{NOT_LEARNED}: a side ends no better than token frequencies; train longer before judging"
        v = self.verdict
        if v is None:
            return f"{UNDECIDED}: no paired seed yet (a run trained until decided compares paired seeds only)"
        if out == UNDECIDED:
            parts = [f"{UNDECIDED}: {self.diff:+.3g} {unit}"]
            if v.mde is not None:
                parts.append(f"{v.n} seeds could detect {v.mde * m:.3g} {unit}")
            own_units = self.claim.metric == "val_loss" or (v.noise_source or "").startswith("its ")
            if own_units and v.seeds_to_decide is not None:
                parts.append(f"{v.seeds_to_decide} seeds would decide it")
            elif own_units and self.diff:
                parts.append("more than 10,000 seeds would decide it")
            if own_units and v.seeds_to_show_equivalence is not None:
                parts.append(f"{v.seeds_to_show_equivalence} would show equivalence within ±{m:g}")
            if not own_units:
                parts.append("one seed has no noise estimate for this metric: add seeds")
            elif v.noise_source and not v.noise_source.startswith("its "):
                parts.append(f"noise SD {v.noise_sd * m:.3g} {unit} ({v.noise_source})")
            return "; ".join(parts) + f" (80% power at level {v.level:.2g})"
        what = {BETTER: "lower", WORSE: "higher", EQUIVALENT: f"equivalent within ±{m:g}"}[v.kind]
        if v.kind != EQUIVALENT and v.within_margin:
            what += f", within ±{m:g}"
        p = v.p_holm if v.kind != EQUIVALENT else v.p_equiv_holm
        return f"{out}: {what} (p_holm {p:.2g})"


def judge_claims(claims: Claims, records: list[Record], scales, design=None, alpha: float = ALPHA) -> list[Judged]:
    """Every claim's arms against its baseline at each scale, judged as one family (the module
    docstring); ``design``: the folder's sequential design (sequential.Design), if it was trained
    until decided."""
    rows = []
    for claim in claims.claims:
        for scale in scales:
            base = [r for r in records if matches(r, scale, claim.baseline, claim.settings)]
            for arm in claim.arms:
                mine = [r for r in records if matches(r, scale, arm, claim.settings)]
                metric = METRICS[claim.metric]
                lrs = [tuple(sorted({lr for r in recs if (lr := _setting(r.config, "train.lr")) is not None}))
                       for recs in (mine, base)]
                done = learned(mine) is False or learned(base) is False
                rows.append(Judged(
                    claim, arm, scale, {r.seed: v for r in mine if (v := metric.value(r)) is not None},
                    {r.seed: v for r in base if (v := metric.value(r)) is not None},
                    tuple(r.id for r in mine), tuple(r.id for r in base),
                    sum(r.wall_seconds or 0.0 for r in mine + base), *lrs, False if done else True))
    family = [j for j in rows if j.judged]
    scaled = [({s: v / j.claim.margin for s, v in j.values.items()},
               {s: v / j.claim.margin for s, v in j.base_values.items()}) for j in family]
    noise = [Noise(PRIOR_NOISE.sd / j.claim.margin, PRIOR_NOISE.dof, PRIOR_NOISE.source)
             if j.claim.metric == "val_loss" else None for j in family]
    if design is None:
        found = verdicts([evidence(a, b) for a, b in scaled], alpha=alpha, margin=1.0, noise=noise)
    else:
        from .stats.sequential import review

        keep = [i for i, j in enumerate(family) if j.shared]
        statuses = review([[a[s] - b[s] for s in family[i].shared][: design.max_seeds]
                           for i, (a, b) in ((i, scaled[i]) for i in keep)], design, alpha=alpha, margin=1.0,
                          noise=[noise[i] for i in keep])
        found = [None] * len(family)  # a comparison without a paired seed has no sequential verdict yet
        for i, s in zip(keep, statuses):
            found[i] = s.verdict
    for j, v in zip(family, found):
        j.verdict = v
    return rows


# ---- the table and the record of verdicts ---------------------------------------------------------

def _lrs(lrs) -> str:
    return "/".join(f"{lr:g}" for lr in lrs) or "?"


def tuned_text(j: Judged, tuning: str | None) -> str:
    """'no: shared LR 0.003', or, tuned, each side's best LR and the budget that chose it."""
    if tuning is None:
        return f"no: shared LR {_lrs(sorted({*j.lr, *j.base_lr}))}"
    return f"yes: LR {_lrs(j.lr)} vs {_lrs(j.base_lr)} ({tuning})"


def entry(j: Judged, digest: str, tuning: str | None = None) -> dict:
    """One verdict as data: what the table shows and the claims file version it judged; ``tuning``:
    how the arms' LRs were tuned (None: the shared LR)."""
    return {"claim": j.claim.id, "arm": ":".join(j.arm), "baseline": ":".join(j.claim.baseline),
            "statement": j.claim.statement, "metric": j.claim.metric, "unit": METRICS[j.claim.metric].unit,
            "direction": j.claim.direction, "margin": j.claim.margin, "paper": j.claim.published_text(),
            "scale": j.scale, "diff": j.diff, "ci95": list(j.ci95) if j.ci95 else None, "outcome": j.outcome,
            "verdict": j.text(), "tuned": tuned_text(j, tuning),
            "seeds": j.seeds, "seconds": round(j.seconds, 1), "claims_hash": digest}


def mark_lr_dependence(shared: list[dict], tuned: list[dict]) -> list[dict]:
    """Both verdicts of every comparison, side by side (shared LR first), each marked "depends on LR"
    where the shared-LR and tuned-LR verdicts are both decided and disagree."""
    def key(e):
        return e["claim"], e["arm"], e["scale"]

    by = {key(e): e for e in tuned}
    decided = (REPRODUCED, NOT_REPRODUCED)
    out = []
    for e in shared:
        t = by.pop(key(e), None)
        if t is not None and e["outcome"] in decided and t["outcome"] in decided and e["outcome"] != t["outcome"]:
            for x in (e, t):
                x["depends_on_lr"] = True
                x["verdict"] += f"; depends on LR (shared: {e['outcome']}, tuned: {t['outcome']})"
        out += [e] if t is None else [e, t]
    return out + list(by.values())


def _ours(e: dict) -> str | None:
    if e.get("diff") is None:
        return None
    ci = e.get("ci95")
    text = f"{e['diff']:+.3g} {e['unit']}"
    return text + (f" [{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else " (one seed: no interval)")


CLAIMS_COLUMNS = (
    Column("claim", get=lambda e: f"{e['claim']}: {e['arm']} vs {e['baseline']}", align="left"),
    Column("paper", header="paper (scale)", get=lambda e: e["paper"], align="left"),
    Column("scale", align="left"),
    Column("ours", header="ours (95% CI)", get=_ours, align="left"),
    Column("verdict", align="left", tone=lambda e: {REPRODUCED: "better", NOT_REPRODUCED: "worse"}.get(e["outcome"])),
    Column("tuned", header="tuned?", align="left"),
    Column("seeds"),
    Column("compute", header="compute (wall s)", get=lambda e: e.get("seconds"), fmt=",.0f"),
)
CLAIMS_LEGEND = (
    "One row per claim, arm and scale. paper: the published effect (arm - baseline) and where the paper shows it; "
    "ours: the mean per-seed difference of the claim's metric (arm - baseline; ln ratio: of the metric's log) with "
    "its 95% interval; verdict: reproduced when the difference is decided in the claimed direction (or, for a claim "
    "of equality, shown within its margin), not reproduced when decided otherwise, undecided with what would decide "
    "it; the tests are Holm-corrected over every comparison of the claims file (docs/verdicts.md). tuned?: the "
    "learning rate each arm trained at (shared: the recipe's, not tuned per arm). seeds: pairs (arm and baseline "
    "at the same seed). compute: wall seconds of the cells read, the baseline's counted in each of its rows.")


def claims_table(entries: list[dict], name: str, digest: str, paper: str = "", design_note: str = "") -> Table:
    notes = [f"Claims file {name} (content hash {digest}): every verdict here is of this version; an edited file "
             "makes new verdicts and keeps these." + (f" Paper: {paper}." if paper else "")]
    if design_note:
        notes.append(design_note)
    return Table(f"Claims of {name} ({digest})", CLAIMS_COLUMNS, entries, CLAIMS_LEGEND, tuple(notes))


def verdicts_path(folder: Path, name: str, digest: str) -> Path:
    return Path(folder) / "claims" / f"{name}-{digest}.json"


def write_verdicts(folder: Path, claims: Claims, entries: list[dict]) -> Path:
    """The verdicts of this version of the claims file, with its text: a new version writes a new
    file, never over another version's."""
    path = verdicts_path(folder, claims.name, claims.digest)
    atomic_write_json(path, {"name": claims.name, "paper": claims.paper, "claims_hash": claims.digest,
                             "claims_file": claims.text, "verdicts": entries})
    return path


def stored_verdicts(folder: Path) -> list[dict]:
    """Every version's verdicts stored in ``folder`` (unreadable files skipped), by name and hash."""
    out = []
    for p in sorted((Path(folder) / "claims").glob("*.json")):
        try:
            d = json.loads(p.read_text())
            if isinstance(d, dict) and isinstance(d.get("verdicts"), list):
                out.append(d)
        except (OSError, ValueError):
            continue
    return out
