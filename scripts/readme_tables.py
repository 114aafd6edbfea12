"""Fill the README's measured tables from the result files of the last `make course`.

    .venv/bin/python scripts/readme_tables.py          # rewrite README.md's tables in place
    .venv/bin/python scripts/readme_tables.py --check  # exit 1 if README.md differs from outputs/

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; the prose around
them is written by hand and must agree with them.
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slmlib.experiments import REMEDY_COLUMNS  # noqa: E402
from slmlib.sweep import SWEEP_COLUMNS, fit_line  # noqa: E402
from slmlib.tables import format_table  # noqa: E402

OUT = ROOT / "outputs"


def ladder() -> str:
    rows = []
    for n, r in enumerate(json.loads((OUT / "ladder_results.json").read_text())["levels"], 1):
        rows.append({"level": f"{n} {r['level']}", "stories": r["stories"], "GPT-2 tokens": r["train_tokens"],
                     "params": r["params"], "steps x batch, lr": f"{r['max_iters']:,} x {r['batch_size']}, {r['lr']:g}",
                     "passes": r["passes"], "train loss": r["train_loss"], "val loss": r["val_loss"],
                     "**gap**": f"**{r['gap']:.3f}**", "best val (step)": f"{r['best_val']:.3f} ({r['best_step']:,})",
                     "bigram": r["bigram"], "floor": r["floor"]})
    return format_table(rows, list(rows[0]))


def remedies() -> str:
    return format_table(json.loads((OUT / "remedies.json").read_text())["rows"], REMEDY_COLUMNS)


def lesson_check() -> str:
    text = (OUT / "lesson_check.md").read_text()
    return text.split("\n", 2)[2].strip()  # without its heading


def sweep() -> str:
    result = json.loads((OUT / "data_sweep.json").read_text())
    return format_table(result["summary"], SWEEP_COLUMNS) + "\n\n" + fit_line(result).replace("\n", "  \n")


TABLES = {"ladder": ladder, "remedies": remedies, "lesson-check": lesson_check, "sweep": sweep}


def filled(readme: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- /table:{name} -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- table:{name} --> ... <!-- /table:{name} --> block")
        readme = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), readme)
    return readme


if __name__ == "__main__":
    path = ROOT / "README.md"
    old = path.read_text(encoding="utf-8")
    new = filled(old)
    if "--check" in sys.argv:
        sys.exit(0 if new == old else "README.md's tables differ from outputs/: run scripts/readme_tables.py")
    path.write_text(new, encoding="utf-8")
    print("README.md tables filled from outputs/")
