"""A section of a report as data (a title, paragraphs, a table, bullets, figures), written as Markdown
or as HTML by the same two functions: what lrexp.predict and lrexp.budget contribute to a sweep's
comparison report, and what they write on their own."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)  # the table's header (no table when empty)
    rows: list[list[str]] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def to_markdown(s: Section, level: int = 2, base: Path | None = None) -> str:
    """Figures are linked relative to ``base`` (the folder the Markdown file is written to)."""
    lines = ["#" * level + " " + s.title, ""]
    for p in s.paragraphs:
        lines += [p, ""]
    if s.head:
        lines += ["| " + " | ".join(s.head) + " |", "|" + "---|" * len(s.head)]
        lines += ["| " + " | ".join(r) + " |" for r in s.rows] + [""]
    if s.bullets:
        lines += [f"- {b}" for b in s.bullets] + [""]
    for f in s.figures:
        where = f.relative_to(base) if base is not None and f.is_relative_to(base) else f
        lines += [f"![{f.stem}]({where})", ""]
    return "\n".join(lines)


def to_html(s: Section) -> str:
    """Self-contained: figures embedded."""
    esc = html.escape
    parts = [f"<h2>{esc(s.title)}</h2>"] + [f"<p>{esc(p)}</p>" for p in s.paragraphs]
    if s.head:
        head = "".join(f"<th>{esc(h)}</th>" for h in s.head)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in s.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if s.bullets:
        parts.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in s.bullets) + "</ul>")
    for f in s.figures:
        data = base64.b64encode(f.read_bytes()).decode()
        parts.append(f'<figure><img alt="{esc(f.stem)}" src="data:image/png;base64,{data}"></figure>')
    return "\n".join(parts)
