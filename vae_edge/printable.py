"""Text from a file or a client made safe to print on a terminal.

A model file, a manifest or a request line is written by someone else: printed raw, its control
characters could move the cursor, recolour the terminal or fake whole output lines. `printable`
escapes them the way Python's `repr` does, so what is printed is one line of visible text.
"""


NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(character: str) -> str:
    code = ord(character)
    if character in NAMED:
        return NAMED[character]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object) -> str:
    """`str(text)` with every control, format, separator (other than the space) and unassigned
    character escaped (`\\x1b`, `\\u202e`): one line, shown as it is stored."""
    return "".join(c if c.isprintable() else _escaped(c) for c in str(text))
