"""A tiny document model rendered to Markdown and to self-contained HTML.

Reports are built once as a list of blocks and rendered twice, so `report.md` and
`report.html` never disagree, and no Markdown library is needed.
"""

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from vae_edge.fsutil import write_text
from vae_edge.tables import markdown_table


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    rows: list[list[str]]  # the first row is the header


@dataclass
class Picture:
    path: Path  # relative to the document's folder
    caption: str


@dataclass
class Code:
    text: str


Block = Heading | Paragraph | Table | Picture | Code


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block.rows))
        elif isinstance(block, Picture):
            parts.append(f"![{block.caption}]({block.path.as_posix()})")
        elif isinstance(block, Code):
            parts.append(f"```\n{block.text}\n```")
    return "\n\n".join(parts) + "\n"


def to_html(blocks: list[Block], folder: Path, title: str) -> str:
    """HTML with every picture embedded as a data URI, so the file stands alone."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.rows[0])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Picture):
            data = base64.b64encode((folder / block.path).read_bytes()).decode()
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Code):
            body.append(f"<pre>{html.escape(block.text)}</pre>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%;image-rendering:pixelated}figcaption{color:#666;font-size:13px}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write(blocks: list[Block], folder: Path, name: str, title: str) -> tuple[Path, Path]:
    """Write `name.md` and `name.html` into `folder`."""
    return write_text(folder / f"{name}.md", to_markdown(blocks)), write_text(
        folder / f"{name}.html", to_html(blocks, folder, title)
    )
