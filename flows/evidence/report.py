"""The evidence pack: report.json (the facts of flows/evidence/facts.py) and report.html, the same facts
for people, self-contained (plots embedded as PNG), in one directory."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import jinja2
import matplotlib

from flows.evidence.facts import DatasetFacts, Event, Facts

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"published": "#2b7a4b", "suppressed": "#d9822b", "quarantined": "#8a5fbf", "erased": "#c23b3b"}


def write(facts: Facts, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "report.json"
    data.write_text(json.dumps(facts, ensure_ascii=False, indent=1), "utf-8")
    plots = {name: plots_for(dataset) for name, dataset in facts["datasets"].items() if dataset["partitions"]}
    plots["dp"] = {r["release_id"]: dp_plot(r) for r in facts["dp_releases"]}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
    page = out / "report.html"
    page.write_text(env.get_template("report.html.j2").render(facts=facts, plots=plots), "utf-8")
    return page, data


def plots_for(dataset: DatasetFacts) -> dict[str, str]:
    """The dataset's plots as data: URIs."""
    parts = dataset["partitions"]
    dates = [p["period"] for p in parts]
    out = {}

    fig, ax = plt.subplots(figsize=(6, 3))
    buckets: dict[str, int] = {}
    for p in parts:
        for bucket, count in (p["metrics"]["class_size_histogram"] or {}).items():
            buckets[bucket] = buckets.get(bucket, 0) + count
    ax.bar(list(buckets), list(buckets.values()), color="#3b6ea8")
    ax.axvline(
        _bucket_of(dataset["policy"]["k"], list(buckets)) - 0.5,
        color="#c23b3b",
        linestyle="--",
        label=f"k = {dataset['policy']['k']}",
    )
    ax.set(title="Equivalence classes by size (entities per class)", xlabel="class size", ylabel="classes")
    ax.legend()
    out["class_sizes"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    bottom = [0] * len(parts)
    for key, color in COLORS.items():
        values = [p["rows"][key] if isinstance(p["rows"][key], int) else 0 for p in parts]  # "<k": not drawn
        ax.bar(dates, values, bottom=bottom, color=color, label=key)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set(title="Input rows per export date, by outcome", ylabel="rows")
    ax.legend(fontsize=7, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.1), frameon=False)
    _dates_axis(ax, dates)
    out["outcomes"] = _png(fig)

    attributes = sorted({a for p in parts for a in p["levels"]})
    if attributes:
        # Colour is what was lost (0 = every value as it was, 1 = no detail left: every row of the
        # partition holds one value), the same scale for every attribute; a raw level number means
        # nothing across hierarchies, so it is only written in the cell.
        loss = [[(p["metrics"].get("loss_by_attribute") or {}).get(a, 0.0) for p in parts] for a in attributes]
        levels = [[p["levels"].get(a, 0) for p in parts] for a in attributes]
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.38 * len(attributes)))
        shown = ax.imshow(loss, aspect="auto", cmap="OrRd", vmin=0, vmax=1)
        ax.set_yticks(range(len(attributes)), attributes, fontsize=8)
        if len(dates) <= 31:
            for r in range(len(attributes)):
                for c in range(len(dates)):
                    colour = "white" if loss[r][c] > 0.6 else "black"
                    ax.text(c, r, f"L{levels[r][c]}", ha="center", va="center", fontsize=8, color=colour)
        ax.set_title("Information lost per attribute (1 = one value for every row; L = level)", fontsize=9)
        fig.colorbar(shown, ax=ax, label="loss (0-1)")
        _dates_axis(ax, dates)
        out["levels"] = _png(fig)
    return out


def dp_plot(release: Event) -> str:
    """A DP release's tables: each one's share of epsilon, and the cell size (people, or CNY for a
    sum) at which its 95% error bar is within 10%: smaller cells are answered less precisely."""
    tables = release["tables"]
    names = [t["name"] for t in tables]
    fig, (budget, needed) = plt.subplots(1, 2, figsize=(9, 0.9 + 0.45 * len(tables)), sharey=True)
    budget.barh(names, [t["epsilon"] for t in tables], color="#3b6ea8")
    budget.set(title=f"epsilon per table (release {release['epsilon']:g})", xlabel="epsilon")
    budget.invert_yaxis()
    needed.barh(names, [t["ten_percent_at"] for t in tables], color="#d9822b")
    needed.set(title="cell size for ±10% at 95%", xlabel="people (CNY for revenue), log scale", xscale="log")
    for y, t in enumerate(tables):
        needed.annotate(
            f"{t['ten_percent_at']:,.0f}", (t["ten_percent_at"], y), xytext=(3, 0), textcoords="offset points", va="center"
        )
    return _png(fig)


def _bucket_of(k: int, buckets: list[str]) -> int:
    """Index of the histogram bucket holding size k ('3-4', '50+' …)."""
    for index, bucket in enumerate(buckets):
        first, _, high = bucket.partition("-")
        low = int(first.rstrip("+"))
        if low <= k <= (int(high) if high else (low if not bucket.endswith("+") else k)):
            return index
    return len(buckets)


def _dates_axis(ax, dates: list[str]) -> None:
    """At most 12 date labels, slanted; the figure's margins make room for them (tight_layout)."""
    step = max(1, len(dates) // 12)
    ax.set_xticks(range(0, len(dates), step), dates[::step], rotation=45, ha="right", fontsize=7)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
