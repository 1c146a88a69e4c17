"""Every ``rfconv-deploy SUB --flag`` written in README.md and docs/**/*.md is a flag of SUB.

Commands are read from fenced code blocks (lines continued with ``\\`` joined, ``#`` comments
dropped) and from inline code spans (also spans wrapped over two lines). Flags before SUB are
checked against the top-level parser (``--debug``, ``--version``); a command stops at a shell
operator (``|``, ``&&``, ``;``, ``>``, ...). The parser is :func:`exporter.cli.build_parser`, so a
renamed or removed flag fails here until the docs follow.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "rfconv-deploy"
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
SUBCOMMAND = re.compile(r"[a-z][a-z0-9-]*")
FLAG = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")


@dataclass(frozen=True)
class Command:
    where: str  # path:line
    sub: str | None  # None when the text names no subcommand (`rfconv-deploy --help`, `... --debug ...`)
    global_flags: tuple[str, ...]
    flags: tuple[str, ...]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def code_segments(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` for each logical line of every fenced block and each inline code span."""
    segments, prose, lines = [], [], text.splitlines()
    index = 0
    while index < len(lines):
        if FENCE.match(lines[index]):
            index += 1
            pending, start = "", None
            while index < len(lines) and not FENCE.match(lines[index]):
                line = lines[index]
                start = index + 1 if start is None else start
                if line.rstrip().endswith("\\"):
                    pending += line.rstrip()[:-1] + " "
                else:
                    segments.append((start, pending + line))
                    pending, start = "", None
                index += 1
            if pending:
                segments.append((start, pending))
            prose.append((index + 1, ""))  # the closing fence: keeps inline spans from crossing a block
        else:
            prose.append((index + 1, lines[index]))
        index += 1
    # Inline spans may wrap over lines within a paragraph (not across a code block).
    paragraph, first = [], None
    for number, line in [*prose, (len(lines) + 1, "")]:
        if line.strip():
            first = number if first is None else first
            paragraph.append(line)
            continue
        joined = "\n".join(paragraph)
        for match in INLINE.finditer(joined):
            segments.append((first + joined.count("\n", 0, match.start()), match.group(2).replace("\n", " ")))
        paragraph, first = [], None
    return sorted(segments)


def _tokens(code: str) -> list[str]:
    lexer = shlex.shlex(code, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose-like code: fall back to plain words
        return code.split()


def commands_in(text: str, name: str = "<text>") -> list[Command]:
    found = []
    for line, code in code_segments(text):
        if PROGRAM not in code:
            continue
        tokens = _tokens(code)
        for start, token in enumerate(tokens):
            if token != PROGRAM:
                continue
            global_flags, sub, flags = [], None, []
            for word in tokens[start + 1:]:
                if word and set(word) <= set("|&;<>()"):
                    break  # a shell operator ends the command
                if sub is None and word.startswith("-"):
                    global_flags.append(word.split("=", 1)[0])
                elif sub is None:
                    if not SUBCOMMAND.fullmatch(word):
                        break  # a placeholder (`...`, `SUB`): no subcommand to check
                    sub = word
                elif FLAG.fullmatch(word.split("=", 1)[0]):
                    flags.append(word.split("=", 1)[0])
            found.append(Command(f"{name}:{line}", sub, tuple(global_flags), tuple(flags)))
    return found


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, dict(subparsers.choices)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def problems(commands: list[Command]) -> list[str]:
    top, subs = _parsers()
    found = []
    for command in commands:
        for flag in command.global_flags:
            if flag not in _options(top):
                found.append(f"{command.where}: `{PROGRAM} {flag}` is not a flag of {PROGRAM} (before the command)")
        if command.sub is None:
            continue
        if command.sub not in subs:
            found.append(f"{command.where}: `{PROGRAM} {command.sub}` is not a command ({', '.join(sorted(subs))})")
            continue
        known = _options(subs[command.sub])
        found += [f"{command.where}: `{PROGRAM} {command.sub} {flag}` is not a flag of {command.sub}"
                  for flag in command.flags if flag not in known]
    return found


def test_every_documented_flag_is_a_flag_of_its_command():
    commands = [c for path in doc_files() if path.is_file()
                for c in commands_in(path.read_text(), str(path.relative_to(ROOT)))]
    assert any(c.flags for c in commands), "no `rfconv-deploy SUB --flag` found: the extraction is broken"
    assert problems(commands) == []


SAMPLE = """\
Run `rfconv-deploy export resnet50 -o rf50.onnx --dynamic-hw` first, or wrapped:
`rfconv-deploy compare rf50.onnx
--model resnet50`.

```bash
rfconv-deploy serve rf50.onnx --port 8000 \\
    --max-batch 8 --no-such-flag   # a comment --not-a-flag
rfconv-deploy --debug quantize a.onnx -o b.onnx | tee log && rfconv-deploy info
rfconv-deploy --debug ...
rfconv-deploy frobnicate --x
```
"""


def test_extraction_finds_inline_multiline_and_continued_commands():
    got = [(c.where, c.sub, c.global_flags, c.flags) for c in commands_in(SAMPLE, "s")]
    assert got == [
        ("s:1", "export", (), ("-o", "--dynamic-hw")),
        ("s:2", "compare", (), ("--model",)),
        ("s:6", "serve", (), ("--port", "--max-batch", "--no-such-flag")),
        ("s:8", "quantize", ("--debug",), ("-o",)),
        ("s:8", "info", (), ()),
        ("s:9", None, ("--debug",), ()),
        ("s:10", "frobnicate", (), ("--x",)),
    ]


def test_unknown_flags_and_commands_are_reported():
    found = problems(commands_in(SAMPLE, "s"))
    assert len(found) == 2, found
    assert "s:6: `rfconv-deploy serve --no-such-flag` is not a flag of serve" in found[0]
    assert "`rfconv-deploy frobnicate` is not a command" in found[1]


@pytest.mark.parametrize("text", ["`rfconv-deploy --verbose export m -o x.onnx`"])
def test_unknown_global_flag_is_reported(text):
    assert problems(commands_in(text)) == ["<text>:1: `rfconv-deploy --verbose` is not a flag of rfconv-deploy "
                                           "(before the command)"]
