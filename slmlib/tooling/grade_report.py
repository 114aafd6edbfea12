"""The grader's reports: the grades CSV, one row per student, the class report (markdown and HTML) and a
feedback page per student, all written from the graded rows (tooling/grading.py grades; this writes).
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ..paths import atomic_write

if TYPE_CHECKING:
    from .grading import Reference, Run

# The grades CSV: these columns, in this order (earlier versions' columns first, so old readers still work).
GRADE_COLUMNS = ("student", "exercise", "passed", "total", "seconds", "error", "notebook", "sha256",
                 "reference", "settings", "course", "grader_failure", "checks", "row_check")
REPORT_COLUMNS = ("student", "exercise", "passed", "total", "seconds", "error", "notebook")


def printable(text: str) -> str:
    """text on one line: control characters (newlines, escape codes) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def escape(text: str) -> str:
    """text on one line, safe in a markdown table: control characters as escapes, `|` as `\\|`."""
    return printable(text).replace("|", "\\|")


def not_run(n: int, why: str) -> list[list[str]]:
    return [["not run", why or "not run"] for _ in range(n)]


def is_ours(path: Path, first: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(first)
    except (OSError, UnicodeDecodeError):
        return False


MARK = {"passed": "✓", "failed": "✗", "not run": "·"}
LEGEND = "✓ passed, ✗ failed, · not reached (the notebook stopped before it), blank: not handed in"
HTML_FIRST = "<!DOCTYPE html><!-- slmlib grade: class report -->"
STUDENTS_FIRST = "student,notebooks,passed,total,score"
FEEDBACK_FIRST = "# Feedback on your exercises"


def report_paths(out: Path) -> dict[str, Path]:
    """What `grade` writes beside --out: the markdown and HTML reports, the per-task CSV, the feedback pages."""
    return {"md": out.with_suffix(".md"), "html": out.with_suffix(".html"),
            "students": out.with_name(f"{out.stem}_by_student.csv"), "feedback": out.parent / "feedback"}


def checks_of(row: dict) -> list[list[str]]:
    """A row's [status, why] per check; a row without them (hand-made, older) says so in each check."""
    try:
        checks = json.loads(row.get("checks") or "[]")
    except ValueError:
        checks = []
    total = int(row["total"])
    if len(checks) != total or not all(isinstance(c, list) and len(c) == 2 and c[0] in MARK for c in checks):
        return not_run(total, "no per-check record in this row")
    return checks


def _best(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """{student: {exercise: its best row}}: each exercise counts once per student (students in row order)."""
    best = {}
    for r in rows:
        mine = best.setdefault(r["student"], {})
        if int(r["total"]) and (r["exercise"] not in mine or int(r["passed"]) > int(mine[r["exercise"]]["passed"])):
            mine[r["exercise"]] = r
    return best


def student_scores(rows: list[dict]) -> list[dict]:
    """Per student: each exercise counted once (its best notebook); notebooks that are not exercises count 0/0."""
    students = []
    for name, best in _best(rows).items():
        passed, total = sum(int(r["passed"]) for r in best.values()), sum(int(r["total"]) for r in best.values())
        students.append({"student": name, "notebooks": sum(r["student"] == name for r in rows), "passed": passed,
                         "total": total, "score": f"{100 * passed / total:.0f}%" if total else "-"})
    return students


def _tasks(rows: list[dict], refs: dict[str, Reference] | None) -> list[tuple[str, int, str]]:
    """(exercise, check index, title) of every task: all the reference's, else those in the rows."""
    if refs:
        return [(name, k, ref.tasks[k] if k < len(ref.tasks) else f"Task {k + 1}")
                for name, ref in sorted(refs.items()) for k in range(len(ref.checks))]
    totals = {r["exercise"]: int(r["total"]) for r in rows if int(r["total"])}
    return [(name, k, f"Task {k + 1}") for name, n in sorted(totals.items()) for k in range(n)]


def _handed_in(rows: list[dict], refs: dict[str, Reference] | None) -> tuple[list, list[str]]:
    """(the tasks of exercises someone handed in, the exercises nobody did): what the reports show."""
    present = {r["exercise"] for r in rows if int(r["total"])}
    tasks = _tasks(rows, refs)
    return [t for t in tasks if t[0] in present], [e for e in dict.fromkeys(t[0] for t in tasks) if e not in present]


def task_column(exercise: str, k: int) -> str:
    return f"{exercise} task {k + 1}"


def by_student(rows: list[dict], refs: dict[str, Reference] | None = None) -> list[dict]:
    """One row per student: the scores, then each task's status ("" where the exercise was not handed in)."""
    best = _best(rows)
    table = []
    for score in student_scores(rows):
        mine = best[score["student"]]
        table.append({**score, **{task_column(e, k): checks_of(mine[e])[k][0] if e in mine else ""
                                  for e, k, _ in _tasks(rows, refs)}})
    return table


def task_summary(rows: list[dict], refs: dict[str, Reference] | None = None) -> list[dict]:
    """Per task: how many students handed it in, how many passed, and the commonest failure (with its count)."""
    best = _best(rows)
    summary = []
    for exercise, k, title in _tasks(rows, refs):
        results = [checks_of(mine[exercise])[k] for mine in best.values() if exercise in mine]
        failures = Counter(why or status for status, why in results if status != "passed")
        why, count = failures.most_common(1)[0] if failures else ("", 0)
        summary.append({"exercise": exercise, "task": title, "handed in": len(results),
                        "passed": sum(status == "passed" for status, _ in results),
                        "commonest failure": f"{why} ({count} of {len(results)})" if count else ""})
    return summary


def problem_lines(rows: list[dict]) -> list[str]:
    """The rows' problems, identical ones once with their count (90 untouched notebooks make one line)."""
    groups = {}
    for r in rows:
        if r["error"]:
            groups.setdefault(r["error"], []).append(r["notebook"])
    lines = []
    for error, names in sorted(groups.items(), key=lambda item: -len(item[1])):
        if len(names) == 1:
            lines.append(f"{names[0]}: {error}")
        else:
            lines.append(f"{len(names)} notebooks: {error} ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''})")
    return lines


def _duplicates(rows: list[dict]) -> list[str]:
    seen, notes = {}, []
    for r in rows:
        if int(r["total"]):
            key = (r["student"], r["exercise"])
            if key in seen:
                notes.append(f"{r['student']}: {r['exercise']} handed in more than once "
                             f"({seen[key]}, {r['notebook']}): counted once, the best")
            else:
                seen[key] = r["notebook"]
    return notes


def timing(rows: list[dict], batch: dict | None = None) -> str:
    """The measured time per notebook (kernel start to its end), and this run's parallelism and clock time."""
    ran = [r for r in rows if float(r["seconds"]) > 0]
    if not ran:
        return "No notebook ran in a kernel."
    seconds = [float(r["seconds"]) for r in ran]
    slowest = max(ran, key=lambda r: float(r["seconds"]))
    text = (f"Time per notebook, measured: median {statistics.median(seconds):.1f} s, slowest "
            f"{float(slowest['seconds']):.1f} s ({slowest['notebook']}); {len(ran)} notebook(s) ran in a kernel, "
            f"{sum(seconds):.0f} s in all.")
    if batch:
        text += (f" This run graded {batch['jobs']} at a time on {batch['cores']} core(s) and has taken "
                 f"{time.monotonic() - batch['started']:.0f} s on the clock so far.")
    return text


def _short(names: list[str]) -> dict[str, str]:
    """ex01_tokens -> ex01, where the short names stay distinct."""
    short = {n: n.split("_")[0] for n in names}
    return short if len(set(short.values())) == len(short) else {n: n for n in names}


def grade_report(rows: list[dict], run: Run, notes: list[str] = (), refs: dict[str, Reference] | None = None,
                 batch: dict | None = None) -> str:
    from ..tables import format_table

    def safe(row: dict) -> dict:
        return {k: escape(v) if isinstance(v, str) else v for k, v in row.items()}

    students = by_student(rows, refs)
    tasks, nobody = _handed_in(rows, refs)
    exercises = list(dict.fromkeys(e for e, _, _ in tasks))
    short = _short(exercises)
    for s in students:
        for e in exercises:
            s[short[e]] = "".join(MARK.get(s[task_column(e, k)], "") for ee, k, _ in tasks if ee == e)
    summary = [{**t, "passed": f"{t['passed']} of {t['handed in']}"} for t in task_summary(rows, refs)
               if t["handed in"]]
    nobody = [f"Handed in by nobody: {', '.join(nobody)}.", ""] if nobody else []
    problems = [f"- {escape(p)}" for p in problem_lines(rows) + _duplicates(rows) + list(notes)]
    return "\n".join([
        "# Exercise grades", "",
        f"{len(rows)} notebook(s) from {len(students)} student(s); {'smoke' if run.smoke else 'full'} mode, "
        f"at most {run.timeout} s per notebook, {'in a sandbox' if run.bwrap else 'not sandboxed'}. A task counts "
        "as passed when the reference exercise's `# CHECK` cell ran without an error. Each exercise counts once "
        "per student.", "", timing(rows, batch), "",
        "Also written: the HTML class report (`.html` beside this file), one row per student with a column per "
        "task (`_by_student.csv`), and a feedback page per student (`feedback/`).",
        "", "## Per student", "", f"One column per exercise, one mark per task: {LEGEND}.", "",
        format_table([safe(s) for s in students], ["student", "notebooks", "passed", "total", "score",
                                                   *(short[e] for e in exercises)]),
        "", "## Per task", "", *nobody, format_table([safe(t) for t in summary], ["exercise", "task", "passed",
                                                                                  "commonest failure"]),
        "", "## Per notebook", "", format_table([safe(r) for r in rows], REPORT_COLUMNS),
        "", "## Problems", "", *(problems or ["None."]), ""])


CSS = ("body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
       "margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
       "th{background:#f4f4f4}td.passed{background:#d7f0d7;text-align:center}td.failed{background:#f6d5d5;"
       "text-align:center}td.notrun{background:#eee;color:#777;text-align:center}td.num{text-align:right}")


def _cell(text, tag: str = "td", **attributes) -> str:
    attrs = "".join(f' {k.rstrip("_")}="{html.escape(str(v))}"' for k, v in attributes.items() if v not in ("", None))
    return f"<{tag}{attrs}>{html.escape(str(text))}</{tag}>"


def html_report(rows: list[dict], run: Run, notes: list[str] = (), refs: dict[str, Reference] | None = None,
                batch: dict | None = None, feedback: dict[str, str] | None = None) -> str:
    """The class report as one HTML page: plain tables, a little inline CSS, every text escaped."""
    tasks, nobody = _handed_in(rows, refs)
    exercises = list(dict.fromkeys(e for e, _, _ in tasks))
    counts = Counter(e for e, _, _ in tasks)
    head1 = [_cell(c, "th", rowspan=2) for c in ("student", "score", "passed")] + [
        _cell(e, "th", colspan=counts[e]) for e in exercises]
    head2 = [_cell(k + 1, "th", title=title) for _, k, title in tasks]
    body = []
    best = _best(rows)
    for s in by_student(rows, refs):
        page = (feedback or {}).get(s["student"])
        name = (f'<td><a href="{html.escape(page)}">{html.escape(s["student"])}</a></td>' if page
                else _cell(s["student"]))
        marks = []
        for e, k, title in tasks:
            status = s[task_column(e, k)]
            why = checks_of(best[s["student"]][e])[k][1] if status and status != "passed" else ""
            marks.append(_cell(MARK.get(status, ""), class_=status.replace(" ", ""), title=why or title))
        body.append("<tr>" + name + _cell(s["score"], class_="num") + _cell(f"{s['passed']} of {s['total']}",
                                                                           class_="num") + "".join(marks) + "</tr>")
    summary = ["<tr>" + _cell(t["exercise"]) + _cell(t["task"]) + _cell(f"{t['passed']} of {t['handed in']}",
                                                                       class_="num")
               + _cell(t["commonest failure"]) + "</tr>" for t in task_summary(rows, refs) if t["handed in"]]
    notebooks = ["<tr>" + "".join(_cell(r[c], class_="num" if c in ("passed", "total", "seconds") else "")
                                  for c in REPORT_COLUMNS) + "</tr>" for r in rows]
    problems = [f"<li>{html.escape(p)}</li>" for p in problem_lines(rows) + _duplicates(rows) + list(notes)]
    students = len({r["student"] for r in rows})
    return "\n".join([
        HTML_FIRST, '<html lang="en"><head><meta charset="utf-8"><title>Exercise grades</title>',
        f"<style>{CSS}</style></head><body>", "<h1>Exercise grades</h1>",
        f"<p>{len(rows)} notebook(s) from {students} student(s); {'smoke' if run.smoke else 'full'} mode, at most "
        f"{run.timeout} s per notebook, {'in a sandbox' if run.bwrap else 'not sandboxed'}. A task counts as passed "
        "when the reference exercise's <code># CHECK</code> cell ran without an error; each exercise counts once "
        f"per student. {html.escape(LEGEND)}; hover over a mark for the task or the hint.</p>",
        f"<p>{html.escape(timing(rows, batch))}</p>",
        "<h2>Per student</h2>", "<table><thead><tr>" + "".join(head1) + "</tr><tr>" + "".join(head2)
        + "</tr></thead><tbody>", *body, "</tbody></table>",
        "<h2>Per task</h2>", *([_cell(f"Handed in by nobody: {', '.join(nobody)}.", "p")] if nobody else []),
        "<table><thead><tr>" + "".join(_cell(c, "th") for c in (
            "exercise", "task", "passed", "commonest failure")) + "</tr></thead><tbody>", *summary, "</tbody></table>",
        "<h2>Per notebook</h2>", "<table><thead><tr>" + "".join(_cell(c, "th") for c in REPORT_COLUMNS)
        + "</tr></thead><tbody>", *notebooks, "</tbody></table>",
        "<h2>Problems</h2>", "<ul>", *(problems or ["<li>None.</li>"]), "</ul>", "</body></html>", ""])


def feedback_page(student: str, rows: list[dict], refs: dict[str, Reference] | None = None) -> str:
    """What one student reads: per exercise, each task passed or not, with the hint its check gave."""
    mine = [r for r in rows if r["student"] == student]
    best = _best(mine).get(student, {})
    score = student_scores(mine)[0]
    tasks = _tasks(rows, refs)
    lines = [f"{FEEDBACK_FIRST}: {printable(student)}", "",
             f"{score['passed']} of {score['total']} checks passed ({score['score']}) in {len(best)} exercise(s). "
             f"{LEGEND.split(', blank')[0]}.", ""]
    for exercise in dict.fromkeys(e for e, _, _ in tasks):
        if exercise not in best:
            continue
        row = best[exercise]
        lines += [f"## {printable(exercise)}: {row['passed']} of {row['total']} ({printable(row['notebook'])})", ""]
        for (status, why), (_, _, title) in zip(checks_of(row), [t for t in tasks if t[0] == exercise]):
            lines.append(f"- {MARK[status]} {printable(title)}" + (f": {printable(why)}" if status != "passed" else ""))
        if row["error"]:
            lines += ["", f"About the notebook: {printable(row['error'])}"]
        lines.append("")
    missing = [e for e in dict.fromkeys(e for e, _, _ in tasks) if e not in best]
    other = [r for r in mine if not int(r["total"])]
    if missing:
        lines += ["## Not handed in", "", ", ".join(map(escape, missing)), ""]
    if other:
        lines += ["## Not graded", ""] + [f"- {printable(r['notebook'])}: {printable(r['error'])}" for r in other] + [""]
    return "\n".join(lines)


def feedback_names(students: list[str]) -> dict[str, str]:
    """{student: file name} for the feedback pages: safe characters, distinct even where two names clean alike."""
    names, taken = {}, set()
    for student in students:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._") or "student"
        name, n = f"{base}.md", 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}.md"
        taken.add(name.lower())
        names[student] = name
    return names


def _text_file(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_results(out: Path, rows: list[dict], run: Run, notes: list[str],
                   refs: dict[str, Reference] | None = None, batch: dict | None = None) -> None:
    paths = report_paths(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GRADE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _text_file(out, buffer.getvalue())
    students = by_student(rows, refs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(students[0]) if students else STUDENTS_FIRST.split(","),
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(students)
    _text_file(paths["students"], buffer.getvalue())
    names = feedback_names([s["student"] for s in students])
    for student, name in names.items():
        _text_file(paths["feedback"] / name, feedback_page(student, rows, refs))
    for stale in paths["feedback"].glob("*.md") if paths["feedback"].is_dir() else ():
        if stale.name not in names.values() and is_ours(stale, FEEDBACK_FIRST):
            stale.unlink(missing_ok=True)  # a student no longer handed in
    links = {s: f"{paths['feedback'].name}/{n}" for s, n in names.items()}
    _text_file(paths["html"], html_report(rows, run, notes, refs, batch, links))
    _text_file(paths["md"], grade_report(rows, run, notes, refs, batch))
